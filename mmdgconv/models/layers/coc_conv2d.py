"""CoC: convolution of convolution, kernels that collaborate spatially.

Paper: Zhao, Li and Wu, "Convolution of Convolution: Let Kernels Spatially
Collaborate", CVPR 2022.
https://openaccess.thecvf.com/content/CVPR2022/html/Zhao_Convolution_of_Convolution_Let_Kernels_Spatially_Collaborate_CVPR_2022_paper.html

The layer computes what the authors' released ``Coc2d`` computes, option by
option (the option names are theirs); ``tests/data/coc_known_answers.pt``
holds that layer's outputs and gradients.
"""
import warnings
from typing import Dict, Optional, Tuple, Union

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

from mmdgconv.registry import register_conv_layer
from .conv_checks import check_conv_args, check_input_channels

#: The released code's super-kernel geometry: the (size, dilation) of a
#: dilated super kernel for a ``k``-tap kernel dimension and ``sk_plus``. It
#: is a table, not a formula (e.g. k=3, sk_plus=4 is 3 taps at dilation 3).
DILATED_SUPER_KERNELS: Dict[Tuple[int, int], Tuple[int, int]] = {
    (3, 0): (3, 1), (3, 2): (3, 2), (3, 4): (3, 3), (3, 6): (5, 2),
    (5, 0): (3, 3), (5, 2): (5, 2), (5, 4): (5, 3), (5, 6): (5, 4),
    (7, 0): (5, 2), (7, 2): (5, 3), (7, 4): (5, 4), (7, 6): (7, 3),
}
SHARES = ('ci', 'co', 'cico', None)
SUPER_NORMS = ('BN', 'LN', 'IN', None)
FINAL_NORMS = (True, False, 'BN', 'LN', 'LayerNorm2d', 'IN')
NORM_EPS = 1e-5
BN_MOMENTUM = 0.1
#: The released ``Wsc2d``'s standardisation: ``(w - mean) / (std + eps)``,
#: with the unbiased std.
STANDARDISE_EPS = 1e-5


def super_kernel_geometry(kernel_size: int, sk_plus: int,
                          dilat: bool) -> Tuple[int, int]:
    """The super kernel's size and dilation along one kernel dimension.

    Without ``dilat`` the super kernel has ``kernel_size + sk_plus`` taps at
    dilation 1; with it, the released code's lookup table
    (:data:`DILATED_SUPER_KERNELS`) gives a small dilated kernel.

    Args:
        kernel_size (int): The conv's kernel size along the dimension.
        sk_plus (int): How much larger the super kernel is (even, >= 0).
        dilat (bool): Use the dilated super kernel.

    Returns:
        tuple[int, int]: Super-kernel size and dilation.

    Raises:
        ValueError: A combination the released table does not define.
    """
    if not dilat:
        return kernel_size + sk_plus, 1
    if (kernel_size, sk_plus) not in DILATED_SUPER_KERNELS:
        raise ValueError(
            f'a dilated super kernel is defined for kernel sizes 3, 5, 7 and '
            f'sk_plus 0, 2, 4, 6, got kernel size {kernel_size}, sk_plus '
            f'{sk_plus} (use dilat=False)')
    return DILATED_SUPER_KERNELS[(kernel_size, sk_plus)]


def standardize_weight(weight: Tensor, eps: float = STANDARDISE_EPS) -> Tensor:
    """Each output filter to zero mean and unit (unbiased) std, as the
    released ``Wsc2d.standardize_weight``."""
    mean = weight.mean((1, 2, 3), keepdim=True)
    std = weight.std((1, 2, 3), keepdim=True)
    return (weight - mean) / (std + eps)


def _legacy_standardize_weight(weight: Tensor) -> Tensor:
    """mmdgconv 0.x's super-kernel standardisation (biased variance inside
    the square root); kept only for checkpoints trained with it."""
    return F.layer_norm(weight, weight.shape[1:], eps=NORM_EPS)


