"""CoCConv2d against the authors' released ``Coc2d``, option by option.

The known answers (outputs, gradients and running statistics of the released
layer on "trained" parameters, in float64) come from
``tests/data/generate_coc_known_answers.py``.
"""
import os.path as osp

import pytest
import torch

from mmdgconv.models.layers import CoCConv2d

ANSWERS = torch.load(
    osp.join(osp.dirname(__file__), '..', '..', 'data',
             'coc_known_answers.pt'), weights_only=True)
RTOL = 1e-5

# The released layer's norm modules, by the ConvModule name mmcv gives them.
_OFFICIAL_SUPER_NORMS = ('conv_super.bn.', 'conv_super.ln.',
                         'conv_super.in.')
_NORM_FIELDS = ('weight', 'bias', 'running_mean', 'running_var')


def official_tiles_to_kernels(tiled, case):
    """The released ``weight9`` (or its gradient) as padded kernels
    (co_padded, ci, kh, kw)."""
    options = case['options']
    sa = options.get('sa', 2)
    share = options.get('share', 'ci')
    kh, kw = _pair(case['conv']['kernel_size'])
    if share == 'ci':
        tiled = tiled.permute(1, 0, 2, 3)
    ci = case['conv']['in_channels'] // case['conv'].get('groups', 1)
    tiles = tiled.numel() // (ci * sa * sa * kh * kw)
    return tiled.reshape(tiles, ci, sa, kh, sa, kw).permute(
        0, 2, 4, 1, 3, 5).reshape(tiles * sa * sa, ci, kh, kw)


def _pair(value):
    return tuple(value) if isinstance(value, (tuple, list)) else (value,
                                                                    value)


def official_to_ours(tensors, case, co):
    """Rename (and re-lay) the released layer's tensors as ours."""
    ours = {}
    for key, value in tensors.items():
        if key == 'weight9':
            kernels = official_tiles_to_kernels(value, case)
            ours['weight'] = kernels[:co]
            if kernels.shape[0] > co:
                ours['weight_pad'] = kernels[co:]
        elif key == 'bias':
            ours['bias'] = value
        elif key == 'conv_super.conv.weight':
            ours['super_weight'] = value
        elif key == 'conv_super.conv.bias':
            ours['super_bias'] = value
        elif key.startswith(_OFFICIAL_SUPER_NORMS):
            field = key.rsplit('.', 1)[1]
            if field in _NORM_FIELDS:
                ours[f'super_norm_{field}'] = value
        elif key.startswith('norm_final.'):
            field = key.rsplit('.', 1)[1]
            if field in _NORM_FIELDS:
                ours[f'final_norm_{field}'] = value
        else:
            assert key.endswith('num_batches_tracked'), key
    return ours


def build_like(case):
    return CoCConv2d(**case['conv'], **case['options'], dtype=torch.float64)


def assert_close(actual, expected, what):
    # Relative to the largest entry; the floor covers gradients that are
    # zero in exact arithmetic (a shift that a later standardisation
    # removes), which float64 leaves at ~1e-13.
    scale = expected.abs().max().clamp_min(1e-6)
    error = (actual - expected).abs().max() / scale
    assert error <= RTOL, f'{what}: relative error {error:.3g}'


@pytest.mark.parametrize('name', sorted(ANSWERS))
def test_equals_the_released_layer(name):
    case = ANSWERS[name]
    layer = build_like(case)
    co = case['conv']['out_channels']
    state = official_to_ours(case['state'], case, co)
    layer.load_state_dict(state, strict=True)
    layer.train(case['mode'] == 'train')
    x = case['x'].clone().requires_grad_()
    out = layer(x)
    assert_close(out, case['out'], f'{name}: output')
    (out * case['grad_out']).sum().backward()
    assert_close(x.grad, case['grad_x'], f'{name}: input gradient')
    expected_grads = official_to_ours(case['grads'], case, co)
    ours = dict(layer.named_parameters())
    assert set(expected_grads) == {k for k, p in ours.items()
                                   if p.grad is not None}
    for key, grad in expected_grads.items():
        assert_close(ours[key].grad, grad, f'{name}: gradient of {key}')
    for key, value in official_to_ours(case['stats_after'], case,
                                       co).items():
        assert_close(getattr(layer, key), value, f'{name}: {key}')


@pytest.mark.parametrize('name', ['resnet_odd_s2', 'defaults_eval',
                                  'share_co_eval', 'ws_bn_eval'])
def test_deploy_and_cached_inference_equal_the_released_layer(name):
    case = ANSWERS[name]
    layer = build_like(case)
    layer.load_state_dict(official_to_ours(
        case['state'], case, case['conv']['out_channels']))
    layer.eval()
    if case['mode'] == 'eval':
        expected = case['out']
    else:  # batch norms: the eval-mode answer is not stored; live eval
        expected = layer(case['x']).detach()
    with torch.no_grad():
        assert_close(layer(case['x']), expected, f'{name}: cached')
        assert_close(layer(case['x']), expected, f'{name}: cached again')
    layer.switch_to_deploy()
    assert set(dict(layer.named_parameters())) <= {'weight', 'bias'}
    with torch.no_grad():
        assert_close(layer(case['x']), expected, f'{name}: deployed')


def test_the_cases_cover_every_released_option():
    seen = {}
    for case in ANSWERS.values():
        for key, value in case['options'].items():
            seen.setdefault(key, set()).add(value)
    assert seen['share'] >= {'co', 'cico', None}
    assert seen['ws'] >= {True, False, 'BN', 'LN', 'LayerNorm2d', 'IN'}
    assert seen['sbn'] >= {'BN', 'LN', 'IN'}
    assert seen['sk_plus'] >= {0, 2, 4, 6}
    assert {True, False} <= seen['dilat'] and {True, False} <= seen['skip']
    assert {True, False} <= seen['both']
