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
form, a ``groups=G`` conv between fixed permutations.
"""
from collections import Counter
from typing import Dict, List

import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from mmdgconv.models.backbones.g_resnext import GBottleneck, GResNeXt
from mmdgconv.models.layers import DGConv2d
from .checkpoint_io import ConversionError


def _permute_norm(norm: _BatchNorm, order: torch.Tensor) -> None:
    for name in ('weight', 'bias', 'running_mean', 'running_var'):
        tensor = getattr(norm, name)
        if tensor is not None:
            tensor.data = tensor.data[order]


def _plain_1x1(conv) -> bool:
    return type(conv) is nn.Conv2d and conv.groups == 1 and \
        conv.kernel_size == (1, 1)


def foldable(block: GBottleneck) -> bool:
    """Whether the block's DGConv permutations fold into its neighbours
    (not across plugins, a GroupNorm or a conv that is not a plain 1x1)."""
    return (not block.with_plugins and _plain_1x1(block.conv1)
            and _plain_1x1(block.conv3) and block.conv1.bias is None
            and isinstance(block.norm1, _BatchNorm)
            and isinstance(block.norm2, _BatchNorm))


@torch.no_grad()
def fold_bottleneck(block: GBottleneck) -> int:
    """Replace the block's DGConv by ``nn.Conv2d(groups=G)``, folding the
    channel permutation into conv1/norm1 and norm2/conv3.

    Returns:
        int: G, the learned number of groups.
    """
    dgconv = block.conv2
    layout = dgconv.group_layout()
    static = nn.Conv2d(dgconv.in_channels, dgconv.out_channels,
                       dgconv.kernel_size, dgconv.stride, dgconv.padding,
                       dgconv.dilation, groups=layout.groups, bias=False)
    static.weight.data = layout.diagonal_blocks(dgconv.weight).clone()
    if not layout.identity:
        in_order, out_order = layout.in_order, layout.out_order
        block.conv1.weight.data = block.conv1.weight.data[in_order]
        _permute_norm(block.norm1, in_order)
        _permute_norm(block.norm2, out_order)
        block.conv3.weight.data = block.conv3.weight.data[:, out_order]
    block.conv2 = static
    return layout.groups


def describe(name: str, layer: DGConv2d) -> dict:
    """One report row for a trained DGConv layer."""
    k = layer.kernel_size[0] * layer.kernel_size[1]
    return dict(
        layer=name, in_channels=layer.in_channels,
        out_channels=layer.out_channels, groups=layer.num_groups,
        params_before=layer.weight.numel() + layer.gate.numel(),
        params_effective=layer.nnz * k,
        params_after=layer.nnz * k)


def convert_model(model: nn.Module) -> List[dict]:
    """Convert every DGConv with gates in ``model``, in place.

    Returns:
        list[dict]: A report row per converted layer, in network order, with
        ``folded`` telling whether the permutation folded away.

    Raises:
        ConversionError: The model has no DGConv layer with gates.
    """
    rows = []
    for prefix, backbone in model.named_modules():
        if not isinstance(backbone, GResNeXt):
            continue
        prefix = prefix + '.' if prefix else ''
        groups = []
        for name, block in backbone.named_modules(prefix=prefix[:-1]):
            if isinstance(block, GBottleneck) and isinstance(
                    block.conv2, DGConv2d) and block.conv2.has_gates:
                row = describe(name + '.conv2', block.conv2)
                if foldable(block):
                    groups.append(fold_bottleneck(block))
                    rows.append(dict(row, folded=True))
                else:  # plugins or GroupNorm: keep the permutation inside
                    block.conv2.switch_to_deploy()
                    groups.append(0)
                    rows.append(dict(row, folded=False))
            elif isinstance(block, GBottleneck) and block.with_dgconv:
                # Already deployed: 0 marks the permutation-module form.
                groups.append(0 if isinstance(block.conv2, DGConv2d) else
                              block.conv2.groups)
        backbone.deploy_groups = groups
    for name, layer in model.named_modules():
        if isinstance(layer, DGConv2d) and layer.has_gates:
            row = describe(name, layer)
            layer.switch_to_deploy()
            rows.append(dict(row, folded=False))
    if not rows:
        raise ConversionError('the model has no DGConv layer with gates to '
                              'convert')
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


def mark_deploy_in_config(node) -> int:
    """Set ``deploy=True`` in every ``dict(type='DGConv', ...)`` of a model
    config (``conv_cfg`` or ``dcn``); returns how many it changed."""
    changed = 0
    if isinstance(node, dict):
        if node.get('type') in ('DGConv', 'mmdgconv.DGConv'):
            node['deploy'] = True
            changed += 1
        for value in node.values():
            changed += mark_deploy_in_config(value)
    elif isinstance(node, (list, tuple)):
        for value in node:
            changed += mark_deploy_in_config(value)
    return changed
