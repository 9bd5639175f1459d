# The DGConv paper's ResNeXt-50 32x4d baseline in the stock TSN:
# mmpretrain's ResNeXt (Recognizer2D unwraps mmpretrain backbones' tuples
# itself). Used as imagenet-pretrained_tsn.py describes.
custom_imports = dict(imports=['mmdgconv'], allow_failed_imports=False)

# ImageNet weights from a local mmpretrain checkpoint; nothing is downloaded.
pretrained = 'checkpoints/resnext50-32x4d_in1k.pth'
backbone = dict(
    _delete_=True, type='mmpretrain.ResNeXt', depth=50, groups=32,
    width_per_group=4, out_indices=(3, ), norm_eval=False,
    init_cfg=dict(type='Pretrained', prefix='backbone.',
                  checkpoint=pretrained))
