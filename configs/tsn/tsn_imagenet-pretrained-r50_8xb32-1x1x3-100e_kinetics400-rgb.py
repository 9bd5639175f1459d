_base_ = 'mmaction::recognition/tsn/tsn_imagenet-pretrained-r50_8xb32-1x1x3-100e_kinetics400-rgb.py'

# The DGConv paper's ResNet-50 baseline: the stock model, with the ImageNet weights
# read from a local file instead of the base config's download URL (put
# torchvision's resnet50-11ad3fa6.pth there, or set pretrained=None).
model = dict(
    backbone=dict(pretrained='checkpoints/resnet50-11ad3fa6.pth'))
