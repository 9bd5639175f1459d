import filecmp
import json
import os.path as osp

import cv2
import pytest

from mmdgconv.datasets import (CLUTTERED_COCO_CLASSES, SYNTHETIC_COCO_CLASSES,
                               make_synthetic_coco)


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


def _boxes_by_image(coco):
    boxes = {}
    for ann in coco['annotations']:
        x, y, w, h = ann['bbox']
        boxes.setdefault(ann['image_id'], []).append((x, y, x + w, y + h))
    return boxes


def _covered(box, over):
    w = min(box[2], over[2]) - max(box[0], over[0])
    h = min(box[3], over[3]) - max(box[1], over[1])
    return max(w, 0) * max(h, 0) / ((box[2] - box[0]) * (box[3] - box[1]))


def test_cluttered_variant_is_hard_and_deterministic(tmp_path):
    """The demo's data: eight shape classes in any colour, small objects
    beside medium ones, occlusion that leaves every shape mostly visible."""
    first = make_synthetic_coco(str(tmp_path / 'a'), num_train=30,
                                num_val=2, seed=5, variant='cluttered')
    second = make_synthetic_coco(str(tmp_path / 'b'), num_train=30,
                                 num_val=2, seed=5, variant='cluttered')
    assert filecmp.cmp(first['train_ann'], second['train_ann'],
                       shallow=False)
    assert first['classes'] == CLUTTERED_COCO_CLASSES
    coco = json.load(open(first['train_ann']))
    assert [c['name'] for c in coco['categories']] == list(
        CLUTTERED_COCO_CLASSES)
    anns = coco['annotations']
    assert {a['category_id'] for a in anns} == set(range(1, 9))
    assert len(anns) >= 30 * 3  # several shapes per image
    # COCO's size buckets: small objects (area < 32^2) and medium ones.
    areas = [a['area'] for a in anns]
    assert sum(a < 32 ** 2 for a in areas) > len(areas) / 3
    assert any(a > 32 ** 2 for a in areas)
    overlaps = 0
    for boxes in _boxes_by_image(coco).values():
        for i, box in enumerate(boxes):
            for other in boxes[i + 1:]:
                assert _covered(box, other) <= 0.4 + 1e-3
                assert _covered(other, box) <= 0.4 + 1e-3
                overlaps += _covered(box, other) > 0
    assert overlaps > 5  # occlusion happens
    # Colour does not give the class away: one class, many hues.
    image = cv2.imread(osp.join(first['data_root'], 'train', '000001.png'))
    assert image.shape == (128, 128, 3)
    centre_colours = {}
    for ann in anns:
        x, y, w, h = ann['bbox']
        if ann['category_id'] == 1 and w > 12:
            pixels = cv2.imread(osp.join(
                first['data_root'], 'train',
                f'{ann["image_id"]:06d}.png'))
            centre_colours[ann['id']] = pixels[int(y + h / 2),
                                               int(x + w / 2)].astype(int)
    colours = list(centre_colours.values())
    assert len(colours) >= 2
    assert max(abs(a - b).sum() for a in colours for b in colours) > 100


def test_unknown_variant_raises(tmp_path):
    with pytest.raises(ValueError, match="variant must be one of"):
        make_synthetic_coco(str(tmp_path), variant='hard')
