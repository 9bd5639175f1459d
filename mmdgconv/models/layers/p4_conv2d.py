"""Group-equivariant convolutions on p4 and p4m (G-CNN).

Paper: Cohen and Welling, "Group Equivariant Convolutional Networks", ICML
2016. https://arxiv.org/abs/1602.07576

A feature map on a group H is a tensor (B, C, |H|, height, width). The
G-correlation of an input ``f`` on ``H_in`` with a filter ``psi`` is

    out(g, x) = sum_{h, y} f(h, y) psi(g^-1 h, g^-1 (y - x)),

i.e. an ordinary correlation with the filter transformed by every output
element ``g``. The transformation is a gather with precomputed indices, after
which one ``conv2d`` computes every output element; autograd of the gather
gives the gradients (Cohen and Welling, ICML 2016, supplementary section 2).

Group elements are 2x2 integer matrices acting on centred (row, column)
kernel offsets: ``R`` is the 90-degree rotation that ``torch.rot90(x, 1,
(-2, -1))`` applies to an image, ``M`` the flip ``torch.flip(x, (-1,))``.
p4 is ``{R^s}`` (index s), p4m is ``{R^s M^m}`` (index 4m + s). Rotating (and
flipping) the input by ``h`` rotates every output map by ``h`` and permutes
the group axis by ``g -> h^-1 g``.
"""
import math
from typing import List, Optional

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

from mmdgconv.registry import MODELS
from .conv_checks import check_conv_args, check_input_channels

_ROTATION = np.array([[0, -1], [1, 0]])
_FLIP = np.array([[1, 0], [0, -1]])


def group_elements(group: str) -> List[np.ndarray]:
    """The elements of p4 or p4m as 2x2 matrices, in index order.

    Args:
        group (str): 'p4' or 'p4m'.

    Returns:
        list[np.ndarray]: ``R^s`` (p4) or ``R^s M^m`` at index ``4m + s``.
    """
    if group not in ('p4', 'p4m'):
        raise ValueError(f"group must be 'p4' or 'p4m', got {group!r}")
    flips = (0, 1) if group == 'p4m' else (0, )
    return [
        np.linalg.matrix_power(_ROTATION, s) @ np.linalg.matrix_power(
            _FLIP, m) for m in flips for s in range(4)
    ]


def group_size(group: str) -> int:
    """|H|: 4 for p4, 8 for p4m."""
    return len(group_elements(group))


def element_index(elements: List[np.ndarray], matrix: np.ndarray) -> int:
    for index, element in enumerate(elements):
        if np.array_equal(element, matrix):
            return index
    raise ValueError(f'{matrix.tolist()} is not in the group')


def inverse_permutation(group: str, element: int) -> List[int]:
    """``perm[g] = index(h^-1 g)`` for ``h = elements[element]``: how the
    group axis of an output moves when the input is transformed by ``h``."""
    elements = group_elements(group)
    inverse = elements[element].T  # orthogonal
    return [element_index(elements, inverse @ g) for g in elements]


def filter_indices(group: str, in_size: int, kernel_size: int) -> Tensor:
    """Gather indices of the transformed filters.

    Args:
        group (str): The output group, 'p4' or 'p4m'.
        in_size (int): |H_in|: 1 for a lifting layer (input on Z^2), else
            |H|.
        kernel_size (int): The square kernel size.

    Returns:
        Tensor: (|H_out|, |H_in|, k, k) long indices into the filter
        flattened over (|H_in|, k, k): entry (g, h, z) holds the position of
        ``psi(g^-1 h, g^-1 z)``.
    """
    elements = group_elements(group)
    centre = (kernel_size - 1) / 2
    index = torch.empty(len(elements), in_size, kernel_size, kernel_size,
                        dtype=torch.long)
    for a, g in enumerate(elements):
        g_inv = g.T
        for b in range(in_size):
            # On Z^2 (in_size 1) only the spatial part acts.
            source_h = element_index(elements, g_inv @ elements[b]) \
                if in_size > 1 else 0
            for i in range(kernel_size):
                for j in range(kernel_size):
                    u, v = g_inv @ np.array([i - centre, j - centre])
                    si, sj = int(round(u + centre)), int(round(v + centre))
                    index[a, b, i, j] = (source_h * kernel_size + si) * \
                        kernel_size + sj
    return index


