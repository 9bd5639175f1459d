# The ResNeXt-50 row of `make demo DEMO_ARGS="--compare"` (G-ResNeXt's Table
# 2 layout): the ResNet-50 row's detector, data, schedule and seed, with
# mmdet's own ResNeXt-50 at exactly the narrow G-ResNeXt's widths (8 groups
# of 4 channels at base width 16: 32 to 256 bottleneck channels), its groups
# fixed instead of learned.
_base_ = './faster-rcnn_r50-narrow_fpn_synthetic-coco.py'

model = dict(backbone=dict(type='mmdet.ResNeXt', groups=8, base_width=4))
