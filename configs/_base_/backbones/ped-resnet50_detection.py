# PED-ResNet-50 in a stock mmdet detector: only what differs from the
# detector's ResNet-50 backbone; used as g-resnext50-32x4d_detection.py is.
custom_imports = dict(imports=['mmdgconv'], allow_failed_imports=False)

# ImageNet pre-training of PED-ResNet-50 comes from
# configs/pedconv/ped-resnet50_8xb32_in1k.py; point `pretrained` at its
# checkpoint, or train from scratch with
# `--cfg-options model.backbone.init_cfg=None`.
pretrained = 'checkpoints/ped-resnet50_in1k.pth'
backbone = dict(
    type='mmdgconv.PEDResNet',
    # The paper's training: rank 1, C_in/16 generator, logit noise 0.1
    # and the information-maximisation loss (weight 0.001).
    ped_cfg=dict(
        rank=1, reduction=16, mode='multiplicative', noise_std=0.1,
        info_max=True, info_max_weight=0.001),
    init_cfg=dict(prefix='backbone.', checkpoint=pretrained))

# Adds the info-max loss of every PEDConv decoder to the training loss.
custom_hooks = [dict(type='mmdgconv.PEDInfoMaxHook')]
