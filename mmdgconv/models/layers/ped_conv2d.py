"""PEDConv: parameter-efficient dynamic convolution via tensor decomposition.

Paper: Hou and Kung, "Parameter Efficient Dynamic Convolution via Tensor
Decomposition", BMVC 2021. https://www.bmvc2021-virtualconference.com/assets/papers/1631.pdf
"""
from typing import Optional, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

from mmdgconv.registry import register_conv_layer

_MODES = ('multiplicative', 'additive')


@register_conv_layer('PEDConv')
class PEDConv2d(nn.Conv2d):
    """Dynamic conv whose kernel is modulated per sample by a rank-R tensor.

    ``W(x) = W_base * A(x)`` (multiplicative, default) or ``W_base + A(x)``
    (additive), with ``A(x) = sum_r gamma_r(x) o phi_r(x) o psi_r(x)``: gamma
    spans the output channels, phi the input channels of a group, psi the
    k x k window. A generator (global average pooling of the input, a
    bottleneck MLP and three sigmoid heads) produces the factors; in training
    Gaussian noise perturbs the head logits (the variational formulation), at
    test time their mean is used. Every sample is convolved with its own
    kernel, computed efficiently:

    - rank 1, multiplicative (the default): phi scales the input channels
      and gamma the output channels, so only psi has to reach the kernel. A
      1x1 layer needs no per-sample kernel at all; a deep k x k layer (fewer
      output pixels than output channels) applies phi * psi to the unfolded
      input and multiplies once by the shared weight; other k x k layers
      convolve with per-sample ``W * psi`` kernels in one grouped conv over
      the batch. At batch 1, where folding all factors into the one kernel
      touches less memory, that single kernel is used;
    - otherwise: per-sample kernels in one conv with ``groups = B * groups``
      (batch 1: one ordinary conv, no reshapes).

    Args:
        in_channels, out_channels, kernel_size, stride, padding, dilation,
            groups, bias, padding_mode: As ``nn.Conv2d``.
        rank (int): Rank R of the decomposition. Default: 1.
        reduction (int): The generator's bottleneck is ``in_channels //
            reduction`` wide. Default: 16.
        mode (str): 'multiplicative' or 'additive'. Default:
            'multiplicative'.
        noise_std (float): Std of the noise added to the head logits in
            training; 0 disables it. Default: 0.1.
        info_max (bool): Build the information-maximisation decoder, which
            reconstructs the (detached) pooled input from the sampled factors;
            its MSE is read by :class:`~mmdgconv.engine.PEDInfoMaxHook`.
            Default: False.
        info_max_weight (float): Weight of that MSE in the training loss.
            Default: 0.001.

    Example:
        >>> import torch
        >>> layer = PEDConv2d(32, 64, 3, padding=1).eval()
        >>> layer(torch.rand(4, 32, 8, 8)).shape
        torch.Size([4, 64, 8, 8])
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
                 rank: int = 1,
                 reduction: int = 16,
                 mode: str = 'multiplicative',
                 noise_std: float = 0.1,
                 info_max: bool = False,
                 info_max_weight: float = 0.001,
                 device=None,
                 dtype=None) -> None:
        name = (f'PEDConv2d({in_channels}, {out_channels}, kernel_size='
                f'{kernel_size}, groups={groups})')
        if groups < 1 or in_channels % groups or out_channels % groups:
            raise ValueError(f'{name}: groups must divide in_channels and '
                             'out_channels')
        if reduction < 1 or reduction > in_channels:
            raise ValueError(
                f'{name}: reduction={reduction} must be between 1 and '
                f'in_channels={in_channels} (the generator is in_channels // '
                'reduction wide)')
        if rank < 1:
            raise ValueError(f'{name}: rank must be >= 1, got {rank}')
        if mode not in _MODES:
            raise ValueError(f'{name}: mode must be one of {_MODES}, got '
                             f'{mode!r}')
        if noise_std < 0:
            raise ValueError(f'{name}: noise_std must be >= 0')
        super().__init__(
            in_channels, out_channels, kernel_size, stride=stride,
            padding=padding, dilation=dilation, groups=groups, bias=bias,
            padding_mode=padding_mode, device=device, dtype=dtype)
        self.rank, self.reduction, self.mode = rank, reduction, mode
        self.noise_std = noise_std
        self.info_max, self.info_max_weight = info_max, info_max_weight
        kh, kw = self.kernel_size
        self.group_in = in_channels // groups
        factory = dict(device=device, dtype=dtype)
        hidden = in_channels // reduction
        self.squeeze = nn.Linear(in_channels, hidden, **factory)
        # The gamma, phi and psi heads as one layer: one GEMM, one sigmoid.
        self.factor_sizes = (rank * out_channels, rank * self.group_in,
                             rank * kh * kw)
        factor_size = sum(self.factor_sizes)
        self.heads = nn.Linear(hidden, factor_size, **factory)
        if info_max:
            self.decoder = nn.Sequential(
                nn.Linear(factor_size, hidden, **factory), nn.ReLU(),
                nn.Linear(hidden, in_channels, **factory))
        self.reset_generator()
        #: The last training forward's reconstruction MSE (info_max only).
        self.info_max_loss: Optional[Tensor] = None

    def reset_generator(self) -> None:
        """N(0, 0.01) weights and zero biases: every factor starts at 0.5."""
        for module in self.modules():
            if isinstance(module, nn.Linear):
                nn.init.normal_(module.weight, 0, 0.01)
                nn.init.zeros_(module.bias)

    def extra_repr(self) -> str:
        return (super().extra_repr() + f', rank={self.rank}, '
                f'reduction={self.reduction}, mode={self.mode}')

    # ------------------------------------------------------------------
    def factors(self, x: Tensor) -> Tuple[Tensor, Tensor, Tensor]:
        """The per-sample factors of ``A(x)``.

        Args:
            x (Tensor): The layer input (B, C_in, H, W).

        Returns:
            tuple[Tensor, Tensor, Tensor]: gamma (B, R, C_out), phi
            (B, R, C_in / groups) and psi (B, R, kh, kw), in (0, 1).
        """
        context = x.mean((2, 3))
        logits = self.heads(F.relu(self.squeeze(context)))
        if self.training and self.noise_std > 0:
            logits = logits + self.noise_std * torch.randn_like(logits)
        sampled = torch.sigmoid(logits)
        if self.info_max and self.training:
            self.info_max_loss = F.mse_loss(
                self.decoder(sampled), context.detach())
        gamma, phi, psi = sampled.split(self.factor_sizes, dim=1)
        batch, rank = x.shape[0], self.rank
        return (gamma.reshape(batch, rank, self.out_channels),
                phi.reshape(batch, rank, self.group_in),
                psi.reshape(batch, rank, *self.kernel_size))

    def sample_kernels(self, factors) -> Tensor:
        """The kernel of every sample, (B, C_out, C_in / groups, kh, kw)."""
        gamma, phi, psi = factors
        modulation = torch.einsum('bro,bri,brhw->boihw', gamma, phi, psi)
        if self.mode == 'multiplicative':
            return self.weight * modulation
        return self.weight + modulation

    def _padded(self, x: Tensor):
        if self.padding_mode == 'zeros':
            return x, self.padding
        return F.pad(x, self._reversed_padding_repeated_twice,
                     mode=self.padding_mode), 0

    def _per_sample_conv(self, x: Tensor, kernels: Tensor,
                         bias: Optional[Tensor]) -> Tensor:
        """Sample b convolved with ``kernels[b]``: one grouped conv."""
        batch = x.shape[0]
        x, padding = self._padded(x)
        out = F.conv2d(
            x.reshape(1, -1, *x.shape[2:]),
            kernels.reshape(-1, *kernels.shape[2:]), None, self.stride,
            padding, self.dilation, batch * self.groups)
        out = out.reshape(batch, self.out_channels, *out.shape[2:])
        return out if bias is None else out + bias[:, None, None]

    def _output_size(self, x: Tensor) -> Tuple[int, int]:
        size = []
        for i in range(2):
            if isinstance(self.padding, str):  # 'same' or 'valid'
                return (x.shape[2], x.shape[3]) if self.padding == 'same' \
                    else tuple(x.shape[2 + j] - self.dilation[j] *
                               (self.kernel_size[j] - 1) for j in range(2))
            span = self.dilation[i] * (self.kernel_size[i] - 1) + 1
            size.append((x.shape[2 + i] + 2 * self.padding[i] - span) //
                        self.stride[i] + 1)
        return tuple(size)

    def _unfold_conv(self, x: Tensor, phi: Tensor, psi: Tensor) -> Tensor:
        """Rank 1, groups 1: ``W @ (unfold(x) * phi * psi)``, no per-sample
        kernel; the cheapest form where a layer's weights outweigh its
        output pixels (deep layers)."""
        batch = x.shape[0]
        out_h, out_w = self._output_size(x)
        x, padding = self._padded(x)
        columns = F.unfold(x, self.kernel_size, self.dilation, padding,
                           self.stride)  # (B, C_in * kh * kw, L)
        scale = (phi[:, :, None] * psi.reshape(batch, 1, -1)).reshape(
            batch, -1, 1)
        out = self.weight.reshape(self.out_channels, -1) @ (columns * scale)
        return out.reshape(batch, self.out_channels, out_h, out_w)

    def forward(self, x: Tensor) -> Tensor:
        factors = self.factors(x)
        batch = x.shape[0]
        if self.rank > 1 or self.mode == 'additive':
            kernels = self.sample_kernels(factors)
            if batch == 1:  # one kernel: an ordinary conv, no reshapes
                return self._conv_forward(x, kernels[0], self.bias)
            return self._per_sample_conv(x, kernels, self.bias)

        # Rank 1, multiplicative: W(x) = W * (gamma o phi o psi). gamma can
        # scale the output channels and phi the input channels, so only psi
        # has to reach the kernel. Each layer takes the form that touches the
        # least memory (the convs here are bound by it, not by arithmetic).
        gamma, phi, psi = (f[:, 0] for f in factors)
        # phi scales input channel i by phi[i mod C_in/groups].
        phi_in = phi if self.groups == 1 else phi.repeat(1, self.groups)
        out_pixels = self._output_size(x)
        out_pixels = out_pixels[0] * out_pixels[1]
        weight_size = self.weight.numel()
        kernel_area = self.kernel_size[0] * self.kernel_size[1]
        if kernel_area == 1:
            if batch == 1 and weight_size < x[0].numel() + \
                    self.out_channels * out_pixels:
                kernel = self.weight * (gamma[0] * psi[0, 0, 0])[:, None,
                                                                 None, None]
                kernel = kernel * phi[0][None, :, None, None]
                return self._conv_forward(x, kernel, self.bias)
            x = x * phi_in[:, :, None, None]
            out = self._conv_forward(x, self.weight, None)
            out = out * (gamma * psi.reshape(-1, 1))[:, :, None, None]
        elif self.groups == 1 and out_pixels < self.out_channels:
            out = self._unfold_conv(x, phi, psi)
            out = out * gamma[:, :, None, None]
        elif batch == 1:  # one kernel: an ordinary conv, no reshapes
            return self._conv_forward(x, self.sample_kernels(factors)[0],
                                      self.bias)
        else:
            x = x * phi_in[:, :, None, None]
            out = self._per_sample_conv(x, self.weight * psi[:, None, None],
                                        None)
            out = out * gamma[:, :, None, None]
        return out if self.bias is None else out + self.bias[:, None, None]
