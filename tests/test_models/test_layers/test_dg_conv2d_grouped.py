"""The grouped DGConv path equals the dense formulation exactly: forward,
input grad, weight grad and every gate grad, for any gate pattern."""
import dataclasses
import itertools

import pytest
import torch

from mmdgconv.models.layers import DGConv2d, dg_conv2d_grouped
from mmdgconv.models.layers.dg_conv2d_grouped import GroupLayout
from mmdgconv.models.layers.tuning import TUNINGS


def _pair(in_channels, out_channels, gates, **kwargs):
    dense = DGConv2d(in_channels, out_channels, impl='dense', **kwargs)
    grouped = DGConv2d(in_channels, out_channels, impl='grouped', **kwargs)
    grouped.load_state_dict(dense.state_dict())
    with torch.no_grad():
        for layer in (dense, grouped):
            layer.gate.copy_(torch.tensor(gates))
    return dense, grouped


def _step(layer, x, grad_out):
    x = x.clone().requires_grad_()
    out = layer(x)
    (out * grad_out).sum().backward()
    grads = dict(out=out.detach(), x=x.grad, weight=layer.weight.grad,
                 gate=layer.gate.grad)
    if layer.bias is not None:
        grads['bias'] = layer.bias.grad
    return grads


def _assert_same(dense, grouped, x):
    grad_out = torch.randn_like(dense(x))
    expected, actual = _step(dense, x, grad_out), _step(grouped, x, grad_out)
    for key, value in expected.items():
        torch.testing.assert_close(actual[key], value, rtol=1e-5, atol=1e-5,
                                   msg=lambda m: f'{key}: {m}')


# Every pattern of a 3-gate layer: all split, all merged, interleaved...
@pytest.mark.parametrize('gates',
                         list(itertools.product([-1., 1.], repeat=3)))
def test_every_gate_pattern_square(gates):
    torch.manual_seed(0)
    dense, grouped = _pair(8, 8, gates, kernel_size=3, padding=1)
    _assert_same(dense, grouped, torch.randn(2, 8, 7, 7))


@pytest.mark.parametrize('in_channels,out_channels,gates', [
    (8, 32, [-1., 1., -1.]),  # GroupUp, interleaved
    (8, 32, [-1., -1., -1.]),
    (32, 8, [1., -1., -1.]),  # GroupDown
    (32, 8, [-1., 1., 1.]),
    (16, 32, [1., -1., 1., -1.]),
])
@pytest.mark.parametrize('conv', [
    dict(kernel_size=3, stride=2, padding=2, dilation=2, bias=True),
    dict(kernel_size=1, stride=1, padding=0, bias=False),
    dict(kernel_size=3, stride=1, padding=1, bias=True,
         padding_mode='reflect'),
])
def test_group_up_down_with_stride_dilation_bias(in_channels, out_channels,
                                                 gates, conv):
    torch.manual_seed(1)
    dense, grouped = _pair(in_channels, out_channels, gates, **conv)
    _assert_same(dense, grouped, torch.randn(2, in_channels, 9, 9))


@pytest.mark.parametrize('seed', range(6))
def test_random_patterns_wide_layer(seed):
    generator = torch.Generator().manual_seed(seed)
    gates = (torch.rand(6, generator=generator) - 0.5).tolist()
    torch.manual_seed(seed)
    dense, grouped = _pair(64, 64, gates, kernel_size=3, padding=1)
    _assert_same(dense, grouped, torch.randn(2, 64, 6, 6))


@pytest.mark.parametrize('narrow,bits', [
    (0, 3),  # no merged passes: one swapped weight gradient per split bit
    (64, 1),  # merged passes of one bit each
    (64, 2),  # chunks of two bits, the last one shorter
    (64, 6),  # a single pass over every split bit
])
@pytest.mark.parametrize('in_channels,out_channels,gates', [
    (64, 64, [-1., -1., -1., -1., -1., -1.]),
    (64, 64, [-1., 1., -1., -1., 1., -1.]),
    (16, 64, [1., -1., -1., -1.]),  # GroupUp
    (64, 16, [-1., -1., 1., -1.]),  # GroupDown
])
def test_gate_gradients_from_merged_groups(monkeypatch, narrow, bits,
                                           in_channels, out_channels, gates):
    monkeypatch.setitem(TUNINGS, 'cpu', dataclasses.replace(
        TUNINGS['cpu'], dgconv_narrow_width=narrow, dgconv_merged_bits=bits,
        dgconv_merged_width=1))  # exactly `bits`
    torch.manual_seed(4)
    dense, grouped = _pair(in_channels, out_channels, gates, kernel_size=3,
                           stride=2, padding=1, bias=True)
    passes = grouped.group_layout().passes
    num_split = gates.count(-1.)
    assert bool(passes) == (narrow > 0)
    if passes:
        covered = sorted(i for p in passes for i in p.pair_masks)
        assert covered == list(range(num_split))
        assert passes[0].out_local is None  # the first needs no reorder
    _assert_same(dense, grouped, torch.randn(2, in_channels, 7, 7))


