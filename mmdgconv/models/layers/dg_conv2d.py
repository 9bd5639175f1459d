"""DGConv: a convolution that learns its own channel groups.

Paper: Zhang et al., "Differentiable Learning-to-Group Channels via Groupable
Convolutional Neural Networks", ICCV 2019. https://arxiv.org/abs/1908.05867
"""
import math
import random
from typing import Optional, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

from mmdgconv.registry import register_conv_layer
from .conv_checks import check_conv_args, check_input_channels
from .dgconv_op import compiled_dgconv2d
from .dg_conv2d_grouped import (GroupLayout, gather_diagonal_blocks,
                                grouped_dgconv)

# The reference initialises every gate at +-1e-8: the layer starts undecided
# and the first gradient steps choose the grouping.
GATE_INIT_MAGNITUDE = 1e-8


class _StraightThroughBinarize(torch.autograd.Function):
    """``g = 1[g~ >= 0]`` in the forward pass, identity in the backward pass.

    The reference computes ``(sign(g~) + 1) / 2``, which is 0.5 for a gate at
    exactly 0 and would make U non-binary; ties go to 1 (merged) here.
    """

    @staticmethod
    def forward(ctx, gate: Tensor) -> Tensor:
        return (gate >= 0).to(gate.dtype)

    @staticmethod
    def backward(ctx, grad_output: Tensor) -> Tensor:
        return grad_output


def binarize_gates(gate: Tensor) -> Tensor:
    """Binary gates with the straight-through estimator's gradient.

    Args:
        gate (Tensor): Real-valued gates of shape (K,).

    Returns:
        Tensor: Gates in {0, 1}, differentiable as the identity.
    """
    return _StraightThroughBinarize.apply(gate)


def kronecker_relationship(binary_gates: Tensor) -> Tensor:
    """``U = U_1 kron ... kron U_K`` with ``U_k = (1 - g_k) I_2 + g_k 1_2x2``.

    ``U_1`` acts on the most significant bit of a channel index, so channels
    ``i`` and ``j`` are related iff their bits agree wherever ``g_k = 0``.

    Args:
        binary_gates (Tensor): Gates in {0, 1} of shape (K,).

    Returns:
        Tensor: The (2^K, 2^K) binary relationship matrix, differentiable
        with respect to the gates.
    """
    eye = torch.eye(2, dtype=binary_gates.dtype, device=binary_gates.device)
    ones = torch.ones_like(eye)
    relationship = torch.ones(
        1, 1, dtype=binary_gates.dtype, device=binary_gates.device)
    for g in binary_gates.unbind(0):
        relationship = torch.kron(relationship, (1 - g) * eye + g * ones)
    return relationship


def _log2_exact(value: int) -> Optional[int]:
    """``log2(value)`` if ``value`` is a positive power of two, else None."""
    if value > 0 and value & (value - 1) == 0:
        return value.bit_length() - 1
    return None


