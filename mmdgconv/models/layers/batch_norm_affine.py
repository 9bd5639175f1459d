"""The per-channel affine map of an eval-mode BatchNorm, kept between calls.

In eval mode a BatchNorm is ``y * scale + shift`` with ``scale = weight /
sqrt(running_var + eps)`` and ``shift = bias - running_mean * scale``. A
layer that scales its output per channel anyway (PEDConv's gamma) can take
that map into its own scaling and spare a pass over the activations (see
:meth:`~mmdgconv.models.layers.PEDConv2d.forward_with_affine`). At batch 1
the four small ops that compute the map cost about as much as the pass they
spare, so the map is kept and recomputed only when the norm's tensors
change.
"""
from typing import Dict, Optional, Tuple

import torch
from torch import Tensor, nn
from torch.nn.modules.batchnorm import _BatchNorm


def batch_norm_affine(norm: nn.Module) -> Optional[Tuple[Tensor, Tensor]]:
    """``scale, shift`` with ``norm(y) == y * scale + shift`` (per channel).

    Args:
        norm (nn.Module): A norm layer.

    Returns:
        tuple[Tensor, Tensor] | None: Each of shape (C,); None unless
        ``norm`` is a BatchNorm that normalises with its running statistics
        (eval mode, ``track_running_stats``).
    """
    if (not isinstance(norm, _BatchNorm) or norm.training
            or norm.running_mean is None or norm.running_var is None):
        return None
    scale = torch.rsqrt(norm.running_var + norm.eps)
    if norm.weight is not None:
        scale = scale * norm.weight
    shift = -norm.running_mean * scale
    if norm.bias is not None:
        shift = shift + norm.bias
    return scale, shift


def _state(norm: _BatchNorm) -> Optional[tuple]:
    """What the map depends on: each tensor's storage and version (an
    optimizer step and ``load_state_dict`` bump the version; ``.to()`` gives
    new storage), and eps. The batch-norm kernel updates the running
    statistics without bumping their versions, but a training forward also
    counts the batch in ``num_batches_tracked``, whose version it bumps.
    None where versions are not tracked (tensors made under
    ``torch.inference_mode``).
    """
    # (The module's dicts directly: this runs once per layer and forward,
    # and module attribute lookup costs as much as the rest.)
    buffers, params = norm._buffers, norm._parameters
    try:
        return (norm.eps, ) + tuple(
            None if tensor is None else
            (tensor.data_ptr(), tensor.dtype, tensor._version)
            for tensor in (buffers.get('running_mean'),
                           buffers.get('running_var'), params.get('weight'),
                           params.get('bias'),
                           buffers.get('num_batches_tracked')))
    except RuntimeError:  # an inference tensor has no version counter
        return None


class BatchNormAffineCache:
    """:func:`batch_norm_affine`, computed once per change of the norm.

    Owned by the module that uses the norms (a block); keyed by the norm
    module itself. Under ``torch.compile`` and tracing the map is computed
    in the graph instead.

    Example:
        >>> import torch
        >>> norm = torch.nn.BatchNorm2d(4).eval()
        >>> cache = BatchNormAffineCache()
        >>> scale, shift = cache(norm)
        >>> y = torch.rand(1, 4, 2, 2)
        >>> torch.allclose(norm(y), y * scale[:, None, None]
        ...                + shift[:, None, None])
        True
    """

    def __init__(self) -> None:
        self._entries: Dict[int, tuple] = {}

    def __call__(self, norm: nn.Module) -> Optional[Tuple[Tensor, Tensor]]:
        if (torch.compiler.is_compiling() or torch.jit.is_tracing()
                or torch.is_grad_enabled()):
            return batch_norm_affine(norm)
        if not isinstance(norm, _BatchNorm):
            return None
        state = _state(norm)
        entry = self._entries.get(id(norm))
        if (entry is not None and entry[0] is norm and state is not None
                and entry[1] == state):
            return entry[2]
        affine = batch_norm_affine(norm)
        if state is not None and affine is not None:
            self._entries[id(norm)] = (norm, state, affine)
        return affine

    def clear(self) -> None:
        """Forget every map (the owner's ``train()`` calls this)."""
        self._entries.clear()

    def __deepcopy__(self, memo) -> 'BatchNormAffineCache':
        return BatchNormAffineCache()  # a copy's norms are new modules

    def __getstate__(self) -> dict:
        return {'_entries': {}}


__all__ = ['BatchNormAffineCache', 'batch_norm_affine']
