# P4ResNet-50 (rotation-equivariant G-CNN) in place of a stock backbone: the
# settings its detection, classification and TSN configs share. Widths are
# ResNet-50's divided by sqrt(|H|) = 2, so each stage's group-pooled output
# has half the channels. A config lists this file after its stock base and
# completes the backbone taken out of it, so that it does not stay behind as
# a key of its own:
#
#   model = dict(backbone=dict(_base_.pop('backbone'), out_indices=...))
custom_imports = dict(imports=['mmdgconv'], allow_failed_imports=False)

backbone = dict(
    _delete_=True,
    type='mmdgconv.P4ResNet',
    depth=50,
    group='p4',
    norm_eval=False)
