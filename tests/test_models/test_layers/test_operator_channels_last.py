"""channels_last inputs: every operator gives the contiguous results and
returns the memory format nn.Conv2d would, in training and eval."""
import copy

import pytest
import torch
import torch.nn as nn
from operator_cases import OPERATORS


def _as_channels_last(x):
    """A channels_last input; for a map on a group (N, C, |G|, H, W), the
    layout whose (N, C * |G|, H, W) view is channels_last, as a lifting
    conv on a channels_last input produces it."""
    if x.dim() == 4:
        return x.contiguous(memory_format=torch.channels_last)
    flat = x.flatten(1, 2).contiguous(memory_format=torch.channels_last)
    return flat.unflatten(1, x.shape[1:3])


def _is_channels_last(t):
    flat = t if t.dim() == 4 else t.flatten(1, 2)
    return flat.is_contiguous(memory_format=torch.channels_last)


def _forward_backward(layer, x):
    x = x.detach().requires_grad_(layer.training)
    torch.manual_seed(1)  # PEDConv's noise: the same draws
    out = layer(x)
    grads = {}
    if layer.training:
        (out * torch.linspace(-1, 1, out.numel()).reshape(out.shape)).sum(
        ).backward()
        grads = {'input': x.grad}
        grads.update({n: p.grad for n, p in layer.named_parameters()})
    return out, grads


@pytest.mark.parametrize('batch', [1, 3])
@pytest.mark.parametrize('training', [True, False], ids=['train', 'eval'])
@pytest.mark.parametrize('name', sorted(OPERATORS))
def test_channels_last_gives_the_contiguous_results_in_its_layout(
        name, training, batch):
    make, channels = OPERATORS[name]
    torch.manual_seed(0)
    layer = make().train(training)
    x = torch.randn(batch, *channels, 10, 10)
    expected, expected_grads = _forward_backward(copy.deepcopy(layer), x)
    x_last = _as_channels_last(x)
    assert _is_channels_last(x_last) and not x_last.is_contiguous()
    out, grads = _forward_backward(layer, x_last)

    stock = nn.Conv2d(x.flatten(1, -3).shape[1], 4, 3, padding=1)
    stock_out = stock(x_last.flatten(1, -3) if x.dim() == 5 else x_last)
    # The layout nn.Conv2d gives this input (for a map on a group, the conv
    # over its (N, C * |G|, H, W) view): channels_last for every 4-D one.
    assert _is_channels_last(out) == _is_channels_last(stock_out)
    assert x.dim() == 5 or _is_channels_last(out)
    scale = expected.abs().max().item()
    torch.testing.assert_close(out, expected, rtol=1e-5, atol=1e-5 * scale)
    for key, grad in expected_grads.items():
        if grad is None:
            assert grads[key] is None
            continue
        torch.testing.assert_close(
            grads[key], grad, rtol=1e-4,
            atol=1e-5 * max(g.abs().max().item()
                            for g in expected_grads.values()
                            if g is not None))
