_base_ = 'mmdet::faster_rcnn/faster-rcnn_r50_fpn_1x_coco.py'
custom_imports = dict(imports=['mmdgconv'], allow_failed_imports=False)

# ImageNet pre-training of ResNet-50-CoC comes from
# configs/coc/resnet50-coc_8xb32_in1k.py; point `pretrained` at its
# checkpoint, or train from scratch with
# `--cfg-options model.backbone.init_cfg=None`.
pretrained = 'checkpoints/resnet50-coc_in1k.pth'
model = dict(
    backbone=dict(
        _delete_=True,
        type='mmdgconv.ResNetCoC',
        depth=50,
        num_stages=4,
        out_indices=(0, 1, 2, 3),
        frozen_stages=1,
        norm_cfg=dict(type='BN', requires_grad=True),
        norm_eval=True,
        style='pytorch',
        # The official ResNet setting (mmdgconv.models.backbones.resnet_coc).
        coc_cfg=dict(
            sa=2, sk_plus=2, skip=True, dilat=True, wsc=True, share='ci',
            ws='LN', both=True, sbn='LN', c1x1=False),
        init_cfg=dict(
            type='Pretrained', prefix='backbone.', checkpoint=pretrained)))
