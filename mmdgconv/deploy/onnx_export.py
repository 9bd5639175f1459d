"""Exporting a deployed model's tensor forward to ONNX, and checking the
file in onnxruntime against PyTorch.

The graph's input, named ``input``, is the model's preprocessed batch (what
its ``data_preprocessor`` gives: normalised and padded). Its outputs are the
raw network outputs, without post-processing:

- classifiers (mmpretrain): the head's class scores;
- recognisers (mmaction2): the head's class scores of each clip, the input
  being (N, segments, C, H, W);
- single-stage detectors (mmdet, e.g. RetinaNet): the head's class scores
  and box deltas of every FPN level;
- two-stage detectors (Faster / Mask R-CNN): the FPN features and the RPN
  head's scores and deltas of every level; the RoI heads run on proposals,
  which come out of the post-processing (NMS).

With ``end2end`` a detector exports its whole inference instead, NMS
included, to mmdeploy's ``dets`` and ``labels`` (see
:mod:`.detection_end2end`).

Training forms are refused with the converter to run first: DGConv layers
that still learn their groups (``tools/model_converters/dgconv_to_static.py``)
and CoC layers that still generate their kernels
(``tools/model_converters/coc_to_static.py``). PEDConv has no static form:
its per-sample kernels export as the dynamic ops they are.
"""
import os
import os.path as osp
from typing import List, Optional, Sequence, Tuple

import torch
import torch.nn as nn

from .checkpoint_io import ConversionError, finish_temp_file, temp_file_for


class TrainingFormError(ConversionError):
    """A layer is still in its training form; the message names it and the
    converter that deploys it."""


def check_exportable(model: nn.Module) -> None:
    """Refuse layers whose training form has a static deployed form.

    Raises:
        TrainingFormError: Naming the first such layer and its converter.
    """
    from mmdgconv.models.layers import CoCConv2d, DGConv2d
    for name, module in model.named_modules():
        if isinstance(module, DGConv2d) and module.has_gates and \
                not module.deploy:
            raise TrainingFormError(
                f'{name} is a DGConv layer in its training form (learned '
                'gates); convert the checkpoint to static grouped convs with '
                'tools/model_converters/dgconv_to_static.py and export that')
        if isinstance(module, CoCConv2d) and not module.deploy:
            raise TrainingFormError(
                f'{name} is a CoC layer in its training form (generated '
                'kernels); convert the checkpoint to plain convs with '
                'tools/model_converters/coc_to_static.py and export that')


def _flatten(outputs) -> List[torch.Tensor]:
    if isinstance(outputs, torch.Tensor):
        return [outputs]
    return [t for item in outputs for t in _flatten(item)]


