# The DGConv paper's TSN schedule (see tsn_imagenet-pretrained-r50_8xb32-paper-schedule_kinetics400-rgb.py)
# with the ResNeXt-50 32x4d baseline of the 1x1x3 config.
_base_ = './tsn_imagenet-pretrained-r50_8xb32-paper-schedule_kinetics400-rgb.py'
custom_imports = dict(imports=['mmdgconv'], allow_failed_imports=False)

# The DGConv paper's ResNeXt-50 32x4d baseline, mmpretrain's ResNeXt (Recognizer2D
# unwraps mmpretrain backbones' tuples itself). ImageNet weights from a local
# mmpretrain checkpoint; nothing is downloaded.
pretrained = 'checkpoints/resnext50-32x4d_in1k.pth'
model = dict(
    backbone=dict(
        _delete_=True,
        type='mmpretrain.ResNeXt',
        depth=50,
        groups=32,
        width_per_group=4,
        out_indices=(3, ),
        norm_eval=False,
        init_cfg=dict(
            type='Pretrained', prefix='backbone.', checkpoint=pretrained)))
