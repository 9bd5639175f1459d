from .synthetic_coco import SYNTHETIC_COCO_CLASSES, make_synthetic_coco

__all__ = ['SYNTHETIC_COCO_CLASSES', 'make_synthetic_coco']
