# The main job (`make demo`): the stock Faster R-CNN + FPN with a narrow
# G-ResNeXt-50, trained from scratch on the generated COCO-format dataset
# (tools/demo.py writes its 'cluttered' variant to data/synthetic_coco: eight
# shape classes, small objects, occlusion, clutter). Sized to train in about
# seven minutes on two CPU cores.
_base_ = './faster-rcnn_g-resnext50-32x4d_fpn_1x_coco.py'

data_root = 'data/synthetic_coco/'
metainfo = dict(classes=('square', 'circle', 'triangle', 'pentagon',
                         'hexagon', 'star', 'cross', 'ellipse'))
image_scale = (128, 128)
max_iters = 800

# Depth 50 as in the paper, at 8x4d widths: the 16 DGConv layers have
# 32/64/128/256 channels, a quarter of G-ResNeXt-50 32x4d's.
model = dict(
    backbone=dict(
        groups=8,
        base_width=4,
        base_channels=16,
        frozen_stages=-1,
        norm_eval=False,
        init_cfg=None),
    neck=dict(in_channels=[64, 128, 256, 512], out_channels=64),
    rpn_head=dict(in_channels=64, feat_channels=64),
    roi_head=dict(
        bbox_roi_extractor=dict(out_channels=64),
        bbox_head=dict(in_channels=64, fc_out_channels=256, num_classes=8)),
    train_cfg=dict(rpn_proposal=dict(nms_pre=600, max_per_img=300)),
    test_cfg=dict(rpn=dict(nms_pre=300, max_per_img=100)))

train_pipeline = [
    dict(type='LoadImageFromFile', backend_args=None),
    dict(type='LoadAnnotations', with_bbox=True),
    dict(type='Resize', scale=image_scale, keep_ratio=True),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackDetInputs')
]
test_pipeline = [
    dict(type='LoadImageFromFile', backend_args=None),
    dict(type='Resize', scale=image_scale, keep_ratio=True),
    dict(type='LoadAnnotations', with_bbox=True),
    dict(
        type='PackDetInputs',
        meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape',
                   'scale_factor'))
]
train_dataloader = dict(
    batch_size=4,
    num_workers=1,
    persistent_workers=True,
    sampler=dict(type='InfiniteSampler', shuffle=True),
    dataset=dict(
        data_root=data_root,
        metainfo=metainfo,
        ann_file='annotations/instances_train.json',
        data_prefix=dict(img='train/'),
        pipeline=train_pipeline))
# The training loader's settings and root, on the validation split.
val_dataloader = dict(
    {key: value for key, value in train_dataloader.items() if key != 'sampler'},
    dataset=dict(
        train_dataloader['dataset'],
        ann_file='annotations/instances_val.json',
        data_prefix=dict(img='val/'),
        pipeline=test_pipeline))
test_dataloader = val_dataloader
val_evaluator = dict(ann_file=data_root + 'annotations/instances_val.json')
test_evaluator = val_evaluator

# From scratch: AdamW with warm-up and a cosine decay converges far faster
# than the 1x SGD schedule. Gates take no weight decay, which would only
# pull them back towards the undecided zero.
optim_wrapper = dict(
    _delete_=True,
    type='OptimWrapper',
    optimizer=dict(type='AdamW', lr=2e-3, weight_decay=0.05),
    paramwise_cfg=dict(
        norm_decay_mult=0.,
        custom_keys={'.gate': dict(decay_mult=0.)}),
    clip_grad=dict(max_norm=10.))
# One validation, at the end.
train_cfg = dict(_delete_=True, type='IterBasedTrainLoop', max_iters=max_iters,
                 val_interval=max_iters)
param_scheduler = [
    dict(type='LinearLR', start_factor=0.01, by_epoch=False, begin=0,
         end=50),
    dict(type='CosineAnnealingLR', by_epoch=False, begin=50,
         end=max_iters, eta_min=2e-5)
]
default_hooks = dict(
    logger=dict(type='LoggerHook', interval=25),
    checkpoint=dict(type='CheckpointHook', by_epoch=False,
                    interval=max_iters, max_keep_ckpts=1),
    visualization=dict(draw=False))
log_processor = dict(by_epoch=False)
auto_scale_lr = dict(enable=False)
# A fixed seed: two runs train the same model and print the same table.
randomness = dict(seed=0, deterministic=False)
