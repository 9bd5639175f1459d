"""A generated, deterministic COCO-format detection dataset.

The embedded data of the demo and the tests: nothing is downloaded. Two
variants:

- ``'cluttered'`` (the demo's): eight shape classes in random colours, up to
  eight per image, from small (9 px at 128x128) to medium, allowed to occlude
  one another, on a textured background with unannotated strokes and dots.
  Only the outline tells a class, and pentagons, hexagons and circles differ
  by a few pixels when small, so a detector trained for minutes stays well
  below the ceiling and backbones can be told apart;
- ``'shapes'``: three classes, each with its own shape *and* colour family,
  kept apart, so a small detector learns it in a few iterations (the
  tests' end-to-end runs).

Annotations carry boxes and polygon masks, so Faster R-CNN, RetinaNet and
Mask R-CNN all train on it. An occluded shape keeps its whole (amodal) box
and polygon; the one drawn over it covers at most 40% of that box.
"""
import json
import math
import os
import os.path as osp
from typing import Dict, List, Optional, Sequence, Tuple

import cv2
import numpy as np

from mmdgconv.utils.atomic_write import write_atomically
from .dataset_spec import is_complete, mark_complete

#: Class names of the ``'shapes'`` variant, in category-id order (ids start
#: at 1).
SYNTHETIC_COCO_CLASSES = ('square', 'circle', 'triangle')
#: Class names of the ``'cluttered'`` variant (the first three as above).
CLUTTERED_COCO_CLASSES = ('square', 'circle', 'triangle', 'pentagon',
                          'hexagon', 'star', 'cross', 'ellipse')
#: Variant -> its classes.
VARIANT_CLASSES = dict(shapes=SYNTHETIC_COCO_CLASSES,
                       cluttered=CLUTTERED_COCO_CLASSES)
#: BGR base colour of each class; instances jitter around it.
_BASE_COLOURS = ((40, 40, 210), (40, 190, 40), (210, 90, 30))


def _on_circle(count: int, radius: float, start: float = -math.pi / 2):
    return [(radius * math.cos(start + k * 2 * math.pi / count),
             radius * math.sin(start + k * 2 * math.pi / count))
            for k in range(count)]


def _outline(kind: int) -> List[Tuple[float, float]]:
    """Vertices (x, y) of class ``kind`` (an index into
    :data:`CLUTTERED_COCO_CLASSES`), centred, one unit across."""
    if kind == 0:  # square
        return _on_circle(4, 1 / math.sqrt(2), math.pi / 4)
    if kind == 1:  # circle, as a 24-gon
        return _on_circle(24, 0.5, 0.0)
    if kind == 2:  # equilateral triangle
        return _on_circle(3, 1 / math.sqrt(3))
    if kind in (3, 4):  # pentagon, hexagon
        return _on_circle(kind + 2, 0.5)
    if kind == 5:  # five-pointed star
        outer, inner = _on_circle(10, 0.5), _on_circle(10, 0.21)
        return [outer[k] if k % 2 == 0 else inner[k] for k in range(10)]
    if kind == 6:  # cross, its arms a third of its width
        a, b = 0.5, 0.5 / 3
        return [(b, a), (b, b), (a, b), (a, -b), (b, -b), (b, -a), (-b, -a),
                (-b, -b), (-a, -b), (-a, b), (-b, b), (-b, a)]
    if kind == 7:  # ellipse, half as high as wide
        return [(x, y / 2) for x, y in _on_circle(24, 0.5, 0.0)]
    raise ValueError(f'no outline for class {kind}')


def _shape_polygon(kind: int, cx: float, cy: float, size: float,
                   angle: float) -> np.ndarray:
    """Vertices (N, 2) of class ``kind``, ``size`` across, centred at (cx,
    cy) and rotated by ``angle``."""
    cos, sin = math.cos(angle), math.sin(angle)
    return np.array([[cx + size * (x * cos - y * sin),
                      cy + size * (x * sin + y * cos)]
                     for x, y in _outline(kind)])


def _textured_background(rng: np.random.Generator, height: int, width: int,
                         cells: Sequence[int], noise: float) -> np.ndarray:
    """Smooth random colour fields at the given resolutions, plus noise, so
    a detector cannot key on flat colour."""
    image = np.zeros((height, width, 3))
    for index, count in enumerate(cells):
        low = rng.integers(70, 170, size=(count, count, 3)).astype(np.uint8)
        field = cv2.resize(low, (width, height),
                           interpolation=cv2.INTER_CUBIC)
        image += field.astype(np.float64) / len(cells)
    image += rng.normal(0, noise, size=image.shape)
    return np.clip(image, 0, 255).astype(np.uint8)


