"""Behaviour shared by mmdgconv's ResNet-family backbones."""
from typing import Optional, Sequence, Tuple, Union

from mmengine.registry import DefaultScope
from torch import Tensor


def built_for_mmaction() -> bool:
    """Whether the model is being built for mmaction2, read from mmengine's
    default scope (the Runner sets it from the config's ``default_scope``).

    mmaction2's recognisers expect what its own ResNet gives by default: the
    last stage only (``out_indices=(3, )``), as a tensor, which
    ``Recognizer2D`` hands to ``TSNHead`` as it is. Every other toolbox
    expects a tuple (mmdet's necks, mmpretrain's ``GlobalAveragePooling``)
    and mmdet's default of all four stages.
    """
    scope = DefaultScope.get_current_instance()
    return scope is not None and scope.scope_name == 'mmaction'


def resolve_return_tuple(return_tuple: Optional[bool]) -> bool:
    """``return_tuple`` as given; by default False in mmaction2 and True
    elsewhere (:func:`built_for_mmaction`)."""
    if return_tuple is not None:
        return return_tuple
    return not built_for_mmaction()


def format_outputs(outs: Sequence[Tensor],
                   return_tuple: bool) -> Union[Tensor, Tuple[Tensor, ...]]:
    """The feature maps as a tuple, or the single map itself when
    ``return_tuple`` is False."""
    if not return_tuple and len(outs) == 1:
        return outs[0]
    return tuple(outs)


class BackboneMixin:
    """Output format and ``train()`` for subclasses of mmdet's ResNet.

    Place it before the mmdet class in the bases (``class X(BackboneMixin,
    ResNet)``).

    Args:
        return_tuple (bool, optional): True returns a tuple of feature maps,
            as mmdet's necks expect; False returns the tensor itself when
            there is a single ``out_indices`` entry, as mmaction2's
            ``Recognizer2D`` expects from a backbone outside mmpretrain
            (TSN). Default: None, which picks by the default scope at build
            time (:func:`built_for_mmaction`): False in mmaction2, True
            elsewhere.

    Built in mmaction2's scope without ``out_indices``, the backbone gives
    the last stage only, as mmaction2's ResNet does, so swapping the
    backbone dict of a stock TSN config is all it takes.
    """

    def __init__(self, *args, return_tuple=None, **kwargs):
        if built_for_mmaction():
            kwargs.setdefault('out_indices', (3, ))
        self.return_tuple = resolve_return_tuple(return_tuple)
        super().__init__(*args, **kwargs)

    def forward(self, x):
        return format_outputs(super().forward(x), self.return_tuple)

    def train(self, mode=True):
        """Set training mode, keeping frozen stages and ``norm_eval``."""
        super().train(mode)
        return self  # mmdet's ResNet.train returns None; nn.Module's self
