"""mmdgconv's registries: children of mmengine's root registries.

Being children of the root registries is what lets a config of any toolbox
(default scope ``mmdet``, ``mmaction`` or ``mmpretrain``) name our modules as
``type='mmdgconv.GResNeXt'``: mmengine resolves the ``mmdgconv.`` prefix by
searching the root's children for the scope. ``locations`` makes the lookup
import the modules that register themselves, so nothing beyond
``custom_imports=dict(imports=['mmdgconv'])`` is needed.

Conv *layers* are additionally registered in mmengine's root ``MODELS``
(as mmcv does for DCN): ``build_conv_layer`` looks a bare ``type='DGConv'``
up in the caller's scope and its parents only, never in sibling scopes.
"""
from mmengine.registry import HOOKS as MMENGINE_HOOKS
from mmengine.registry import MODELS as MMENGINE_MODELS
from mmengine.registry import OPTIM_WRAPPERS as MMENGINE_OPTIM_WRAPPERS
from mmengine.registry import Registry

#: Backbones, layers and other ``nn.Module`` s.
MODELS = Registry(
    'model', parent=MMENGINE_MODELS, scope='mmdgconv',
    locations=['mmdgconv.models'])
#: Training-time hooks (resource constraint, group logging).
HOOKS = Registry(
    'hook', parent=MMENGINE_HOOKS, scope='mmdgconv',
    locations=['mmdgconv.engine'])
#: Optimiser wrappers (the device-generic ``AmpOptimWrapper``).
OPTIM_WRAPPERS = Registry(
    'optim_wrapper', parent=MMENGINE_OPTIM_WRAPPERS, scope='mmdgconv',
    locations=['mmdgconv.engine'])


def register_conv_layer(name):
    """Register a conv layer class under ``name`` in mmdgconv's and the root
    ``MODELS``, so ``conv_cfg=dict(type=name)`` builds it from any scope.

    Args:
        name (str): The name used in ``conv_cfg``.

    Returns:
        Callable: A class decorator.
    """

    def _register(cls):
        MODELS.register_module(name=name, module=cls)
        MMENGINE_MODELS.register_module(name=name, module=cls)
        return cls

    return _register
