_base_ = 'mmpretrain::resnext/resnext101-32x8d_8xb32_in1k.py'
custom_imports = dict(imports=['mmdgconv'], allow_failed_imports=False)

# ImageNet pre-training of G-ResNeXt-101 (32x8d widths): the checkpoint that
# the 101 detection configs load through init_cfg (prefix='backbone.',
# checkpoints/g-resnext101-32x8d_in1k.pth).
model = dict(
    backbone=dict(
        _delete_=True,
        type='mmdgconv.GResNeXt',
        depth=101,
        groups=32,
        base_width=8,
        num_stages=4,
        out_indices=(3, ),
        frozen_stages=-1,
        norm_eval=False,
        style='pytorch'))

custom_hooks = [dict(type='mmdgconv.ResourceConstraintHook')]
