import filecmp
import json
import os.path as osp

import cv2
import pytest

from mmdgconv.datasets import SYNTHETIC_COCO_CLASSES, make_synthetic_coco


def test_deterministic_and_consistent(tmp_path):
    first = make_synthetic_coco(str(tmp_path / 'a'), num_train=5, num_val=2,
                                image_size=(64, 80), seed=3)
    second = make_synthetic_coco(str(tmp_path / 'b'), num_train=5,
                                 num_val=2, image_size=(64, 80), seed=3)
    for key in ('train_ann', 'val_ann'):
        assert filecmp.cmp(first[key], second[key], shallow=False)
    coco = json.load(open(first['train_ann']))
    assert [c['name'] for c in coco['categories']] == list(
        SYNTHETIC_COCO_CLASSES)
    assert len(coco['images']) == 5 and coco['annotations']
    for image in coco['images']:
        pixels = cv2.imread(osp.join(first['data_root'], 'train',
                                     image['file_name']))
        assert pixels.shape == (64, 80, 3)
        assert filecmp.cmp(
            osp.join(first['data_root'], 'train', image['file_name']),
            osp.join(second['data_root'], 'train', image['file_name']),
            shallow=False)
    for ann in coco['annotations']:
        x, y, w, h = ann['bbox']
        assert 0 <= x and 0 <= y and x + w <= 80 and y + h <= 64
        assert w > 5 and h > 5 and 0 < ann['area'] <= w * h
        assert len(ann['segmentation'][0]) >= 6


def test_reuse_and_regenerate(tmp_path):
    root = str(tmp_path / 'data')
    paths = make_synthetic_coco(root, num_train=2, num_val=1, seed=0)
    stamp = osp.getmtime(paths['train_ann'])
    make_synthetic_coco(root, num_train=2, num_val=1, seed=0)
    assert osp.getmtime(paths['train_ann']) == stamp  # reused
    make_synthetic_coco(root, num_train=3, num_val=1, seed=0)
    assert len(json.load(open(paths['train_ann']))['images']) == 3


def test_bad_sizes_raise(tmp_path):
    with pytest.raises(ValueError, match='num_train'):
        make_synthetic_coco(str(tmp_path), num_train=0)
