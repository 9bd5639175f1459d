# The DGConv paper's TSN schedule (see tsn_imagenet-pretrained-r50_8xb32-paper-schedule_kinetics400-rgb.py)
# with the G-ResNeXt-50 backbone of the 1x1x3 config.
_base_ = [
    './tsn_imagenet-pretrained-r50_8xb32-paper-schedule_kinetics400-rgb.py',
    '../_base_/backbones/g-resnext50-32x4d_tsn.py'
]
model = dict(backbone=_base_.pop('backbone'))
