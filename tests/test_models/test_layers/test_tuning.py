"""The device-keyed speed choices: the CPU gets its measured ones, any
other device type the plain paths, and each choice really steers its
operator."""
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


@pytest.mark.parametrize('device_tuning,columns,folded', [
    ('cpu', 1, 1), ('plain', 0, 0)])
def test_pedconv_paths_follow_the_device(monkeypatch, device_tuning,
                                         columns, folded):
    if device_tuning == 'plain':
        monkeypatch.setitem(TUNINGS, 'cpu', PLAIN)
    calls = {'columns': 0, 'folded': 0}
    scaled_columns = PEDConv2d._scaled_columns
    conv_forward = PEDConv2d._conv_forward

    def count_columns(self, *args):
        calls['columns'] += 1
        return scaled_columns(self, *args)

    def count_folded(self, x, weight, bias):
        # the folded kernel is the only batch-1 conv that carries the bias
        calls['folded'] += bias is not None
        return conv_forward(self, x, weight, bias)

    monkeypatch.setattr(PEDConv2d, '_scaled_columns', count_columns)
    monkeypatch.setattr(PEDConv2d, '_conv_forward', count_folded)
    deep = PEDConv2d(32, 64, 3, padding=1, reduction=4).eval()
    small = PEDConv2d(4, 4, 3, padding=1, reduction=2).eval()
    with torch.no_grad():
        deep(torch.randn(2, 32, 4, 4))
        small(torch.randn(1, 4, 8, 8))
    assert calls == {'columns': columns, 'folded': folded}


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
