# G-ResNeXt-50 (32x4d widths) in the stock TSN; see imagenet-pretrained_tsn.py.
_base_ = './imagenet-pretrained_tsn.py'

# As in the paper (DGConv paper, appendix C) the groups stay fixed after
# ImageNet pre-training: freeze_groups=True. The ImageNet checkpoint comes
# from configs/g_resnext/g-resnext50-32x4d_8xb32_in1k.py (no public weights
# exist); nothing is downloaded.
pretrained = 'checkpoints/g-resnext50-32x4d_in1k.pth'
backbone = dict(
    type='mmdgconv.GResNeXt',
    groups=32,
    base_width=4,
    freeze_groups=True,
    init_cfg=dict(checkpoint=pretrained))
