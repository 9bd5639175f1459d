"""Every operator under autocast: its convolutions, forward and backward,
run in the autocast dtype, its output has the stock conv's dtype, and its
output and every gradient match float32 within that dtype's precision."""
import copy

import pytest
import torch
import torch.nn as nn
from torch.utils._python_dispatch import TorchDispatchMode

from operator_cases import OPERATORS

aten = torch.ops.aten

#: Relative (to the reference's norm) error allowed per autocast dtype.
TOLERANCE = {torch.bfloat16: 4e-2, torch.float16: 5e-3}


class _ConvDtypes(TorchDispatchMode):
    """Records the input and weight dtypes of every convolution, forward
    and backward, as dispatched (after autocast), and of every batched GEMM
    (PEDConv's per-sample 1x1 matrices), forward or inside backward."""

    def __init__(self):
        super().__init__()
        self.seen = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if func is aten.convolution.default:
            self.seen.append(('forward', args[0].dtype, args[1].dtype))
        elif func is aten.convolution_backward.default:
            self.seen.append(('backward', args[1].dtype, args[2].dtype))
        elif func is aten.bmm.default:
            in_backward = torch._C._current_graph_task_id() != -1
            self.seen.append(('backward bmm' if in_backward else
                              'forward bmm', args[0].dtype, args[1].dtype))
        return func(*args, **(kwargs or {}))


def _run(layer, x, dtype, seed=0):
    x = x.clone().requires_grad_(True)
    layer.zero_grad(set_to_none=True)
    torch.manual_seed(seed)  # PEDConv's noise: the same draws
    with torch.autocast('cpu', dtype=dtype, enabled=dtype is not None):
        out = layer(x)
    if layer.training:
        (out.float() * torch.linspace(-1, 1, out.numel()).reshape(
            out.shape)).sum().backward()
    grads = {'input': x.grad}
    grads.update({n: p.grad for n, p in layer.named_parameters()})
    return out, grads


def _relative_error(actual, expected):  # of the whole tensor
    expected = expected.double()
    return ((actual.double() - expected).norm() /
            expected.norm().clamp_min(1e-12)).item()


@pytest.mark.parametrize('dtype', [torch.bfloat16, torch.float16],
                         ids=['bf16', 'fp16'])
@pytest.mark.parametrize('training', [True, False], ids=['train', 'eval'])
@pytest.mark.parametrize('name', sorted(OPERATORS))
def test_autocast_computes_in_the_autocast_dtype_and_matches_float32(
        name, training, dtype):
    make, channels = OPERATORS[name]
    torch.manual_seed(0)
    layer = make().train(training)
    x = torch.randn(2, *channels, 12, 12)
    reference = copy.deepcopy(layer)
    expected, expected_grads = _run(reference, x, None)

    recorder = _ConvDtypes()
    with recorder:
        out, grads = _run(layer, x, dtype)
    stock = nn.Conv2d(4, 4, 1)
    with torch.autocast('cpu', dtype=dtype):
        stock_dtype = stock(torch.rand(1, 4, 2, 2)).dtype
    assert out.dtype == stock_dtype == dtype
    seen = recorder.seen
    # The layer's product (a conv, or PEDConv's per-sample batched GEMM)
    # runs in the autocast dtype, forward and backward ...
    assert any(kind.startswith('forward') and a == w == dtype
               for kind, a, w in seen), seen
    if training:
        assert any(kind.startswith('backward') and a == w == dtype
                   for kind, a, w in seen), seen
    # ... and so does every conv (parameter-only GEMMs, e.g. CoC's kernel
    # generation, may stay in float32).
    assert all(a == w == dtype for kind, a, w in seen
               if not kind.endswith('bmm')), seen

    tolerance = TOLERANCE[dtype]
    assert _relative_error(out, expected) < tolerance
    if training:
        # A gradient that is zero in arithmetic (CoC's super-norm bias: the
        # final standardisation removes the shift) is rounding noise in
        # float32 too; it is held to a floor set by the largest gradient.
        floor = 1e-6 * max(g.double().norm().item()
                           for g in expected_grads.values() if g is not None)
        for key, grad in expected_grads.items():
            if grad is None:
                assert grads[key] is None, key
                continue
            assert grads[key].dtype == grad.dtype, key  # float32 params
            error = (grads[key].double() - grad.double()).norm().item()
            assert error <= tolerance * grad.double().norm().item() + floor, \
                (key, error)
