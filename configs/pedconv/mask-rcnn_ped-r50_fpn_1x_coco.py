# The stock mmdet detector (mask-rcnn_r50_fpn_1x_coco) with PED-ResNet-50 in
# place of its ResNet-50; the backbone is
# configs/_base_/backbones/ped-resnet50_detection.py.
_base_ = [
    'mmdet::mask_rcnn/mask-rcnn_r50_fpn_1x_coco.py',
    '../_base_/backbones/ped-resnet50_detection.py'
]
model = dict(backbone=_base_.pop('backbone'))