@register_conv_layer('DGConv')
class DGConv2d(nn.Conv2d):
    """Groupable convolution whose channel grouping is learned (DGConv).

    The effective kernel is ``W * U`` (element-wise, U broadcast over the
    k x k window). ``U = U_1 kron ... kron U_K`` is a binary relationship
    matrix with one learnable gate per Kronecker factor, binarised with a
    straight-through estimator. All gates 0 give a depthwise conv, all gates
    1 a dense conv, and in general ``2^(K - sum(g))`` groups whose members
    agree on the index bits of the split factors (interleaved groupings
    included).

    Channel schemes:

    - ``in_channels == out_channels = 2^K``: the paper's square case.
    - ``out_channels = r * in_channels`` (GroupUp) or
      ``in_channels = r * out_channels`` (GroupDown) with ``r`` a power of
      two: U is built on the smaller side ``C_s`` and tiled, so channel
      ``c`` takes the group of ``c mod C_s`` (paper, appendix A).
    - ``in_channels == 3`` (an RGB image input, e.g. a ResNet stem built
      through ``conv_cfg``): there is no channel structure to learn, so the
      layer is a dense conv with no gates.

    Any other channel counts raise a ValueError at build time.

    The stored ``weight`` is dense because the grouping may change during
    training; ``tools/model_converters/dgconv_to_static.py`` turns a trained
    layer into an ``nn.Conv2d(groups=G)`` of the learned size.

    Args:
        in_channels (int): Number of input channels.
        out_channels (int): Number of output channels.
        kernel_size (int | tuple[int, int]): Size of the kernel.
        stride (int | tuple[int, int]): Stride. Default: 1.
        padding (int | tuple[int, int] | str): Padding. Default: 0.
        dilation (int | tuple[int, int]): Dilation. Default: 1.
        init_groups (int, optional): The grouping the gates start from, as
            a power of two: ``init_groups`` contiguous groups (on the
            ``C_s`` side). None starts from random gate signs as the paper
            does. Either way the gates start at magnitude 1e-8, so training
            can flip them at once. This is not the number of groups the
            layer computes, which the gates learn (:attr:`num_groups`).
            Default: None.
        groups (int, optional): Alias of ``init_groups``: the name
            ``nn.Conv2d`` and stock backbones pass (mmdet's ResNeXt passes
            its cardinality, so a ``conv_cfg`` DGConv starts from it).
            Default: None.
        bias (bool): Whether to add a learnable bias. Default: True.
        padding_mode (str): As ``nn.Conv2d``. Default: 'zeros'.
        deploy (bool): Build the deployed form written by
            :meth:`switch_to_deploy`: a ``groups=G`` conv between fixed
            channel permutations (buffers, read from the checkpoint it
            loads). Default: False.
        deployed_groups (int, optional): With ``deploy``, the learned G,
            which sets the weight's shape; required for a layer that learns
            its groups. A stock backbone's shared ``conv_cfg`` cannot name
            each layer's G: the converter's config builds those layers
            through ``mmdgconv.WithDeployedDGConv``. Default: None.
        impl (str): How the conv is computed; every choice gives the same
            outputs and gradients. 'dense' is the paper's masked dense conv
            ``conv2d(x, W * U)``, kept as the checked reference. 'grouped'
            runs a ``groups=G`` conv on permuted channels and computes the
            weight and gate gradients on the group structure
            (:mod:`.dg_conv2d_grouped`). 'auto' picks 'grouped' whenever it
            is clearly cheaper, i.e. for G >= 2. Default: 'auto'.

    Example:
        >>> import torch
        >>> layer = DGConv2d(64, 64, 3, padding=1, init_groups=8)
        >>> layer.num_groups, layer.nnz
        (8, 512)
        >>> layer(torch.rand(2, 64, 16, 16)).shape
        torch.Size([2, 64, 16, 16])
    """

    def __init__(self,
                 in_channels: int,
                 out_channels: int,
                 kernel_size,
                 stride=1,
                 padding=0,
                 dilation=1,
                 groups: Optional[int] = None,
                 bias: bool = True,
                 padding_mode: str = 'zeros',
                 impl: str = 'auto',
                 deploy: bool = False,
                 deployed_groups: Optional[int] = None,
                 init_groups: Optional[int] = None,
                 device=None,
                 dtype=None) -> None:
        check_conv_args(
            f'DGConv2d(in_channels={in_channels}, out_channels='
            f'{out_channels})', in_channels, out_channels, kernel_size,
            stride, padding, dilation)
        num_gates = self._check_channels(in_channels, out_channels)
        if groups is not None and init_groups not in (None, groups):
            raise ValueError(
                f'DGConv2d(in_channels={in_channels}, out_channels='
                f'{out_channels}): groups={groups} and init_groups='
                f'{init_groups} disagree (groups is an alias of init_groups)')
        init_groups = groups if init_groups is None else init_groups
        if impl not in ('auto', 'dense', 'grouped'):
            raise ValueError(
                f'DGConv2d(in_channels={in_channels}, out_channels='
                f"{out_channels}): impl must be 'auto', 'dense' or "
                f"'grouped', got {impl!r}")
        self.impl = impl
        super().__init__(
            in_channels,
            out_channels,
            kernel_size,
            stride=stride,
            padding=padding,
            dilation=dilation,
            groups=1,
            bias=bias,
            padding_mode=padding_mode,
            device=device,
            dtype=dtype)
        self.num_gates = num_gates
        self.deploy = False
        if num_gates is None:  # RGB input layer: dense, nothing to learn.
            self.register_parameter('gate', None)
            return
        if deploy:
            where = (f'DGConv2d(in_channels={in_channels}, out_channels='
                     f'{out_channels}, deploy=True)')
            if deployed_groups is None:
                raise ValueError(
                    f'{where} needs deployed_groups, the learned number of '
                    'groups. Configs from an older dgconv_to_static.py left '
                    'it to the checkpoint: reconvert the trained checkpoint '
                    'with tools/model_converters/dgconv_to_static.py')
            if (deployed_groups < 1 or in_channels % deployed_groups
                    or out_channels % deployed_groups):
                raise ValueError(f'{where}: deployed_groups='
                                 f'{deployed_groups} must divide both')
            # The channel orders arrive with the converted checkpoint.
            self._become_static(
                deployed_groups, torch.arange(in_channels),
                torch.arange(out_channels),
                self.weight.detach()[:, :in_channels // deployed_groups])
            return
        self.gate = nn.Parameter(
            self._initial_gates(num_gates, init_groups, in_channels,
                                out_channels).to(device=device))

    @staticmethod
    def _check_channels(in_channels: int,
                        out_channels: int) -> Optional[int]:
        """Validate the channel scheme; return the number of gates."""
        if in_channels == 3:
            return None
        log_in, log_out = _log2_exact(in_channels), _log2_exact(out_channels)
        if log_in is None or log_out is None:
            raise ValueError(
                f'DGConv2d(in_channels={in_channels}, out_channels='
                f'{out_channels}): both channel counts must be powers of two '
                '(the Kronecker parameterisation has one gate per index '
                'bit); only in_channels=3 (an RGB input layer) is exempt.')
        # A ratio of two powers of two is itself a power of two.
        return min(log_in, log_out)

    @staticmethod
    def _initial_gates(num_gates: int, groups: Optional[int],
                       in_channels: int, out_channels: int) -> Tensor:
        if groups is None:
            signs = [random.choice([-1.0, 1.0]) for _ in range(num_gates)]
        else:
            num_split = _log2_exact(groups)
            if num_split is None or num_split > num_gates:
                raise ValueError(
                    f'DGConv2d(in_channels={in_channels}, out_channels='
                    f'{out_channels}): init_groups={groups} must be a power '
                    f'of two no larger than {2**num_gates}.')
            # Splitting the most significant bits gives contiguous groups,
            # the layout of nn.Conv2d(groups=G).
            signs = [-1.0] * num_split + [1.0] * (num_gates - num_split)
        return torch.tensor(signs) * GATE_INIT_MAGNITUDE

    # ------------------------------------------------------------------
    # Structure
    # ------------------------------------------------------------------
    @property
    def has_gates(self) -> bool:
        """Whether the layer learns a grouping (False for an RGB input and
        in the deployed form)."""
        return getattr(self, 'gate', None) is not None

    @property
    def binary_gates(self) -> Tensor:
        """The current gates in {0, 1} (1 = merged), without gradient."""
        if not self.has_gates:
            return torch.zeros(0)
        return (self.gate.detach() >= 0).float()

    @staticmethod
    def groups_of(gate: Tensor) -> int:
        """The number of groups a gate vector gives: every gate that does
        not merge (merging is ``gate >= 0``) splits, so G = 2^(splits)."""
        return 2**(gate.numel() - int((gate.detach() >= 0).sum()))

    @property
    def num_groups(self) -> int:
        """The number of channel groups the layer currently computes."""
        if self.deploy:
            return int(self.deploy_groups)
        if not self.has_gates:
            return 1
        return self.groups_of(self.gate)

    @property
    def nnz(self) -> int:
        """``nnz(U)``: this layer's term of the complexity ζ."""
        return self.in_channels * self.out_channels // self.num_groups

    def complexity(self) -> Tensor:
        """``nnz(U) = 2^(log2(max(C_in, C_out)) + sum(g))`` as a tensor.

        Differentiable with respect to the gates through the
        straight-through estimator, for the resource constraint.

        Returns:
            Tensor: A scalar.
        """
        if not self.has_gates:
            return self.weight.new_tensor(float(self.nnz))
        max_log = math.log2(max(self.in_channels, self.out_channels))
        return 2**(max_log + binarize_gates(self.gate).sum())

    @property
    def channel_groups(self) -> Tuple[Tensor, Tensor]:
        """The channel-to-group assignment.

        Returns:
            tuple[Tensor, Tensor]: Group indices of the output channels
            (length ``out_channels``) and of the input channels (length
            ``in_channels``), each in ``[0, num_groups)``. Output channel
            ``o`` sees input channel ``i`` iff their indices are equal.
        """
        if not self.has_gates:
            return (torch.zeros(self.out_channels, dtype=torch.long),
                    torch.zeros(self.in_channels, dtype=torch.long))
        layout = self.group_layout()
        return layout.out_ids.clone(), layout.in_ids.clone()

    def relationship(self) -> Tensor:
        """The (C_out, C_in) binary relationship matrix U.

        Differentiable with respect to the gates through the
        straight-through estimator.

        Returns:
            Tensor: U in the weight's dtype and device.
        """
        if not self.has_gates:
            return self.weight.new_ones(self.out_channels, self.in_channels)
        small = 2**self.num_gates
        square = kronecker_relationship(binarize_gates(self.gate))
        return square.to(self.weight.dtype).repeat(
            self.out_channels // small, self.in_channels // small)

    # ------------------------------------------------------------------
    # Forward
    # ------------------------------------------------------------------
    def group_layout(self) -> GroupLayout:
        """The block structure of the current gates, cached.

        The cache key is the binary gate pattern itself (and the device), so
        a sign flip is picked up at once and nothing is recomputed while the
        pattern holds.

        Returns:
            GroupLayout: Permutations and block indices of U.
        """
        key = (tuple(int(g) for g in self.binary_gates.tolist()),
               self.weight.device)
        cached = self.__dict__.get('_layout_cache')
        if cached is None or cached[0] != key:
            cached = (key,
                      GroupLayout(key[0], self.in_channels,
                                  self.out_channels, self.weight.device))
            self.__dict__['_layout_cache'] = cached  # not a module attribute
        return cached[1]

    def _use_grouped(self, layout: GroupLayout) -> bool:
        if self.impl == 'dense' or isinstance(self.padding, str):
            return False
        if self.impl == 'grouped':
            return True
        # 'auto': one group is the dense conv itself; from two groups on,
        # the grouped step does at most (3 + log2 G) / (3 G) <= 2/3 of the
        # dense step's work, and bench_dgconv.py measures it faster.
        return layout.groups >= 2

    def gather_blocks_early(self) -> None:
        """Gather U's weight blocks for this layer's next forward now.

        Called at the start of a model's forward (see
        :func:`~mmdgconv.models.layers.enable_early_block_gather`), this
        puts the node that allocates the dense weight gradient ahead of the
        whole model in the autograd graph. Autograd runs ready nodes
        latest-created first, so the dense gradient is then allocated at the
        end of the backward, after the activations are freed, rather than at
        the memory peak (README's G-ResNeXt benchmark). Does nothing without
        grad mode, in the dense path, or when the weight is frozen.
        """
        if not (torch.is_grad_enabled() and self.has_gates and not self.deploy
                and self.weight.requires_grad) or (
                    torch.compiler.is_compiling()):
            return
        layout = self.group_layout()
        if self._use_grouped(layout):
            self.__dict__['_early_blocks'] = (  # not a module attribute
                layout, self.weight._version,
                gather_diagonal_blocks(self.weight, layout))

    def drop_early_blocks(self) -> None:
        """Forget blocks :meth:`gather_blocks_early` gathered and no forward
        took (the caller's forward ended without reaching this layer)."""
        self.__dict__.pop('_early_blocks', None)

    def _take_early_blocks(self, layout: GroupLayout) -> Optional[Tensor]:
        """The blocks :meth:`gather_blocks_early` gathered, if they are of
        this layout and this weight (not stepped since)."""
        early = self.__dict__.pop('_early_blocks', None)
        if early is None or early[0] is not layout or (
                early[1] != self.weight._version):
            return None
        return early[2]

    def forward(self, x: Tensor) -> Tensor:
        check_input_channels(self, x)
        if self.deploy:
            return self._static_forward(x)
        if not self.has_gates:
            return self._conv_forward(x, self.weight, self.bias)
        if torch.compiler.is_compiling() and self.impl != 'dense' and \
                not isinstance(self.padding, str):
            return self._compiled_forward(x)
        layout = self.group_layout()
        blocks = self._take_early_blocks(layout)
        if not self._use_grouped(layout):
            masked_weight = self.weight * self.relationship()[:, :, None,
                                                              None]
            return self._conv_forward(x, masked_weight, self.bias)

        weight, bias, padding = self.weight, self.bias, self.padding
        if self.padding_mode != 'zeros':
            x = F.pad(x, self._reversed_padding_repeated_twice,
                      mode=self.padding_mode)
            padding = (0, 0)
        device_type = x.device.type
        if torch.is_autocast_enabled(device_type):
            # The custom backward runs outside autocast: cast up front, as
            # autocast would for conv2d.
            dtype = torch.get_autocast_dtype(device_type)
            x = x.to(dtype)
            bias = None if bias is None else bias.to(dtype)
            with torch.autocast(device_type, enabled=False):
                out = grouped_dgconv(x, weight, self.gate, bias, layout,
                                     self.stride, padding, self.dilation,
                                     blocks)
        else:
            out = grouped_dgconv(x, weight, self.gate, bias, layout,
                                 self.stride, padding, self.dilation, blocks)
        # The channel permutations give NCHW; return the input's layout, as
        # nn.Conv2d does.
        if not x.is_contiguous() and x.is_contiguous(
                memory_format=torch.channels_last):
            out = out.contiguous(memory_format=torch.channels_last)
        return out

    def _compiled_forward(self, x: Tensor) -> Tensor:
        """The grouped conv as one custom op: the layout is chosen from the
        gates inside it, so ``torch.compile`` sees no data-dependent Python
        (and a gate flip needs no recompilation)."""
        padding, bias = self.padding, self.bias
        if self.padding_mode != 'zeros':
            x = F.pad(x, self._reversed_padding_repeated_twice,
                      mode=self.padding_mode)
            padding = (0, 0)
        device_type = x.device.type
        if torch.is_autocast_enabled(device_type):
            # Autocast does not reach custom ops: cast as it casts conv2d.
            dtype = torch.get_autocast_dtype(device_type)
            x = x.to(dtype)
            bias = None if bias is None else bias.to(dtype)
        out = compiled_dgconv2d(x, self.weight, self.gate, bias, self.stride,
                                padding, self.dilation)
        if not x.is_contiguous() and x.is_contiguous(
                memory_format=torch.channels_last):
            out = out.contiguous(memory_format=torch.channels_last)
        return out

    # ------------------------------------------------------------------
    # Deployment
    # ------------------------------------------------------------------
    def _become_static(self, groups: int, in_order: Tensor,
                       out_order: Tensor, blocks: Tensor) -> None:
        if 'gate' in self._parameters:
            del self._parameters['gate']
        self.weight = nn.Parameter(blocks.clone())
        self.groups = groups  # nn.Conv2d's own attribute, for repr/analysis
        device = blocks.device
        self.register_buffer('deploy_groups',
                             torch.tensor(groups, device=device))
        self.register_buffer('in_order', in_order.to(device))
        self.register_buffer('out_inverse',
                             torch.argsort(out_order).to(device))
        self.register_buffer('out_order', out_order.to(device),
                             persistent=False)
        self.deploy = True
        self._note_identity()

    def _note_identity(self) -> None:
        """Which permutations are the identity, so forward can skip them."""
        self._identity_in = bool(torch.equal(
            self.in_order.cpu(), torch.arange(self.in_channels)))
        self._identity_out = bool(torch.equal(
            self.out_inverse.cpu(), torch.arange(self.out_channels)))

    def _static_forward(self, x: Tensor) -> Tensor:
        """The deployed form: nn.Conv2d's own forward (``self.groups`` is G)
        between the fixed channel permutations."""
        if not self._identity_in:
            x = x.index_select(1, self.in_order)
        bias = self.bias
        if bias is not None and not self._identity_out:
            bias = bias.index_select(0, self.out_order)
        out = self._conv_forward(x, self.weight, bias)
        return out if self._identity_out else out.index_select(
            1, self.out_inverse)

    @torch.no_grad()
    def switch_to_deploy(self) -> None:
        """Become a ``groups=G`` conv of the learned grouping; idempotent.

        The weight keeps only U's diagonal blocks (permuted), the gates are
        deleted, and the input/output channel permutations become buffers,
        so the deployed layer computes exactly what the trained one did.
        """
        if self.deploy or not self.has_gates:
            return
        layout = self.group_layout()
        self._become_static(layout.groups, layout.in_order.cpu(),
                            layout.out_order.cpu(),
                            layout.diagonal_blocks(self.weight).detach())

    def _load_from_state_dict(self, state_dict, prefix, local_metadata,
                              strict, missing_keys, unexpected_keys,
                              error_msgs):
        key = prefix + 'deploy_groups'
        if self.deploy and key in state_dict and int(
                state_dict[key]) != self.num_groups:
            error_msgs.append(
                f'{prefix[:-1]} is built with {self.num_groups} groups and '
                f'the checkpoint has {int(state_dict[key])}: load it with the '
                'config dgconv_to_static.py wrote for it')
        super()._load_from_state_dict(state_dict, prefix, local_metadata,
                                      strict, missing_keys, unexpected_keys,
                                      error_msgs)
        if self.deploy:
            self.out_order = torch.argsort(self.out_inverse)
            self._note_identity()

    def extra_repr(self) -> str:
        return super().extra_repr() + f', num_groups={self.num_groups}'