class TensorGraph(nn.Module):
    """The raw tensor forward of a classifier, recogniser or detector, with
    one input and a flat tuple of outputs (what ONNX graphs take)."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model
        module = type(model).__module__
        if module.startswith('mmaction'):
            self.kind = 'recognizer'
        elif module.startswith('mmpretrain'):
            self.kind = 'classifier'
        elif module.startswith('mmdet'):
            two_stage = hasattr(model, 'rpn_head') and hasattr(
                model, 'roi_head')
            self.kind = 'two-stage detector' if two_stage else 'detector'
        else:
            raise ConversionError(
                f'cannot export a {type(model).__name__}: expected an '
                'mmpretrain classifier, an mmaction2 recogniser or an mmdet '
                'detector')

    def output_names(self, count: int) -> List[str]:
        if self.kind in ('classifier', 'recognizer'):
            return ['scores'] if count == 1 else [
                f'scores_{i}' for i in range(count)]
        return [f'output_{i}' for i in range(count)]

    def forward(self, input: torch.Tensor) -> Tuple[torch.Tensor, ...]:
        model = self.model
        if self.kind == 'classifier':
            return tuple(_flatten(model(input, mode='tensor')))
        if self.kind == 'recognizer':
            scores, _ = model.extract_feat(input, stage='head')
            return tuple(_flatten(scores))
        features = model.extract_feat(input)
        if self.kind == 'detector':
            return tuple(_flatten(model.bbox_head(features)))
        return tuple(_flatten(features)) + tuple(
            _flatten(model.rpn_head(features)))


def example_input(model: nn.Module, shape: Sequence[int],
                  seed: int = 0) -> torch.Tensor:
    """A random preprocessed batch of one for ``model`` at ``shape`` (H,
    W): (1, 3, H, W), or (1, 3 segments, 3, H, W) for a recogniser."""
    generator = torch.Generator().manual_seed(seed)
    height, width = shape
    if type(model).__module__.startswith('mmaction'):
        return torch.randn(1, 3, 3, height, width, generator=generator)
    return torch.randn(1, 3, height, width, generator=generator)


def write_onnx(module: nn.Module, inputs: torch.Tensor, out_path: str,
               output_names: Optional[Sequence[str]] = None,
               opset: int = 17) -> None:
    """Trace ``module`` on ``inputs`` (named ``input``) with torch's
    TorchScript-based exporter and write the graph to ``out_path``
    atomically: beside it first, moved there only when complete, removed on
    any failure."""
    handle, tmp_path = temp_file_for(out_path)
    os.close(handle)
    try:
        with torch.no_grad():
            torch.onnx.export(
                module, (inputs, ), tmp_path, input_names=['input'],
                output_names=list(output_names) if output_names else None,
                opset_version=opset, dynamo=False)
        finish_temp_file(tmp_path, out_path)
    except BaseException:
        if osp.exists(tmp_path):
            os.remove(tmp_path)
        raise


def export_onnx(model: nn.Module, out_path: str, shape: Sequence[int],
                opset: int = 17,
                end2end: bool = False) -> Tuple[nn.Module, torch.Tensor]:
    """Export ``model``'s tensor forward at ``shape`` to ``out_path``
    (atomically, see :func:`write_onnx`).

    Args:
        end2end (bool): For a detector, export its inference with the
            post-processing, whose outputs are ``dets`` and ``labels``
            (:mod:`.detection_end2end`). Default: False.

    Returns:
        tuple[nn.Module, Tensor]: The exported module (a
        :class:`TensorGraph`, or the end-to-end detector) and the example
        input it was traced with.

    Raises:
        TrainingFormError: A layer must be converted first.
        ConversionError: ``end2end`` for a model it does not cover.
    """
    check_exportable(model)
    model.eval()
    inputs = example_input(model, shape)
    if end2end:
        from .detection_end2end import end2end_graph
        graph = end2end_graph(model, shape)
        names = ['dets', 'labels']
    else:
        graph = TensorGraph(model).eval()
        with torch.no_grad():
            names = graph.output_names(len(graph(inputs)))
    write_onnx(graph, inputs, out_path, names, opset)
    return graph, inputs


def verify_onnx(onnx_path: str, graph: nn.Module, inputs: torch.Tensor,
                rtol: float = 1e-4) -> float:
    """Run the file in onnxruntime on ``inputs`` and compare every output
    with PyTorch's ``graph(inputs)``. (An end-to-end detector's detections
    are compared with
    :func:`~mmdgconv.deploy.detection_end2end.match_detections`.)

    Returns:
        float: The largest relative difference, ``max |ort - torch|`` over
        ``max |torch|`` of each output.

    Raises:
        ConversionError: Above ``rtol``, or a different number or shape of
            outputs.
    """
    import onnxruntime
    session = onnxruntime.InferenceSession(
        onnx_path, providers=['CPUExecutionProvider'])
    with torch.no_grad():
        expected = [t.numpy() for t in graph(inputs)]
    actual = session.run(None, {'input': inputs.numpy()})
    if len(actual) != len(expected):
        raise ConversionError(
            f'{onnx_path} gives {len(actual)} outputs, PyTorch '
            f'{len(expected)}')
    worst = 0.0
    for index, (ort, ref) in enumerate(zip(actual, expected)):
        if ort.shape != ref.shape:
            raise ConversionError(
                f'{onnx_path}: output {index} has shape {ort.shape} in '
                f'onnxruntime and {ref.shape} in PyTorch')
        scale = max(float(abs(ref).max()), 1e-12)
        worst = max(worst, float(abs(ort - ref).max()) / scale)
    if worst > rtol:
        raise ConversionError(
            f'{onnx_path} differs from PyTorch by {worst:.2e} (relative), '
            f'above {rtol:.0e}')
    return worst
