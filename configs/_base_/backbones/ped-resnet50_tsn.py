# PED-ResNet-50 in the stock TSN; see imagenet-pretrained_tsn.py.
_base_ = './imagenet-pretrained_tsn.py'

# Fine-tuned from the ImageNet checkpoint of
# configs/pedconv/ped-resnet50_8xb32_in1k.py (local path; nothing is
# downloaded).
pretrained = 'checkpoints/ped-resnet50_in1k.pth'
backbone = dict(
    type='mmdgconv.PEDResNet', init_cfg=dict(checkpoint=pretrained))
