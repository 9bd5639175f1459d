_base_ = [
    'mmpretrain::resnet/resnet50_8xb32_in1k.py',
    '../_base_/backbones/from-scratch_in1k.py'
]

# ImageNet training of PED-ResNet-50 (paper: rank 1, C_in/16 generator,
# logit noise 0.1, info-max loss weight 0.001).
model = dict(
    backbone=dict(_base_.pop('backbone'), type='mmdgconv.PEDResNet',
                  ped_cfg=dict(rank=1, reduction=16, mode='multiplicative',
                               noise_std=0.1, info_max=True,
                               info_max_weight=0.001)),
    head=dict(in_channels=2048))

custom_hooks = [dict(type='mmdgconv.PEDInfoMaxHook')]
