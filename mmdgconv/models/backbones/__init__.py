from .bottleneck import Bottleneck
from .g_resnext import GBottleneck, GResNeXt

__all__ = ['Bottleneck', 'GBottleneck', 'GResNeXt']
