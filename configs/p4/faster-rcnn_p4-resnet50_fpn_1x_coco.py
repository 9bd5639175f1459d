_base_ = [
    'mmdet::faster_rcnn/faster-rcnn_r50_fpn_1x_coco.py',
    '../_base_/backbones/p4-resnet50.py'
]

# Faster R-CNN + FPN with P4ResNet-50; the FPN reads its half-width stage
# outputs. There are no public ImageNet weights for it, so it trains from
# scratch: nothing is frozen and the norms train.
model = dict(
    backbone=dict(
        _base_.pop('backbone'),
        out_indices=(0, 1, 2, 3),
        frozen_stages=-1,
        norm_cfg=dict(type='BN', requires_grad=True),
        group_pool='max'),
    neck=dict(in_channels=[128, 256, 512, 1024]))
