"""The phase-split input gradient of a stride-2 3x3 conv equals the
transposed conv, and is chosen only where it applies."""
import pytest
import torch
import torch.nn.functional as F

from mmdgconv.models.layers.phase_split_grad import (phase_split_input_grad,
                                                     prefers_phase_split)


@pytest.mark.parametrize('in_channels,out_channels,groups', [
    (8, 8, 1),
    (8, 16, 2),  # more outputs than inputs per group
    (16, 8, 4),
    (6, 6, 6),  # depthwise
])
@pytest.mark.parametrize('height,width', [(6, 6), (8, 10), (2, 4)])
def test_equals_the_transposed_conv(in_channels, out_channels, groups,
                                    height, width):
    torch.manual_seed(0)
    x = torch.randn(2, in_channels, height, width, dtype=torch.float64,
                    requires_grad=True)
    weight = torch.randn(out_channels, in_channels // groups, 3, 3,
                         dtype=torch.float64)
    out = F.conv2d(x, weight, stride=2, padding=1, groups=groups)
    grad_out = torch.randn_like(out)
    out.backward(grad_out)
    actual = phase_split_input_grad(grad_out, weight, groups)
    assert actual.is_contiguous()
    torch.testing.assert_close(actual, x.grad, rtol=1e-12, atol=1e-12)


def test_low_precision():
    torch.manual_seed(0)
    grad_out = torch.randn(2, 8, 5, 5, dtype=torch.bfloat16)
    weight = torch.randn(8, 4, 3, 3, dtype=torch.bfloat16)
    expected, _, _ = torch.ops.aten.convolution_backward(
        grad_out.double(), torch.empty(2, 8, 10, 10, dtype=torch.float64),
        weight.double(), None, [2, 2], [1, 1], [1, 1], False, [0, 0], 2,
        [True, False, False])
    actual = phase_split_input_grad(grad_out, weight, 2)
    assert actual.dtype == torch.bfloat16
    torch.testing.assert_close(actual.double(), expected, rtol=2e-2,
                               atol=5e-2)


WIDE = dict(weight_shape=(256, 64, 3, 3), input_size=(8, 256, 56, 56),
            stride=(2, 2), padding=(1, 1), dilation=(1, 1), device='cpu')


@pytest.mark.parametrize('change,chosen', [
    ({}, True),
    (dict(weight_shape=(256, 16, 3, 3)), False),  # narrow groups
    (dict(input_size=(8, 256, 28, 28)), False),  # small image
    (dict(input_size=(8, 256, 56, 55)), False),  # odd width
    (dict(stride=(1, 1)), False),
    (dict(padding=(2, 2), dilation=(2, 2)), False),
    (dict(weight_shape=(256, 64, 1, 1), padding=(0, 0)), False),
    (dict(device='cuda'), False),  # not measured there: the plain path
    (dict(device=torch.device('cuda', 1)), False),
])
def test_chosen_only_where_it_applies(change, chosen):
    assert prefers_phase_split(**{**WIDE, **change}) is chosen
