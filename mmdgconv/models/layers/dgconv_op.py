"""DGConv as one opaque operator, for ``torch.compile``.

The grouped DGConv chooses its channel permutations and weight blocks from
the signs of the gates, a data-dependent decision that ``torch.compile``
can only follow by breaking the graph at every layer (``Tensor.tolist`` on
the gates). As a ``torch.library`` custom op the whole layer is one node:
the compiler sees a conv-shaped output and an autograd formula; the layout
is derived from the gates inside the op, at run time, from a cache. A gate
that flips sign between two compiled steps therefore needs no recompilation
and cannot give a stale layout.
"""
from collections import OrderedDict
from types import SimpleNamespace
from typing import List, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor

from .dg_conv2d_grouped import ConvGeometry, GroupedDGConvFunction, GroupLayout

#: Layouts by (gate pattern, channels, device); a few per layer suffice.
_LAYOUTS: 'OrderedDict[tuple, GroupLayout]' = OrderedDict()
_MAX_LAYOUTS = 512


def layout_of(gate: Tensor, in_channels: int,
              out_channels: int) -> GroupLayout:
    """The (cached) :class:`GroupLayout` of the gates' current signs."""
    pattern = tuple(int(g) for g in (gate.detach() >= 0).tolist())
    key = (pattern, in_channels, out_channels, gate.device)
    layout = _LAYOUTS.get(key)
    if layout is None:
        layout = GroupLayout(pattern, in_channels, out_channels, gate.device)
        _LAYOUTS[key] = layout
        if len(_LAYOUTS) > _MAX_LAYOUTS:
            _LAYOUTS.popitem(last=False)
    else:
        _LAYOUTS.move_to_end(key)
    return layout


@torch.library.custom_op('mmdgconv::dgconv2d', mutates_args=())
def dgconv2d(x: Tensor, weight: Tensor, gate: Tensor, bias: Optional[Tensor],
             stride: List[int], padding: List[int],
             dilation: List[int]) -> Tensor:
    """``conv2d(x, weight * U(gate), bias)`` computed as a grouped conv.

    Args:
        x (Tensor): Input (N, C_in, H, W), in the compute dtype.
        weight (Tensor): The dense weight (C_out, C_in, k, k).
        gate (Tensor): The real-valued gates (their signs give U).
        bias (Tensor, optional): (C_out,), in the compute dtype.
        stride, padding, dilation (list[int]): As ``F.conv2d``, two each.

    Returns:
        Tensor: (N, C_out, H', W'), contiguous.
    """
    layout = layout_of(gate, weight.shape[1], weight.shape[0])
    blocks = layout.diagonal_blocks(weight).to(x.dtype)
    ctx = SimpleNamespace(save_for_backward=lambda *tensors: None)
    return GroupedDGConvFunction.forward(
        ctx, x, blocks, weight, gate, bias, layout,
        ConvGeometry.of(stride, padding, dilation)).contiguous()


@dgconv2d.register_fake
def _(x, weight, gate, bias, stride, padding, dilation):
    out = F.conv2d(x, weight.to(x.dtype), bias, stride, padding, dilation)
    return out.contiguous()


@torch.library.custom_op('mmdgconv::dgconv2d_backward', mutates_args=())
def dgconv2d_backward(grad_out: Tensor, x: Tensor, weight: Tensor,
                      gate: Tensor, has_bias: bool, stride: List[int],
                      padding: List[int], dilation: List[int],
                      output_mask: List[bool]
                      ) -> Tuple[Tensor, Tensor, Tensor, Tensor]:
    """The gradients of :func:`dgconv2d` in its input, dense weight, gates
    and bias; an empty tensor for each one ``output_mask`` does not ask
    for."""
    layout = layout_of(gate, weight.shape[1], weight.shape[0])
    blocks = layout.diagonal_blocks(weight).to(x.dtype)
    need_x, need_weight, need_gate, need_bias = output_mask
    ctx = SimpleNamespace(
        saved_tensors=(x, weight.detach(), blocks), layout=layout,
        conv=ConvGeometry.of(stride, padding, dilation), has_bias=has_bias,
        needs_input_grad=(need_x, need_weight, False, need_gate,
                          need_bias and has_bias),
        gate_shape=gate.shape, gate_dtype=gate.dtype)
    grad_x, grad_blocks, _, grad_gate, grad_bias, _, _ = \
        GroupedDGConvFunction.backward(ctx, grad_out)
    empty = x.new_empty(0)
    grad_weight = None
    if need_weight:
        grad_weight = layout.scatter_diagonal_blocks(
            grad_blocks, weight.shape, weight.dtype)
    return tuple(
        empty if grad is None else grad.contiguous()
        for grad in (grad_x, grad_weight, grad_gate, grad_bias))


@dgconv2d_backward.register_fake
def _(grad_out, x, weight, gate, has_bias, stride, padding, dilation,
      output_mask):
    need_x, need_weight, need_gate, need_bias = output_mask
    empty = x.new_empty(0)
    return (x.new_empty(x.shape) if need_x else empty,
            weight.new_empty(weight.shape) if need_weight else empty,
            gate.new_empty(gate.shape) if need_gate else empty,
            grad_out.new_empty(grad_out.shape[1])
            if need_bias and has_bias else empty)


def _setup_context(ctx, inputs, output) -> None:
    x, weight, gate, bias, stride, padding, dilation = inputs
    ctx.save_for_backward(x, weight, gate)
    ctx.has_bias = bias is not None
    ctx.params = (stride, padding, dilation)


def _backward(ctx, grad_out):
    x, weight, gate = ctx.saved_tensors
    need = ctx.needs_input_grad
    mask = [need[0], need[1], need[2], ctx.has_bias and need[3]]
    grads = dgconv2d_backward(grad_out.contiguous(), x, weight, gate,
                              ctx.has_bias, *ctx.params, mask)
    grads = [g if wanted else None for g, wanted in zip(grads, mask)]
    return (*grads, None, None, None)


dgconv2d.register_autograd(_backward, setup_context=_setup_context)


def compiled_dgconv2d(x: Tensor, weight: Tensor, gate: Tensor,
                      bias: Optional[Tensor], stride: Sequence[int],
                      padding: Sequence[int],
                      dilation: Sequence[int]) -> Tensor:
    """:func:`dgconv2d` with its arguments as ``F.conv2d`` takes them."""
    return dgconv2d(x, weight, gate, bias, list(stride), list(padding),
                    list(dilation))
