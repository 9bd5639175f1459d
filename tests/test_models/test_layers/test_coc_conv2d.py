"""CoCConv2d: errors, geometry, deploy, the eval-mode kernel cache and the
migration of version-1 checkpoints. The numerics against the released layer
are in ``test_coc_official.py``."""
import copy
import pickle
from collections import OrderedDict

import pytest
import torch
import torch.nn.functional as F
from einops import rearrange
from mmcv.cnn import build_conv_layer
from mmengine.registry import DefaultScope

from mmdgconv.models.backbones import ResNetCoC
from mmdgconv.models.layers import CoCConv2d
from mmdgconv.models.layers.coc_conv2d import super_kernel_geometry

RESNET = dict(sa=2, sk_plus=2, skip=True, dilat=True, wsc=True, share='ci',
              ws='LN', both=True, sbn='LN')


# ---------------------------------------------------------------------------
# Error paths and geometry
# ---------------------------------------------------------------------------
def test_error_paths_name_the_layer():
    with pytest.raises(ValueError, match=r'CoCConv2d\(8, 8.*sa must be'):
        CoCConv2d(8, 8, 3, sa=0)
    with pytest.raises(ValueError, match='sk_plus must be even'):
        CoCConv2d(8, 8, 3, sk_plus=1, dilat=False)
    with pytest.raises(ValueError, match='sbn must be one of'):
        CoCConv2d(8, 8, 3, sbn='GN')
    with pytest.raises(ValueError, match='ws must be one of'):
        CoCConv2d(8, 8, 3, ws='GN')
    with pytest.raises(ValueError, match='share must be one of'):
        CoCConv2d(8, 8, 3, share='both')
    with pytest.raises(ValueError, match="sbn='LN' needs share='ci'"):
        CoCConv2d(8, 8, 3, sbn='LN', share='co')
    with pytest.raises(ValueError, match=r"ws='BN'.*\(6\).*\(8\)"):
        CoCConv2d(6, 8, 3, ws='BN')
    with pytest.raises(ValueError, match=r'CoCConv2d\(8, 8, kernel_size=9'
                       r'.*kernel sizes 3, 5, 7'):
        CoCConv2d(8, 8, 9)
    with pytest.raises(ValueError, match='even size'):
        CoCConv2d(8, 8, 2, dilat=False)


def test_super_kernel_geometry_is_the_released_table():
    assert super_kernel_geometry(3, 2, True) == (3, 2)
    assert super_kernel_geometry(3, 4, True) == (3, 3)  # not 5x5
    assert super_kernel_geometry(3, 6, True) == (5, 2)
    assert super_kernel_geometry(5, 2, True) == (5, 2)
    assert super_kernel_geometry(7, 2, True) == (5, 3)
    assert super_kernel_geometry(3, 2, False) == (5, 1)
    stem = CoCConv2d(3, 64, 7, stride=2, padding=3, **RESNET)
    assert stem.super_weight.shape == (16, 1, 5, 5)
    assert stem.super_dilation == (3, 3) and stem.super_padding == (6, 6)
    wide = CoCConv2d(4, 8, (3, 5), padding=(1, 2), **RESNET)
    assert wide.super_weight.shape == (2, 1, 3, 5)
    assert wide.final_weight().shape == (8, 4, 3, 5)


def test_1x1_stays_plain_unless_c1x1():
    plain = CoCConv2d(16, 32, 1)
    assert not plain.with_coc and plain.deploy
    assert set(plain.state_dict()) == {'weight', 'bias'}
    coc = CoCConv2d(16, 32, 1, c1x1=True)  # undilated: 1 + sk_plus taps
    assert coc.with_coc and coc.super_weight.shape == (8, 1, 3, 3)


def test_c1x1_ws_standardises_1x1_kernels_and_deploys_them():
    layer = CoCConv2d(8, 16, 1, c1x1_ws=True).eval()
    assert not layer.with_coc and not layer.deploy
    w = layer.weight
    expected = (w - w.mean((1, 2, 3), keepdim=True)) / (
        w.std((1, 2, 3), keepdim=True) + 1e-5)
    x = torch.randn(2, 8, 5, 5)
    torch.testing.assert_close(layer(x), F.conv2d(x, expected, layer.bias))
    before = layer(x)
    layer.switch_to_deploy()
    assert layer.deploy
    torch.testing.assert_close(layer(x), before)


