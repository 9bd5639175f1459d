import os.path as osp

import pytest
import torch
import torch.nn.functional as F
from mmcv.cnn import build_conv_layer

from mmdgconv.models.layers import DGConv2d, kronecker_relationship

KNOWN_ANSWERS = osp.join(
    osp.dirname(__file__), '..', '..', 'data', 'dgconv_known_answers.pt')


def _set_gates(layer, values):
    with torch.no_grad():
        layer.gate.copy_(torch.tensor(values, dtype=torch.float32))


# ---------------------------------------------------------------------------
# Error paths
# ---------------------------------------------------------------------------
@pytest.mark.parametrize('channels', [(96, 96), (64, 48), (6, 64)])
def test_non_power_of_two_channels_raise(channels):
    with pytest.raises(ValueError, match=f'in_channels={channels[0]}'):
        DGConv2d(*channels, 3)


def test_bad_initial_groups_raise():
    with pytest.raises(ValueError, match='init_groups=3'):
        DGConv2d(16, 16, 3, groups=3)
    with pytest.raises(ValueError, match='init_groups=32'):
        DGConv2d(16, 16, 3, init_groups=32)
    with pytest.raises(ValueError, match='disagree'):
        DGConv2d(16, 16, 3, groups=2, init_groups=4)


def test_init_groups_and_its_alias_groups_start_alike():
    """``init_groups`` names the starting pattern; ``groups`` (the name
    stock backbones pass) is its alias. Neither is the computed grouping,
    which the gates give, nor nn.Conv2d's ``groups`` attribute."""
    by_name = DGConv2d(16, 16, 3, init_groups=4)
    by_alias = DGConv2d(16, 16, 3, groups=4)
    assert torch.equal(by_name.gate, by_alias.gate)
    # two of the four gates split (negative), the rest merge: G = 2^2
    assert torch.sign(by_name.gate).tolist() == [-1, -1, 1, 1]
    assert by_name.num_groups == 4 and by_name.groups == 1
    with torch.no_grad():
        by_name.gate.copy_(torch.tensor([-1.0, -1.0, -1.0, 1.0]))
    assert by_name.num_groups == 8
    by_name.switch_to_deploy()
    assert by_name.groups == 8  # nn.Conv2d's groups once deployed


def test_wrong_input_channels_raise():
    layer = DGConv2d(16, 16, 3, padding=1)
    with pytest.raises(ValueError, match=r'\(N, 16, H, W\)'):
        layer(torch.rand(1, 8, 8, 8))


