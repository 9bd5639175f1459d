"""PEDConv: parameter-efficient dynamic convolution via tensor decomposition.

Paper: Hou and Kung, "Parameter Efficient Dynamic Convolution via Tensor
Decomposition", BMVC 2021.
https://www.bmvc2021-virtualconference.com/assets/papers/1631.pdf
"""
from typing import Optional, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

from mmdgconv.compiled_ops import compiled_ops
from mmdgconv.registry import register_conv_layer
from .conv_checks import check_conv_args, check_input_channels
from .tuning import tuning_for

_MODES = ('multiplicative', 'additive')


def _per_channel(values: Tensor, dtype: torch.dtype) -> Tensor:
    """(C,) or (B, C) values broadcastable over (B, C, H, W), in ``dtype``
    (under autocast the conv gives bfloat16)."""
    if values.dtype != dtype:  # skip the call: at batch 1 calls add up
        values = values.to(dtype)
    return values.view(*values.shape, 1, 1)


def _parameter(module: nn.Module, name: str) -> Optional[Tensor]:
    """``getattr(module, name)``, read from the module's own parameters
    where it is one: at batch 1 nn.Module's attribute lookup costs a third
    of a small op. (Pruned and parametrized modules keep such a tensor
    elsewhere; it is then looked up as usual.)"""
    params = module._parameters
    return params[name] if name in params else getattr(module, name)


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
      touches less memory, that single kernel is used. The column form and
      the folded kernel are device choices
      (:mod:`~mmdgconv.models.layers.tuning`): elsewhere than on the CPU,
      until measured there, the per-sample conv is used;
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
            reconstructs the (detached) pooled input from the sampled
            pre-sigmoid logits (the paper's eqs. 5-6, as the released code);
            :class:`~mmdgconv.engine.PEDInfoMaxHook` adds its MSE to the
            loss. The released training always adds it; it is off by default
            here only because without that hook the decoder would get no
            gradient (which DDP rejects). Default: False.
        info_max_weight (float): Weight of that MSE in the training loss.
            Default: 0.001.

    Example:
        >>> import torch
        >>> layer = PEDConv2d(32, 64, 3, padding=1).eval()
        >>> layer(torch.rand(4, 32, 8, 8)).shape
        torch.Size([4, 64, 8, 8])
    """

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
        check_conv_args(name, in_channels, out_channels, kernel_size, stride,
                        padding, dilation)
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
        gamma, phi, psi = self._sampled_factors(x).split(
            self.factor_sizes, dim=1)
        batch, rank = x.shape[0], self.rank
        return (gamma.reshape(batch, rank, self.out_channels),
                phi.reshape(batch, rank, self.group_in),
                psi.reshape(batch, rank, *self.kernel_size))

    def _sampled_factors(self, x: Tensor) -> Tensor:
        """gamma, phi and psi side by side, (B, sum(factor_sizes))."""
        # The generator runs in the parameters' dtype, outside any autocast:
        # its sigmoid saturates in bfloat16, and every factor it gives scales
        # whole weight tensors. (Entering the autocast context only when
        # autocast is on: it costs as much as a small op, once per layer.)
        if torch.is_autocast_enabled(x.device.type):
            with torch.autocast(x.device.type, enabled=False):
                return self._generate(x)
        return self._generate(x)

    def _generate(self, x: Tensor) -> Tensor:
        dtype = self.squeeze.weight.dtype
        # F.linear/addmm rather than the modules, and few ops: this runs once
        # per layer and sample, and at batch 1 a call costs about as much as
        # its work.
        if ((self.info_max and self.training) or torch.jit.is_tracing()
                or torch.compiler.is_compiling()):
            # (the pooled input is needed, or the size is symbolic)
            context = x.mean((2, 3), dtype=dtype)
            hidden = F.linear(context, self.squeeze.weight,
                              self.squeeze.bias)
        else:  # eager: the mean's 1 / (H W) goes into the product
            hidden = torch.addmm(
                self.squeeze.bias, x.sum((2, 3), dtype=dtype),
                self.squeeze.weight.t(),
                alpha=1 / max(x.shape[2] * x.shape[3], 1))
        logits = F.linear(hidden.relu_(), self.heads.weight,
                          self.heads.bias)
        if self.training and self.noise_std > 0:
            logits = logits + self.noise_std * torch.randn_like(logits)
        if self.info_max and self.training:
            # As the released code: the decoder reads the pre-sigmoid
            # samples (the variational latents), not the factors.
            self.info_max_loss = F.mse_loss(
                self.decoder(logits), context.detach())
        if torch.is_grad_enabled():
            return torch.sigmoid(logits)
        return logits.sigmoid_()

    def sample_kernels(self, factors) -> Tensor:
        """The kernel of every sample, (B, C_out, C_in / groups, kh, kw)."""
        gamma, phi, psi = factors
        modulation = torch.einsum('bro,bri,brhw->boihw', gamma, phi, psi)
        if self.mode == 'multiplicative':
            return self.weight * modulation
        return self.weight + modulation

    def _padded(self, x: Tensor, explicit: bool = False):
        """The input and the padding left for the conv: zero padding stays
        with the conv unless ``explicit``; other modes are applied here."""
        if self.padding_mode == 'zeros' and not explicit:
            return x, self.padding
        if any(self._reversed_padding_repeated_twice):
            mode = 'constant' if self.padding_mode == 'zeros' \
                else self.padding_mode
            x = F.pad(x, self._reversed_padding_repeated_twice, mode=mode)
        return x, 0

    def _per_sample_conv(self, x: Tensor, kernels: Tensor) -> Tensor:
        """Sample b convolved with ``kernels[b]``: one grouped conv."""
        batch = x.shape[0]
        x, padding = self._padded(x)
        out = F.conv2d(
            x.reshape(1, -1, *x.shape[2:]),
            kernels.reshape(-1, *kernels.shape[2:]), None, self.stride,
            padding, self.dilation, batch * self.groups)
        return out.reshape(batch, self.out_channels, *out.shape[2:])

    def _scaled_columns(self, x: Tensor, scale: Tensor,
                        out_size: Tuple[int, int]) -> Tensor:
        """``unfold(x)`` with row (i, u, v) scaled by ``scale[:, i, u, v]``.

        Args:
            x (Tensor): The input (B, C_in, H, W).
            scale (Tensor): (B, C_in, kh * kw).
            out_size (tuple[int, int]): The output's height and width.

        Returns:
            Tensor: (B, C_in * kh * kw, L), L the number of output pixels.
        """
        batch = x.shape[0]
        scale = scale.to(x.dtype)  # float32 factors on bfloat16 activations
        # Explicit padding: it also covers 'same' (possibly asymmetric).
        x, _ = self._padded(x, explicit=True)
        if (torch.is_grad_enabled() or torch.compiler.is_compiling()
                or torch.jit.is_tracing()):
            # unfold has the efficient backward (and compilers fuse it; the
            # ONNX exporter traces it, not the strided gather below)
            columns = F.unfold(x, self.kernel_size, self.dilation, 0,
                               self.stride)
            return columns * scale.reshape(batch, -1, 1)
        # Inference: gather the windows through a strided view and scale
        # them in the same pass (F.unfold then a multiply is two passes).
        (kh, kw), (dh, dw), (sh, sw) = (self.kernel_size, self.dilation,
                                        self.stride)
        out_h, out_w = out_size
        s_b, s_c, s_h, s_w = x.stride()
        windows = x.as_strided(
            (batch, self.in_channels, kh, kw, out_h, out_w),
            (s_b, s_c, dh * s_h, dw * s_w, sh * s_h, sw * s_w))
        # An explicit output keeps the columns in logical order (a product of
        # overlapping strided views would otherwise get permuted strides).
        columns = x.new_empty(windows.shape)
        torch.mul(windows, scale.reshape(batch, self.in_channels, kh, kw, 1,
                                         1), out=columns)
        return columns.reshape(batch, -1, out_h * out_w)

    def _output_size(self, x: Tensor) -> Tuple[int, int]:
        if isinstance(self.padding, str):  # 'same' or 'valid'
            if self.padding == 'same':
                return x.shape[2], x.shape[3]
            return tuple(x.shape[2 + i] - self.dilation[i] *
                         (self.kernel_size[i] - 1) for i in range(2))
        return tuple(
            (x.shape[2 + i] + 2 * self.padding[i] - self.dilation[i] *
             (self.kernel_size[i] - 1) - 1) // self.stride[i] + 1
            for i in range(2))

    @staticmethod
    def _add_bias(out: Tensor, bias: Optional[Tensor]) -> Tensor:
        if bias is None:
            return out
        bias = _per_channel(bias, out.dtype)
        # In place at inference: ``out`` is a fresh conv output.
        return out + bias if torch.is_grad_enabled() else out.add_(bias)

    @staticmethod
    def _scale_output(out: Tensor, scale: Tensor,
                      bias: Optional[Tensor]) -> Tensor:
        """``out * scale + bias`` per (sample,) channel; in place at
        inference (``out`` is the conv's fresh output)."""
        scale = _per_channel(scale, out.dtype)
        # A multiply then an add, not addcmul: its kernel runs 3-5x slower
        # than the two in-place passes, and with autograd its backward is
        # slower too (paired timings at batch 1 and 8, ResNet-50 shapes).
        out = out * scale if torch.is_grad_enabled() else out.mul_(scale)
        return PEDConv2d._add_bias(out, bias)

    def _with_affine(self, gamma: Tensor, affine):
        """gamma and the bias once ``affine`` (``scale, shift`` per output
        channel, applied after the layer) is folded in: ``gamma * scale``
        and ``bias * scale + shift``."""
        bias = _parameter(self, 'bias')
        if affine is None:
            return gamma, bias
        scale, shift = affine
        bias = shift if bias is None else torch.addcmul(shift, bias, scale)
        return gamma * scale, bias

    def forward(self, x: Tensor) -> Tensor:
        return self._forward(x, None)

    def forward_with_affine(self, x: Tensor, scale: Tensor,
                            shift: Tensor) -> Tensor:
        """``self(x) * scale + shift``, per output channel, in fewer passes
        over memory than the two steps.

        The affine is folded into what the layer applies anyway: the
        output-channel factor gamma and the bias, or, where every factor
        goes into one kernel (batch 1), the kernel and the conv's bias.
        :class:`~mmdgconv.models.PEDResNet`'s blocks apply their eval-mode
        BatchNorm this way at inference. Forward hooks of this module do
        not run.

        Args:
            x (Tensor): The layer input (B, C_in, H, W).
            scale (Tensor): (C_out,).
            shift (Tensor): (C_out,).

        Returns:
            Tensor: (B, C_out, H', W').
        """
        if not torch.jit.is_tracing() and (
                scale.shape != (self.out_channels, )
                or shift.shape != (self.out_channels, )):
            raise ValueError(
                f'{self.__class__.__name__}({self.in_channels}, '
                f'{self.out_channels}): scale and shift must have shape '
                f'({self.out_channels},), got {tuple(scale.shape)} and '
                f'{tuple(shift.shape)}')
        return self._forward(x, (scale, shift))

    def _forward(self, x: Tensor, affine) -> Tensor:
        check_input_channels(self, x)
        batch = x.shape[0]
        if batch == 0:  # no sample to modulate; as nn.Conv2d
            out = self._conv_forward(x, self.weight, self.bias)
            return out if affine is None else self._scale_output(
                out, affine[0], affine[1])
        if self.rank == 1 and self.mode == 'multiplicative':
            if batch == 1 and self._eager_inference(x):
                out = self._forward_batch1(x, affine)
            else:
                out = self._forward_rank1(x, affine)
        else:
            kernels = self.sample_kernels(self.factors(x))
            if batch == 1:  # one kernel: an ordinary conv, no reshapes
                out = self._conv_forward(x, kernels[0], self.bias)
            else:
                out = self._add_bias(
                    self._per_sample_conv(x, kernels), self.bias)
            if affine is not None:
                out = self._scale_output(out, affine[0], affine[1])
        # The per-sample conv (samples stacked as groups) and the column
        # GEMM give NCHW; return the input's layout, as nn.Conv2d does.
        if not x.is_contiguous() and x.is_contiguous(
                memory_format=torch.channels_last):
            out = out.contiguous(memory_format=torch.channels_last)
        return out

    def _forward_rank1(self, x: Tensor, affine) -> Tensor:
        """``W(x) = W * (gamma o phi o psi)`` without per-sample kernels
        wherever possible.

        gamma can scale the output channels and phi the input channels, so
        only psi has to reach the kernel. Each layer takes the form that
        touches the least memory (see :meth:`_rank1_form`): these convs are
        often bound by memory traffic rather than arithmetic, and a fresh
        weight-sized tensor can cost as much as the conv's own pass over the
        weights. ``affine`` (see :meth:`forward_with_affine`) goes into
        gamma and the bias. Eager inference at batch 1 takes
        :meth:`_forward_batch1`.
        """
        # (B, C_out), (B, C_in / groups), (B, kh * kw)
        factors = self._sampled_factors(x).split(self.factor_sizes, dim=1)
        out_size = self._output_size(x)
        form = self._rank1_form(x, out_size[0] * out_size[1],
                                tuning_for(x.device))
        return self._apply_rank1(x, form, out_size, factors, affine)

    def _forward_batch1(self, x: Tensor, affine) -> Tensor:
        """:meth:`_forward_rank1` for one sample at eager inference, in
        fewer steps: the input shape's form is kept (:meth:`_batch1_plan`),
        and the compiled ``ped_rank1_batch1`` (``mmdgconv/csrc``) runs the
        generator and the form's ops from C++. At batch 1 Python's dispatch
        of a layer's dozen small ops costs as much as their work (paired
        A/B runs of PED-ResNet-50). Where that op is not built, or for
        string padding and padding modes other than zeros, the same ops run
        from Python: the factors as vectors from two matrix-vector products
        (:meth:`_batch1_factors`), then :meth:`_apply_rank1`."""
        form, out_size, compiled = self._batch1_plan(x)
        ops = compiled_ops() if compiled else None
        if ops is None:
            return self._apply_rank1(x, form, out_size,
                                     self._batch1_factors(x), affine)
        squeeze, heads = self._modules['squeeze'], self._modules['heads']
        scale, shift = (None, None) if affine is None else affine
        return ops.ped_rank1_batch1(
            x, _parameter(self, 'weight'), _parameter(self, 'bias'),
            _parameter(squeeze, 'weight'), _parameter(squeeze, 'bias'),
            _parameter(heads, 'weight'), _parameter(heads, 'bias'), scale,
            shift, form, self.stride, self.padding, self.dilation,
            self.groups, self.factor_sizes, out_size)

    def _apply_rank1(self, x: Tensor, form: str, out_size: Tuple[int, int],
                     factors: Tuple[Tensor, ...], affine) -> Tensor:
        """The rank-1 forward in the form ``form`` (:meth:`_rank1_form`).

        ``factors`` are gamma, phi and psi, each (B, n), or at batch 1
        vectors (n,): the forms that batch 1 takes read them either way.
        """
        gamma, phi, psi = factors
        gamma, bias = self._with_affine(gamma, affine)
        batch = x.shape[0]
        out_h, out_w = out_size
        weight = _parameter(self, 'weight')
        if form in ('folded', 'input_folded'):
            # phi and psi (the kernel's input side) as one (C_in / groups,
            # kh, kw) scale: a product over whole contiguous rows of the
            # weight. (psi alone would broadcast over the last kh x kw
            # elements, a much slower loop.)
            in_scale = torch.outer(phi.view(-1),
                                   psi.view(-1)).view(weight.shape[1:])
            if form == 'input_folded':  # gamma then scales the output
                return self._scale_output(
                    self._conv_forward(x, weight * in_scale, None), gamma,
                    bias)
            # One small kernel with every factor folded in.
            kernel = weight * gamma.view(-1, 1, 1, 1)
            # In place when nothing needs the product's input for backward.
            kernel = kernel * in_scale if torch.is_grad_enabled() \
                else kernel.mul_(in_scale)
            return self._conv_forward(x, kernel, bias)
        if form == 'matmul':
            # A 1x1 layer with small weights and large activations: every
            # sample's own (C_out, C_in) matrix, one batched GEMM.
            kernels = weight.reshape(1, self.out_channels, -1) * (
                (gamma * psi)[:, :, None] * phi[:, None, :])
            if self.stride != (1, 1):
                x = x[:, :, ::self.stride[0], ::self.stride[1]]
            out = torch.bmm(kernels.to(x.dtype),
                            x.reshape(batch, self.in_channels, -1))
            return self._add_bias(
                out.reshape(batch, self.out_channels, out_h, out_w), bias)
        if form == 'columns':
            columns = self._scaled_columns(
                x, phi.view(batch, -1, 1) * psi.view(batch, 1, -1),
                (out_h, out_w))
            weight = weight.reshape(self.out_channels, -1)
            if torch.compiler.is_compiling():
                # inductor does better with the GEMM (bench_pedconv.py's
                # compiled rows, paired A/B)
                out = (weight @ columns).reshape(batch, self.out_channels,
                                                 out_h, out_w)
            else:
                # Eager: the product with the shared weight as a 1x1 conv
                # over the columns; oneDNN runs it (and its backward)
                # faster than the equivalent batched GEMM.
                out = F.conv2d(columns.view(batch, -1, out_h, out_w),
                               weight[:, :, None, None])
        else:
            x = x * _per_channel(self._per_input_channel(phi), x.dtype)
            if self.kernel_size == (1, 1):  # psi is one scalar per sample
                out = self._conv_forward(x, weight, None)
                gamma = gamma * psi
            elif batch == 1:
                out = self._conv_forward(
                    x, weight * psi.reshape(self.kernel_size), None)
            else:
                out = self._per_sample_conv(
                    x, weight * psi.reshape(batch, 1, 1, *self.kernel_size))
        return self._scale_output(out, gamma, bias)

    def _eager_inference(self, x: Tensor) -> bool:
        """Whether this forward is plain eager inference: no autograd,
        noise, autocast, tracing or compiling, and ``x`` in the generator's
        dtype."""
        # ('cpu' without building a torch.device: at batch 1 that costs as
        # much as the other checks together)
        device_type = 'cpu' if x.is_cpu else x.device.type
        return not (torch.is_grad_enabled() or self.training
                    or torch.jit.is_tracing()
                    or torch.compiler.is_compiling()
                    or torch.is_autocast_enabled(device_type)
                    or x.dtype != _parameter(self._modules['squeeze'],
                                             'weight').dtype)

    def _batch1_plan(self, x: Tensor) -> Tuple[str, Tuple[int, int], bool]:
        """The form (:meth:`_rank1_form`) and output size of a batch-1
        eager forward, and whether the compiled op can run it (numeric zero
        padding), kept per input shape: at batch 1 these few dozen Python
        steps cost as much as a small op, in every layer and call (paired
        A/B runs of PED-ResNet-50 at batch 1)."""
        # (__dict__ directly: module attribute lookup is slow, and a module
        # pickled before this attribute existed has none)
        plans = self.__dict__.setdefault('_batch1_plans', {})
        tuning = tuning_for(None if x.is_cpu else x.device)  # None: the CPU
        plan = plans.get(x.shape)
        if plan is None or plan[0] is not tuning:
            out_size = self._output_size(x)
            form = self._rank1_form(x, out_size[0] * out_size[1], tuning)
            compiled = (self.padding_mode == 'zeros'
                        and not isinstance(self.padding, str))
            plan = plans[x.shape] = (tuning, form, out_size, compiled)
        return plan[1:]

    def _batch1_factors(self, x: Tensor) -> Tuple[Tensor, ...]:
        """gamma, phi and psi of one sample at eager inference, vectors:
        :meth:`_generate` as two matrix-vector products, which read the
        generator weights as they are stored (a one-row GEMM packs them
        first)."""
        squeeze, heads = self._modules['squeeze'], self._modules['heads']
        hidden = torch.addmv(_parameter(squeeze, 'bias'),
                             _parameter(squeeze, 'weight'), x[0].sum((1, 2)),
                             alpha=1 / max(x.shape[2] * x.shape[3], 1))
        logits = torch.addmv(_parameter(heads, 'bias'),
                             _parameter(heads, 'weight'), hidden.relu_())
        return logits.sigmoid_().split_with_sizes(self.factor_sizes)

    def _rank1_form(self, x: Tensor, out_pixels: int, tuning) -> str:
        """How a rank-1 multiplicative forward applies its factors, by the
        memory each form touches (the thresholds are ``tuning``'s):

        - 'columns': a deep k x k layer (fewer output pixels than output
          channels) scales the unfolded input by phi and psi and multiplies
          once by the shared weight, which is then read once;
        - 'matmul' (eager): a 1x1 layer whose activations outweigh its
          weight runs every sample's own weight matrix in one batched GEMM;
        - 'folded' (batch 1): a weight smaller than the output takes every
          factor into the one kernel (two passes over the weight rather
          than one over the output);
        - 'input_folded' (batch 1): phi and psi go into the kernel, gamma
          scales the output; for k x k layers, and 1x1 layers whose weight
          is smaller than their input;
        - 'scaled': phi scales the input, gamma the output, and psi goes
          into the kernel (a scalar for 1x1 layers).
        """
        batch = x.shape[0]
        weight_size = self.weight.numel()
        if (tuning.ped_deep_layer_columns and self.kernel_size != (1, 1)
                and self.groups == 1 and out_pixels < self.out_channels
                and (batch > 1 or weight_size >=
                     tuning.ped_batch1_columns_min_weight)):
            return 'columns'
        activation_size = x.numel() // batch + self.out_channels * out_pixels
        # (Eager only: under inductor scaling the activations does better,
        # bench_pedconv.py's compiled rows.)
        if (tuning.ped_matmul_min_activation_ratio and batch > 1
                and not torch.compiler.is_compiling()
                and self.kernel_size == (1, 1) and self.groups == 1
                and self.padding in ((0, 0), 'valid')
                and activation_size >=
                tuning.ped_matmul_min_activation_ratio * weight_size):
            return 'matmul'
        if batch == 1 and tuning.ped_batch1_folded_kernel:
            out_size = self.out_channels * out_pixels
            if weight_size < out_size:
                return 'folded'
            if self.kernel_size != (1, 1) or weight_size < x.numel():
                return 'input_folded'
        return 'scaled'

    def _per_input_channel(self, phi: Tensor) -> Tensor:
        """phi (B, C_in / groups), or a vector, spread over all C_in input
        channels."""
        return phi if self.groups == 1 else phi.tile((self.groups, ))
