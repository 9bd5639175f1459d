"""One call that turns any model into its deployed form.

Every mmdgconv module with a training form has an idempotent
``switch_to_deploy()``, as mmpretrain's RepVGG and MobileOne do: the layers
(:class:`~mmdgconv.models.layers.DGConv2d`,
:class:`~mmdgconv.models.layers.CoCConv2d`), the G-ResNeXt bottleneck
(which folds its DGConv's channel permutations into its own 1x1 convs and
norms) and the backbones (which also record the deployed structure that
their ``deploy=True`` constructor builds). :func:`switch_to_deploy` applies
them to a whole detector, recogniser or classifier.
"""
from typing import List

from torch import nn


def switch_to_deploy(model: nn.Module) -> List[str]:
    """Call ``switch_to_deploy()`` on the outermost modules that have it.

    A backbone switches its blocks and a block its layers, so each module
    is switched by the outermost owner that knows how, and modules with no
    such owner (a DGConv in a stock ResNet's ``conv_cfg``) are reached on
    their own. Safe to call twice.

    Args:
        model (nn.Module): Any model, changed in place.

    Returns:
        list[str]: The names of the modules whose ``switch_to_deploy`` was
        called ('' for ``model`` itself), in network order.
    """
    switched = []
    for name, module in model.named_modules():
        if any(name.startswith(owner + '.') or owner == ''
               for owner in switched):
            continue
        if callable(getattr(module, 'switch_to_deploy', None)):
            switched.append(name)
    for name in switched:
        model.get_submodule(name).switch_to_deploy()
    return switched
