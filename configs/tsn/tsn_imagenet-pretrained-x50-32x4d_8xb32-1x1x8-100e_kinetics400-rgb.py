# The stock mmaction2 TSN
# (tsn_imagenet-pretrained-r50_8xb32-1x1x8-100e_kinetics400-rgb) with
# mmpretrain's ResNeXt-50 (32x4d) in place of its ResNet-50; the backbone is
# configs/_base_/backbones/resnext50-32x4d_tsn.py.
_base_ = [
    'mmaction::recognition/tsn/tsn_imagenet-pretrained-r50_8xb32-1x1x8-100e_kinetics400-rgb.py',  # noqa: E501
    '../_base_/backbones/resnext50-32x4d_tsn.py'
]
model = dict(backbone=_base_.pop('backbone'))
