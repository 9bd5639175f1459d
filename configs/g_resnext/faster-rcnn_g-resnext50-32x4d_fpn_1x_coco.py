_base_ = [
    'mmdet::faster_rcnn/faster-rcnn_r50_fpn_1x_coco.py',
    '../_base_/backbones/g-resnext50-32x4d_detection.py'
]
model = dict(backbone=_base_.pop('backbone'))