def _place(rng: np.random.Generator, kind: int, size: float, height: int,
           width: int, angle: float):
    """A polygon of class ``kind`` at a random position inside the image
    (clipped to it) and its box."""
    cx = float(rng.uniform(size / 2 + 1, width - size / 2 - 1))
    cy = float(rng.uniform(size / 2 + 1, height - size / 2 - 1))
    polygon = _shape_polygon(kind, cx, cy, size, angle)
    polygon[:, 0] = polygon[:, 0].clip(0, width - 1)
    polygon[:, 1] = polygon[:, 1].clip(0, height - 1)
    return polygon, (*polygon.min(0), *polygon.max(0))


def _fill(image: np.ndarray, polygon: np.ndarray, colour) -> None:
    cv2.fillPoly(image, [np.round(polygon).astype(np.int32)],
                 tuple(int(c) for c in colour), lineType=cv2.LINE_AA)


def _render_shapes(rng: np.random.Generator, height: int, width: int,
                   max_objects: int) -> Tuple[np.ndarray, List[dict]]:
    """The ``'shapes'`` variant: colour-coded classes, kept apart."""
    image = _textured_background(rng, height, width, (4, ), 8)
    objects, boxes = [], []
    for _ in range(int(rng.integers(1, max_objects + 1))):
        for _attempt in range(20):
            kind = int(rng.integers(0, 3))
            size = float(rng.uniform(0.18, 0.42) * min(height, width))
            polygon, (x0, y0, x1, y1) = _place(
                rng, kind, size, height, width,
                float(rng.uniform(0, math.pi / 6)))
            # Keep shapes apart, so every box is unambiguous.
            if all(x0 > bx1 + 2 or x1 < bx0 - 2 or y0 > by1 + 2 or y1 < by0 - 2
                   for bx0, by0, bx1, by1 in boxes):
                break
        else:
            continue
        boxes.append((x0, y0, x1, y1))
        _fill(image, polygon, np.clip(
            np.array(_BASE_COLOURS[kind]) + rng.integers(-25, 26, size=3), 0,
            255))
        objects.append(dict(category_id=kind + 1, polygon=polygon))
    return image, objects


def _covered_fraction(box, over) -> float:
    """The fraction of ``box``'s area that ``over`` covers."""
    width = min(box[2], over[2]) - max(box[0], over[0])
    height = min(box[3], over[3]) - max(box[1], over[1])
    if width <= 0 or height <= 0:
        return 0.0
    return width * height / max((box[2] - box[0]) * (box[3] - box[1]), 1e-6)


def _contrasting_colour(rng: np.random.Generator, image: np.ndarray, box,
                        min_distance: float = 60.0) -> np.ndarray:
    """A random colour at least ``min_distance`` (BGR, Euclidean) from the
    mean colour under ``box``, so every shape is visible."""
    x0, y0, x1, y1 = (int(v) for v in box)
    under = image[y0:y1 + 1, x0:x1 + 1].reshape(-1, 3).mean(0)
    for _attempt in range(20):
        colour = rng.integers(0, 256, size=3)
        if np.linalg.norm(colour - under) >= min_distance:
            break
    return colour


def _add_clutter(rng: np.random.Generator, image: np.ndarray) -> None:
    """Unannotated strokes and dots in random colours."""
    height, width = image.shape[:2]
    for _ in range(int(rng.integers(3, 9))):
        points = np.stack([rng.uniform(0, width, 3),
                           rng.uniform(0, height, 3)], 1).astype(np.int32)
        cv2.polylines(image, [points], False,
                      tuple(int(c) for c in rng.integers(0, 256, size=3)),
                      int(rng.integers(1, 3)), lineType=cv2.LINE_AA)
    for _ in range(int(rng.integers(2, 7))):
        centre = (int(rng.integers(0, width)), int(rng.integers(0, height)))
        cv2.circle(image, centre, int(rng.integers(1, 3)),
                   tuple(int(c) for c in rng.integers(0, 256, size=3)), -1,
                   lineType=cv2.LINE_AA)


