"""Turning learned DGConv groupings into static grouped convolutions.

After training, a DGConv layer is a group convolution with the learned
number of groups (paper, Fig. 1) whose groups may interleave, so a static
grouped conv needs a fixed channel permutation. In a G-ResNeXt bottleneck
(1x1 conv, norm, ReLU, DGConv, norm, ReLU, 1x1 conv) both permutations fold
into the neighbours: the input order into the first conv's output channels
and its norm, the output order into the second norm and the last conv's
input channels. Nothing is permuted at run time and the block becomes a
plain ResNeXt block with the learned cardinality. Any other DGConv (and a
bottleneck whose neighbours do not allow folding) switches to its deployed
form, a ``groups=G`` conv between fixed permutations. The folding itself is
the bottleneck's own ``switch_to_deploy``; this module reports on it.
"""
from collections import Counter
from typing import Dict, List

from torch import nn

from mmdgconv.models.backbones.g_resnext import GBottleneck
from mmdgconv.models.layers import DGConv2d
from .checkpoint_io import ConversionError
from .switch_to_deploy import switch_to_deploy


def describe(name: str, layer: DGConv2d) -> dict:
    """One report row for a trained DGConv layer."""
    k = layer.kernel_size[0] * layer.kernel_size[1]
    return dict(
        layer=name, in_channels=layer.in_channels,
        out_channels=layer.out_channels, groups=layer.num_groups,
        params_before=layer.weight.numel() + layer.gate.numel(),
        params_after=layer.nnz * k)


def convert_model(model: nn.Module) -> List[dict]:
    """Convert every DGConv with gates in ``model``, in place, through the
    model's ``switch_to_deploy`` protocol (:func:`.switch_to_deploy`).

    Returns:
        list[dict]: A report row per converted layer, in network order, with
        ``folded`` telling whether the permutation folded away.

    Raises:
        ConversionError: The model has no DGConv layer with gates.
    """
    folded = {
        f'{name}.conv2' if name else 'conv2'
        for name, block in model.named_modules()
        if isinstance(block, GBottleneck) and block.foldable()
    }
    rows = [
        dict(describe(name, layer), folded=name in folded)
        for name, layer in model.named_modules()
        if isinstance(layer, DGConv2d) and layer.has_gates
    ]
    if not rows:
        raise ConversionError('the model has no DGConv layer with gates to '
                              'convert')
    switch_to_deploy(model)
    return rows


def dgconv_aware_flops(model: nn.Module, inputs) -> Dict[str, int]:
    """FLOPs per module from mmengine's analysis, with DGConv counted by
    its ``nnz(U)``.

    mmengine traces aten ops, where a DGConv is a dense conv of a masked
    weight; each DGConv's count (and its ancestors') is scaled to the
    ``nnz(U) / (C_in * C_out)`` share the conv really computes.

    Args:
        model (nn.Module): The model, e.g. a backbone.
        inputs: Its forward inputs.

    Returns:
        dict[str, int]: Module name ('' is the whole model) to FLOPs.
    """
    from mmengine.analysis import FlopAnalyzer
    layers = {
        name: m
        for name, m in model.named_modules()
        if isinstance(m, DGConv2d) and m.has_gates
    }
    impls = {name: layer.impl for name, layer in layers.items()}
    for layer in layers.values():
        layer.impl = 'dense'  # a traceable conv of the whole masked weight
    try:
        analyzer = FlopAnalyzer(model, inputs)
        analyzer.unsupported_ops_warnings(False)
        analyzer.uncalled_modules_warnings(False)
        flops = Counter(analyzer.by_module())
    finally:
        for name, layer in layers.items():
            layer.impl = impls[name]
    for name, layer in layers.items():
        dense = flops[name]
        surplus = dense - dense * layer.nnz // (layer.in_channels *
                                                layer.out_channels)
        parts = name.split('.')
        for depth in range(len(parts) + 1):
            flops['.'.join(parts[:depth])] -= surplus
    return dict(flops)