def test_deprecated_super_ws_maps_to_the_released_names():
    with pytest.warns(DeprecationWarning, match='super_ws'):
        old = CoCConv2d(8, 8, 3, super_ws=True, sbn='LN', ws='LN')
    assert old.wsc and old.both and old.super_norm == 'LN' and old.ws == 'LN'
    with pytest.warns(DeprecationWarning):
        bare = CoCConv2d(8, 8, 3, super_ws=False, sbn=None, ws=None)
    assert not bare.wsc and bare.super_norm is None and bare.ws is False
    assert bare.super_bias is not None  # no norm follows: a bias


# ---------------------------------------------------------------------------
# Parameters
# ---------------------------------------------------------------------------
@pytest.mark.parametrize('options', [RESNET, dict()])
def test_gradients_reach_every_parameter(options):
    layer = CoCConv2d(8, 10, 3, padding=1, **options)  # 10: padded tiles
    layer(torch.randn(2, 8, 6, 6)).square().sum().backward()
    for name, param in layer.named_parameters():
        assert param.grad is not None and param.grad.abs().sum() > 0, name


def test_padding_kernels_are_learnable_and_drawn_like_the_kernels():
    torch.manual_seed(0)
    layer = CoCConv2d(64, 126, 3, padding=1, **RESNET)  # 2 padding kernels
    assert layer.weight_pad.shape == (2, 64, 3, 3)
    ratio = layer.weight_pad.std() / layer.weight.std()
    assert 0.8 < ratio < 1.2
    with torch.no_grad():  # a model-level init rescales the kernels
        layer.weight.mul_(10)
    layer.init_weights()
    ratio = layer.weight_pad.std() / layer.weight.std()
    assert 0.8 < ratio < 1.2
    assert CoCConv2d(8, 8, 3, **RESNET).weight_pad is None


def test_grouped_conv_is_supported():
    layer = CoCConv2d(16, 16, 3, padding=1, groups=4, **RESNET)
    assert layer.final_weight().shape == (16, 4, 3, 3)
    assert layer(torch.randn(1, 16, 5, 5)).shape == (1, 16, 5, 5)


# ---------------------------------------------------------------------------
# Deploy
# ---------------------------------------------------------------------------
@pytest.mark.parametrize('options', [RESNET, dict(), dict(share='co'),
                                     dict(ws='BN', share=None, sbn='IN')])
def test_switch_to_deploy_is_exact_idempotent_and_loads_strict(options):
    channels = 24 if options.get('ws') != 'BN' else 16
    layer = CoCConv2d(16, channels, 3, stride=2, padding=1, **options)
    layer.train()
    layer(torch.randn(2, 16, 9, 9))  # batch norms get running statistics
    layer.eval()
    x = torch.randn(2, 16, 9, 9)
    before = layer(x)
    layer.switch_to_deploy()
    state = {k: v.clone() for k, v in layer.state_dict().items()}
    layer.switch_to_deploy()  # idempotent
    assert layer.deploy and set(state) == {'weight', 'bias'}
    assert not hasattr(layer, 'super_weight')
    torch.testing.assert_close(layer(x), before, rtol=1e-5, atol=1e-5)
    deployed = CoCConv2d(16, channels, 3, stride=2, padding=1, deploy=True,
                         **options)
    deployed.load_state_dict(state, strict=True)
    torch.testing.assert_close(deployed(x), before, rtol=1e-5, atol=1e-5)


def test_built_through_conv_cfg_from_every_scope():
    for scope in ('mmdet', 'mmpretrain', 'mmaction', 'mmdgconv'):
        with DefaultScope.overwrite_default_scope(scope):
            layer = build_conv_layer(dict(type='CoC', sbn='LN', wsc=True,
                                          both=True), 8, 8, 3, padding=1)
        assert isinstance(layer, CoCConv2d) and layer.super_norm == 'LN'


# ---------------------------------------------------------------------------
# The eval-mode kernel cache
# ---------------------------------------------------------------------------
class CountingCoC(CoCConv2d):
    """Counts how often the final kernel is computed."""
    computed = 0

    def final_weight(self, training=None):
        if not self.deploy:
            type(self).computed += 1
        return super().final_weight(training)


def live(layer, x):
    """The output computed from the parameters as they are now."""
    return layer._conv_forward(x, layer.final_weight(training=False),
                               layer.bias)


@pytest.fixture
def cached():
    CountingCoC.computed = 0
    torch.manual_seed(0)
    layer = CountingCoC(8, 10, 3, padding=1, **RESNET)
    with torch.no_grad():  # trained-looking norms
        for name, param in layer.named_parameters():
            if 'norm' in name:
                param.uniform_(0.5, 1.5)
    return layer.eval()


