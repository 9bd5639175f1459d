"""Argument and input checks shared by every operator.

``nn.Conv2d`` accepts a zero kernel size, stride or channel count at
construction and fails later, deep inside the first forward, with a message
that names no layer. The operators check at construction instead, and name
the layer and the expected channels when an input does not fit.
"""
from typing import Optional, Tuple, Union

from torch import Tensor

_Size = Union[int, Tuple[int, ...]]


def _as_tuple(value: _Size) -> tuple:
    return tuple(value) if isinstance(value, (tuple, list)) else (value, )


def check_conv_args(name: str,
                    in_channels: int,
                    out_channels: int,
                    kernel_size: _Size,
                    stride: _Size = 1,
                    padding: Union[_Size, str] = 0,
                    dilation: _Size = 1) -> None:
    """Refuse what no convolution can compute.

    Args:
        name (str): The layer, as the error should name it.
        in_channels, out_channels, kernel_size, stride, padding, dilation:
            As ``nn.Conv2d``.

    Raises:
        ValueError: A channel count, kernel size, stride or dilation below 1,
            or a negative padding.
    """
    for label, value in (('in_channels', in_channels),
                         ('out_channels', out_channels)):
        if not isinstance(value, int) or value < 1:
            raise ValueError(f'{name}: {label} must be a positive integer, '
                             f'got {value!r}')
    for label, value in (('kernel_size', kernel_size), ('stride', stride),
                         ('dilation', dilation)):
        if any(not isinstance(v, int) or v < 1 for v in _as_tuple(value)):
            raise ValueError(f'{name}: {label} must be positive, got '
                             f'{value!r}')
    if not isinstance(padding, str) and any(
            not isinstance(v, int) or v < 0 for v in _as_tuple(padding)):
        raise ValueError(f'{name}: padding must be non-negative, got '
                         f'{padding!r}')


def check_input_channels(layer, x: Tensor,
                         group: Optional[int] = None) -> None:
    """Name the layer and the expected shape when ``x`` does not fit.

    Args:
        layer: The operator, with ``in_channels`` and ``out_channels``.
        x (Tensor): Its input.
        group (int, optional): For a map on a group, the group's size: the
            input is then (N, C, group, H, W). Default: None, (N, C, H, W).

    Raises:
        ValueError: ``x`` has other dimensions or channels.
    """
    expected = (layer.in_channels, ) if group is None else (
        layer.in_channels, group)
    if x.dim() != 3 + len(expected) or tuple(
            x.shape[1:1 + len(expected)]) != expected:
        shape = ', '.join(str(n) for n in ('N', ) + expected + ('H', 'W'))
        raise ValueError(
            f'{type(layer).__name__}(in_channels={layer.in_channels}, '
            f'out_channels={layer.out_channels}) expects input of shape '
            f'({shape}), got {tuple(x.shape)}.')
