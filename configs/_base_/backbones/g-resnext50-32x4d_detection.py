# G-ResNeXt-50 (32x4d widths) in a stock mmdet detector: only what differs
# from the detector's ResNet-50 backbone (its depth, stages, frozen stem,
# norms in eval mode and style are kept). A detector config lists this file
# after its mmdet:: base and takes the backbone out of it, so that it does
# not stay behind as a key of its own:
#
#   _base_ = ['mmdet::faster_rcnn/faster-rcnn_r50_fpn_1x_coco.py',
#             '../_base_/backbones/g-resnext50-32x4d_detection.py']
#   model = dict(backbone=_base_.pop('backbone'))
custom_imports = dict(imports=['mmdgconv'], allow_failed_imports=False)

# ImageNet pre-training of this backbone comes from
# configs/g_resnext/g-resnext50-32x4d_8xb32_in1k.py (no public weights exist);
# point `pretrained` at its checkpoint, or train from scratch with
# `--cfg-options model.backbone.init_cfg=None`.
pretrained = 'checkpoints/g-resnext50-32x4d_in1k.pth'
backbone = dict(
    type='mmdgconv.GResNeXt',
    groups=32,
    base_width=4,
    init_cfg=dict(prefix='backbone.', checkpoint=pretrained))

# The paper's objective L * (o / zeta)^alpha; o defaults to the 32-group
# ResNeXt complexity.
custom_hooks = [dict(type='mmdgconv.ResourceConstraintHook')]
