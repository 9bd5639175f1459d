# The stock mmdet detector (retinanet_r50_fpn_1x_coco) with G-ResNeXt-50
# (32x4d) in place of its ResNet-50; the backbone is
# configs/_base_/backbones/g-resnext50-32x4d_detection.py.
_base_ = [
    'mmdet::retinanet/retinanet_r50_fpn_1x_coco.py',
    '../_base_/backbones/g-resnext50-32x4d_detection.py'
]
model = dict(backbone=_base_.pop('backbone'))
