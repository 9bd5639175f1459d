_base_ = 'mmaction::recognition/tsn/tsn_imagenet-pretrained-r50_8xb32-1x1x3-100e_kinetics400-rgb.py'
custom_imports = dict(imports=['mmdgconv'], allow_failed_imports=False)

# ResNet-50-CoC, fine-tuned from the ImageNet checkpoint of
# configs/coc/resnet50-coc_8xb32_in1k.py (local path; nothing is downloaded).
pretrained = 'checkpoints/resnet50-coc_in1k.pth'
model = dict(
    backbone=dict(
        _delete_=True,
        type='mmdgconv.ResNetCoC',
        depth=50,
        out_indices=(3, ),
        norm_eval=False,
        return_tuple=False,  # Recognizer2D feeds the tensor to TSNHead
        init_cfg=dict(
            type='Pretrained', prefix='backbone.', checkpoint=pretrained)))
