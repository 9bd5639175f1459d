"""The device-keyed speed choices: the CPU gets its measured ones, any
other device type the plain paths, and each choice really steers its
operator."""
import dataclasses

import pytest
import torch

from mmdgconv.models.layers import DGConv2d, PEDConv2d
from mmdgconv.models.layers.dg_conv2d_grouped import GroupLayout
from mmdgconv.models.layers.tuning import (PLAIN, TUNINGS, DeviceTuning,
                                           tuning_for)


def test_lookup_by_device_type():
    assert tuning_for('cpu') is TUNINGS['cpu']
    assert tuning_for(None) is TUNINGS['cpu']
    assert tuning_for(torch.device('cpu')) is TUNINGS['cpu']
    assert tuning_for('cuda') is PLAIN
    assert tuning_for('cuda:1') is PLAIN
    assert tuning_for(torch.device('cuda', 0)) is PLAIN
    assert PLAIN == DeviceTuning()
    assert PLAIN.phase_split_min_group_width is None
    assert not PLAIN.ped_batch1_folded_kernel
    assert not PLAIN.ped_deep_layer_columns
    assert PLAIN.dgconv_narrow_width == 0


def test_dgconv_merged_passes_follow_the_device(monkeypatch):
    # 2 channels per group: narrow on the CPU, merged passes planned
    gates = [0] * 5 + [1]
    assert GroupLayout(gates, 64, 64, torch.device('cpu')).passes
    # the plain path (what CUDA gets): one swapped gradient per split bit
    monkeypatch.setitem(TUNINGS, 'cpu', PLAIN)
    assert GroupLayout(gates, 64, 64, torch.device('cpu')).passes == []


@pytest.mark.parametrize('device_tuning', ['cpu', 'plain'])
def test_pedconv_forms_follow_the_device(monkeypatch, device_tuning):
    if device_tuning == 'plain':
        monkeypatch.setitem(TUNINGS, 'cpu', PLAIN)
    tuning = tuning_for('cpu')
    forms = []
    rank1_form = PEDConv2d._rank1_form

    def record(self, *args):
        forms.append(rank1_form(self, *args))
        return forms[-1]

    monkeypatch.setattr(PEDConv2d, '_rank1_form', record)
    deep = PEDConv2d(32, 64, 3, padding=1, reduction=4).eval()
    small = PEDConv2d(4, 4, 3, padding=1, reduction=2).eval()
    pointwise = PEDConv2d(8, 8, 1, reduction=2).eval()
    with torch.no_grad():
        deep(torch.randn(2, 32, 4, 4))
        deep(torch.randn(1, 32, 4, 4))  # a small weight at batch 1
        small(torch.randn(1, 4, 8, 8))
        pointwise(torch.randn(2, 8, 8, 8))
    if device_tuning == 'cpu':
        assert tuning.ped_batch1_columns_min_weight > deep.weight.numel()
        assert forms == ['columns', 'input_folded', 'folded', 'matmul']
    else:
        assert forms == ['scaled'] * 4


def test_pedconv_batch1_columns_above_the_weight_threshold(monkeypatch):
    deep = PEDConv2d(32, 64, 3, padding=1, reduction=4).eval()
    x = torch.randn(1, 32, 4, 4)
    tuning = dataclasses.replace(
        TUNINGS['cpu'], ped_batch1_columns_min_weight=deep.weight.numel())
    assert deep._rank1_form(x, 16, tuning) == 'columns'
    tuning = dataclasses.replace(
        tuning, ped_batch1_columns_min_weight=deep.weight.numel() + 1)
    assert deep._rank1_form(x, 16, tuning) == 'input_folded'


@pytest.mark.parametrize('in_channels,out_channels,form', [
    (4, 4, 'folded'),  # weight < output: every factor in the kernel
    (64, 4, 'input_folded'),  # output < weight < input: phi, psi in it
    (64, 64, 'scaled'),  # weight >= input: the activations are scaled
])
def test_pedconv_batch1_forms_of_1x1_layers(in_channels, out_channels,
                                            form):
    layer = PEDConv2d(in_channels, out_channels, 1, reduction=4).eval()
    x = torch.randn(1, in_channels, 5, 5)
    assert layer._rank1_form(x, 25, TUNINGS['cpu']) == form
    assert layer._rank1_form(x, 25, PLAIN) == 'scaled'


def test_dgconv_grouped_backward_on_the_plain_paths(monkeypatch):
    """The plain choices (no phase split, no merged passes) still give the
    dense formulation's gradients exactly."""
    monkeypatch.setitem(TUNINGS, 'cpu', PLAIN)
    torch.manual_seed(0)
    dense = DGConv2d(64, 64, 3, stride=2, padding=1, impl='dense')
    grouped = DGConv2d(64, 64, 3, stride=2, padding=1, impl='grouped')
    grouped.load_state_dict(dense.state_dict())
    with torch.no_grad():
        for layer in (dense, grouped):
            layer.gate.copy_(torch.tensor([-1., -1., -1., -1., 1., -1.]))
    x = torch.randn(2, 64, 8, 8)
    results = []
    for layer in (dense, grouped):
        xi = x.clone().requires_grad_()
        out = layer(xi)
        out.square().sum().backward()
        results.append((out, xi.grad, layer.weight.grad, layer.gate.grad))
    for a, b in zip(*results):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4)