@MODELS.register_module()
class GroupConv2d(nn.Module):
    """A G-correlation layer (base of the four p4/p4m layers).

    Args:
        in_channels (int): Input channels (feature maps per group element).
        out_channels (int): Output channels per group element.
        kernel_size (int): Square kernel size.
        stride, padding, dilation: As ``nn.Conv2d``. Default: 1, 0, 1.
        bias (bool): One bias per output channel, shared over the group
            (keeps equivariance). Default: True.
        group (str): Output group, 'p4' or 'p4m'.
        lifting (bool): Input on Z^2 (B, C, H, W) instead of the group.
    """

    def __init__(self,
                 in_channels: int,
                 out_channels: int,
                 kernel_size: int,
                 stride=1,
                 padding=0,
                 dilation=1,
                 bias: bool = True,
                 group: str = 'p4',
                 lifting: bool = False) -> None:
        super().__init__()
        name = (f'{type(self).__name__}({in_channels}, {out_channels}, '
                f'kernel_size={kernel_size})')
        if not isinstance(kernel_size, int):
            if len(set(kernel_size)) != 1:
                raise ValueError(f'{name}: kernels must be square')
            kernel_size = kernel_size[0]
        check_conv_args(name, in_channels, out_channels, kernel_size, stride,
                        padding, dilation)
        if group == 'p4m' and kernel_size % 2 == 0:
            raise ValueError(
                f'{name}: p4m needs an odd kernel size, whose centre pixel '
                'the flips and rotations keep fixed')
        self.in_channels, self.out_channels = in_channels, out_channels
        self.kernel_size, self.group = kernel_size, group
        self.lifting = lifting
        self.stride, self.padding, self.dilation = stride, padding, dilation
        self.group_out = group_size(group)
        self.group_in = 1 if lifting else self.group_out
        self.weight = nn.Parameter(
            torch.empty(out_channels, in_channels, self.group_in, kernel_size,
                        kernel_size))
        self.bias = nn.Parameter(torch.zeros(out_channels)) if bias else None
        self.register_buffer(
            'indices',
            filter_indices(group, self.group_in, kernel_size),
            persistent=False)
        nn.init.kaiming_uniform_(self.weight, a=math.sqrt(5))

    def extra_repr(self) -> str:
        return (f'{self.in_channels}, {self.out_channels}, '
                f'kernel_size={self.kernel_size}, stride={self.stride}, '
                f'padding={self.padding}, group={self.group}, '
                f'lifting={self.lifting}, bias={self.bias is not None}')

    def transformed_weight(self) -> Tensor:
        """The filters of every output element, as one conv2d weight.

        Returns:
            Tensor: (C_out * |H_out|, C_in * |H_in|, k, k).
        """
        flat = self.weight.reshape(self.out_channels, self.in_channels, -1)
        weight = flat[:, :, self.indices]  # (Co, Ci, Ho, Hi, k, k)
        return weight.permute(0, 2, 1, 3, 4, 5).reshape(
            self.out_channels * self.group_out,
            self.in_channels * self.group_in, self.kernel_size,
            self.kernel_size)

    def _filters(self) -> Tensor:
        """The transformed filters; without gradients (inference) they are
        cached until the weight changes (its version counter moves)."""
        if (torch.is_grad_enabled() and self.weight.requires_grad) or (
                torch.compiler.is_compiling()):  # compiled: fused anyway
            return self.transformed_weight()
        key = (self.weight._version, self.weight.data_ptr(),
               self.weight.dtype, self.weight.device)
        cached = self.__dict__.get('_filter_cache')
        if cached is None or cached[0] != key:
            with torch.no_grad():
                cached = (key, self.transformed_weight())
            self.__dict__['_filter_cache'] = cached  # not a module attribute
        return cached[1]

    def forward(self, x: Tensor) -> Tensor:
        check_input_channels(self, x,
                             None if self.lifting else self.group_in)
        if not self.lifting:  # sizes spelt out: an empty batch has no -1
            x = x.reshape(x.shape[0], self.in_channels * self.group_in,
                          *x.shape[3:])
        bias = None if self.bias is None else \
            self.bias.repeat_interleave(self.group_out)
        out = F.conv2d(x, self._filters(), bias, self.stride, self.padding,
                       self.dilation)
        return out.reshape(out.shape[0], self.out_channels, self.group_out,
                           *out.shape[2:])


