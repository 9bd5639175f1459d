from .synthetic_coco import (CLUTTERED_COCO_CLASSES, SYNTHETIC_COCO_CLASSES,
                             make_synthetic_coco)
from .synthetic_imagefolder import make_synthetic_imagefolder
from .synthetic_video import SYNTHETIC_VIDEO_CLASSES, make_synthetic_kinetics

__all__ = [
    'CLUTTERED_COCO_CLASSES', 'SYNTHETIC_COCO_CLASSES',
    'SYNTHETIC_VIDEO_CLASSES', 'make_synthetic_coco',
    'make_synthetic_imagefolder', 'make_synthetic_kinetics'
]
