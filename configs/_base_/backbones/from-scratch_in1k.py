# An mmdgconv ResNet-style backbone in mmpretrain's stock ImageNet
# classifier, trained from scratch: the settings the backbones share (depth
# 50, the last stage's output, nothing frozen, norms in training mode). A
# classification config lists this file after its mmpretrain:: base and
# completes the backbone taken out of it, so that it does not stay behind as
# a key of its own:
#
#   _base_ = ['mmpretrain::resnet/resnet50_8xb32_in1k.py',
#             '../_base_/backbones/from-scratch_in1k.py']
#   model = dict(backbone=dict(_base_.pop('backbone'), type=...))
custom_imports = dict(imports=['mmdgconv'], allow_failed_imports=False)

backbone = dict(
    _delete_=True,
    depth=50,
    num_stages=4,
    out_indices=(3, ),
    frozen_stages=-1,
    norm_eval=False,
    style='pytorch')
