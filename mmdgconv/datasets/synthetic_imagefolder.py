"""A generated, deterministic ImageFolder-style classification dataset.

``root/{train,val}/<class>/*.png``, as mmpretrain's ``CustomDataset`` reads
it: each image holds one filled shape of its class (the shapes and colours of
:mod:`.synthetic_coco`) on a textured background.
"""
import math
import os
import os.path as osp
from typing import Dict

import cv2
import numpy as np

from .dataset_spec import is_complete, mark_complete
from .synthetic_coco import (_BASE_COLOURS, SYNTHETIC_COCO_CLASSES,
                             _shape_polygon)


def _render(rng: np.random.Generator, kind: int, size: int) -> np.ndarray:
    low = rng.integers(70, 170, size=(4, 4, 3)).astype(np.uint8)
    image = cv2.resize(low, (size, size), interpolation=cv2.INTER_CUBIC)
    side = float(rng.uniform(0.35, 0.6) * size)
    centre = rng.uniform(side / 2 + 1, size - side / 2 - 1, size=2)
    polygon = _shape_polygon(kind, centre[0], centre[1], side,
                             float(rng.uniform(0, math.pi / 6)))
    colour = np.clip(
        np.array(_BASE_COLOURS[kind]) + rng.integers(-25, 26, size=3), 0, 255)
    cv2.fillPoly(image, [np.round(polygon).astype(np.int32)],
                 tuple(int(c) for c in colour), lineType=cv2.LINE_AA)
    return image


def make_synthetic_imagefolder(root: str,
                               train_per_class: int = 8,
                               val_per_class: int = 2,
                               size: int = 64,
                               seed: int = 0) -> Dict[str, str]:
    """Write the dataset under ``root``; reuse it if already complete.

    Args:
        root (str): Output directory.
        train_per_class (int): Training images per class. Default: 8.
        val_per_class (int): Validation images per class. Default: 2.
        size (int): Image height and width. Default: 64.
        seed (int): Random seed. Default: 0.

    Returns:
        dict: ``data_root``, ``train_dir``, ``val_dir`` and ``classes``.
    """
    if train_per_class < 1 or val_per_class < 1:
        raise ValueError('train_per_class and val_per_class must be >= 1')
    result = dict(data_root=root, train_dir=osp.join(root, 'train'),
                  val_dir=osp.join(root, 'val'),
                  classes=SYNTHETIC_COCO_CLASSES)
    spec = dict(train_per_class=train_per_class, val_per_class=val_per_class,
                size=size, seed=seed)
    if is_complete(root, spec):
        return result
    rng = np.random.default_rng(seed)
    for split, count in (('train', train_per_class), ('val', val_per_class)):
        for kind, name in enumerate(SYNTHETIC_COCO_CLASSES):
            directory = osp.join(root, split, name)
            os.makedirs(directory, exist_ok=True)
            for index in range(count):
                cv2.imwrite(osp.join(directory, f'{index:04d}.png'),
                            _render(rng, kind, size))
    mark_complete(root, spec)
    return result
