# The ResNeXt-50 row of `make demo DEMO_ARGS="--compare"` (G-ResNeXt's Table
# 2 layout): the demo's Faster R-CNN + FPN, data, schedule and seed, with
# mmdet's own ResNeXt-50 at exactly the narrow G-ResNeXt's widths (8 groups
# of 4 channels at base width 16: 32 to 256 bottleneck channels), its groups
# fixed instead of learned.
_base_ = './faster-rcnn_g-resnext50-narrow_fpn_synthetic-coco.py'

model = dict(
    backbone=dict(
        _delete_=True,
        type='mmdet.ResNeXt',
        depth=50,
        groups=8,
        base_width=4,
        base_channels=16,
        num_stages=4,
        out_indices=(0, 1, 2, 3),
        frozen_stages=-1,
        norm_cfg=dict(type='BN', requires_grad=True),
        norm_eval=False,
        style='pytorch',
        init_cfg=None))
# No DGConv gates, so no resource constraint.
custom_hooks = []