def test_frozen_gates_narrow_layer():
    """Without gate gradients a narrow layer skips the merged passes and
    still gets its weight and input gradients exactly."""
    torch.manual_seed(6)
    dense, grouped = _pair(64, 64, [-1.] * 5 + [1.], kernel_size=3,
                           padding=1)
    assert grouped.group_layout().passes  # narrow: 2 channels per group
    for layer in (dense, grouped):
        layer.gate.requires_grad_(False)
    _assert_same(dense, grouped, torch.randn(2, 64, 6, 6))


def test_auto_chooses_grouped_only_when_cheaper():
    layer = DGConv2d(16, 16, 3, padding=1)
    with torch.no_grad():
        layer.gate.copy_(torch.tensor([1., 1., 1., 1.]))  # G = 1
    assert not layer._use_grouped(layer.group_layout())
    with torch.no_grad():
        layer.gate.copy_(torch.tensor([-1., 1., 1., 1.]))  # G = 2
    assert layer._use_grouped(layer.group_layout())
    layout = GroupLayout([0] * 5, 32, 32)
    assert layout.groups == 32
    assert DGConv2d(32, 32, 3, padding=1, impl='dense')._use_grouped(
        layout) is False
    assert not DGConv2d(16, 16, 3, padding='same')._use_grouped(layout)


def test_bf16_autocast_grouped_matches_dense():
    dense, grouped = _pair(16, 16, [-1., 1., -1., 1.], kernel_size=3,
                           padding=1)
    x = torch.randn(2, 16, 8, 8)
    outs = []
    for layer in (dense, grouped):
        with torch.autocast('cpu', dtype=torch.bfloat16):
            out = layer(x)
        assert out.dtype == torch.bfloat16
        out.float().sum().backward()
        assert layer.gate.grad.dtype == torch.float32
        outs.append((out.float(), layer.weight.grad, layer.gate.grad))
    for a, b in zip(*outs):
        torch.testing.assert_close(a, b, rtol=2e-2, atol=2e-2)


def test_no_grad_and_eval_use_the_same_path(monkeypatch):
    """Inference (eval, no grad) runs the grouped conv that training runs,
    not the dense masked conv, and gives the dense outputs."""
    dense, grouped = _pair(16, 16, [1., -1., 1., -1.], kernel_size=3,
                           padding=1)
    calls = []
    real = dg_conv2d_grouped.grouped_dgconv

    def recording(*args, **kwargs):
        calls.append(torch.is_grad_enabled())
        return real(*args, **kwargs)

    from mmdgconv.models.layers import dg_conv2d
    monkeypatch.setattr(dg_conv2d, 'grouped_dgconv', recording)
    x = torch.randn(1, 16, 5, 5)
    grouped.train()(x).sum().backward()
    with torch.no_grad():
        out = grouped.eval()(x)
        assert calls == [True, False]  # training, then inference
        reference = dense.eval()(x)
    assert calls == [True, False]  # the dense layer never takes it
    torch.testing.assert_close(out, reference, rtol=1e-5, atol=1e-5)


def test_stacked_layers_match_dense():
    """A stack of grouped layers (merged passes, strided, permuted) gets the
    dense stack's weight and gate gradients exactly."""
    torch.manual_seed(9)
    gates = ([-1., 1., -1., -1., 1., -1.], [1., -1., -1., 1., -1., -1.],
             [-1., -1., -1., -1., -1., 1.])
    pairs = [_pair(64, 64, g, kernel_size=3, padding=1, stride=s)
             for g, s in zip(gates, (1, 2, 1))]
    assert any(grouped.group_layout().passes for _, grouped in pairs)
    x = torch.randn(2, 64, 9, 9)
    for index in (0, 1):  # dense stack, then grouped stack
        out = x
        for pair in pairs:
            out = torch.relu(pair[index](out))
        out.square().sum().backward()
    for dense, grouped in pairs:
        for name in ('weight', 'gate'):
            torch.testing.assert_close(getattr(grouped, name).grad,
                                       getattr(dense, name).grad, rtol=1e-5,
                                       atol=1e-5)


