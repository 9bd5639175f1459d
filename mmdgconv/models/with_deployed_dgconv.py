"""Building a model whose ``conv_cfg`` DGConv layers are in their deployed
form, from the per-layer structure the converter records.

A stock backbone (mmdet's ResNet, mmpretrain's, mmaction2's) builds every
DGConv from one shared ``conv_cfg``, which cannot say that ``layer1.0.conv2``
learned 4 groups and ``layer3.2.conv2`` 32. The config written by
``tools/model_converters/dgconv_to_static.py`` therefore wraps the training
model::

    model = dict(
        _delete_=True,
        type='mmdgconv.WithDeployedDGConv',
        model={{_base_.model}},
        deployed_groups={'backbone.layer1.0.conv2': 4, ...})

and this builder builds the training model, then constructs each listed
layer anew as ``DGConv2d(deploy=True, deployed_groups=G)``: a ``groups=G``
conv whose weight has the deployed shape before any checkpoint is read, so
``strict=True`` loading resizes nothing. G-ResNeXt backbones record their
structure on the backbone instead (``deploy_groups``), because their
permutations fold into the neighbouring layers.
"""
from typing import Dict

import torch.nn as nn
from mmengine.registry import MODELS as MMENGINE_MODELS

from mmdgconv.registry import MODELS
from .layers import DGConv2d


def _deployed_copy(name: str, layer: DGConv2d, groups: int) -> DGConv2d:
    if not isinstance(groups, int) or isinstance(groups, bool):
        raise TypeError(f'WithDeployedDGConv: deployed_groups[{name!r}] must '
                        f'be an int, got {groups!r}')
    return DGConv2d(
        layer.in_channels, layer.out_channels, layer.kernel_size,
        stride=layer.stride, padding=layer.padding, dilation=layer.dilation,
        bias=layer.bias is not None, padding_mode=layer.padding_mode,
        impl=layer.impl, deploy=True, deployed_groups=groups,
        device=layer.weight.device, dtype=layer.weight.dtype)


@MODELS.register_module(name='WithDeployedDGConv')
def with_deployed_dgconv(model: dict,
                         deployed_groups: Dict[str, int]) -> nn.Module:
    """Build ``model`` with every DGConv that learns its groups replaced by
    its deployed form of the recorded group count.

    Args:
        model (dict): The training model's config.
        deployed_groups (dict[str, int]): Module name (as in the model's
            ``named_modules``) to the layer's learned number of groups; it
            must name exactly the model's DGConv layers with gates.

    Returns:
        nn.Module: The model ``model`` builds (same class, same state-dict
        keys), its DGConv layers deployed.

    Raises:
        KeyError: A DGConv layer is missing from ``deployed_groups``, or a
            name there is not a DGConv layer with gates.
        ValueError: A group count does not divide the layer's channels.
    """
    built = MMENGINE_MODELS.build(model)
    learning = {
        name: module
        for name, module in built.named_modules()
        if isinstance(module, DGConv2d) and module.has_gates
    }
    unknown = sorted(set(deployed_groups) - set(learning))
    if unknown:
        raise KeyError(
            f'WithDeployedDGConv: deployed_groups names {unknown[0]!r}, '
            f'which is not a DGConv layer of {type(built).__name__} '
            f'(the model has {len(learning)} DGConv layers with gates)')
    missing = sorted(set(learning) - set(deployed_groups))
    if missing:
        raise KeyError(
            f'WithDeployedDGConv: deployed_groups has no entry for the '
            f'DGConv layer {missing[0]!r}; reconvert the trained checkpoint '
            'with tools/model_converters/dgconv_to_static.py')
    for name, layer in learning.items():
        parent_name, _, attribute = name.rpartition('.')
        parent = built.get_submodule(parent_name)
        setattr(parent, attribute,
                _deployed_copy(name, layer, deployed_groups[name]))
    return built
