import pytest
import torch
import torch.nn.functional as F
from einops import rearrange
from mmcv.cnn import build_conv_layer
from mmengine.registry import DefaultScope

from mmdgconv.models.layers import CoCConv2d
from mmdgconv.models.layers.coc_conv2d import super_kernel_geometry


def naive_coc_weight(layer):
    """The poster's "Naive Implementation", step by step with einops."""
    weight1 = layer.weight
    co = weight1.shape[0]
    sa = layer.sa
    pad = layer.num_tiles * sa**2 - co
    weight1 = torch.cat([weight1, weight1.new_zeros(pad, *weight1.shape[1:])])
    # 1: rearrange the basic kernels for spatial association
    weight2 = rearrange(weight1,
                        '(co4 h2 w2) ci kh kw -> co4 ci (h2 kh) (w2 kw)',
                        h2=sa, w2=sa)
    weight3 = weight2.permute(1, 0, 2, 3)
    # 2: the depthwise super conv, ci as the batch
    super_kernel = layer.super_weight
    if layer.super_ws:
        mean = super_kernel.mean((1, 2, 3), keepdim=True)
        std = (super_kernel.var((1, 2, 3), keepdim=True, unbiased=False) +
               1e-5).sqrt()
        super_kernel = (super_kernel - mean) / std
    weight4 = F.conv2d(
        weight3, super_kernel, None, 1,
        layer.super_dilation * (layer.super_size - 1) // 2,
        layer.super_dilation, layer.num_tiles)
    if layer.sbn == 'LN':
        weight4 = F.group_norm(weight4, 1, layer.sbn_weight, layer.sbn_bias)
    if layer.skip:
        weight4 = weight4 + weight3
    # 3: rearrange back
    weight5 = weight4.permute(1, 0, 2, 3)
    weight6 = rearrange(weight5,
                        'co4 ci (h2 kh) (w2 kw) -> (co4 h2 w2) ci kh kw',
                        h2=sa, w2=sa)[:co]
    if layer.ws == 'LN':
        mean = weight6.mean((1, 2, 3), keepdim=True)
        std = (weight6.var((1, 2, 3), keepdim=True, unbiased=False) +
               1e-5).sqrt()
        weight6 = (weight6 - mean) / std
    return weight6


# ---------------------------------------------------------------------------
# Error paths and geometry
# ---------------------------------------------------------------------------
def test_error_paths_name_the_layer():
    with pytest.raises(ValueError, match=r'CoCConv2d\(8, 8.*sa must be'):
        CoCConv2d(8, 8, 3, sa=0)
    with pytest.raises(ValueError, match='even size'):
        CoCConv2d(8, 8, 3, sk_plus=1, dilat=False)
    with pytest.raises(ValueError, match='sbn and ws'):
        CoCConv2d(8, 8, 3, sbn='BN')
    with pytest.raises(ValueError, match='square'):
        CoCConv2d(8, 8, (3, 1))


def test_super_kernel_geometry_matches_official_settings():
    assert super_kernel_geometry(3, 2, True) == (3, 2)
    assert super_kernel_geometry(7, 2, True) == (5, 3)
    assert super_kernel_geometry(3, 2, False) == (5, 1)
    layer = CoCConv2d(3, 64, 7, stride=2, padding=3)
    assert layer.super_weight.shape == (16, 1, 5, 5)


def test_1x1_stays_plain_unless_c1x1():
    plain = CoCConv2d(16, 32, 1)
    assert not plain.with_coc and plain.deploy
    assert set(plain.state_dict()) == {'weight', 'bias'}
    coc = CoCConv2d(16, 32, 1, c1x1=True, sk_plus=2, dilat=False)
    assert coc.with_coc and coc.super_weight.shape == (8, 1, 3, 3)


# ---------------------------------------------------------------------------
# Known answers: the naive five-step construction
# ---------------------------------------------------------------------------
@pytest.mark.parametrize('options', [
    dict(),  # the poster's best setting
    dict(skip=False),
    dict(dilat=False),
    dict(super_ws=True, sbn='LN', ws='LN'),  # the official ResNet setting
    dict(sa=3, sk_plus=4),
    dict(sa=1),
])
@pytest.mark.parametrize('channels', [(16, 32), (8, 10)])  # 10: padded tile
def test_matches_naive_construction(options, channels):
    torch.manual_seed(0)
    layer = CoCConv2d(*channels, 3, padding=1, **options)
    if 'sbn_weight' in dict(layer.named_parameters()):
        with torch.no_grad():
            layer.sbn_weight.uniform_(0.5, 1.5)
            layer.sbn_bias.uniform_(-0.1, 0.1)
    expected = naive_coc_weight(layer)
    torch.testing.assert_close(layer.final_weight(), expected, rtol=1e-5,
                               atol=1e-5)
    x = torch.randn(2, channels[0], 9, 9)
    torch.testing.assert_close(
        layer(x), F.conv2d(x, expected, layer.bias, padding=1), rtol=1e-5,
        atol=1e-5)


def test_gradients_reach_every_parameter():
    layer = CoCConv2d(8, 8, 3, padding=1, super_ws=True, sbn='LN', ws='LN')
    layer(torch.randn(2, 8, 6, 6)).square().sum().backward()
    for name, param in layer.named_parameters():
        assert param.grad is not None and param.grad.abs().sum() > 0, name


def test_grouped_conv_is_supported():
    layer = CoCConv2d(16, 16, 3, padding=1, groups=4)
    assert layer.final_weight().shape == (16, 4, 3, 3)
    torch.testing.assert_close(layer.final_weight(), naive_coc_weight(layer))
    assert layer(torch.randn(1, 16, 5, 5)).shape == (1, 16, 5, 5)


# ---------------------------------------------------------------------------
# Deploy
# ---------------------------------------------------------------------------
@pytest.mark.parametrize('options', [dict(), dict(super_ws=True, sbn='LN',
                                                  ws='LN')])
def test_switch_to_deploy_is_exact_idempotent_and_loads_strict(options):
    layer = CoCConv2d(16, 24, 3, stride=2, padding=1, **options).eval()
    x = torch.randn(2, 16, 9, 9)
    before = layer(x)
    layer.switch_to_deploy()
    state = {k: v.clone() for k, v in layer.state_dict().items()}
    layer.switch_to_deploy()  # idempotent
    assert layer.deploy and set(state) == {'weight', 'bias'}
    assert not hasattr(layer, 'super_weight')
    torch.testing.assert_close(layer(x), before, rtol=1e-5, atol=1e-5)
    deployed = CoCConv2d(16, 24, 3, stride=2, padding=1, deploy=True,
                         **options)
    deployed.load_state_dict(state, strict=True)
    torch.testing.assert_close(deployed(x), before, rtol=1e-5, atol=1e-5)


def test_built_through_conv_cfg_from_every_scope():
    for scope in ('mmdet', 'mmpretrain', 'mmaction', 'mmdgconv'):
        with DefaultScope.overwrite_default_scope(scope):
            layer = build_conv_layer(dict(type='CoC', sbn='LN'), 8, 8, 3,
                                     padding=1)
        assert isinstance(layer, CoCConv2d) and layer.sbn == 'LN'