def test_eval_computes_the_kernel_once(cached):
    x = torch.randn(2, 8, 6, 6)
    with torch.no_grad():
        first = cached(x)
        cached.eval()  # already in eval mode: the cache stays
        second = cached(x)
    with torch.inference_mode():
        third = cached(x)
    assert CountingCoC.computed == 1
    assert torch.equal(first, second) and torch.equal(first, third)
    torch.testing.assert_close(first, live(cached, x))


def test_an_optimizer_step_invalidates_the_cache(cached):
    x = torch.randn(2, 8, 6, 6)
    with torch.no_grad():
        cached(x)
    cached.train()
    optimizer = torch.optim.SGD(cached.parameters(), lr=0.5)
    cached(x).square().sum().backward()
    optimizer.step()
    cached.eval()
    with torch.no_grad():
        after = cached(x)
        torch.testing.assert_close(after, live(cached, x))
        # an in-place change in eval mode is seen too
        cached.super_norm_weight.mul_(2)
        changed = cached(x)
        torch.testing.assert_close(changed, live(cached, x))
    assert not torch.allclose(after, changed)


def test_load_state_dict_to_and_half_invalidate_the_cache(cached):
    x = torch.randn(2, 8, 6, 6)
    other = CoCConv2d(8, 10, 3, padding=1, **RESNET).eval()
    with torch.no_grad():
        cached(x)
        cached.load_state_dict(other.state_dict())
        torch.testing.assert_close(cached(x), other(x))
        cached.to(torch.float64)
        out = cached(x.double())
        assert out.dtype == torch.float64
        torch.testing.assert_close(out, other.double()(x.double()))
        cached.to(torch.bfloat16)
        assert cached(x.bfloat16()).dtype == torch.bfloat16


def test_train_mode_and_gradients_never_use_the_cache(cached):
    x = torch.randn(2, 8, 6, 6)
    with torch.no_grad():
        cached(x)
    computed = CountingCoC.computed
    cached(x).sum().backward()  # eval mode, gradients wanted: live
    assert cached.super_weight.grad is not None
    assert CountingCoC.computed == computed + 1
    cached.train()
    with torch.no_grad():
        cached(x)
    assert CountingCoC.computed == computed + 2


def test_frozen_layers_reuse_the_cache_in_a_graph(cached):
    x = torch.randn(2, 8, 6, 6, requires_grad=True)
    cached.requires_grad_(False)  # a frozen stage: eval mode, no gradients
    with torch.inference_mode():
        cached(x.detach())
    cached(x).sum().backward()  # the cached kernel serves a graph
    assert x.grad is not None and CountingCoC.computed == 1


def test_copies_do_not_share_the_cache(cached):
    x = torch.randn(2, 8, 6, 6)
    with torch.no_grad():
        cached(x)
        twin = copy.deepcopy(cached)
        twin.super_weight.add_(1)
        torch.testing.assert_close(twin(x), live(twin, x))
        assert not torch.allclose(twin(x), cached(x))
    assert '_kernel_cache' not in pickle.loads(pickle.dumps(cached)).__dict__


