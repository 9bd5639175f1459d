_base_ = [
    'mmaction::recognition/tsn/tsn_imagenet-pretrained-r50_8xb32-1x1x3-100e_kinetics400-rgb.py',  # noqa: E501
    '../_base_/backbones/p4-resnet50.py'
]

# P4ResNet-50, fine-tuned from the ImageNet checkpoint of
# configs/p4/p4-resnet50_8xb32_in1k.py (local path; nothing is downloaded).
# Its group-pooled last stage has 1024 channels.
pretrained = 'checkpoints/p4-resnet50_in1k.pth'
model = dict(
    backbone=dict(
        _base_.pop('backbone'),
        out_indices=(3, ),
        init_cfg=dict(
            type='Pretrained', prefix='backbone.', checkpoint=pretrained)),
    cls_head=dict(in_channels=1024))
