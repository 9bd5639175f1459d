"""CoC: convolution of convolution, kernels that collaborate spatially.

Paper: Li, Wu and Zhao, "Convolution of Convolution: Let Kernels Spatially
Collaborate", CVPR 2022.
https://openaccess.thecvf.com/content/CVPR2022/html/Zhao_Convolution_of_Convolution_Let_Kernels_Spatially_Collaborate_CVPR_2022_paper.html
"""
from typing import Optional, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

from mmdgconv.registry import register_conv_layer

_NORMS = (None, 'LN')


def super_kernel_geometry(kernel_size: int, sk_plus: int,
                          dilat: bool) -> Tuple[int, int]:
    """The super kernel's size and dilation for a ``kernel_size`` conv.

    The super kernel spans ``kernel_size + sk_plus`` pixels of the tiled
    kernels. With ``dilat`` the span is realised by a small dilated kernel
    of size ``2 * floor((k + sk_plus + 1) / 4) + 1`` and dilation
    ``(size + 1) / 2``: 3x3 with dilation 2 for k=3 and 5x5 with dilation 3
    for the 7x7 stem, the official code's settings.

    Args:
        kernel_size (int): The conv's (square) kernel size.
        sk_plus (int): How much wider the super kernel spans.
        dilat (bool): Realise the span with a dilated kernel.

    Returns:
        tuple[int, int]: Super-kernel size and dilation.
    """
    span = kernel_size + sk_plus
    if not dilat:
        return span, 1
    size = 2 * ((span + 1) // 4) + 1
    return size, (size + 1) // 2


def _layer_norm(x: Tensor, dims, eps: float = 1e-5) -> Tensor:
    mean = x.mean(dims, keepdim=True)
    var = x.var(dims, keepdim=True, unbiased=False)
    return (x - mean) / torch.sqrt(var + eps)


@register_conv_layer('CoC')
class CoCConv2d(nn.Conv2d):
    """Convolution whose kernels are convolved with learned super kernels.

    The kernel tensor (co, ci, k, k) is zero-padded to a multiple of ``sa**2``
    output channels; each group of ``sa x sa`` kernels is tiled into one
    (ci, sa*k, sa*k) "image"; a depthwise super conv per group, shared over
    ``ci`` (which plays the batch role), associates neighbouring kernels; with
    ``skip`` the tiled kernels are added back; the result is un-tiled, sliced
    to ``co`` and optionally normalised, then used by an ordinary conv.

    Everything before that conv depends on parameters only, so
    :meth:`switch_to_deploy` computes the final kernel once and the layer
    becomes a plain conv (exact: the norms act on parameters, not on batch
    statistics).

    Args:
        in_channels (int): Input channels.
        out_channels (int): Output channels.
        kernel_size (int | tuple[int, int]): Square kernel size.
        stride, padding, dilation, groups, bias, padding_mode: As
            ``nn.Conv2d``.
        sa (int): Kernels are associated in ``sa x sa`` tiles. Default: 2.
        sk_plus (int): The super kernel spans ``k + sk_plus``. Default: 2.
        dilat (bool): Realise that span with a small dilated super kernel
            (see :func:`super_kernel_geometry`). Default: True.
        skip (bool): Add the tiled kernels to the super conv's output.
            Default: True.
        super_ws (bool): Weight-standardise each super kernel. Default:
            False.
        sbn (str, optional): 'LN' normalises the super conv's output of each
            input channel over (group, height, width), with a per-group
            affine. Default: None.
        ws (str, optional): 'LN' normalises each final kernel over
            (ci, kh, kw), without affine (the following norm layer rescales).
            Default: None.
        c1x1 (bool): Apply CoC to 1x1 convs too; if False a 1x1 layer is a
            plain conv (it degrades accuracy). Default: False.
        deploy (bool): Build the deployed form: a plain conv that loads
            a converted checkpoint. Default: False.

    Example:
        >>> import torch
        >>> layer = CoCConv2d(16, 32, 3, padding=1).eval()
        >>> x = torch.rand(1, 16, 8, 8)
        >>> before = layer(x)
        >>> layer.switch_to_deploy()
        >>> torch.allclose(before, layer(x), atol=1e-5)
        True
    """

    _version = 1

    def __init__(self,
                 in_channels: int,
                 out_channels: int,
                 kernel_size,
                 stride=1,
                 padding=0,
                 dilation=1,
                 groups: int = 1,
                 bias: bool = True,
                 padding_mode: str = 'zeros',
                 sa: int = 2,
                 sk_plus: int = 2,
                 dilat: bool = True,
                 skip: bool = True,
                 super_ws: bool = False,
                 sbn: Optional[str] = None,
                 ws: Optional[str] = None,
                 c1x1: bool = False,
                 deploy: bool = False,
                 device=None,
                 dtype=None) -> None:
        super().__init__(
            in_channels, out_channels, kernel_size, stride=stride,
            padding=padding, dilation=dilation, groups=groups, bias=bias,
            padding_mode=padding_mode, device=device, dtype=dtype)
        name = (f'CoCConv2d({in_channels}, {out_channels}, '
                f'kernel_size={self.kernel_size})')
        kh, kw = self.kernel_size
        if kh != kw:
            raise ValueError(f'{name}: only square kernels are supported')
        if sa < 1:
            raise ValueError(f'{name}: sa must be >= 1, got {sa}')
        if sk_plus < 0:
            raise ValueError(f'{name}: sk_plus must be >= 0, got {sk_plus}')
        if sbn not in _NORMS or ws not in _NORMS:
            raise ValueError(f"{name}: sbn and ws must be None or 'LN', got "
                             f'sbn={sbn!r}, ws={ws!r}')
        self.sa, self.sk_plus, self.dilat, self.skip = sa, sk_plus, dilat, skip
        self.super_ws, self.sbn, self.ws, self.c1x1 = super_ws, sbn, ws, c1x1
        self.with_coc = kh > 1 or c1x1
        self.deploy = deploy or not self.with_coc
        self.super_size, self.super_dilation = super_kernel_geometry(
            kh, sk_plus, dilat)
        if self.with_coc and self.super_size % 2 == 0:
            raise ValueError(
                f'{name}: the super kernel would be {self.super_size}x'
                f'{self.super_size}; an even size cannot keep the tiled '
                'kernels\' shape (change sk_plus or dilat)')
        self.num_tiles = -(-out_channels // sa**2)  # ceil
        if self.deploy:
            return
        # One depthwise super kernel per tile of sa x sa kernels.
        self.super_weight = nn.Parameter(
            torch.empty(self.num_tiles, 1, self.super_size, self.super_size,
                        device=device, dtype=dtype))
        nn.init.kaiming_uniform_(self.super_weight, a=5**0.5)
        if sbn == 'LN':
            self.sbn_weight = nn.Parameter(
                torch.ones(self.num_tiles, device=device, dtype=dtype))
            self.sbn_bias = nn.Parameter(
                torch.zeros(self.num_tiles, device=device, dtype=dtype))

    def extra_repr(self) -> str:
        text = super().extra_repr()
        if not self.with_coc:
            return text + ', coc=False'
        return (text + f', sa={self.sa}, super_kernel={self.super_size}, '
                f'super_dilation={self.super_dilation}, skip={self.skip}, '
                f'deploy={self.deploy}')

    def _super_kernel(self) -> Tensor:
        if not self.super_ws:
            return self.super_weight
        return _layer_norm(self.super_weight, (1, 2, 3))

    def final_weight(self) -> Tensor:
        """The kernel the ordinary conv uses, (co, ci / groups, k, k).

        Returns:
            Tensor: Differentiable with respect to every parameter.
        """
        if self.deploy:
            return self.weight
        co, ci, k, _ = self.weight.shape
        sa, tiles = self.sa, self.num_tiles
        weight = self.weight
        if tiles * sa**2 != co:  # zero kernels fill the last tile
            weight = F.pad(weight, (0, 0, 0, 0, 0, 0, 0, tiles * sa**2 - co))
        # (tiles*sa*sa, ci, k, k) -> (ci, tiles, sa*k, sa*k): kernel
        # (t, a, b) goes to row block a, column block b of tile t.
        tiled = weight.reshape(tiles, sa, sa, ci, k, k).permute(
            3, 0, 1, 4, 2, 5).reshape(ci, tiles, sa * k, sa * k)
        padding = self.super_dilation * (self.super_size - 1) // 2
        associated = F.conv2d(tiled, self._super_kernel(), None, 1, padding,
                              self.super_dilation, tiles)
        if self.sbn == 'LN':
            associated = F.group_norm(associated, 1, self.sbn_weight,
                                      self.sbn_bias)
        if self.skip:
            associated = associated + tiled
        weight = associated.reshape(ci, tiles, sa, k, sa, k).permute(
            1, 2, 4, 0, 3, 5).reshape(tiles * sa**2, ci, k, k)[:co]
        if self.ws == 'LN':
            weight = _layer_norm(weight, (1, 2, 3))
        return weight

    def forward(self, x: Tensor) -> Tensor:
        return self._conv_forward(x, self.final_weight(), self.bias)

    @torch.no_grad()
    def switch_to_deploy(self) -> None:
        """Become a plain conv with the final kernel; idempotent."""
        if self.deploy:
            return
        final = self.final_weight().detach().clone()
        for name in ('super_weight', 'sbn_weight', 'sbn_bias'):
            if hasattr(self, name):
                delattr(self, name)
        self.weight = nn.Parameter(final)
        self.deploy = True
