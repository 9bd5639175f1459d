"""PEDConv2d against the authors' released ``Variational_DYConv2d``.

The known answers (output, information-maximisation loss and the gradients
of the released training objective, on "trained" generator weights, with the
released layer's logit noise recorded) come from
``tests/data/generate_pedconv_known_answers.py``.
"""
import os.path as osp

import pytest
import torch

from mmdgconv.engine import PEDInfoMaxHook
from mmdgconv.models.layers import PEDConv2d

ANSWERS = torch.load(
    osp.join(osp.dirname(__file__), '..', '..', 'data',
             'pedconv_known_answers.pt'), weights_only=True)
RTOL = 1e-5


def split_heads(case):
    conv = case['conv']
    return (conv['in_channels'] // conv['groups'], conv['out_channels'],
            conv['kernel_size']**2)


def official_to_ours(tensors, case):
    """Our heads are (gamma, phi, psi) = the released (oup, inp, k) heads
    fused into one layer; the decoder's input follows that order."""
    inp, oup, kk = split_heads(case)
    attn = {k[len('attn.'):]: v for k, v in tensors.items()
            if k.startswith('attn.')}
    ours = {}
    if 'weight' in tensors:
        ours['weight'] = tensors['weight']
    for official, name in (('fc_share', 'squeeze'),
                           ('decoder.2', 'decoder.2')):
        for field in ('weight', 'bias'):
            if f'{official}.{field}' in attn:
                ours[f'{name}.{field}'] = attn[f'{official}.{field}']
    for field in ('weight', 'bias'):
        ours[f'heads.{field}'] = torch.cat([
            attn[f'fc_oup.{field}'], attn[f'fc_inp.{field}'],
            attn[f'fc_k.{field}']])
    if 'decoder.0.weight' in attn:
        decoder_in = attn['decoder.0.weight'].split((inp, oup, kk), dim=1)
        ours['decoder.0.weight'] = torch.cat(
            [decoder_in[1], decoder_in[0], decoder_in[2]], dim=1)
        ours['decoder.0.bias'] = attn['decoder.0.bias']
    return ours


def assert_close(actual, expected, what):
    # Relative to the largest entry; the floor covers gradients that are
    # zero in exact arithmetic (a shift that a later standardisation
    # removes), which float64 leaves at ~1e-13.
    scale = expected.abs().max().clamp_min(1e-6)
    error = (actual - expected).abs().max() / scale
    assert error <= RTOL, f'{what}: relative error {error:.3g}'


@pytest.mark.parametrize('name', sorted(ANSWERS))
def test_equals_the_released_layer_and_objective(name, monkeypatch):
    case = ANSWERS[name]
    layer = PEDConv2d(**case['conv'], bias=False, info_max=True,
                      dtype=torch.float64)
    layer.load_state_dict(official_to_ours(case['state'], case), strict=True)
    training = case['mode'] == 'train'
    layer.train(training)
    if training:  # replay the released layer's noise, in our head order
        noise = torch.cat([case['noise']['oup'], case['noise']['inp'],
                           case['noise']['k']], dim=1)
        monkeypatch.setattr(torch, 'randn_like', lambda like: noise.clone())
    x = case['x'].clone().requires_grad_()
    out = layer(x)
    assert_close(out, case['out'], f'{name}: output')
    objective = (out * case['grad_out']).sum()
    if training:
        assert_close(layer.info_max_loss, case['info_max_loss'],
                     f'{name}: info-max loss')
        # The hook adds exactly the released weighting.
        losses = {}
        hook = PEDInfoMaxHook()
        hook._layers = [layer]
        hook.add_terms(losses)
        assert_close(losses['loss_infomax'],
                     case['info_max_weight'] * case['info_max_loss'],
                     f'{name}: weighted term')
        objective = objective + losses['loss_infomax']
    objective.backward()
    assert_close(x.grad, case['grad_x'], f'{name}: input gradient')
    ours = dict(layer.named_parameters())
    for key, grad in official_to_ours(case['grads'], case).items():
        assert_close(ours[key].grad, grad, f'{name}: gradient of {key}')
    if not training:
        assert all(ours[k].grad is None for k in ours
                   if k.startswith('decoder.'))
