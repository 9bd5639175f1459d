# The re-parameterised classifier (plain convs); loads the output of
# tools/model_converters/coc_to_static.py with strict=True.
_base_ = './resnet50-coc_8xb32_in1k.py'
model = dict(backbone=dict(deploy=True))
