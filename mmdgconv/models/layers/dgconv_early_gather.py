"""Gathering every DGConv's weight blocks at the start of a model's forward.

A grouped DGConv computes its dense weight gradient from the diagonal
blocks of the weight it gathered in the forward. Autograd runs ready nodes
latest-created first, so when the gathers are the model's first nodes the
dense gradients are allocated at the very end of the backward, after the
activations are freed, rather than at the memory peak (README's G-ResNeXt
benchmark measures the peak both ways).

:func:`enable_early_block_gather` opts any model in: a detector or
recogniser whose stock ResNet builds DGConv through ``conv_cfg`` as well as
:class:`~mmdgconv.models.GResNeXt`, which opts itself in. It changes no
value, only when memory is allocated.
"""
import torch
import torch.nn as nn

from .dg_conv2d import DGConv2d


def _dgconv_layers(model: nn.Module):
    # Found at every call (a few microseconds), not captured when the hook
    # is installed: a deep copy of the model must gather its own layers.
    return [m for m in model.modules() if isinstance(m, DGConv2d)]


def _gather_before_forward(model: nn.Module, args) -> None:
    # Nothing to defer in inference; under torch.compile each DGConv is one
    # custom op that gathers its own blocks.
    if torch.is_grad_enabled() and not torch.compiler.is_compiling():
        for layer in _dgconv_layers(model):
            layer.gather_blocks_early()


def _drop_after_forward(model: nn.Module, args, output) -> None:
    # Also after a failed forward: a layer the forward did not reach keeps
    # no blocks for a later one.
    for layer in _dgconv_layers(model):
        layer.drop_early_blocks()


def enable_early_block_gather(model: nn.Module) -> nn.Module:
    """Make ``model``'s forward gather the weight blocks of every DGConv it
    contains before anything else runs; idempotent.

    Args:
        model (nn.Module): Any model (a backbone, a detector, ...).

    Returns:
        nn.Module: ``model``, with a forward pre-hook and a forward hook.
    """
    if _gather_before_forward not in model._forward_pre_hooks.values():
        model.register_forward_pre_hook(_gather_before_forward)
        model.register_forward_hook(_drop_after_forward, always_call=True)
    return model


__all__ = ['enable_early_block_gather']
