"""DGConv computed on its group structure instead of a dense masked conv.

For binary gates, U is a permuted block-diagonal matrix: channels i and j
interact iff their index bits agree on every split factor (g_k = 0). Sorting
the channels by those bits makes U block-diagonal with G blocks, so

- the forward pass and the input gradient are a ``groups=G`` conv;
- the weight gradient ``(f^T d) * U`` (paper, eq. 5) is needed only inside
  the blocks: a grouped weight gradient;
- the gate gradient ``dL/dU . dU/dg_k`` (eqs. 6, 7, 10) is non-zero only
  where bits k of i and j differ and every other split bit agrees. For a
  merged factor those entries lie inside the blocks, so the weight gradient
  above already holds them; for a split factor they pair each group with the
  group that differs only in bit k, which one more grouped weight gradient
  (with the groups of the input, or of the smaller output gradient, swapped
  pairwise) yields.

At G groups the whole step costs about (3 + |S|) / G of a dense conv step
(|S| = log2 G split factors), and it equals the dense formulation exactly.
Where the groups are narrow (a few channels each), oneDNN's grouped weight
gradient is slow per unit of work, so those layers take their weight and gate
gradients from a few weight gradients over merged groups instead (see
:meth:`GroupLayout._merged_passes`): more arithmetic, less time. Likewise
the input gradient of a strided layer with wide groups over a large image is
split by output phase into stride-1 convs (see :mod:`.phase_split_grad`).

Paper: Zhang et al., "Differentiable Learning-to-Group Channels via Groupable
Convolutional Neural Networks", ICCV 2019. https://arxiv.org/abs/1908.05867
"""
import math
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor

from .phase_split_grad import phase_split_input_grad, prefers_phase_split
from .tuning import tuning_for


def _flat_index(rows: Tensor, cols: Tensor, in_channels: int) -> Tensor:
    """Where ``weight[rows, cols]`` lies in the weight seen as a list of
    (C_out * C_in) kernels, row by row."""
    return (rows * in_channels + cols).reshape(-1)


def gather_kernels(weight: Tensor, index: Tensor) -> Tensor:
    """The kernels at ``index`` (see :func:`_flat_index`), as
    (C_out, n, k_h, k_w).

    One ``index_select`` over whole kernels beats advanced indexing with
    broadcast row and column indices, which gathers element by element.
    """
    out_channels, _, k_h, k_w = weight.shape
    return weight.reshape(-1, k_h * k_w).index_select(0, index).view(
        out_channels, -1, k_h, k_w)


def _index_bits(channels: int, num_gates: int, gate: int) -> Tensor:
    """Bit ``gate`` (0 = most significant) of ``c mod 2^K`` per channel."""
    index = torch.arange(channels) % 2**num_gates
    return (index >> (num_gates - 1 - gate)) % 2


@dataclass(frozen=True)
class ConvGeometry:
    """Stride, padding and dilation of a 2-D conv, two ints each."""

    stride: Tuple[int, int]
    padding: Tuple[int, int]
    dilation: Tuple[int, int]

    @classmethod
    def of(cls, stride, padding, dilation) -> 'ConvGeometry':
        return cls(tuple(stride), tuple(padding), tuple(dilation))

    def as_lists(self) -> Tuple[List[int], List[int], List[int]]:
        """As ``aten.convolution_backward`` takes them."""
        return list(self.stride), list(self.padding), list(self.dilation)


@dataclass(frozen=True)
class MergedPass:
    """One merged weight-gradient pass (see ``GroupLayout._merged_passes``).

    Attributes:
        out_local (Tensor, optional): Output channel order (of the permuted
            output) that puts the merged sub-groups side by side; None for
            the first pass, which uses the current order.
        in_local (Tensor, optional): The same for the input channels.
        groups (int): Merged groups of the pass's conv.
        sub_groups (int): Original groups per merged group, ``2^m``.
        index (Tensor): Flat kernel indices gathering the merged weight.
        pair_masks (dict[int, Tensor]): Split gate index to the (2^m, 2^m)
            mask of sub-group pairs that differ in that gate's bit.
    """

    out_local: Optional[Tensor]
    in_local: Optional[Tensor]
    groups: int
    sub_groups: int
    index: Tensor
    pair_masks: Dict[int, Tensor]


