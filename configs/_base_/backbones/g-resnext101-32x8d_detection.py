# G-ResNeXt-101 (32x8d widths) in a stock mmdet detector; used as
# g-resnext50-32x4d_detection.py is.
_base_ = './g-resnext50-32x4d_detection.py'

# ImageNet pre-training: configs/g_resnext/g-resnext101-32x8d_8xb32_in1k.py.
pretrained = 'checkpoints/g-resnext101-32x8d_in1k.pth'
backbone = dict(depth=101, base_width=8, init_cfg=dict(checkpoint=pretrained))
