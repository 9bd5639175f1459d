_base_ = [
    'mmpretrain::resnet/resnet50_8xb32_in1k.py',
    '../_base_/backbones/p4-resnet50.py'
]

# ImageNet training of P4ResNet-50: the group-pooled last stage has 1024
# channels. The checkpoint is what the p4 detection and TSN configs can
# start from (prefix='backbone.').
model = dict(
    backbone=dict(_base_.pop('backbone'), out_indices=(3, ),
                  frozen_stages=-1, group_pool='max'),
    head=dict(in_channels=1024))
