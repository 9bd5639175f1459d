"""Speed choices that depend on the device, in one place.

The operators compute the same values on every path; some paths are only
faster on some backends. Each choice below is keyed by device type and was
set by the benchmark its field names. A device type without an entry (CUDA
included, until it is measured there) gets :data:`PLAIN`: the plain paths,
which are the ones any backend runs well.

To try another setting, replace an entry, e.g. in a test::

    monkeypatch.setitem(TUNINGS, 'cpu', dataclasses.replace(
        TUNINGS['cpu'], dgconv_narrow_width=0))
"""
from dataclasses import dataclass
from typing import Dict, Optional, Union

import torch


@dataclass(frozen=True)
class DeviceTuning:
    """The speed choices of one device type.

    Attributes:
        dgconv_narrow_width (int): DGConv layers whose groups are at most
            this many channels wide get their gate gradients from weight
            gradients over merged groups (oneDNN's grouped weight gradient
            is slower at 4 channels per group than at 32, although it does
            an eighth of the work). 0: never. Set by
            ``benchmarks/bench_dgconv.py`` (train step at the random init).
        dgconv_merged_bits (int): Split bits merged per pass (3 was best at
            4 and 8 channels per group on ResNeXt-50's layers).
        dgconv_merged_width (int): Merge more bits where ``merged_bits``
            leaves merged groups narrower than this (1- and 2-channel
            groups, which random gate patterns produce).
        phase_split_min_group_width (int, optional): The input gradient of
            a stride-2 3x3 conv is split by output phase when its groups
            are at least this wide (``None``: never); see
            :mod:`~mmdgconv.models.layers.phase_split_grad`. Set by
            ``benchmarks/bench_dgconv.py`` (train step, 32 groups).
        phase_split_min_output_pixels (int): ... and its output has at
            least this many pixels.
        ped_deep_layer_columns (bool): A PEDConv k x k layer with fewer
            output pixels than output channels scales the unfolded input
            and multiplies once by the shared weight, instead of running a
            per-sample conv. Set by ``benchmarks/bench_pedconv.py``.
        ped_batch1_folded_kernel (bool): At batch 1, a PEDConv layer whose
            weight is smaller than its activations folds every factor into
            its one kernel instead of scaling the input and the output. Set
            by ``benchmarks/bench_pedconv.py`` (inference, batch 1).
        ped_batch1_columns_min_weight (int): At batch 1, the column form
            (``ped_deep_layer_columns``) is kept only for kernels of at least
            this many elements; smaller deep layers scale their input and
            output and convolve with ``W * psi``, which oneDNN's direct conv
            runs faster than the column GEMM. Set by
            ``benchmarks/bench_pedconv.py`` (inference, batch 1).
        ped_matmul_min_activation_ratio (float): Above batch 1, a PEDConv
            1x1 layer whose activations (input and output, per sample) are
            at least this many times its weight runs every sample's own
            weight matrix in one batched GEMM instead of scaling its input
            and output. 0: never. Set by ``benchmarks/bench_pedconv.py``
            (train step and inference, batch 8).
    """

    dgconv_narrow_width: int = 0
    dgconv_merged_bits: int = 1
    dgconv_merged_width: int = 1
    phase_split_min_group_width: Optional[int] = None
    phase_split_min_output_pixels: int = 0
    ped_deep_layer_columns: bool = False
    ped_batch1_folded_kernel: bool = False
    ped_batch1_columns_min_weight: int = 0
    ped_matmul_min_activation_ratio: float = 0


#: The plain paths, for any device type not measured.
PLAIN = DeviceTuning()

#: Device type -> its measured choices. Measured on this project's CPU
#: stack (oneDNN in PyTorch 2.14, 2 threads); the figures are in README's
#: benchmark section.
TUNINGS: Dict[str, DeviceTuning] = {
    'cpu': DeviceTuning(
        dgconv_narrow_width=8,
        dgconv_merged_bits=3,
        dgconv_merged_width=32,
        phase_split_min_group_width=32,
        phase_split_min_output_pixels=28 * 28,
        ped_deep_layer_columns=True,
        ped_batch1_folded_kernel=True,
        ped_batch1_columns_min_weight=1 << 20,
        ped_matmul_min_activation_ratio=4),
}


def tuning_for(device: Union[str, torch.device, None]) -> DeviceTuning:
    """The speed choices for ``device`` (a device, its type, or ``None``
    for the CPU)."""
    if device is None:
        return TUNINGS.get('cpu', PLAIN)
    kind = device if isinstance(device, str) else device.type
    return TUNINGS.get(kind.split(':')[0], PLAIN)


__all__ = ['DeviceTuning', 'PLAIN', 'TUNINGS', 'tuning_for']
