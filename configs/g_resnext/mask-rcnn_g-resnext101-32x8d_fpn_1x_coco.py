_base_ = 'mmdet::mask_rcnn/mask-rcnn_r50_fpn_1x_coco.py'
custom_imports = dict(imports=['mmdgconv'], allow_failed_imports=False)

# ImageNet pre-training of this backbone comes from
# configs/g_resnext/g-resnext101-32x8d_8xb32_in1k.py (no public weights
# exist);
# point `pretrained` at its checkpoint, or train from scratch with
# `--cfg-options model.backbone.init_cfg=None`.
pretrained = 'checkpoints/g-resnext101-32x8d_in1k.pth'
model = dict(
    backbone=dict(
        _delete_=True,
        type='mmdgconv.GResNeXt',
        depth=101,
        groups=32,
        base_width=8,
        num_stages=4,
        out_indices=(0, 1, 2, 3),
        frozen_stages=1,
        norm_cfg=dict(type='BN', requires_grad=True),
        norm_eval=True,
        style='pytorch',
        init_cfg=dict(
            type='Pretrained', prefix='backbone.', checkpoint=pretrained)))

# The paper's objective L * (o / zeta)^alpha; o defaults to the 32-group
# ResNeXt complexity.
custom_hooks = [dict(type='mmdgconv.ResourceConstraintHook')]
