"""The input gradient of a stride-2 3x3 conv, split by output phase.

The input gradient of ``conv2d(x, w, stride=2, padding=1)`` writes every
even row of ``x`` from the kernel's middle row only, and every odd row from
its first and last rows; columns alike. So it splits into four stride-1
convs of the output gradient, one per (row, column) parity, with 1x1, 1x2,
2x1 and 2x2 sub-kernels of the channel-transposed weight: the same
arithmetic as the transposed conv, interleaved into the result.

On this project's CPU stack (oneDNN in PyTorch 2.14) the transposed conv of
wide groups over a large image leaves oneDNN's fast kernels, while narrow
groups and small images stay fast natively. Where the split pays off is a
device choice (:mod:`~mmdgconv.models.layers.tuning`), read by
:func:`prefers_phase_split`.
"""
from typing import Sequence

import torch.nn.functional as F
from torch import Tensor

from .tuning import tuning_for

# Kernel taps per output parity, in the order they meet the zero-padded
# output gradient: an even position reads the middle tap at offset 0, an
# odd one the last tap at offset 0 and the first at offset 1.
_TAPS = ([1], [2, 0])


def prefers_phase_split(weight_shape: Sequence[int],
                        input_size: Sequence[int], stride, padding,
                        dilation, device) -> bool:
    """Whether :func:`phase_split_input_grad` applies and beats the
    transposed conv: a 3x3 kernel at stride 2, padding 1 and dilation 1,
    an input of even height and width, and (as measured for ``device``'s
    type) wide groups and a large image.

    Args:
        weight_shape (Sequence[int]): (C_out, C_in / groups, k_h, k_w).
        input_size (Sequence[int]): (N, C_in, H, W).
        stride, padding, dilation: Pairs of ints, as the conv's.
        device (torch.device | str): Where the conv runs.
    """
    tuning = tuning_for(device)
    if tuning.phase_split_min_group_width is None:
        return False
    height, width = input_size[2:]
    return (tuple(weight_shape[2:]) == (3, 3) and tuple(stride) == (2, 2)
            and tuple(padding) == (1, 1) and tuple(dilation) == (1, 1)
            and height % 2 == 0 and width % 2 == 0
            and weight_shape[1] >= tuning.phase_split_min_group_width
            and (height // 2) * (width // 2)
            >= tuning.phase_split_min_output_pixels)


def phase_split_input_grad(grad_out: Tensor, weight: Tensor,
                           groups: int) -> Tensor:
    """Gradient wrt the input of ``conv2d(x, weight, stride=2, padding=1,
    groups=groups)`` for an input of twice ``grad_out``'s height and width.

    Args:
        grad_out (Tensor): (N, C_out, H/2, W/2).
        weight (Tensor): (C_out, C_in / groups, 3, 3).
        groups (int): Conv groups.

    Returns:
        Tensor: (N, C_in, H, W), contiguous.
    """
    n, out_channels, height, width = grad_out.shape
    in_per_group = weight.shape[1]
    in_channels = in_per_group * groups
    # Per group, the transposed conv maps output channels to input ones.
    transposed = weight.reshape(groups, out_channels // groups, in_per_group,
                                3, 3).transpose(1, 2).reshape(
                                    in_channels, out_channels // groups, 3, 3)
    # Odd positions read one row (column) beyond the last: zero.
    padded = F.pad(grad_out, (0, 1, 0, 1))
    grad_in = grad_out.new_empty(n, in_channels, height, 2, width, 2)
    for row_parity, row_taps in enumerate(_TAPS):
        for col_parity, col_taps in enumerate(_TAPS):
            kernel = transposed[:, :, row_taps][:, :, :, col_taps]
            source = padded[:, :, :height + len(row_taps) - 1,
                            :width + len(col_taps) - 1]
            grad_in[:, :, :, row_parity, :, col_parity] = F.conv2d(
                source, kernel, groups=groups)
    return grad_in.view(n, in_channels, 2 * height, 2 * width)


__all__ = ['phase_split_input_grad', 'prefers_phase_split']
