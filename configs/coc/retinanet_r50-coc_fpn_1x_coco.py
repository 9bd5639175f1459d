_base_ = [
    'mmdet::retinanet/retinanet_r50_fpn_1x_coco.py',
    '../_base_/backbones/resnet50-coc_detection.py'
]
model = dict(backbone=_base_.pop('backbone'))
