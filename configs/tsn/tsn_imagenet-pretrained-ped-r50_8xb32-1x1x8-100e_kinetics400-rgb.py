_base_ = 'mmaction::recognition/tsn/tsn_imagenet-pretrained-r50_8xb32-1x1x8-100e_kinetics400-rgb.py'
custom_imports = dict(imports=['mmdgconv'], allow_failed_imports=False)

# PED-ResNet-50, fine-tuned from the ImageNet checkpoint of
# configs/pedconv/ped-resnet50_8xb32_in1k.py (local path; nothing is
# downloaded).
pretrained = 'checkpoints/ped-resnet50_in1k.pth'
model = dict(
    backbone=dict(
        _delete_=True,
        type='mmdgconv.PEDResNet',
        depth=50,
        out_indices=(3, ),
        norm_eval=False,
        return_tuple=False,  # Recognizer2D feeds the tensor to TSNHead
        init_cfg=dict(
            type='Pretrained', prefix='backbone.', checkpoint=pretrained)))
