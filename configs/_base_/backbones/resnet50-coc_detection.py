# ResNet-50-CoC in a stock mmdet detector: only what differs from the
# detector's ResNet-50 backbone; used as g-resnext50-32x4d_detection.py is.
custom_imports = dict(imports=['mmdgconv'], allow_failed_imports=False)

# ImageNet pre-training of ResNet-50-CoC comes from
# configs/coc/resnet50-coc_8xb32_in1k.py; point `pretrained` at its
# checkpoint, or train from scratch with
# `--cfg-options model.backbone.init_cfg=None`.
pretrained = 'checkpoints/resnet50-coc_in1k.pth'
backbone = dict(
    type='mmdgconv.ResNetCoC',
    # The official ResNet setting (mmdgconv.models.backbones.resnet_coc).
    coc_cfg=dict(
        sa=2, sk_plus=2, skip=True, dilat=True, wsc=True, share='ci',
        ws='LN', both=True, sbn='LN', c1x1=False),
    init_cfg=dict(prefix='backbone.', checkpoint=pretrained))
