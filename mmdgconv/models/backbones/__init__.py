from .bottleneck import Bottleneck
from .g_resnext import GBottleneck, GResNeXt
from .p4_resnet import P4BasicBlock, P4Bottleneck, P4ResNet
from .ped_resnet import PEDBasicBlock, PEDBottleneck, PEDResNet
from .resnet_coc import ResNetCoC

__all__ = [
    'Bottleneck', 'GBottleneck', 'GResNeXt', 'P4BasicBlock', 'P4Bottleneck',
    'P4ResNet', 'PEDBasicBlock', 'PEDBottleneck', 'PEDResNet', 'ResNetCoC'
]
