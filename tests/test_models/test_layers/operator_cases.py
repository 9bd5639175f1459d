"""The operators the cross-cutting tests (contract, autocast, memory
format) run, each in the settings that take different code paths."""
import torch

from mmdgconv.models.layers import (CoCConv2d, DGConv2d, P4ConvP4, P4ConvZ2,
                                    P4MConvP4M, P4MConvZ2, PEDConv2d)


def _dgconv(impl, in_channels=16, stride=1, gates=(1., -1., 1., -1.)):
    layer = DGConv2d(in_channels, in_channels, 3, stride=stride, padding=1,
                     impl=impl)
    with torch.no_grad():
        layer.gate.copy_(torch.tensor(gates))  # 4 groups
    return layer


#: name: (factory, the input's shape between the batch and the image)
OPERATORS = {
    'DGConv2d grouped': (lambda: _dgconv('grouped'), (16, )),
    'DGConv2d grouped, stride 2': (
        lambda: _dgconv('grouped', 32, 2, (1., -1., -1., 1., -1.)), (32, )),
    'DGConv2d dense': (lambda: _dgconv('dense'), (16, )),
    'CoCConv2d': (lambda: CoCConv2d(16, 16, 3, padding=1), (16, )),
    'CoCConv2d stride 2': (lambda: CoCConv2d(16, 16, 3, padding=1, stride=2),
                           (16, )),
    'CoCConv2d LN (released ResNet setting)': (
        lambda: CoCConv2d(16, 16, 3, padding=1, sk_plus=2, skip=True,
                          dilat=True, wsc=True, share='ci', ws='LN',
                          both=True, sbn='LN'), (16, )),
    'PEDConv2d rank 1': (lambda: PEDConv2d(16, 16, 3, padding=1), (16, )),
    'PEDConv2d rank 1, deep': (lambda: PEDConv2d(64, 128, 3, padding=1),
                               (64, )),
    'PEDConv2d rank 2': (lambda: PEDConv2d(16, 16, 3, padding=1, rank=2),
                         (16, )),
    'PEDConv2d 1x1': (lambda: PEDConv2d(16, 32, 1), (16, )),
    'P4ConvZ2': (lambda: P4ConvZ2(16, 8, 3, padding=1), (16, )),
    'P4ConvP4': (lambda: P4ConvP4(8, 8, 3, padding=1), (8, 4)),
    'P4MConvZ2': (lambda: P4MConvZ2(16, 8, 3, padding=1), (16, )),
    'P4MConvP4M': (lambda: P4MConvP4M(8, 8, 3, padding=1), (8, 8)),
}