class GroupLayout:
    """The block structure of U for one binary gate pattern.

    Args:
        binary_gates (Sequence[int]): Gates in {0, 1}, most significant
            factor first.
        in_channels (int): Input channels of the layer.
        out_channels (int): Output channels of the layer.
        device (torch.device): Where the index tensors live.
    """

    def __init__(self, binary_gates: Sequence[int], in_channels: int,
                 out_channels: int, device=None) -> None:
        num_gates = len(binary_gates)
        self.split = [k for k, g in enumerate(binary_gates) if g == 0]
        self.merged = [k for k, g in enumerate(binary_gates) if g == 1]
        self.groups = 2**len(self.split)
        self.in_channels, self.out_channels = in_channels, out_channels
        self.in_per_group = in_channels // self.groups
        self.out_per_group = out_channels // self.groups

        def group_ids(channels):
            ids = torch.zeros(channels, dtype=torch.long)
            for k in self.split:  # most significant split bit first
                ids = ids * 2 + _index_bits(channels, num_gates, k)
            return ids

        self.out_ids, self.in_ids = group_ids(out_channels), group_ids(
            in_channels)
        out_order = torch.argsort(self.out_ids, stable=True)
        in_order = torch.argsort(self.in_ids, stable=True)
        self.identity = bool(
            torch.equal(out_order, torch.arange(out_channels))
            and torch.equal(in_order, torch.arange(in_channels)))
        group_of_row = torch.arange(out_channels) // self.out_per_group
        in_blocks = in_order.reshape(self.groups, self.in_per_group)
        # Flipping split factor p flips bit (|S| - 1 - p) of the group id.
        self.partners = [
            torch.arange(self.groups) ^ (1 << (len(self.split) - 1 - p))
            for p in range(len(self.split))
        ]
        # Masks over the diagonal blocks: where bit k differs (merged k).
        out_bits = [
            _index_bits(out_channels, num_gates, k)[out_order].reshape(
                self.groups, self.out_per_group, 1) for k in self.merged
        ]
        in_bits = [
            _index_bits(in_channels, num_gates, k)[in_order].reshape(
                self.groups, 1, self.in_per_group) for k in self.merged
        ]
        masks = [(o != i) for o, i in zip(out_bits, in_bits)]

        to = dict(device=device)
        self.out_order = out_order.to(**to)
        self.out_inverse = torch.argsort(out_order).to(**to)
        self.in_order = in_order.to(**to)
        self.in_inverse = torch.argsort(in_order).to(**to)
        rows = out_order[:, None]
        self.block_index = _flat_index(rows, in_blocks[group_of_row],
                                       in_channels).to(**to)
        # Built on first use (see _partner_index): a layer needs one of the
        # two layouts, by its stride.
        self._partner_indices = {}
        self._device = device
        self._cpu = dict(out_order=out_order, in_blocks=in_blocks,
                         partners=self.partners)
        self.partners = [p.to(**to) for p in self.partners]
        self.passes = self._merged_passes(out_order, in_order, to)
        self.merged_masks = torch.stack(masks).to(
            **to) if masks else None

    def _merged_passes(self, out_order: Tensor, in_order: Tensor,
                       to: dict) -> list:
        """Plan the weight gradients over merged groups (narrow layers).

        The split bits are taken in chunks of m bits, least significant
        first: the device's ``dgconv_merged_bits``, or as many as it takes
        for the merged groups to be ``dgconv_merged_width`` channels wide
        (see :class:`~mmdgconv.models.layers.tuning.DeviceTuning`; narrow
        groups make oneDNN's grouped weight gradient slow, merged ones do
        not).
        For each chunk, the groups are reordered so that the chunk's bits
        are the least significant of the group id; a weight gradient with
        ``G / 2^m`` groups then holds every block pairing two groups that
        differ only in those bits (and, for the first chunk, whose order is
        the current one, the diagonal blocks too).

        Returns:
            list[dict]: One pass per chunk (empty for wide layers): the
            channel reorder relative to the permuted layout (None for the
            first chunk), the merged group count, the groups per merged
            group, the flat kernel index of the merged blocks (see
            :func:`gather_kernels`), and for each split index covered, the
            mask over (output sub-group, input sub-group) pairs that differ in
            its bit only.
        """
        tuning = tuning_for(to['device'])
        width = max(self.in_per_group, self.out_per_group)
        num_split = len(self.split)
        if width > tuning.dgconv_narrow_width or num_split == 0:
            return []
        m = min(num_split,
                max(tuning.dgconv_merged_bits,
                    math.ceil(math.log2(tuning.dgconv_merged_width / width))))
        group = torch.arange(self.groups)
        passes = []
        for start in range(0, num_split, m):
            chunk = list(range(start, min(start + m, num_split)))  # bit pos
            others = [b for b in range(num_split) if b not in chunk]
            new_id = torch.zeros_like(group)
            for b in reversed(others):  # most significant first
                new_id = new_id * 2 + (group >> b) % 2
            for b in reversed(chunk):
                new_id = new_id * 2 + (group >> b) % 2
            group_order = torch.argsort(new_id)  # new position -> group
            out_local = (group_order[:, None] * self.out_per_group +
                         torch.arange(self.out_per_group)).reshape(-1)
            in_local = (group_order[:, None] * self.in_per_group +
                        torch.arange(self.in_per_group)).reshape(-1)
            merged, size = self.groups >> len(chunk), 1 << len(chunk)
            sub_group = torch.arange(size)
            differs = sub_group[:, None] ^ sub_group[None]
            in_channels = in_order[in_local].reshape(merged, -1)
            row_group = torch.arange(self.out_channels) // (
                self.out_channels // merged)
            first = start == 0  # the current order already
            passes.append(MergedPass(
                out_local=None if first else out_local.to(**to),
                in_local=None if first else in_local.to(**to),
                groups=merged,
                sub_groups=size,
                index=_flat_index(out_order[out_local][:, None],
                                  in_channels[row_group],
                                  self.in_channels).to(**to),
                pair_masks={
                    num_split - 1 - b: (differs == 1 << j).to(**to)
                    for j, b in enumerate(chunk)
                }))
        return passes

    # -- channel permutations --------------------------------------------
    def permute_input(self, x: Tensor) -> Tensor:
        return x if self.identity else x.index_select(1, self.in_order)

    def unpermute_input(self, x: Tensor) -> Tensor:
        return x if self.identity else x.index_select(1, self.in_inverse)

    def permute_output(self, y: Tensor) -> Tensor:
        return y if self.identity else y.index_select(1, self.out_order)

    def unpermute_output(self, y: Tensor) -> Tensor:
        return y if self.identity else y.index_select(1, self.out_inverse)

    # -- weight blocks ----------------------------------------------------
    def diagonal_blocks(self, weight: Tensor) -> Tensor:
        """(C_out, C_in/G, k, k): the weight inside U's blocks, permuted."""
        return gather_kernels(weight, self.block_index)

    def partner_blocks(self, weight: Tensor, split_index: int,
                       by_input: bool = False) -> Tensor:
        """The blocks pairing each group with its partner across a split
        factor, laid out like :meth:`diagonal_blocks`: slot g holds the
        block of group g's outputs and the partner's inputs, or with
        ``by_input`` of the partner's outputs and group g's inputs (for an
        output gradient passed through :meth:`swap_groups`)."""
        return gather_kernels(weight,
                              self._partner_index(split_index, by_input))

    def _partner_index(self, split_index: int, by_input: bool) -> Tensor:
        """The flat kernel index of :meth:`partner_blocks`, cached."""
        key = (split_index, by_input)
        if key not in self._partner_indices:
            cpu = self._cpu
            slot = torch.arange(self.out_channels)
            group = slot // self.out_per_group
            partner = cpu['partners'][split_index][group]
            if by_input:
                rows = cpu['out_order'][partner * self.out_per_group +
                                        slot % self.out_per_group]
                cols = cpu['in_blocks'][group]
            else:
                rows, cols = cpu['out_order'], cpu['in_blocks'][partner]
            self._partner_indices[key] = _flat_index(
                rows[:, None], cols, self.in_channels).to(self._device)
        return self._partner_indices[key]

    def scatter_diagonal_blocks(self, blocks: Tensor, weight_shape,
                                dtype: torch.dtype) -> Tensor:
        """The dense weight-shaped tensor that is ``blocks`` inside U's
        blocks, else 0."""
        dense = blocks.new_zeros(weight_shape, dtype=dtype)
        k_h, k_w = weight_shape[2:]
        dense.view(-1, k_h * k_w).index_copy_(
            0, self.block_index, blocks.to(dtype).reshape(-1, k_h * k_w))
        return dense

    def swap_groups(self, t: Tensor, split_index: int) -> Tensor:
        """Permuted input or output (gradient) whose group g holds the
        partner group's channels."""
        n, channels, h, w = t.shape
        grouped = t.reshape(n, self.groups, channels // self.groups, h, w)
        return grouped.index_select(1, self.partners[split_index]).reshape(
            n, channels, h, w)


class _GatherDiagonalBlocks(torch.autograd.Function):
    """U's diagonal blocks of the dense weight; the backward scatters their
    gradient into a dense one (zero outside the blocks, paper eq. 5).

    A node of its own, so that where it sits in the graph decides when the
    dense gradient is allocated (see :func:`gather_diagonal_blocks`).
    """

    @staticmethod
    def forward(ctx, weight: Tensor, layout: GroupLayout) -> Tensor:
        ctx.layout = layout
        ctx.weight_shape, ctx.weight_dtype = weight.shape, weight.dtype
        return layout.diagonal_blocks(weight)

    @staticmethod
    def backward(ctx, grad_blocks: Tensor):
        return ctx.layout.scatter_diagonal_blocks(
            grad_blocks, ctx.weight_shape, ctx.weight_dtype), None


def gather_diagonal_blocks(weight: Tensor, layout: GroupLayout) -> Tensor:
    """``layout.diagonal_blocks(weight)``, differentiable.

    The dense weight gradient is allocated when this node's backward runs.
    Autograd runs ready nodes latest-created first, so blocks gathered
    before a model's forward get their dense gradients only once the rest
    of the backward has freed the activations; gathered next to their conv,
    every dense gradient of the deep stages would coexist with nearly all
    activations at the memory peak.
    """
    return _GatherDiagonalBlocks.apply(weight, layout)


class GroupedDGConvFunction(torch.autograd.Function):
    """Exact DGConv forward and backward on the group structure.

    Differentiable in the input, U's diagonal blocks of the weight (see
    :func:`gather_diagonal_blocks`), the gates and the bias; the dense
    weight itself is read only for the gates' partner blocks.
    """

    @staticmethod
    def forward(ctx, x: Tensor, blocks: Tensor, weight: Tensor,
                gate: Tensor, bias: Optional[Tensor], layout: GroupLayout,
                conv: ConvGeometry) -> Tensor:
        x_permuted = layout.permute_input(x)
        permuted_bias = None
        if bias is not None:
            permuted_bias = bias if layout.identity else bias.index_select(
                0, layout.out_order)
        out = F.conv2d(x_permuted, blocks, permuted_bias, conv.stride,
                       conv.padding, conv.dilation, layout.groups)
        # The input itself is saved, as any conv saves it, not the permuted
        # copy: the copy would live until the backward, and permuting again
        # there costs no measurable time (README, G-ResNeXt benchmark).
        ctx.save_for_backward(x, weight.detach(), blocks)
        ctx.layout, ctx.conv = layout, conv
        ctx.has_bias = bias is not None
        ctx.gate_shape, ctx.gate_dtype = gate.shape, gate.dtype
        return layout.unpermute_output(out)

    @staticmethod
    def backward(ctx, grad_out: Tensor):
        x, weight, blocks = ctx.saved_tensors
        layout, conv = ctx.layout, ctx.conv
        need_x, need_blocks, _, need_gate, need_bias = ctx.needs_input_grad[:5]
        # Only the weight and gate gradients read the input's values.
        x_permuted = layout.permute_input(x) if (need_blocks
                                                 or need_gate) else x
        grad_permuted = layout.permute_output(grad_out.contiguous())
        # Merged passes only pay off when the gate gradients are wanted
        # (frozen gates, e.g. freeze_groups, need the weight gradient only).
        passes = layout.passes if need_gate else []
        grad_x_permuted, grad_blocks = _grouped_gradients(
            grad_permuted, x_permuted, blocks, layout, conv, need_x,
            need_weight=(need_blocks or need_gate) and not passes)
        split_grads = {}
        for merged_pass in passes:
            pass_blocks, pass_split_grads = _merged_pass_gradients(
                merged_pass, grad_permuted, x_permuted, weight, layout, conv)
            if pass_blocks is not None:
                grad_blocks = pass_blocks
            split_grads.update(pass_split_grads)

        grad_x = layout.unpermute_input(grad_x_permuted) if need_x else None
        grad_gate = None
        if need_gate:
            grad_gate = weight.new_zeros(ctx.gate_shape, dtype=torch.float32)
            if layout.merged:
                grad_gate[layout.merged] = _merged_gate_gradients(
                    blocks, grad_blocks, layout)
            for index, gate in enumerate(layout.split):
                grad_gate[gate] = split_grads[index] if (
                    index in split_grads) else _split_gate_gradient(
                        index, grad_permuted, x_permuted, weight, blocks,
                        layout, conv)
            grad_gate = grad_gate.to(ctx.gate_dtype)
        grad_bias = grad_out.sum((0, 2, 3)) if (
            need_bias and ctx.has_bias) else None
        return (grad_x, grad_blocks if need_blocks else None, None,
                grad_gate, grad_bias, None, None)


def _grouped_gradients(grad_permuted: Tensor, x_permuted: Tensor,
                       blocks: Tensor, layout: GroupLayout,
                       conv: ConvGeometry, need_x: bool, need_weight: bool
                       ) -> Tuple[Optional[Tensor], Optional[Tensor]]:
    """The input gradient (native, or split by output phase where that is
    faster, see :mod:`.phase_split_grad`) and the diagonal blocks' weight
    gradient, from the grouped conv, in the permuted channel order."""
    stride, padding, dilation = conv.as_lists()
    phase_split = need_x and prefers_phase_split(
        blocks.shape, x_permuted.shape, stride, padding, dilation,
        x_permuted.device)
    grad_x, grad_blocks, _ = torch.ops.aten.convolution_backward(
        grad_permuted, x_permuted, blocks, None, stride, padding, dilation,
        False, [0, 0], layout.groups,
        [need_x and not phase_split, need_weight, False])
    if phase_split:
        grad_x = phase_split_input_grad(grad_permuted, blocks, layout.groups)
    return grad_x, grad_blocks


def _merged_pass_gradients(merged_pass: MergedPass, grad_permuted: Tensor,
                           x_permuted: Tensor, weight: Tensor,
                           layout: GroupLayout, conv: ConvGeometry
                           ) -> Tuple[Optional[Tensor], Dict[int, Tensor]]:
    """One merged pass: the gradients of the split gates it covers, and
    (the first pass, in the current order) the diagonal blocks' weight
    gradient, else None."""
    grad_merged, sums = _merged_weight_gradient(
        merged_pass, grad_permuted, x_permuted, weight, layout, conv)
    grad_blocks = _diagonal_of_merged(
        grad_merged, merged_pass, layout) if (
            merged_pass.out_local is None) else None
    return grad_blocks, {
        index: sums[:, mask].sum()
        for index, mask in merged_pass.pair_masks.items()
    }


def _merged_gate_gradients(blocks: Tensor, grad_blocks: Tensor,
                           layout: GroupLayout) -> Tensor:
    """The merged gates' gradients from the diagonal blocks alone: dL/dU
    inside the blocks (the DGConv paper, eq. 7), summed where the gate's bit
    differs."""
    dl_du = (blocks.float() * grad_blocks.float()).sum((2, 3))
    dl_du = dl_du.reshape(layout.groups, layout.out_per_group,
                          layout.in_per_group)
    return torch.einsum('mgoi,goi->m', layout.merged_masks.to(dl_du.dtype),
                        dl_du)


def _split_gate_gradient(index: int, grad_permuted: Tensor,
                         x_permuted: Tensor, weight: Tensor, blocks: Tensor,
                         layout: GroupLayout, conv: ConvGeometry) -> Tensor:
    """A split gate's gradient by a partner pass: each group against the
    group its bit pairs it with (the off-diagonal blocks U leaves out)."""
    # Pairing each group with its partner swaps the groups of either side:
    # swap the smaller one (the output in a strided layer).
    swap_output = grad_permuted.numel() < x_permuted.numel()
    if swap_output:
        grad_in, x_in = layout.swap_groups(grad_permuted, index), x_permuted
    else:
        grad_in, x_in = grad_permuted, layout.swap_groups(x_permuted, index)
    partner_blocks = layout.partner_blocks(
        weight, index, by_input=swap_output).to(blocks.dtype)
    stride, padding, dilation = conv.as_lists()
    _, grad_partner, _ = torch.ops.aten.convolution_backward(
        grad_in, x_in, partner_blocks, None, stride, padding, dilation,
        False, [0, 0], layout.groups, [False, True, False])
    return (partner_blocks.float() * grad_partner.float()).sum()


def _merged_weight_gradient(merged_pass: MergedPass, grad_permuted: Tensor,
                            x_permuted: Tensor, weight: Tensor,
                            layout: GroupLayout, conv: ConvGeometry):
    """One merged pass: the weight gradient over ``merged_pass.groups``
    merged groups, and dL/dU summed per pair of sub-groups.

    Returns:
        tuple[Tensor, Tensor]: The merged weight gradient (C_out,
        C_in * 2^m / G, k, k) and the block sums (G', 2^m, 2^m), indexed by
        (merged group, output sub-group, input sub-group).
    """
    if merged_pass.out_local is not None:
        grad_permuted = grad_permuted.index_select(1, merged_pass.out_local)
        x_permuted = x_permuted.index_select(1, merged_pass.in_local)
    merged_weight = gather_kernels(weight, merged_pass.index).to(
        x_permuted.dtype)
    stride, padding, dilation = conv.as_lists()
    _, grad_merged, _ = torch.ops.aten.convolution_backward(
        grad_permuted, x_permuted, merged_weight, None, stride, padding,
        dilation, False, [0, 0], merged_pass.groups, [False, True, False])
    size = merged_pass.sub_groups
    sums = (merged_weight.float() * grad_merged.float()).sum((2, 3))
    sums = sums.reshape(merged_pass.groups, size, layout.out_per_group, size,
                        layout.in_per_group).sum((2, 4))
    return grad_merged, sums


def _diagonal_of_merged(grad_merged: Tensor, merged_pass: MergedPass,
                        layout: GroupLayout) -> Tensor:
    """The diagonal blocks (each group with itself) of the first pass's
    merged weight gradient, laid out like ``diagonal_blocks``."""
    size = merged_pass.sub_groups
    k_h, k_w = grad_merged.shape[2:]
    blocks = grad_merged.reshape(merged_pass.groups, size,
                                 layout.out_per_group, size,
                                 layout.in_per_group, k_h, k_w)
    diagonal = blocks.diagonal(dim1=1, dim2=3)  # (G', o, i, kh, kw, size)
    return diagonal.permute(0, 5, 1, 2, 3, 4).reshape(
        layout.out_channels, layout.in_per_group, k_h, k_w)


def grouped_dgconv(x: Tensor, weight: Tensor, gate: Tensor,
                   bias: Optional[Tensor], layout: GroupLayout, stride,
                   padding, dilation,
                   blocks: Optional[Tensor] = None) -> Tensor:
    """DGConv as a ``groups=G`` conv, differentiable exactly as the dense
    masked conv ``conv2d(x, weight * U)`` is.

    Args:
        x (Tensor): Input (N, C_in, H, W).
        weight (Tensor): The dense weight (C_out, C_in, k, k).
        gate (Tensor): The real-valued gates; they receive the
            straight-through gradient.
        bias (Tensor, optional): Bias (C_out,).
        layout (GroupLayout): The block structure of the binarised gates.
        stride, padding, dilation: As ``F.conv2d`` (tuples of two ints).
        blocks (Tensor, optional): ``gather_diagonal_blocks(weight,
            layout)`` computed earlier (in the weight's or the input's
            dtype); gathered here if None.

    Returns:
        Tensor: The output (N, C_out, H', W').
    """
    if blocks is None:
        blocks = gather_diagonal_blocks(weight, layout)
    conv = ConvGeometry.of(stride, padding, dilation)
    return GroupedDGConvFunction.apply(x, blocks.to(x.dtype), weight, gate,
                                       bias, layout, conv)


__all__: List[str] = [
    'ConvGeometry', 'GroupLayout', 'GroupedDGConvFunction', 'MergedPass',
    'gather_diagonal_blocks', 'grouped_dgconv'
]
