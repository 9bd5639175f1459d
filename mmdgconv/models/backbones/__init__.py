from .bottleneck import Bottleneck
from .g_resnext import GBottleneck, GResNeXt
from .ped_resnet import PEDBasicBlock, PEDBottleneck, PEDResNet
from .resnet_coc import ResNetCoC

__all__ = [
    'Bottleneck', 'GBottleneck', 'GResNeXt', 'PEDBasicBlock', 'PEDBottleneck',
    'PEDResNet', 'ResNetCoC'
]
