_base_ = './g-resnext50-32x4d_8xb32_in1k.py'

# ImageNet pre-training of G-ResNeXt-101 (32x8d widths), the backbone of
# the 101 detection configs.
model = dict(backbone=dict(depth=101, base_width=8))