@register_conv_layer('CoC')
class CoCConv2d(nn.Conv2d):
    """Convolution whose kernels are convolved with learned super kernels.

    The kernels (co, ci, kh, kw) are completed to a multiple of ``sa**2``
    output channels by learnable padding kernels; each group of ``sa x sa``
    kernels is tiled into one (ci, sa*kh, sa*kw) "image" (tile); a super conv
    associates neighbouring kernels of a tile; with ``skip`` the tiles are
    added back; the result is un-tiled, sliced to ``co`` and optionally
    normalised, then used by an ordinary conv (the paper's Sec. 3).

    ``share`` decides which dimension the super kernels are shared over:
    ``'ci'`` (one depthwise super kernel per tile, shared over the input
    channels, the paper's setting), ``'co'`` (one per input channel, shared
    over the tiles), ``'cico'`` (one for all) or ``None`` (a dense super
    conv over the input channels).

    Everything before the final conv depends on parameters (and, for batch
    norms in eval mode, on running statistics) only. So in eval mode without
    gradients the final kernel is computed once and cached until a parameter
    or statistic changes (an optimiser step, ``load_state_dict``, ``.to()``)
    or ``train()`` is called, and :meth:`switch_to_deploy` turns the layer
    into a plain conv, exactly.

    Args:
        in_channels (int): Input channels.
        out_channels (int): Output channels.
        kernel_size (int | tuple[int, int]): Kernel size.
        stride, padding, dilation, groups, bias, padding_mode: As
            ``nn.Conv2d``.
        sa (int): Kernels are associated in ``sa x sa`` tiles. Default: 2.
        sk_plus (int): The super kernel is this much larger than the kernel
            (see :func:`super_kernel_geometry`). Default: 2.
        skip (bool): Add the tiles to the super conv's output. Default: True.
        dilat (bool): Use the released code's dilated super kernels.
            Default: True.
        wsc (bool): Weight-standardise the super kernels (the released
            ``Wsc2d``). Default: False.
        share (str, optional): See above. Default: 'ci'.
        ws (bool | str): The final kernels' norm: True standardises each
            (unbiased std, no affine), False leaves them, 'LN' is a
            ``LayerNorm([ci, kh, kw])``, 'LayerNorm2d' a LayerNorm over ci,
            'IN' an affine ``InstanceNorm2d(ci)``, 'BN' a ``BatchNorm2d``
            over the ci dimension of the kernels (needs ``ci`` equal to the
            padded ``co``, as in the released code). Default: True.
        both (bool): With ``wsc``, still normalise the super conv's output.
            Default: False.
        sbn (str, optional): The norm after the super conv (used unless
            ``wsc`` without ``both``): 'BN', 'IN' (no affine), 'LN' (a
            ``LayerNorm([tiles, sa*kh, sa*kw])``, only with ``share='ci'``)
            or None. The super conv has a bias exactly when no norm follows
            it. Default: 'BN'.
        c1x1 (bool): Apply CoC to 1x1 convs too (undilated); if False a 1x1
            layer is a plain conv, as in the paper (it degrades accuracy).
            Default: False.
        c1x1_ws (bool): A plain 1x1 layer weight-standardises its kernel
            (the released ``Wsc2d`` that ``c1x1_ws`` selects). Default:
            False.
        deploy (bool): Build the deployed form: a plain conv that loads a
            converted checkpoint. Default: False.

    Example:
        >>> import torch
        >>> layer = CoCConv2d(16, 32, 3, padding=1).eval()
        >>> x = torch.rand(1, 16, 8, 8)
        >>> before = layer(x)
        >>> layer.switch_to_deploy()
        >>> torch.allclose(before, layer(x), atol=1e-5)
        True
    """

    # Version 2: the released code's norms (elementwise affines), learnable
    # padding kernels, its super-kernel standardisation and bias.
    _version = 2

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
                 skip: bool = True,
                 dilat: bool = True,
                 wsc: bool = False,
                 share: Optional[str] = 'ci',
                 ws: Union[bool, str] = True,
                 both: bool = False,
                 sbn: Optional[str] = 'BN',
                 c1x1: bool = False,
                 c1x1_ws: bool = False,
                 deploy: bool = False,
                 super_ws: Optional[bool] = None,
                 device=None,
                 dtype=None) -> None:
        name = (f'CoCConv2d({in_channels}, {out_channels}, '
                f'kernel_size={kernel_size})')
        if super_ws is not None:  # mmdgconv 0.x's option names
            warnings.warn(
                f'{name}: super_ws is deprecated; it is the released code\'s '
                'wsc (with both=True when sbn is set)', DeprecationWarning)
            wsc, both = super_ws, sbn is not None
            ws = False if ws is None else ws
        check_conv_args(name, in_channels, out_channels, kernel_size, stride,
                        padding, dilation)
        super().__init__(
            in_channels, out_channels, kernel_size, stride=stride,
            padding=padding, dilation=dilation, groups=groups, bias=bias,
            padding_mode=padding_mode, device=device, dtype=dtype)
        if sa < 1:
            raise ValueError(f'{name}: sa must be >= 1, got {sa}')
        if sk_plus < 0 or sk_plus % 2:
            raise ValueError(
                f'{name}: sk_plus must be even and >= 0, got {sk_plus}')
        if share not in SHARES:
            raise ValueError(f'{name}: share must be one of {SHARES}, got '
                             f'{share!r}')
        if sbn not in SUPER_NORMS:
            raise ValueError(f'{name}: sbn must be one of {SUPER_NORMS}, '
                             f'got {sbn!r}')
        if ws not in FINAL_NORMS or ws is None:
            raise ValueError(f'{name}: ws must be one of {FINAL_NORMS}, got '
                             f'{ws!r}')
        self.sa, self.sk_plus, self.skip, self.dilat = sa, sk_plus, skip, dilat
        self.wsc, self.share, self.ws, self.both = wsc, share, ws, both
        self.c1x1, self.c1x1_ws = c1x1, c1x1_ws
        self.with_coc = self.kernel_size != (1, 1) or c1x1
        self.deploy = deploy
        self.legacy_super_ws = False
        # The released code's "dilat" only applies to kernels wider than 1.
        dilated = dilat and 1 not in self.kernel_size
        try:
            geometry = [super_kernel_geometry(k, sk_plus, dilated)
                        for k in self.kernel_size]
        except ValueError as error:
            raise ValueError(f'{name}: {error}') from None
        self.super_size = tuple(g[0] for g in geometry)
        self.super_dilation = tuple(g[1] for g in geometry)
        if self.with_coc and any(s % 2 == 0 for s in self.super_size):
            raise ValueError(
                f'{name}: the super kernel would be {self.super_size}; an '
                'even size cannot keep the tiles\' shape (change sk_plus, or '
                'use an odd kernel)')
        self.super_padding = tuple(d * (s - 1) // 2 for s, d in zip(
            self.super_size, self.super_dilation))
        self.num_tiles = -(-out_channels // sa**2)  # ceil
        self.padded_channels = self.num_tiles * sa**2
        self.super_norm = (sbn if (both or not wsc) else None)
        ci = in_channels // groups
        if self.super_norm == 'LN' and share != 'ci':
            raise ValueError(f"{name}: sbn='LN' needs share='ci' (as in the "
                             f'released code), got share={share!r}')
        if ws == 'BN' and ci != self.padded_channels:
            raise ValueError(
                f"{name}: ws='BN' normalises the kernels' input-channel "
                f'dimension ({ci}) with one statistic per padded output '
                f'channel ({self.padded_channels}); they must be equal')
        if not self.with_coc and not c1x1_ws:
            self.deploy = True  # a plain conv in every form
        if self.deploy or not self.with_coc:
            return
        self._build_coc_parameters(ci, dict(device=device, dtype=dtype))
        self.reset_coc_parameters()

    # ------------------------------------------------------------------
    # Parameters
    # ------------------------------------------------------------------
    def _build_coc_parameters(self, ci: int, factory: dict) -> None:
        kh, kw = self.kernel_size
        tiles, sa = self.num_tiles, self.sa
        pad = self.padded_channels - self.out_channels
        # The released layer learns the padding kernels with the rest.
        self.weight_pad = nn.Parameter(
            torch.empty(pad, ci, kh, kw, **factory)) if pad else None
        # Super conv: (out, in / groups, sh, sw), as the released layer's.
        super_channels, super_groups = {
            'ci': (tiles, tiles), 'co': (ci, ci), None: (ci, 1),
            'cico': (1, 1)}[self.share]
        self.super_channels, self.super_groups = super_channels, super_groups
        self.super_weight = nn.Parameter(torch.empty(
            super_channels, super_channels // super_groups, *self.super_size,
            **factory))
        self.super_bias = nn.Parameter(
            torch.empty(super_channels, **factory)) \
            if self.super_norm is None else None
        tile_shape = (tiles, sa * kh, sa * kw)
        if self.super_norm == 'LN':
            self._norm_parameters('super_norm', tile_shape, factory)
        elif self.super_norm == 'BN':
            self._norm_parameters('super_norm', (super_channels, ), factory,
                                  running=True)
        if self.ws == 'LN':
            self._norm_parameters('final_norm', (ci, kh, kw), factory)
        elif self.ws in ('LayerNorm2d', 'IN'):
            self._norm_parameters('final_norm', (ci, ), factory)
        elif self.ws == 'BN':
            self._norm_parameters('final_norm', (self.padded_channels, ),
                                  factory, running=True)

    def _norm_parameters(self, name: str, shape, factory: dict,
                         running: bool = False) -> None:
        self.register_parameter(f'{name}_weight',
                                nn.Parameter(torch.ones(shape, **factory)))
        self.register_parameter(f'{name}_bias',
                                nn.Parameter(torch.zeros(shape, **factory)))
        if running:
            self.register_buffer(f'{name}_running_mean',
                                 torch.zeros(shape, **factory))
            self.register_buffer(f'{name}_running_var',
                                 torch.ones(shape, **factory))

    def reset_parameters(self) -> None:
        """``nn.Conv2d``'s init; the padding kernels are drawn with it."""
        super().reset_parameters()
        if getattr(self, 'weight_pad', None) is not None:
            self._draw_like_weight(self.weight_pad)

    @torch.no_grad()
    def _draw_like_weight(self, tensor: Tensor) -> None:
        # The padding kernels follow the distribution the kernels were drawn
        # from (whatever init the model applied to ``weight``).
        std = self.weight.std() if self.weight.numel() > 1 else 0.0
        tensor.normal_(0, float(std))

    @torch.no_grad()
    def reset_coc_parameters(self) -> None:
        """The released code's init: the super kernels as its ConvModule
        initialises a conv (Kaiming normal, fan-out), zero biases, norms at
        1/0; the padding kernels drawn like the kernels."""
        if self.deploy:
            return
        if self.weight_pad is not None:
            self._draw_like_weight(self.weight_pad)
        nn.init.kaiming_normal_(self.super_weight, mode='fan_out',
                                nonlinearity='relu')
        if self.super_bias is not None:
            self.super_bias.zero_()
        for prefix in ('super_norm', 'final_norm'):
            if hasattr(self, f'{prefix}_weight'):
                getattr(self, f'{prefix}_weight').fill_(1)
                getattr(self, f'{prefix}_bias').zero_()
            if hasattr(self, f'{prefix}_running_mean'):
                getattr(self, f'{prefix}_running_mean').zero_()
                getattr(self, f'{prefix}_running_var').fill_(1)

    def init_weights(self) -> None:
        """Called by mmengine after a model-level init (e.g. mmdet's Kaiming
        init of every ``Conv2d`` weight): the padding kernels follow the
        kernels' new distribution."""
        if not self.deploy and self.weight_pad is not None:
            self._draw_like_weight(self.weight_pad)

    def extra_repr(self) -> str:
        text = super().extra_repr()
        if not self.with_coc:
            return text + ', coc=False' + (', c1x1_ws=True'
                                           if self.c1x1_ws else '')
        return (text + f', sa={self.sa}, super_kernel={self.super_size}, '
                f'super_dilation={self.super_dilation}, share={self.share!r},'
                f' skip={self.skip}, wsc={self.wsc}, sbn={self.super_norm!r},'
                f' ws={self.ws!r}, deploy={self.deploy}')

    # ------------------------------------------------------------------
    # The final kernel
    # ------------------------------------------------------------------
    # The tiles are laid out as (batch, super channels, P): P runs over a
    # tile's pixels in the kernels' own order (kernel a*sa+b, then kh, kw),
    # so tiling and un-tiling move runs of kh*kw values, not of kw. The
    # super conv is then one linear map of P per super channel, applied as a
    # batched matrix product: an order of magnitude faster than a depthwise
    # conv over 6x6 images (whose backward oneDNN runs poorly). A dense
    # super conv (share=None) mixes channels and stays a conv.
    def _tiles(self, weight: Tensor) -> Tensor:
        """The padded kernels as the super conv's input."""
        _, ci, kh, kw = weight.shape
        sa, tiles = self.sa, self.num_tiles
        if self.share is None:  # (tiles, ci, sa*kh, sa*kw) images
            return weight.reshape(tiles, sa, sa, ci, kh, kw).permute(
                0, 3, 1, 4, 2, 5).reshape(tiles, ci, sa * kh, sa * kw)
        blocks = weight.reshape(tiles, sa * sa, ci, kh * kw)
        if self.share == 'ci':  # ci is the batch, one operator per tile
            return blocks.permute(2, 0, 1, 3).reshape(ci, tiles, -1)
        tiled = blocks.permute(0, 2, 1, 3).reshape(tiles, ci, -1)
        if self.share == 'cico':  # one operator for all
            return tiled.reshape(tiles * ci, 1, -1)
        return tiled  # 'co': tiles are the batch, one operator per ci

    def _untile(self, tiled: Tensor, ci: int) -> Tensor:
        sa, tiles = self.sa, self.num_tiles
        kh, kw = self.kernel_size
        if self.share is None:
            return tiled.reshape(tiles, ci, sa, kh, sa, kw).permute(
                0, 2, 4, 1, 3, 5).reshape(tiles * sa * sa, ci, kh, kw)
        if self.share == 'ci':
            blocks = tiled.reshape(ci, tiles, sa * sa, kh * kw).permute(
                1, 2, 0, 3)
        else:
            blocks = tiled.reshape(tiles, ci, sa * sa, kh * kw).permute(
                0, 2, 1, 3)
        return blocks.reshape(tiles * sa * sa, ci, kh, kw)

    def _image_to_tile_order(self, image: Tensor) -> Tensor:
        """A (tiles, sa*kh, sa*kw) tensor (the LayerNorm affines, laid out as
        the released code's tile images) in the tiles' P order."""
        sa, (kh, kw) = self.sa, self.kernel_size
        return image.reshape(-1, sa, kh, sa, kw).permute(0, 1, 3, 2, 4) \
            .reshape(image.shape[0], -1)

    def _tap_index(self) -> Tensor:
        """(P, P) long: the super-kernel tap through which output pixel p
        reads pixel q of a tile, or ``taps`` (a zero) where none does (zero
        padding outside the tile, or pixels farther apart than the kernel
        reaches). At most one tap links two pixels."""
        cached = self.__dict__.get('_taps')
        if cached is not None and cached.device == self.weight.device:
            return cached
        sa, (kh, kw) = self.sa, self.kernel_size
        (sh, sw), (dh, dw) = self.super_size, self.super_dilation
        ph, pw = self.super_padding
        rows, cols = sa * kh, sa * kw

        def tile_order(r, c):
            a, h = divmod(r, kh)
            b, w = divmod(c, kw)
            return ((a * sa + b) * kh + h) * kw + w

        index = torch.full((rows * cols, rows * cols), sh * sw,
                           dtype=torch.long)
        for i in range(sh):
            for j in range(sw):
                for r in range(rows):
                    for c in range(cols):
                        rr, cc = r - ph + dh * i, c - pw + dw * j
                        if 0 <= rr < rows and 0 <= cc < cols:
                            index[tile_order(r, c), tile_order(rr, cc)] = \
                                i * sw + j
        index = index.to(self.weight.device)
        self.__dict__['_taps'] = index
        return index

    def _associate(self, tiles: Tensor) -> Tensor:
        """The super conv (with its bias) over the tiles."""
        kernel = self._super_kernel()
        if self.share is None:
            return F.conv2d(tiles, kernel, self.super_bias, 1,
                            self.super_padding, self.super_dilation,
                            self.super_groups)
        index = self._tap_index()
        # Each super channel's (P, P) operator: its taps placed by the index
        # (a gather, whose backward is a cheap scatter-add).
        taps = torch.cat([kernel.reshape(kernel.shape[0], -1),
                          kernel.new_zeros(kernel.shape[0], 1)], 1)
        operators = taps.index_select(1, index.flatten()).reshape(
            -1, *index.shape)
        out = torch.einsum('ncq,cpq->ncp', tiles, operators)
        if self.super_bias is not None:
            out = out + self.super_bias[:, None]
        return out

    def _super_kernel(self) -> Tensor:
        if not self.wsc:
            return self.super_weight
        if self.legacy_super_ws:
            return _legacy_standardize_weight(self.super_weight)
        return standardize_weight(self.super_weight)

    def _norm(self, x: Tensor, prefix: str, kind, training: bool) -> Tensor:
        weight = getattr(self, f'{prefix}_weight', None)
        bias = getattr(self, f'{prefix}_bias', None)
        if kind == 'LN' and prefix == 'super_norm' and self.share == 'ci':
            # over (tiles, P) of every input channel
            return F.layer_norm(x, x.shape[1:],
                                self._image_to_tile_order(weight),
                                self._image_to_tile_order(bias), NORM_EPS)
        if kind == 'LN':
            return F.layer_norm(x, weight.shape, weight, bias, NORM_EPS)
        if kind == 'BN':
            return F.batch_norm(
                x, getattr(self, f'{prefix}_running_mean'),
                getattr(self, f'{prefix}_running_var'), weight, bias,
                training, BN_MOMENTUM, NORM_EPS)
        if kind == 'IN':
            return F.instance_norm(x, weight=weight, bias=bias, eps=NORM_EPS)
        if kind == 'LayerNorm2d':  # over ci, at every (co, kh, kw)
            return F.layer_norm(x.permute(0, 2, 3, 1), weight.shape, weight,
                                bias, NORM_EPS).permute(0, 3, 1, 2)
        if kind is True:
            return standardize_weight(x)
        return x

    def final_weight(self, training: Optional[bool] = None) -> Tensor:
        """The kernel the ordinary conv uses, (co, ci / groups, kh, kw).

        Args:
            training (bool, optional): Batch norms use batch statistics (and
                update their running ones) if True, running statistics if
                False. Default: the module's mode.

        Returns:
            Tensor: Differentiable with respect to every parameter.
        """
        if self.deploy:
            return self.weight
        # The kernel is generated in the parameters' dtype, outside any
        # autocast: its norms and standardisations need float32, and it
        # costs next to nothing. The conv that uses it is autocast as usual.
        with torch.autocast(self.weight.device.type, enabled=False):
            return self._generate_kernel(
                self.training if training is None else training)

    def _generate_kernel(self, training: bool) -> Tensor:
        if not self.with_coc:  # a weight-standardised 1x1 (c1x1_ws)
            return standardize_weight(self.weight)
        weight = self.weight
        if self.weight_pad is not None:
            weight = torch.cat([weight, self.weight_pad])
        ci = weight.shape[1]
        tiles = self._tiles(weight)
        associated = self._associate(tiles)
        associated = self._norm(associated, 'super_norm', self.super_norm,
                                training)
        if self.skip:
            associated = associated + tiles
        weight = self._untile(associated, ci)[:self.out_channels]
        return self._norm(weight, 'final_norm', self.ws, training)

    def _kernel_state(self):
        """What the final kernel depends on: identity, storage, version and
        dtype of every parameter and buffer."""
        return tuple((id(t), t.data_ptr(), t._version, t.dtype)
                     for t in self._kernel_sources)

    def _cached_final_weight(self) -> Tensor:
        sources = self.__dict__.get('_kernel_sources')
        if sources is None:
            self._kernel_sources = tuple(self.parameters(recurse=False)) + \
                tuple(self.buffers(recurse=False))
        state = self._kernel_state()
        cache = self.__dict__.get('_kernel_cache')
        if cache is not None and cache[0] == state:
            return cache[1]
        # A normal tensor even under inference mode: the cache may serve a
        # later forward that records a graph (frozen layers in training).
        with torch.inference_mode(False), torch.no_grad():
            kernel = self.final_weight(training=False)
        self._kernel_cache = (state, kernel)
        return kernel

    def _use_cache(self) -> bool:
        if self.training or torch.compiler.is_compiling():
            return False
        if not torch.is_grad_enabled():
            return True
        # Eval mode with gradients: only when nothing here wants one.
        return not any(p.requires_grad for p in self.parameters(False))

    def train(self, mode: bool = True):
        # Entering training, or leaving it: mmengine's EMAHook swaps the
        # averaged weights in through ``param.data`` (invisible to version
        # counters) just before the val loop calls ``eval()``. Repeated
        # ``eval()`` calls keep the cache.
        if mode or self.training:
            self.__dict__.pop('_kernel_cache', None)
        return super().train(mode)

    def _apply(self, fn, recurse=True):
        # .to() / .half() / .cuda() may replace the parameters' tensors.
        self.__dict__.pop('_kernel_cache', None)
        self.__dict__.pop('_kernel_sources', None)
        return super()._apply(fn, recurse)

    def __setattr__(self, name, value):
        if isinstance(value, (nn.Parameter, Tensor)) or value is None:
            self.__dict__.pop('_kernel_cache', None)
            self.__dict__.pop('_kernel_sources', None)
        super().__setattr__(name, value)

    def __getstate__(self):
        state = super().__getstate__()
        state = dict(state)
        for name in ('_kernel_cache', '_kernel_sources', '_taps'):
            state.pop(name, None)
        return state

    def forward(self, x: Tensor) -> Tensor:
        check_input_channels(self, x)
        if not self.deploy and self._use_cache():
            weight = self._cached_final_weight()
        else:
            weight = self.final_weight()
        return self._conv_forward(x, weight, self.bias)

    @torch.no_grad()
    def switch_to_deploy(self) -> None:
        """Become a plain conv with the final kernel (batch norms with their
        running statistics, as in eval mode); idempotent."""
        if self.deploy:
            return
        final = self.final_weight(training=False).detach().clone()
        for name in list(self._parameters) + list(self._buffers):
            if name not in ('weight', 'bias'):
                delattr(self, name)
        self.weight = nn.Parameter(final)
        self.deploy = True

    # ------------------------------------------------------------------
    # Checkpoints
    # ------------------------------------------------------------------
    def _save_to_state_dict(self, destination, prefix, keep_vars):
        super()._save_to_state_dict(destination, prefix, keep_vars)
        if self.legacy_super_ws:
            destination[prefix + 'legacy_super_ws'] = torch.ones(())

    def _load_from_state_dict(self, state_dict, prefix, local_metadata,
                              strict, missing_keys, unexpected_keys,
                              error_msgs):
        if state_dict.pop(prefix + 'legacy_super_ws', None) is not None:
            self.legacy_super_ws = True
        version = local_metadata.get('version', None)
        if version is not None and version < 2 and not self.deploy:
            self._migrate_version_1(state_dict, prefix)
        super()._load_from_state_dict(state_dict, prefix, local_metadata,
                                      strict, missing_keys, unexpected_keys,
                                      error_msgs)

    def _migrate_version_1(self, state_dict, prefix: str) -> None:
        """Make a version-1 (mmdgconv 0.x) training-form state exact here.

        Version 1 padded the tiles with fixed zero kernels, had no super-conv
        bias, a per-tile affine on its super LayerNorm, no affine on its
        final LayerNorm, and standardised super kernels with the biased
        variance inside the square root.
        """
        if prefix + 'super_weight' not in state_dict:
            return  # a deployed (plain conv) state: nothing to migrate
        reference = state_dict[prefix + 'super_weight']
        like = dict(dtype=reference.dtype, device=reference.device)
        if self.weight_pad is not None:
            state_dict.setdefault(prefix + 'weight_pad',
                                  torch.zeros(self.weight_pad.shape, **like))
        if self.super_bias is not None:
            state_dict.setdefault(prefix + 'super_bias',
                                  torch.zeros(self.super_bias.shape, **like))
        for old, new in (('sbn_weight', 'super_norm_weight'),
                         ('sbn_bias', 'super_norm_bias')):
            value = state_dict.pop(prefix + old, None)
            if value is not None and hasattr(self, new):
                shape = getattr(self, new).shape
                state_dict[prefix + new] = value.reshape(-1, 1, 1).expand(
                    shape).clone()
        for name in ('super_norm_weight', 'final_norm_weight'):
            if hasattr(self, name):
                state_dict.setdefault(
                    prefix + name, torch.ones(getattr(self, name).shape,
                                              **like))
        for name in ('super_norm_bias', 'final_norm_bias'):
            if hasattr(self, name):
                state_dict.setdefault(
                    prefix + name, torch.zeros(getattr(self, name).shape,
                                               **like))
        if self.wsc:
            self.legacy_super_ws = True