# ---------------------------------------------------------------------------
# Version-1 checkpoints
# ---------------------------------------------------------------------------
def version1_kernel(state, sa, co, sbn, super_ws, ws):
    """Version 1's construction, step by step with einops: zero padding
    kernels, super kernels standardised with the biased variance inside the
    square root, a per-tile affine on the super LayerNorm and no affine on
    the final LayerNorm."""
    weight = state['weight']
    tiles = -(-co // sa**2)
    weight = torch.cat([weight, weight.new_zeros(tiles * sa**2 - co,
                                                 *weight.shape[1:])])
    tiled = rearrange(weight, '(t a b) ci kh kw -> ci t (a kh) (b kw)', a=sa,
                      b=sa)
    kernel = state['super_weight']
    if super_ws:
        mean = kernel.mean((1, 2, 3), keepdim=True)
        var = kernel.var((1, 2, 3), keepdim=True, unbiased=False)
        kernel = (kernel - mean) / (var + 1e-5).sqrt()
    out = F.conv2d(tiled, kernel, None, 1, 2, 2, tiles)
    if sbn:
        mean = out.mean((1, 2, 3), keepdim=True)
        var = out.var((1, 2, 3), keepdim=True, unbiased=False)
        out = (out - mean) / (var + 1e-5).sqrt()
        out = out * state['sbn_weight'][:, None, None] + \
            state['sbn_bias'][:, None, None]
    out = out + tiled
    final = rearrange(out, 'ci t (a kh) (b kw) -> (t a b) ci kh kw', a=sa,
                      b=sa)[:co]
    if ws:
        mean = final.mean((1, 2, 3), keepdim=True)
        var = final.var((1, 2, 3), keepdim=True, unbiased=False)
        final = (final - mean) / (var + 1e-5).sqrt()
    return final


def version1_state(ci, co, sbn, generator):
    tiles = -(-co // 4)
    state = OrderedDict(
        weight=0.2 * torch.randn(co, ci, 3, 3, generator=generator),
        bias=torch.randn(co, generator=generator),
        super_weight=0.3 * torch.randn(tiles, 1, 3, 3, generator=generator))
    if sbn:
        state['sbn_weight'] = 0.5 + torch.rand(tiles, generator=generator)
        state['sbn_bias'] = 0.2 * torch.randn(tiles, generator=generator)
    return state


@pytest.mark.parametrize('old, new', [
    # version 1's ResNet setting, now the released names
    (dict(super_ws=True, sbn=True, ws=True), RESNET),
    # version 1's layer defaults: no norms at all
    (dict(super_ws=False, sbn=False, ws=False),
     dict(wsc=False, sbn=None, ws=False)),
])
def test_version1_checkpoints_load_exactly(old, new):
    generator = torch.Generator().manual_seed(0)
    state = OrderedDict(
        (k, v.double())
        for k, v in version1_state(12, 10, old['sbn'], generator).items())
    state._metadata = {'': dict(version=1)}
    layer = CoCConv2d(12, 10, 3, padding=1, dtype=torch.float64,
                      **new).eval()
    layer.load_state_dict(state, strict=True)
    x = torch.randn(2, 12, 7, 7, generator=generator, dtype=torch.float64)
    expected = F.conv2d(x, version1_kernel(state, 2, 10, **old),
                        state['bias'], padding=1)
    exact = dict(rtol=1e-10, atol=1e-10)  # float64: exact up to rounding
    torch.testing.assert_close(layer(x), expected, **exact)
    # Saved again (version 2), it loads exactly into a fresh layer.
    resaved = layer.state_dict()
    fresh = CoCConv2d(12, 10, 3, padding=1, dtype=torch.float64,
                      **new).eval()
    fresh.load_state_dict(resaved, strict=True)
    torch.testing.assert_close(fresh(x), expected, **exact)
    fresh.switch_to_deploy()
    torch.testing.assert_close(fresh(x), expected, **exact)


def test_a_version1_backbone_checkpoint_loads_exactly():
    torch.manual_seed(0)
    model = ResNetCoC(depth=18, base_channels=8).eval()
    x = torch.randn(1, 3, 32, 32)
    generator = torch.Generator().manual_seed(1)
    state = model.state_dict()
    metadata = state._metadata
    old = OrderedDict()
    expected_kernels = {}
    for name, layer in model.named_modules():
        if isinstance(layer, CoCConv2d) and layer.with_coc:
            co, ci = layer.out_channels, layer.in_channels
            k = layer.kernel_size[0]
            tiles = layer.num_tiles
            v1 = OrderedDict(
                weight=0.2 * torch.randn(co, ci, k, k, generator=generator),
                super_weight=0.3 * torch.randn(tiles, 1, *layer.super_size,
                                               generator=generator),
                sbn_weight=0.5 + torch.rand(tiles, generator=generator),
                sbn_bias=0.2 * torch.randn(tiles, generator=generator))
            for key, value in v1.items():
                old[f'{name}.{key}'] = value
            metadata[name]['version'] = 1
            expected_kernels[name] = v1
    for key, value in state.items():
        if not any(key.startswith(name + '.') for name in expected_kernels):
            old[key] = value
    old._metadata = metadata
    model.load_state_dict(old, strict=True)
    # Version 1's kernels, computed independently.
    for name, v1 in expected_kernels.items():
        layer = model.get_submodule(name)
        if layer.kernel_size == (7, 7):
            continue  # the stem's 5x5 super kernel: checked by the output
        with torch.no_grad():
            torch.testing.assert_close(
                layer.final_weight(),
                version1_kernel(v1, 2, layer.out_channels, True, True,
                                True), rtol=1e-5, atol=1e-6)
    with torch.no_grad():
        out = model(x)
        model.switch_to_deploy()
        torch.testing.assert_close(model(x), out)


def test_an_ema_swap_through_data_is_seen_at_the_next_eval(cached):
    """mmengine's EMAHook swaps weights in through ``param.data`` (no version
    bump) while the model trains, then the val loop calls ``eval()``."""
    x = torch.randn(2, 8, 6, 6)
    with torch.no_grad():
        cached(x)
    cached.train()
    averaged = cached.super_weight.detach() + 1
    cached.super_weight.data.copy_(averaged)
    cached.eval()
    with torch.no_grad():
        torch.testing.assert_close(cached(x), live(cached, x))
