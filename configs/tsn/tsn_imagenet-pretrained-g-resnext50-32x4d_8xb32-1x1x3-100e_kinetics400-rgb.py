_base_ = 'mmaction::recognition/tsn/tsn_imagenet-pretrained-r50_8xb32-1x1x3-100e_kinetics400-rgb.py'
custom_imports = dict(imports=['mmdgconv'], allow_failed_imports=False)

# G-ResNeXt-50 (32x4d widths). As in the paper (DGConv paper, appendix C) the
# groups stay fixed after ImageNet pre-training: freeze_groups=True. The
# ImageNet checkpoint comes from configs/g_resnext/g-resnext50-32x4d_8xb32_in1k.py
# (no public weights exist); nothing is downloaded.
pretrained = 'checkpoints/g-resnext50-32x4d_in1k.pth'
model = dict(
    backbone=dict(
        _delete_=True,
        type='mmdgconv.GResNeXt',
        depth=50,
        groups=32,
        base_width=4,
        out_indices=(3, ),
        norm_eval=False,
        freeze_groups=True,
        return_tuple=False,  # Recognizer2D feeds the tensor to TSNHead
        init_cfg=dict(
            type='Pretrained', prefix='backbone.', checkpoint=pretrained)))
