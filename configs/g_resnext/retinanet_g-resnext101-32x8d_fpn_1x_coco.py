_base_ = [
    'mmdet::retinanet/retinanet_r50_fpn_1x_coco.py',
    '../_base_/backbones/g-resnext101-32x8d_detection.py'
]
model = dict(backbone=_base_.pop('backbone'))
