"""A generated, deterministic COCO-format detection dataset.

The embedded default for the demo and the tests: nothing is downloaded. Each
image holds a few filled shapes of three classes on a textured background;
a class has its own shape *and* colour family, so a small detector trained
from scratch on the CPU learns it in minutes. Annotations carry boxes and
polygon masks, so Faster R-CNN, RetinaNet and Mask R-CNN all train on it.
"""
import json
import math
import os
import os.path as osp
from typing import Dict, List, Sequence, Tuple

import cv2
import numpy as np

from .dataset_spec import is_complete, mark_complete

#: Class names, in category-id order (ids start at 1).
SYNTHETIC_COCO_CLASSES = ('square', 'circle', 'triangle')
#: BGR base colour of each class; instances jitter around it.
_BASE_COLOURS = ((40, 40, 210), (40, 190, 40), (210, 90, 30))


def _shape_polygon(kind: int, cx: float, cy: float, size: float,
                   angle: float) -> np.ndarray:
    """Vertices (N, 2) of a square, a 24-gon circle or a triangle."""
    if kind == 0:
        offsets = [math.pi / 4 + k * math.pi / 2 for k in range(4)]
        radius = size / math.sqrt(2)
    elif kind == 1:
        offsets = [k * 2 * math.pi / 24 for k in range(24)]
        radius = size / 2
    else:
        offsets = [-math.pi / 2 + k * 2 * math.pi / 3 for k in range(3)]
        radius = size / math.sqrt(3)
    return np.array([[cx + radius * math.cos(a + angle),
                      cy + radius * math.sin(a + angle)] for a in offsets])


def _render_image(rng: np.random.Generator, height: int, width: int,
                  max_objects: int) -> Tuple[np.ndarray, List[dict]]:
    # Smooth random background so the detector cannot key on flat colour.
    low = rng.integers(70, 170, size=(4, 4, 3)).astype(np.uint8)
    image = cv2.resize(low, (width, height), interpolation=cv2.INTER_CUBIC)
    noise = rng.normal(0, 8, size=image.shape)
    image = np.clip(image.astype(np.float64) + noise, 0, 255).astype(np.uint8)

    objects, boxes = [], []
    for _ in range(int(rng.integers(1, max_objects + 1))):
        for _attempt in range(20):
            kind = int(rng.integers(0, 3))
            size = float(rng.uniform(0.18, 0.42) * min(height, width))
            cx = float(rng.uniform(size / 2 + 1, width - size / 2 - 1))
            cy = float(rng.uniform(size / 2 + 1, height - size / 2 - 1))
            polygon = _shape_polygon(kind, cx, cy, size,
                                     float(rng.uniform(0, math.pi / 6)))
            polygon[:, 0] = polygon[:, 0].clip(0, width - 1)
            polygon[:, 1] = polygon[:, 1].clip(0, height - 1)
            x0, y0 = polygon.min(0)
            x1, y1 = polygon.max(0)
            # Keep shapes apart, so every box is unambiguous.
            if all(x0 > bx1 + 2 or x1 < bx0 - 2 or y0 > by1 + 2 or y1 < by0 - 2
                   for bx0, by0, bx1, by1 in boxes):
                break
        else:
            continue
        boxes.append((x0, y0, x1, y1))
        colour = np.clip(
            np.array(_BASE_COLOURS[kind]) + rng.integers(-25, 26, size=3), 0,
            255)
        cv2.fillPoly(image, [np.round(polygon).astype(np.int32)],
                     tuple(int(c) for c in colour), lineType=cv2.LINE_AA)
        objects.append(dict(category_id=kind + 1, polygon=polygon))
    return image, objects


def _polygon_area(polygon: np.ndarray) -> float:
    x, y = polygon[:, 0], polygon[:, 1]
    return float(0.5 * abs(np.dot(x, np.roll(y, 1)) -
                           np.dot(y, np.roll(x, 1))))


def _write_split(root: str, split: str, num_images: int, image_size,
                 max_objects: int, rng: np.random.Generator) -> str:
    height, width = image_size
    os.makedirs(osp.join(root, split), exist_ok=True)
    images, annotations = [], []
    for image_id in range(1, num_images + 1):
        image, objects = _render_image(rng, height, width, max_objects)
        file_name = f'{image_id:06d}.png'
        cv2.imwrite(osp.join(root, split, file_name), image)
        images.append(
            dict(id=image_id, file_name=file_name, height=height,
                 width=width))
        for obj in objects:
            polygon = obj['polygon']
            x0, y0 = polygon.min(0)
            x1, y1 = polygon.max(0)
            annotations.append(
                dict(
                    id=len(annotations) + 1,
                    image_id=image_id,
                    category_id=obj['category_id'],
                    bbox=[round(float(v), 2)
                          for v in (x0, y0, x1 - x0, y1 - y0)],
                    area=round(_polygon_area(polygon), 2),
                    segmentation=[[round(float(v), 2)
                                   for v in polygon.reshape(-1)]],
                    iscrowd=0))
    categories = [
        dict(id=i + 1, name=name, supercategory='shape')
        for i, name in enumerate(SYNTHETIC_COCO_CLASSES)
    ]
    ann_file = osp.join(root, 'annotations', f'instances_{split}.json')
    os.makedirs(osp.dirname(ann_file), exist_ok=True)
    tmp_file = ann_file + '.tmp'
    with open(tmp_file, 'w') as f:
        json.dump(
            dict(images=images, annotations=annotations,
                 categories=categories), f)
    os.replace(tmp_file, ann_file)  # the JSON appears complete or not at all
    return ann_file


def make_synthetic_coco(root: str,
                        num_train: int = 200,
                        num_val: int = 50,
                        image_size: Sequence[int] = (128, 128),
                        max_objects: int = 3,
                        seed: int = 0) -> Dict[str, str]:
    """Write the dataset in COCO layout under ``root``.

    ``root/{train,val}/*.png`` and ``root/annotations/instances_{train,val}
    .json``. The same arguments always produce the same files. An existing
    complete dataset written with the same arguments is reused.

    Args:
        root (str): Output directory.
        num_train (int): Training images. Default: 200.
        num_val (int): Validation images. Default: 50.
        image_size (Sequence[int]): (height, width). Default: (128, 128).
        max_objects (int): At most this many shapes per image. Default: 3.
        seed (int): Random seed. Default: 0.

    Returns:
        dict: ``data_root``, ``train_ann`` and ``val_ann`` paths.
    """
    if num_train < 1 or num_val < 1:
        raise ValueError('num_train and num_val must be >= 1, got '
                         f'{num_train} and {num_val}')
    spec = dict(num_train=num_train, num_val=num_val,
                image_size=list(image_size), max_objects=max_objects,
                seed=seed)
    result = dict(
        data_root=root,
        train_ann=osp.join(root, 'annotations', 'instances_train.json'),
        val_ann=osp.join(root, 'annotations', 'instances_val.json'))
    if is_complete(root, spec):
        return result
    rng = np.random.default_rng(seed)
    _write_split(root, 'train', num_train, image_size, max_objects, rng)
    _write_split(root, 'val', num_val, image_size, max_objects, rng)
    mark_complete(root, spec)
    return result
