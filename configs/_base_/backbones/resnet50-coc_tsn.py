# ResNet-50-CoC in the stock TSN; see imagenet-pretrained_tsn.py.
_base_ = './imagenet-pretrained_tsn.py'

# Fine-tuned from the ImageNet checkpoint of
# configs/coc/resnet50-coc_8xb32_in1k.py (local path; nothing is downloaded).
pretrained = 'checkpoints/resnet50-coc_in1k.pth'
backbone = dict(
    type='mmdgconv.ResNetCoC', init_cfg=dict(checkpoint=pretrained))
