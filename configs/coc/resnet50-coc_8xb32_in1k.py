_base_ = [
    'mmpretrain::resnet/resnet50_8xb32_in1k.py',
    '../_base_/backbones/from-scratch_in1k.py'
]

# ImageNet pre-training of ResNet-50-CoC in the official ResNet setting
# (mmdgconv.models.backbones.resnet_coc): the checkpoint the detection and
# TSN configs load through init_cfg (prefix='backbone.').
model = dict(backbone=dict(
    _base_.pop('backbone'), type='mmdgconv.ResNetCoC', coc_cfg=dict(
        sa=2, sk_plus=2, skip=True, dilat=True, wsc=True, share='ci',
        ws='LN', both=True, sbn='LN', c1x1=False)))
