# ImageNet training of PED-ResNet-18: PED-ResNet-50's recipe (mmpretrain's
# ResNet-18 and ResNet-50 recipes differ only in the model) at depth 18.
_base_ = './ped-resnet50_8xb32_in1k.py'

model = dict(backbone=dict(depth=18), head=dict(in_channels=512))
