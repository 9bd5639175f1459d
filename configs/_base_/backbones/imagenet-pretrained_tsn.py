# An mmdgconv ResNet-50-style backbone in mmaction2's stock TSN, in place of
# its ResNet-50: the settings the backbones share (the stock one's depth,
# single output, training-mode norms), fine-tuned from an ImageNet
# checkpoint. The files named `<backbone>_tsn.py` add the backbone itself; a
# TSN config lists one after its mmaction:: base and takes the backbone out
# of it, so that it does not stay behind as a key of its own:
#
#   _base_ = ['mmaction::recognition/tsn/tsn_imagenet-pretrained-r50_8xb32-1x1x3-100e_kinetics400-rgb.py',  # noqa: E501
#             '../_base_/backbones/resnet50-coc_tsn.py']
#   model = dict(backbone=_base_.pop('backbone'))
custom_imports = dict(imports=['mmdgconv'], allow_failed_imports=False)

backbone = dict(
    _delete_=True,  # the stock backbone's download URL goes with it
    depth=50,
    out_indices=(3, ),
    norm_eval=False,
    return_tuple=False,  # Recognizer2D feeds the tensor to TSNHead
    init_cfg=dict(type='Pretrained', prefix='backbone.'))
