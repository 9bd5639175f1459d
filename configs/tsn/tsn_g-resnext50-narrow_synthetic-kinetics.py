# `python tools/demo.py --task tsn`: the stock TSN (1x1x3) with a narrow
# G-ResNeXt-50, trained from scratch on the generated Kinetics-format videos
# (tools/demo.py writes them to data/synthetic_kinetics). The groups stay
# fixed, as the paper fine-tunes TSN with frozen groups.
_base_ = './tsn_imagenet-pretrained-g-resnext50-32x4d_8xb32-1x1x3-100e_kinetics400-rgb.py'

data_root = 'data/synthetic_kinetics/'
file_client_args = dict(io_backend='disk')
max_iters = 300
crop = 56

model = dict(
    backbone=dict(groups=8, base_width=4, base_channels=16, init_cfg=None),
    cls_head=dict(in_channels=512, num_classes=4, dropout_ratio=0.2))

train_pipeline = [
    dict(type='DecordInit', **file_client_args),
    dict(type='SampleFrames', clip_len=1, frame_interval=1, num_clips=3),
    dict(type='DecordDecode'),
    dict(type='Resize', scale=(-1, 64)),
    dict(type='MultiScaleCrop', input_size=crop, scales=(1, 0.875, 0.75),
         random_crop=False, max_wh_scale_gap=1),
    dict(type='Resize', scale=(crop, crop), keep_ratio=False),
    dict(type='FormatShape', input_format='NCHW'),
    dict(type='PackActionInputs')
]
val_pipeline = [
    dict(type='DecordInit', **file_client_args),
    dict(type='SampleFrames', clip_len=1, frame_interval=1, num_clips=3,
         test_mode=True),
    dict(type='DecordDecode'),
    dict(type='Resize', scale=(-1, 64)),
    dict(type='CenterCrop', crop_size=crop),
    dict(type='FormatShape', input_format='NCHW'),
    dict(type='PackActionInputs')
]
train_dataloader = dict(
    batch_size=4,
    num_workers=1,
    sampler=dict(_delete_=True, type='InfiniteSampler', shuffle=True),
    dataset=dict(
        ann_file=data_root + 'kinetics400_train_list_videos.txt',
        data_prefix=dict(video=data_root + 'videos_train'),
        pipeline=train_pipeline))
val_dataloader = dict(
    batch_size=4,
    num_workers=1,
    dataset=dict(
        ann_file=data_root + 'kinetics400_val_list_videos.txt',
        data_prefix=dict(video=data_root + 'videos_val'),
        pipeline=val_pipeline))
test_dataloader = val_dataloader

# Flip would swap the left/right classes: none here.
optim_wrapper = dict(
    _delete_=True,
    type='OptimWrapper',
    optimizer=dict(type='AdamW', lr=1e-3, weight_decay=0.05),
    clip_grad=dict(max_norm=10.))
param_scheduler = [
    dict(type='LinearLR', start_factor=0.01, by_epoch=False, begin=0,
         end=30),
    dict(type='CosineAnnealingLR', by_epoch=False, begin=30, end=max_iters,
         eta_min=1e-5)
]
# One validation, at the end.
train_cfg = dict(_delete_=True, type='IterBasedTrainLoop', max_iters=max_iters,
                 val_interval=max_iters)
default_hooks = dict(
    logger=dict(type='LoggerHook', interval=20),
    checkpoint=dict(type='CheckpointHook', by_epoch=False,
                    interval=max_iters, max_keep_ckpts=1))
log_processor = dict(by_epoch=False)
# A fixed seed: two runs train the same model and print the same table.
randomness = dict(seed=0, deterministic=False)