# ---------------------------------------------------------------------------
# Known answers from the DGConv authors' reference implementation
# (d-li14/dgconv.pytorch)
# ---------------------------------------------------------------------------
@pytest.mark.parametrize('case', [
    'c8_k3_mixed', 'c16_k3_s2_d2', 'c4_k1_dense', 'c32_k3_depthwise'
])
def test_matches_reference_known_answers(case):
    answer = torch.load(KNOWN_ANSWERS, weights_only=True)[case]
    layer = DGConv2d(
        answer['channels'], answer['channels'], answer['kernel'],
        stride=answer['stride'], padding=answer['padding'],
        dilation=answer['dilation'], bias=answer['bias'])
    with torch.no_grad():
        layer.weight.copy_(answer['weight'])
        layer.gate.copy_(answer['gate'])
        if answer['bias']:
            layer.bias.copy_(answer['bias_value'])
    x = answer['x'].clone().requires_grad_()
    out = layer(x)
    complexity = layer.complexity()
    loss = (out * answer['grad_out']).sum() + \
        answer['regulariser_weight'] * complexity
    loss.backward()

    tol = dict(rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(out, answer['out'], **tol)
    torch.testing.assert_close(complexity, answer['regulariser'], **tol)
    torch.testing.assert_close(x.grad, answer['grad_x'], **tol)
    torch.testing.assert_close(layer.weight.grad, answer['grad_weight'], **tol)
    torch.testing.assert_close(layer.gate.grad, answer['grad_gate'], **tol)
    if answer['bias']:
        torch.testing.assert_close(layer.bias.grad, answer['grad_bias'], **tol)


# ---------------------------------------------------------------------------
# Structure of U
# ---------------------------------------------------------------------------
def test_gate_at_exactly_zero_keeps_u_binary():
    layer = DGConv2d(8, 8, 3)
    _set_gates(layer, [0.0, 0.0, 0.0])
    u = layer.relationship()
    assert set(u.unique().tolist()) <= {0.0, 1.0}
    assert layer.num_groups == 1  # ties merge
    torch.testing.assert_close(u, torch.ones(8, 8))


def test_u_extremes_and_interleaved_grouping():
    gates = torch.tensor([0., 0., 0.])
    torch.testing.assert_close(kronecker_relationship(gates), torch.eye(8))
    torch.testing.assert_close(
        kronecker_relationship(torch.ones(3)), torch.ones(8, 8))
    # Only the least significant bit split: even and odd channels form two
    # interleaved groups.
    layer = DGConv2d(8, 8, 1)
    _set_gates(layer, [1.0, 1.0, -1.0])
    u = layer.relationship()
    index = torch.arange(8)
    torch.testing.assert_close(
        u, (index[:, None] % 2 == index[None, :] % 2).float())
    out_groups, in_groups = layer.channel_groups
    assert out_groups.tolist() == [0, 1] * 4
    torch.testing.assert_close(
        u, (out_groups[:, None] == in_groups[None, :]).float())
    assert layer.num_groups == 2 and layer.nnz == 32


def test_initial_groups_give_contiguous_grouped_conv():
    layer = DGConv2d(16, 16, 3, padding=1, groups=4, bias=False)
    assert layer.num_groups == 4
    assert layer.gate.abs().max().item() == pytest.approx(1e-8)
    grouped = torch.nn.Conv2d(16, 16, 3, padding=1, groups=4, bias=False)
    with torch.no_grad():
        for g in range(4):
            block = slice(4 * g, 4 * g + 4)
            layer.weight[block, block] = grouped.weight[block]
    x = torch.rand(2, 16, 8, 8)
    torch.testing.assert_close(layer(x), grouped(x))


def test_random_initial_gates_have_tiny_magnitude():
    layer = DGConv2d(64, 64, 3)
    assert layer.gate.shape == (6, )
    assert torch.all(layer.gate.abs() == 1e-8)


@pytest.mark.parametrize('in_channels,out_channels', [(8, 32), (32, 8)])
def test_group_up_and_down(in_channels, out_channels):
    layer = DGConv2d(in_channels, out_channels, 3, padding=1, stride=2)
    assert layer.gate.shape == (3, )  # built on the smaller side
    _set_gates(layer, [-1.0, 1.0, -1.0])
    u = layer.relationship()
    assert u.shape == (out_channels, in_channels)
    out_groups, in_groups = layer.channel_groups
    # Channel c takes the group of c mod C_small (appendix A).
    torch.testing.assert_close(
        u, (out_groups[:, None] == in_groups[None, :]).float())
    assert layer.num_groups == 4
    assert layer.nnz == int(u.sum().item()) == in_channels * out_channels // 4
    assert layer.complexity().item() == layer.nnz
    x = torch.rand(2, in_channels, 8, 8, requires_grad=True)
    out = layer(x)
    expected = F.conv2d(x, layer.weight * u[:, :, None, None], layer.bias,
                        stride=2, padding=1)
    torch.testing.assert_close(out, expected)
    out.sum().backward()
    assert layer.gate.grad.shape == (3, ) and torch.isfinite(
        layer.gate.grad).all()


def test_rgb_input_layer_is_dense_without_gates():
    layer = DGConv2d(3, 64, 7, stride=2, padding=3)
    assert not layer.has_gates and layer.gate is None
    assert layer.num_groups == 1 and layer.nnz == 3 * 64
    x = torch.rand(1, 3, 32, 32)
    torch.testing.assert_close(
        layer(x), F.conv2d(x, layer.weight, layer.bias, 2, 3))


def test_stride_dilation_padding_bias_match_masked_conv():
    layer = DGConv2d(16, 16, 3, stride=2, padding=2, dilation=2, bias=True)
    _set_gates(layer, [0.5, -0.5, 0.5, -0.5])
    x = torch.rand(2, 16, 11, 11)
    u = layer.relationship()
    expected = F.conv2d(x, layer.weight * u[:, :, None, None], layer.bias,
                        stride=2, padding=2, dilation=2)
    torch.testing.assert_close(layer(x), expected)


# ---------------------------------------------------------------------------
# Dtypes, modes, registry
# ---------------------------------------------------------------------------
@pytest.mark.parametrize('train', [True, False])
def test_bf16_autocast(train):
    layer = DGConv2d(16, 16, 3, padding=1).train(train)
    x = torch.rand(2, 16, 8, 8)
    with torch.autocast('cpu', dtype=torch.bfloat16):
        out = layer(x)
    assert out.dtype == torch.bfloat16
    torch.testing.assert_close(out.float(), layer(x), rtol=0.05, atol=0.05)
    if train:
        out.float().sum().backward()
        assert layer.gate.grad is not None and layer.weight.grad is not None


def test_built_through_conv_cfg_from_every_scope():
    from mmengine.registry import DefaultScope
    for scope in ('mmdet', 'mmpretrain', 'mmaction', 'mmdgconv'):
        with DefaultScope.overwrite_default_scope(scope):
            layer = build_conv_layer(
                dict(type='DGConv'), 32, 32, 3, padding=1, groups=8)
        assert isinstance(layer, DGConv2d) and layer.num_groups == 8


def test_state_dict_round_trip_strict():
    layer = DGConv2d(16, 32, 3)
    copy = DGConv2d(16, 32, 3)
    copy.load_state_dict(layer.state_dict(), strict=True)
    torch.testing.assert_close(copy.gate, layer.gate)
    assert set(layer.state_dict()) == {'weight', 'bias', 'gate'}


# ---------------------------------------------------------------------------
# Grouped inference path
# ---------------------------------------------------------------------------
@pytest.mark.parametrize('in_channels,out_channels,gates', [
    (16, 16, [1., -1., 1., -1.]),  # interleaved
    (16, 16, [-1., -1., 1., 1.]),  # contiguous: no permutation needed
    (16, 16, [-1., -1., -1., -1.]),  # depthwise
    (8, 32, [-1., 1., -1.]),  # GroupUp
    (32, 8, [1., -1., -1.]),  # GroupDown
])
@pytest.mark.parametrize('bias', [True, False])
def test_grouped_inference_equals_dense(in_channels, out_channels, gates,
                                        bias):
    layer = DGConv2d(in_channels, out_channels, 3, stride=2, padding=2,
                     dilation=2, bias=bias).eval()
    _set_gates(layer, gates)
    x = torch.rand(2, in_channels, 9, 9)
    dense = F.conv2d(x, layer.weight * layer.relationship()[:, :, None, None],
                     layer.bias, stride=2, padding=2, dilation=2)
    with torch.no_grad():
        grouped = layer(x)
    torch.testing.assert_close(grouped, dense, rtol=1e-5, atol=1e-5)


def test_layout_cache_follows_gate_flips_only():
    layer = DGConv2d(8, 8, 1, bias=False).eval()
    x = torch.rand(1, 8, 4, 4)
    layouts = []
    for gates in ([1., 1., -1.], [-1., 1., 1.], [0.5, 0.5, -0.5]):
        _set_gates(layer, gates)
        with torch.no_grad():
            grouped = layer(x)
        torch.testing.assert_close(
            grouped, F.conv2d(x, layer.weight * layer.relationship()[
                :, :, None, None]), rtol=1e-5, atol=1e-5)
        layouts.append(layer.group_layout())
    assert layouts[0] is not layouts[1]
    # Same signs, other magnitudes: the cached layout is reused.
    assert layouts[2] is layer.group_layout()
    assert layouts[2].split == [2] and layouts[2].groups == 2


def test_bad_impl_raises():
    with pytest.raises(ValueError, match="impl must be"):
        DGConv2d(8, 8, 3, impl='fast')
