"""Comparing a model's outputs before and after a conversion."""
from typing import List

import torch


def random_inputs(model: torch.nn.Module, size: int, batch: int = 2,
                  seed: int = 0):
    """A random batch in the layout the model's toolbox expects.

    Args:
        model (nn.Module): A detector, a recogniser or a classifier.
        size (int): Image height and width.
        batch (int): Batch size. Default: 2.
        seed (int): Random seed. Default: 0.

    Returns:
        tuple[Tensor, list | None]: Inputs and the data samples that
        ``forward(mode='tensor')`` needs (None when it needs none).
    """
    generator = torch.Generator().manual_seed(seed)
    module = type(model).__module__
    if module.startswith('mmaction'):
        # Recognisers take (N, segments, C, H, W).
        return torch.rand(batch, 3, 3, size, size, generator=generator), None
    inputs = torch.rand(batch, 3, size, size, generator=generator)
    if module.startswith('mmdet'):
        from mmdet.structures import DetDataSample
        meta = dict(img_shape=(size, size), pad_shape=(size, size),
                    batch_input_shape=(size, size), ori_shape=(size, size),
                    scale_factor=(1.0, 1.0))
        return inputs, [DetDataSample(metainfo=meta) for _ in range(batch)]
    return inputs, None


def _tensors(output) -> List[torch.Tensor]:
    if isinstance(output, torch.Tensor):
        return [output]
    if isinstance(output, dict):
        output = list(output.values())
    if isinstance(output, (list, tuple)):
        return [t for item in output for t in _tensors(item)]
    return []


@torch.no_grad()
def model_outputs(model: torch.nn.Module, inputs, data_samples,
                  proposals=None):
    """Every tensor the model computes from ``inputs``, in eval mode.

    For a two-stage detector the features, the RPN outputs and the RoI head
    outputs are compared on the *given* proposals: proposal selection (top-k
    and NMS over near-tied scores) would turn a 1e-6 difference into a
    different set of boxes, which says nothing about the conversion.

    Args:
        model (nn.Module): The model.
        inputs (Tensor): As from :func:`random_inputs`.
        data_samples (list, optional): As from :func:`random_inputs`.
        proposals (list, optional): RoI proposals to reuse (two-stage
            detectors); None computes them with this model.

    Returns:
        tuple[list[Tensor], list | None]: The tensors and the proposals used.
    """
    model.eval()
    if hasattr(model, 'rpn_head') and hasattr(model, 'roi_head'):
        features = model.extract_feat(inputs)
        if proposals is None:
            proposals = model.rpn_head.predict(features, data_samples,
                                               rescale=False)
        roi = model.roi_head.forward(features, proposals, data_samples)
        return _tensors(features) + _tensors(
            model.rpn_head(features)) + _tensors(roi), proposals
    if hasattr(model, 'data_preprocessor') and 'mode' in \
            model.forward.__code__.co_varnames:
        return _tensors(model(inputs, data_samples, mode='tensor')), None
    return _tensors(model(inputs)), None


def max_abs_difference(before: List[torch.Tensor],
                       after: List[torch.Tensor]) -> float:
    """The largest absolute difference between two output lists."""
    if len(before) != len(after) or any(
            a.shape != b.shape for a, b in zip(before, after)):
        return float('inf')
    return max((a - b).abs().max().item() for a, b in zip(before, after))
