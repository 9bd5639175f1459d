_base_ = 'mmdet::faster_rcnn/faster-rcnn_r50_fpn_1x_coco.py'
custom_imports = dict(imports=['mmdgconv'], allow_failed_imports=False)

# Faster R-CNN + FPN with a rotation-equivariant P4ResNet-50 (G-CNN). Widths
# are ResNet-50's divided by sqrt(|H|) = 2, so each stage's group-pooled
# output has half the channels; the FPN reads those. There are no public
# ImageNet weights for it, so it trains from scratch: nothing is frozen and
# the norms train.
model = dict(
    backbone=dict(
        _delete_=True,
        type='mmdgconv.P4ResNet',
        depth=50,
        group='p4',
        out_indices=(0, 1, 2, 3),
        frozen_stages=-1,
        norm_cfg=dict(type='BN', requires_grad=True),
        norm_eval=False,
        group_pool='max'),
    neck=dict(in_channels=[128, 256, 512, 1024]))
