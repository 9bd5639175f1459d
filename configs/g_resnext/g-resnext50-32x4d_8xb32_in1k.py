_base_ = 'mmpretrain::resnext/resnext50-32x4d_8xb32_in1k.py'
custom_imports = dict(imports=['mmdgconv'], allow_failed_imports=False)

# ImageNet pre-training of G-ResNeXt-50 (32x4d widths): the checkpoint that
# the detection and TSN configs load through init_cfg (prefix='backbone.').
model = dict(
    backbone=dict(
        _delete_=True,
        type='mmdgconv.GResNeXt',
        depth=50,
        groups=32,
        base_width=4,
        num_stages=4,
        out_indices=(3, ),
        frozen_stages=-1,
        norm_eval=False,
        style='pytorch'))

custom_hooks = [dict(type='mmdgconv.ResourceConstraintHook')]
