# The stock mmaction2 TSN
# (tsn_imagenet-pretrained-r50_8xb32-1x1x3-100e_kinetics400-rgb) with
# PED-ResNet-50 in place of its ResNet-50; the backbone is
# configs/_base_/backbones/ped-resnet50_tsn.py.
_base_ = [
    'mmaction::recognition/tsn/tsn_imagenet-pretrained-r50_8xb32-1x1x3-100e_kinetics400-rgb.py',  # noqa: E501
    '../_base_/backbones/ped-resnet50_tsn.py'
]
model = dict(backbone=_base_.pop('backbone'))
