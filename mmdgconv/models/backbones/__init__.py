from .bottleneck import Bottleneck
from .g_resnext import GBottleneck, GResNeXt
from .resnet_coc import ResNetCoC

__all__ = ['Bottleneck', 'GBottleneck', 'GResNeXt', 'ResNetCoC']
