_base_ = 'mmpretrain::resnet/resnet50_8xb32_in1k.py'
custom_imports = dict(imports=['mmdgconv'], allow_failed_imports=False)

# ImageNet training of the rotation-equivariant P4ResNet-50 (G-CNN): widths
# are ResNet-50's divided by sqrt(|H|) = 2 per group element, so the
# group-pooled last stage has 1024 channels. The checkpoint is what the p4
# detection and TSN configs can start from (prefix='backbone.').
model = dict(
    backbone=dict(
        _delete_=True,
        type='mmdgconv.P4ResNet',
        depth=50,
        group='p4',
        out_indices=(3, ),
        frozen_stages=-1,
        norm_eval=False,
        group_pool='max'),
    head=dict(in_channels=1024))
