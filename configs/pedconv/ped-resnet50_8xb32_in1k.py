_base_ = 'mmpretrain::resnet/resnet50_8xb32_in1k.py'
custom_imports = dict(imports=['mmdgconv'], allow_failed_imports=False)

# ImageNet training of PED-ResNet-50 (paper: rank 1, C_in/16 generator,
# logit noise 0.1, info-max loss weight 0.001).
model = dict(
    backbone=dict(
        _delete_=True,
        type='mmdgconv.PEDResNet',
        depth=50,
        num_stages=4,
        out_indices=(3, ),
        frozen_stages=-1,
        norm_eval=False,
        style='pytorch',
        ped_cfg=dict(
            rank=1, reduction=16, mode='multiplicative', noise_std=0.1,
            info_max=True, info_max_weight=0.001)),
    head=dict(in_channels=2048))

custom_hooks = [dict(type='mmdgconv.PEDInfoMaxHook')]
