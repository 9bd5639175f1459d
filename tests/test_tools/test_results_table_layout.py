"""The results table's rows and layouts, from metrics as the toolboxes'
evaluators report them."""
import csv
import io
import json

import pytest

from mmdgconv.analysis import COLUMNS, Row, to_csv, to_json, to_markdown


def _rows():
    detection = Row('a.py', 'a.pth', 'mmdet', 'GResNeXt-50', {
        'coco/bbox_mAP': 0.389, 'coco/bbox_mAP_50': 0.601,
        'coco/bbox_mAP_75': 0.42, 'coco/bbox_mAP_l': -1.0,
        'coco/bbox_mAP_m': 0.2, 'coco/bbox_mAP_s': 0.05
    }, {'params (M)': 41.5, 'FLOPs (G)': 4.25, 'latency (ms)': 80.04})
    recognition = Row('t.py', 't.pth', 'mmaction', 'GResNeXt-50', {
        'acc/top1': 0.7258, 'acc/top5': 0.9, 'acc/mean1': 0.7})
    classification = Row('c.py', 'c.pth', 'mmpretrain', 'PEDResNet-50', {
        'accuracy/top1': 80.5}, {'FLOPs (G)': 4.1, 'run-time (ms)': 93.0,
                                 'params (M)': 26.5, 'latency (ms)': 93.0})
    return [detection, recognition, classification]


def test_cells_in_percent_with_missing_buckets_as_none():
    detection, recognition, classification = (r.cells() for r in _rows())
    assert list(detection) == list(COLUMNS['mmdet'])
    assert detection['AP'] == pytest.approx(38.9)
    assert detection['AP.5'] == pytest.approx(60.1)
    assert detection['APl'] is None  # pycocotools' -1: no large objects
    assert list(recognition) == ['backbone', 'top-1', 'top-5']
    assert recognition['top-1'] == pytest.approx(72.58)
    assert recognition['top-5'] == pytest.approx(90.0)
    # mmpretrain's Accuracy already reports percent
    assert classification == {'backbone': 'PEDResNet-50', 'FLOPs (G)': 4.1,
                              'run-time (ms)': 93.0, 'top-1': 80.5}


def test_markdown_has_a_table_per_task_in_the_papers_layouts():
    text = to_markdown(_rows())
    assert text.split('\n\n')[0] == 'detection:'
    assert ('| backbone | AP | AP.5 | AP.75 | APl | APm | APs | params (M) '
            '| FLOPs (G) | latency (ms) |') in text
    assert ('| GResNeXt-50 | 38.9 | 60.1 | 42.0 | n/a | 20.0 | 5.0 | 41.50 '
            '| 4.25 | 80.0 |') in text
    assert '| backbone | top-1 | top-5 |\n|---|---:|---:|\n' \
        '| GResNeXt-50 | 72.6 | 90.0 |' in text
    assert '| PEDResNet-50 | 4.10 | 93.0 | 80.5 |' in text


def test_csv_and_json_carry_every_cell():
    lines = list(csv.DictReader(io.StringIO(to_csv(_rows()))))
    assert [line['task'] for line in lines] == [
        'detection', 'action recognition', 'classification']
    assert lines[0]['AP'] == '38.9' and lines[0]['APl'] == ''
    assert lines[1]['top-5'] == '90.0' and lines[1]['AP'] == ''
    rows = json.loads(to_json(_rows()))
    assert rows[2]['cells']['top-1'] == 80.5
    assert rows[0]['metrics']['coco/bbox_mAP_l'] == -1.0