def _render_cluttered(rng: np.random.Generator, height: int, width: int,
                      max_objects: int) -> Tuple[np.ndarray, List[dict]]:
    """The ``'cluttered'`` variant: shape-only classes, random colours,
    small to medium sizes, occlusion and clutter."""
    image = _textured_background(rng, height, width, (4, 12), 14)
    _add_clutter(rng, image)
    objects, boxes = [], []
    side = min(height, width)
    for _ in range(int(rng.integers(2, max_objects + 1))):
        for _attempt in range(20):
            kind = int(rng.integers(0, len(CLUTTERED_COCO_CLASSES)))
            # Log-uniform sizes: as many small shapes as medium ones.
            size = float(side * math.exp(rng.uniform(math.log(0.07),
                                                     math.log(0.4))))
            polygon, box = _place(rng, kind, size, height, width,
                                  float(rng.uniform(0, 2 * math.pi)))
            # Occlusion, but each earlier shape stays mostly visible, and the
            # new one is not hidden inside an earlier box.
            if all(_covered_fraction(earlier, box) <= 0.4
                   and _covered_fraction(box, earlier) <= 0.4
                   for earlier in boxes):
                break
        else:
            continue
        boxes.append(box)
        _fill(image, polygon, _contrasting_colour(rng, image, box))
        objects.append(dict(category_id=kind + 1, polygon=polygon))
    return image, objects


_RENDERERS = dict(shapes=_render_shapes, cluttered=_render_cluttered)


def _polygon_area(polygon: np.ndarray) -> float:
    x, y = polygon[:, 0], polygon[:, 1]
    return float(0.5 * abs(np.dot(x, np.roll(y, 1)) -
                           np.dot(y, np.roll(x, 1))))


def _write_split(root: str, split: str, num_images: int, image_size,
                 max_objects: int, variant: str,
                 rng: np.random.Generator) -> str:
    height, width = image_size
    render = _RENDERERS[variant]
    os.makedirs(osp.join(root, split), exist_ok=True)
    images, annotations = [], []
    for image_id in range(1, num_images + 1):
        image, objects = render(rng, height, width, max_objects)
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
        for i, name in enumerate(VARIANT_CLASSES[variant])
    ]
    ann_file = osp.join(root, 'annotations', f'instances_{split}.json')
    os.makedirs(osp.dirname(ann_file), exist_ok=True)
    write_atomically(
        lambda f: json.dump(
            dict(images=images, annotations=annotations,
                 categories=categories), f), ann_file, binary=False)
    return ann_file


def make_synthetic_coco(root: str,
                        num_train: int = 200,
                        num_val: int = 50,
                        image_size: Sequence[int] = (128, 128),
                        max_objects: Optional[int] = None,
                        seed: int = 0,
                        variant: str = 'shapes') -> Dict[str, object]:
    """Write the dataset in COCO layout under ``root``.

    ``root/{train,val}/*.png`` and ``root/annotations/instances_{train,val}
    .json``. The same arguments always produce the same files. An existing
    complete dataset written with the same arguments is reused.

    Args:
        root (str): Output directory.
        num_train (int): Training images. Default: 200.
        num_val (int): Validation images. Default: 50.
        image_size (Sequence[int]): (height, width). Default: (128, 128).
        max_objects (int, optional): At most this many shapes per image.
            Default: 3 for ``'shapes'``, 8 for ``'cluttered'``.
        seed (int): Random seed. Default: 0.
        variant (str): ``'shapes'`` (three colour-coded classes, kept
            apart: learned in a few iterations) or ``'cluttered'`` (eight
            shape-only classes, small objects, occlusion and clutter: the
            demo's). Default: ``'shapes'``.

    Returns:
        dict: ``data_root``, ``train_ann`` and ``val_ann`` paths, and
        ``classes``, the class names in category-id order.
    """
    if variant not in _RENDERERS:
        raise ValueError(f'variant must be one of {sorted(_RENDERERS)}, got '
                         f'{variant!r}')
    if num_train < 1 or num_val < 1:
        raise ValueError('num_train and num_val must be >= 1, got '
                         f'{num_train} and {num_val}')
    if max_objects is None:
        max_objects = 3 if variant == 'shapes' else 8
    if max_objects < 1 or (variant == 'cluttered' and max_objects < 2):
        raise ValueError(f'max_objects={max_objects} is too small for the '
                         f'{variant!r} variant')
    spec = dict(num_train=num_train, num_val=num_val,
                image_size=list(image_size), max_objects=max_objects,
                seed=seed, variant=variant)
    result = dict(
        classes=VARIANT_CLASSES[variant],
        data_root=root,
        train_ann=osp.join(root, 'annotations', 'instances_train.json'),
        val_ann=osp.join(root, 'annotations', 'instances_val.json'))
    if is_complete(root, spec):
        return result
    rng = np.random.default_rng(seed)
    for split, count in (('train', num_train), ('val', num_val)):
        _write_split(root, split, count, image_size, max_objects, variant,
                     rng)
    mark_complete(root, spec)
    return result