@MODELS.register_module()
class P4ConvZ2(GroupConv2d):
    """Lifting p4 conv: (B, C_in, H, W) -> (B, C_out, 4, H', W')."""

    def __init__(self, in_channels, out_channels, kernel_size, **kwargs):
        super().__init__(in_channels, out_channels, kernel_size, group='p4',
                         lifting=True, **kwargs)


@MODELS.register_module()
class P4ConvP4(GroupConv2d):
    """p4 conv: (B, C_in, 4, H, W) -> (B, C_out, 4, H', W')."""

    def __init__(self, in_channels, out_channels, kernel_size, **kwargs):
        super().__init__(in_channels, out_channels, kernel_size, group='p4',
                         lifting=False, **kwargs)


@MODELS.register_module()
class P4MConvZ2(GroupConv2d):
    """Lifting p4m conv: (B, C_in, H, W) -> (B, C_out, 8, H', W')."""

    def __init__(self, in_channels, out_channels, kernel_size, **kwargs):
        super().__init__(in_channels, out_channels, kernel_size, group='p4m',
                         lifting=True, **kwargs)


@MODELS.register_module()
class P4MConvP4M(GroupConv2d):
    """p4m conv: (B, C_in, 8, H, W) -> (B, C_out, 8, H', W')."""

    def __init__(self, in_channels, out_channels, kernel_size, **kwargs):
        super().__init__(in_channels, out_channels, kernel_size, group='p4m',
                         lifting=False, **kwargs)


#: Another name for the p4m-to-p4m layer (p4m in, p4m out), also in the
#: registry.
P4MConvP4 = MODELS.register_module(name='P4MConvP4', module=P4MConvP4M)


@MODELS.register_module()
class GroupPool(nn.Module):
    """Pool over the group axis: (B, C, |H|, H, W) -> (B, C, H, W).

    The result is invariant to the group action on the group axis, so maps
    pooled this way only rotate (flip) with the input: stock necks and heads
    consume them.

    Args:
        mode (str): 'max' or 'mean'. Default: 'max'.
    """

    def __init__(self, mode: str = 'max') -> None:
        super().__init__()
        if mode not in ('max', 'mean'):
            raise ValueError(f"mode must be 'max' or 'mean', got {mode!r}")
        self.mode = mode

    def forward(self, x: Tensor) -> Tensor:
        return x.amax(2) if self.mode == 'max' else x.mean(2)


@MODELS.register_module()
class GroupSpatialPool(nn.Module):
    """Spatial max/avg pooling of a group feature map.

    It commutes with the group action (Cohen and Welling, ICML 2016,
    eq. 2) when the pooling window is symmetric and the sampled grid is
    (odd sizes with ``padding = kernel_size // 2``).

    Args:
        kernel_size (int): Window size.
        stride (int, optional): Stride; defaults to ``kernel_size``.
        padding (int): Padding. Default: 0.
        mode (str): 'max' or 'avg'. Default: 'max'.
    """

    def __init__(self, kernel_size: int, stride: Optional[int] = None,
                 padding: int = 0, mode: str = 'max') -> None:
        super().__init__()
        if mode not in ('max', 'avg'):
            raise ValueError(f"mode must be 'max' or 'avg', got {mode!r}")
        self.kernel_size, self.padding, self.mode = kernel_size, padding, mode
        self.stride = stride or kernel_size

    def forward(self, x: Tensor) -> Tensor:
        b, c, g, h, w = x.shape
        flat = x.reshape(b, c * g, h, w)
        pool = F.max_pool2d if self.mode == 'max' else F.avg_pool2d
        out = pool(flat, self.kernel_size, self.stride, self.padding)
        return out.reshape(b, c, g, *out.shape[2:])
