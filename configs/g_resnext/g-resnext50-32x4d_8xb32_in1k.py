_base_ = [
    'mmpretrain::resnext/resnext50-32x4d_8xb32_in1k.py',
    '../_base_/backbones/from-scratch_in1k.py'
]

# ImageNet pre-training of G-ResNeXt-50 (32x4d widths): the checkpoint that
# the detection and TSN configs load through init_cfg (prefix='backbone.').
model = dict(
    backbone=dict(
        _base_.pop('backbone'),
        type='mmdgconv.GResNeXt',
        groups=32,
        base_width=4))

custom_hooks = [dict(type='mmdgconv.ResourceConstraintHook')]
