_base_ = 'mmaction::recognition/tsn/tsn_imagenet-pretrained-r50_8xb32-1x1x3-100e_kinetics400-rgb.py'
custom_imports = dict(imports=['mmdgconv'], allow_failed_imports=False)

# P4ResNet-50 (rotation-equivariant G-CNN), fine-tuned from the ImageNet
# checkpoint of configs/p4/p4-resnet50_8xb32_in1k.py (local path; nothing is
# downloaded). Its group-pooled last stage has 1024 channels.
pretrained = 'checkpoints/p4-resnet50_in1k.pth'
model = dict(
    backbone=dict(
        _delete_=True,
        type='mmdgconv.P4ResNet',
        depth=50,
        group='p4',
        out_indices=(3, ),
        norm_eval=False,
        init_cfg=dict(
            type='Pretrained', prefix='backbone.', checkpoint=pretrained)),
    cls_head=dict(in_channels=1024))
