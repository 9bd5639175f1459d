_base_ = 'mmpretrain::resnet/resnet50_8xb32_in1k.py'
custom_imports = dict(imports=['mmdgconv'], allow_failed_imports=False)

# ImageNet pre-training of ResNet-50-CoC: the checkpoint the detection and
# TSN configs load through init_cfg (prefix='backbone.').
model = dict(
    backbone=dict(
        _delete_=True,
        type='mmdgconv.ResNetCoC',
        depth=50,
        num_stages=4,
        out_indices=(3, ),
        frozen_stages=-1,
        norm_eval=False,
        style='pytorch',
        coc_cfg=dict(
            sa=2, sk_plus=2, skip=True, dilat=True, wsc=True, share='ci',
            ws='LN', both=True, sbn='LN', c1x1=False)))
