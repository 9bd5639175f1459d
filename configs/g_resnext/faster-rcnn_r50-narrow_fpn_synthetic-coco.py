# The ResNet-50 row of `make demo DEMO_ARGS="--compare"` (G-ResNeXt's Table 2
# layout): the demo's Faster R-CNN + FPN, data, schedule and seed, with
# mmdet's own ResNet-50 at the demo's narrow widths (base_channels=16: 16 to
# 128 bottleneck channels, half of the narrow ResNeXt's, as in the paper's
# ResNet-50 against ResNeXt-50 32x4d).
_base_ = './faster-rcnn_g-resnext50-narrow_fpn_synthetic-coco.py'

model = dict(
    backbone=dict(
        _delete_=True,
        type='mmdet.ResNet',
        depth=50,
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