@pytest.mark.parametrize('gates,widths', [
    ([-1.] * 6, [32, 2]),  # 1 channel per group: merge up to 32 channels
    ([-1.] * 5 + [1.], [16, 2]),  # 2 channels per group
    ([-1.] * 4 + [1.] * 2, [8, 2]),  # 4: MERGED_BITS
])
def test_merged_pass_width(gates, widths):
    """The narrower the groups, the more split bits each pass merges."""
    torch.manual_seed(10)
    dense, grouped = _pair(64, 64, gates, kernel_size=3, padding=1)
    assert [p.sub_groups for p in grouped.group_layout().passes] == widths
    _assert_same(dense, grouped, torch.randn(2, 64, 6, 6))


def test_blocks_gathered_early():
    """Blocks from ``gather_blocks_early`` serve the next forward only, and
    only while the weight is the one they were gathered from."""
    torch.manual_seed(11)
    dense, grouped = _pair(32, 32, [-1., 1., -1., -1., 1.], kernel_size=3,
                           padding=1)
    x = torch.randn(2, 32, 6, 6)
    grouped.gather_blocks_early()
    assert '_early_blocks' in grouped.__dict__
    _assert_same(dense, grouped, x)
    assert '_early_blocks' not in grouped.__dict__  # taken by that forward
    dense.zero_grad(), grouped.zero_grad()

    grouped.gather_blocks_early()
    with torch.no_grad():  # e.g. an optimizer step in between
        for layer in (dense, grouped):
            layer.weight.mul_(-2.)
    _assert_same(dense, grouped, x)  # stale blocks are not used

    with torch.no_grad():
        grouped.gather_blocks_early()
    assert '_early_blocks' not in grouped.__dict__


@pytest.mark.parametrize('stride,swapped', [(1, 'input'), (2, 'output')])
def test_partner_passes_swap_the_smaller_side(monkeypatch, stride, swapped):
    """A strided layer pairs groups by swapping its (4x smaller) output
    gradient instead of its input; both give the dense gate gradients."""
    monkeypatch.setitem(TUNINGS, 'cpu', dataclasses.replace(
        TUNINGS['cpu'], dgconv_narrow_width=0))
    calls = []
    partner_blocks = GroupLayout.partner_blocks
    monkeypatch.setattr(
        GroupLayout, 'partner_blocks',
        lambda self, weight, index, by_input=False: calls.append(
            'output' if by_input else 'input') or partner_blocks(
                self, weight, index, by_input))
    torch.manual_seed(12)
    dense, grouped = _pair(32, 32, [-1., 1., -1., 1., -1.], kernel_size=3,
                           stride=stride, padding=1)
    _assert_same(dense, grouped, torch.randn(2, 32, 8, 8))
    assert calls == [swapped] * 3


def test_strided_wide_groups_split_the_input_gradient_by_phase(monkeypatch):
    """A stride-2 layer with wide groups over a large image takes its input
    gradient from the phase-split convs, and still equals the dense path."""
    calls = []
    split = dg_conv2d_grouped.phase_split_input_grad
    monkeypatch.setattr(dg_conv2d_grouped, 'phase_split_input_grad',
                        lambda *args: calls.append(args) or split(*args))
    torch.manual_seed(6)
    # Two groups of 32 channels, interleaved; 28x28 outputs.
    dense, grouped = _pair(64, 64, [1., 1., -1., 1., 1., 1.], kernel_size=3,
                           stride=2, padding=1, bias=True)
    _assert_same(dense, grouped, torch.randn(1, 64, 56, 56))
    assert len(calls) == 1


def test_saves_the_input_not_a_permuted_copy():
    """With interleaved groups the forward permutes its input; the backward
    keeps the input itself (as any conv does), not the permuted copy."""
    torch.manual_seed(7)
    dense, grouped = _pair(16, 16, [1., -1., 1., -1.], kernel_size=3,
                           padding=1)
    assert not grouped.group_layout().identity
    x = torch.randn(2, 16, 5, 5, requires_grad=True)
    saved = []
    with torch.autograd.graph.saved_tensors_hooks(
            lambda t: saved.append(t) or t, lambda t: t):
        grouped(x)
    activations = [t for t in saved if t.shape == x.shape]
    assert [t.data_ptr() for t in activations] == [x.data_ptr()]
    _assert_same(dense, grouped, x.detach())
