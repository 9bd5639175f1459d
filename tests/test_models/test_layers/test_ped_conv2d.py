import copy
import dataclasses

import pytest
import torch
import torch.nn.functional as F
from mmcv.cnn import build_conv_layer
from mmengine.registry import DefaultScope

from mmdgconv.models.layers import PEDConv2d, ped_conv2d
from mmdgconv.models.layers.tuning import PLAIN, TUNINGS


def loop_reference(layer, x):
    """Each sample convolved with its own explicit kernel, one at a time."""
    factors = layer.factors(x)
    gamma, phi, psi = factors
    outs = []
    for b in range(x.shape[0]):
        modulation = sum(
            gamma[b, r][:, None, None, None] * phi[b, r][None, :, None, None]
            * psi[b, r][None, None] for r in range(layer.rank))
        kernel = layer.weight * modulation if layer.mode == 'multiplicative' \
            else layer.weight + modulation
        xb = x[b:b + 1]
        padding = layer.padding
        if layer.padding_mode != 'zeros':
            xb = F.pad(xb, layer._reversed_padding_repeated_twice,
                       mode=layer.padding_mode)
            padding = 0
        outs.append(F.conv2d(xb, kernel, layer.bias, layer.stride, padding,
                             layer.dilation, layer.groups))
    return torch.cat(outs)


def _grads(layer, x, fn, grad_out):
    layer.zero_grad()
    x = x.clone().requires_grad_()
    out = fn(x)
    (out * grad_out).sum().backward()
    return out.detach(), x.grad, {
        n: p.grad.clone() for n, p in layer.named_parameters()
        if p.grad is not None
    }


def _assert_matches_loop(layer, x):
    """Output, input gradient and every parameter gradient equal the loop's."""
    grad_out = torch.randn_like(loop_reference(layer, x))
    out, grad_x, grads = _grads(layer, x, layer, grad_out)
    ref_out, ref_grad_x, ref_grads = _grads(
        layer, x, lambda t: loop_reference(layer, t), grad_out)
    torch.testing.assert_close(out, ref_out, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(grad_x, ref_grad_x, rtol=1e-5, atol=1e-5)
    assert grads.keys() == ref_grads.keys()
    for name, grad in ref_grads.items():
        torch.testing.assert_close(grads[name], grad, rtol=1e-4, atol=1e-5,
                                   msg=lambda m: f'{name}: {m}')


def _randomise_generator(layer):
    with torch.no_grad():  # factors far from 0.5, so every path matters
        for module in layer.modules():
            if isinstance(module, torch.nn.Linear):
                module.weight.normal_(0, 0.5)
                module.bias.normal_(0, 0.5)


CASES = [
    dict(in_channels=16, out_channels=32, kernel_size=3, padding=1),
    dict(in_channels=16, out_channels=16, kernel_size=1),
    dict(in_channels=16, out_channels=32, kernel_size=3, stride=2, padding=2,
         dilation=2, groups=4),
    dict(in_channels=16, out_channels=16, kernel_size=3, padding=1,
         groups=16, bias=False),  # depthwise
    dict(in_channels=16, out_channels=8, kernel_size=3, padding=1,
         padding_mode='reflect'),
    dict(in_channels=16, out_channels=16, kernel_size=3, padding=1, rank=3),
    dict(in_channels=16, out_channels=16, kernel_size=3, padding=1,
         mode='additive'),
    dict(in_channels=16, out_channels=16, kernel_size=1, rank=2,
         mode='additive'),
]


@pytest.mark.parametrize('case', CASES)
@pytest.mark.parametrize('batch', [1, 3])
def test_per_sample_semantics_forward_and_backward(case, batch):
    torch.manual_seed(0)
    layer = PEDConv2d(reduction=4, **case).eval()  # eval: no noise
    _randomise_generator(layer)
    _assert_matches_loop(layer, torch.randn(batch, case['in_channels'], 7,
                                            7))


def test_samples_get_different_kernels():
    torch.manual_seed(0)
    layer = PEDConv2d(8, 8, 3, padding=1, reduction=2).eval()
    _randomise_generator(layer)
    x = torch.randn(2, 8, 5, 5)
    kernels = layer.sample_kernels(layer.factors(x))
    assert not torch.allclose(kernels[0], kernels[1])
    # A sample's output does not depend on the rest of the batch.
    torch.testing.assert_close(layer(x)[1:], layer(x[1:]), rtol=1e-5,
                               atol=1e-5)


def test_initial_factors_are_one_half():
    layer = PEDConv2d(32, 32, 3).eval()
    for factor in layer.factors(torch.randn(2, 32, 4, 4)):
        torch.testing.assert_close(factor, torch.full_like(factor, 0.5),
                                   rtol=0, atol=0.05)


@pytest.mark.parametrize('rank,groups', [(1, 1), (2, 1), (1, 2)])
def test_factors_are_the_generator_formula(rank, groups):
    """gamma, phi, psi = sigmoid(W2 relu(W1 pool(x) + b1) + b2), split in
    that order (the paper's generator, eqs. 3-4), computed here in float64
    from the layer's parameters."""
    torch.manual_seed(rank + groups)
    layer = PEDConv2d(8, 12, 3, padding=1, groups=groups, rank=rank,
                      reduction=2).eval()
    _randomise_generator(layer)
    x = torch.randn(3, 8, 5, 6)
    w1, b1 = layer.squeeze.weight.double(), layer.squeeze.bias.double()
    w2, b2 = layer.heads.weight.double(), layer.heads.bias.double()
    pooled = x.double().sum((2, 3)) / (5 * 6)
    logits = torch.clamp(pooled @ w1.T + b1, min=0) @ w2.T + b2
    factors = 1 / (1 + torch.exp(-logits))
    sizes = [rank * 12, rank * 8 // groups, rank * 9]
    assert factors.shape[1] == sum(sizes)
    gamma, phi, psi = layer.factors(x)
    expected = factors.split(sizes, dim=1)
    shapes = [(3, rank, 12), (3, rank, 8 // groups), (3, rank, 3, 3)]
    for actual, wanted, shape in zip((gamma, phi, psi), expected, shapes):
        assert actual.shape == shape
        torch.testing.assert_close(actual.double(), wanted.reshape(shape),
                                   rtol=1e-6, atol=1e-7)


def test_eval_is_deterministic_and_training_is_noisy():
    torch.manual_seed(0)
    layer = PEDConv2d(16, 16, 3, padding=1)
    x = torch.randn(2, 16, 6, 6)
    layer.eval()
    torch.testing.assert_close(layer(x), layer(x), rtol=0, atol=0)
    layer.train()
    assert not torch.equal(layer(x), layer(x))
    quiet = PEDConv2d(16, 16, 3, padding=1, noise_std=0.0).train()
    torch.testing.assert_close(quiet(x), quiet(x), rtol=0, atol=0)


def test_info_max_decoder_produces_a_loss_in_training_only():
    layer = PEDConv2d(16, 16, 3, padding=1, info_max=True).train()
    layer(torch.randn(2, 16, 5, 5))
    loss = layer.info_max_loss
    assert loss is not None and loss.ndim == 0 and loss.requires_grad
    loss.backward()
    assert layer.decoder[0].weight.grad is not None
    assert layer.squeeze.weight.grad is not None
    plain = PEDConv2d(16, 16, 3, padding=1)
    assert not hasattr(plain, 'decoder')
    plain.train()(torch.randn(1, 16, 4, 4))
    assert plain.info_max_loss is None


def test_error_paths_name_the_layer():
    with pytest.raises(ValueError, match=r'PEDConv2d\(8, 8.*reduction=16'):
        PEDConv2d(8, 8, 3)  # reduction larger than C_in
    with pytest.raises(ValueError, match='groups must divide'):
        PEDConv2d(16, 10, 3, groups=4, reduction=4)
    with pytest.raises(ValueError, match='rank'):
        PEDConv2d(16, 16, 3, rank=0, reduction=4)
    with pytest.raises(ValueError, match='mode'):
        PEDConv2d(16, 16, 3, mode='concat', reduction=4)


def test_channels_last_and_shapes():
    layer = PEDConv2d(16, 32, 3, stride=2, padding=1, reduction=4).eval()
    x = torch.randn(4, 16, 9, 9).to(memory_format=torch.channels_last)
    assert layer(x).shape == (4, 32, 5, 5)
    torch.testing.assert_close(layer(x), layer(x.contiguous()), rtol=1e-5,
                               atol=1e-5)


def test_built_through_conv_cfg_from_every_scope():
    for scope in ('mmdet', 'mmpretrain', 'mmaction', 'mmdgconv'):
        with DefaultScope.overwrite_default_scope(scope):
            layer = build_conv_layer(dict(type='PEDConv', reduction=4), 16,
                                     16, 3, padding=1)
        assert isinstance(layer, PEDConv2d) and layer.reduction == 4


#: Every rank-1 form: columns, matmul, folded, input_folded and scaled.
RANK1_CASES = [
    # deep layers: fewer output pixels than channels -> the unfold path
    dict(in_channels=32, out_channels=64, kernel_size=3, padding=1),
    dict(in_channels=32, out_channels=64, kernel_size=3, stride=2, padding=2,
         dilation=2, bias=False),
    dict(in_channels=32, out_channels=64, kernel_size=3, padding=1,
         padding_mode='reflect'),
    dict(in_channels=32, out_channels=64, kernel_size=3, padding='same',
         bias=False),
    # 1x1 and small k x k layers whose weights are smaller than their
    # activations: the factors fold into the one kernel at batch 1; 1x1
    # layers run per-sample matrices in one batched GEMM at batch 3
    dict(in_channels=4, out_channels=4, kernel_size=1),
    dict(in_channels=4, out_channels=4, kernel_size=1, stride=2,
         bias=False),
    dict(in_channels=8, out_channels=4, kernel_size=1, groups=4),
    dict(in_channels=4, out_channels=8, kernel_size=3, padding=1, groups=2),
    # 1x1 layers at batch 1 whose weight outweighs the output: phi and psi
    # go into the kernel (weight smaller than the input) or scale the input
    dict(in_channels=64, out_channels=4, kernel_size=1, bias=False),
    dict(in_channels=64, out_channels=64, kernel_size=1),
]

#: Device tunings the rank-1 tests run under: this CPU's, the plain one,
#: and this CPU's with the column form at batch 1 for any weight (the test
#: layers are far below the threshold ResNet-50's layer4 reaches).
TEST_TUNINGS = {
    'cpu': None,
    'plain': PLAIN,
    'batch1_columns': dataclasses.replace(
        TUNINGS['cpu'], ped_batch1_columns_min_weight=0),
}


def _use_tuning(name, monkeypatch):
    """Install the tuning ``name`` of :data:`TEST_TUNINGS` for the CPU."""
    if TEST_TUNINGS[name] is not None:
        monkeypatch.setitem(TUNINGS, 'cpu', TEST_TUNINGS[name])


@pytest.mark.parametrize('batch', [1, 3])
@pytest.mark.parametrize('case', RANK1_CASES)
@pytest.mark.parametrize('device_tuning', ['cpu', 'plain'])
def test_every_rank1_path_matches_the_loop(case, batch, device_tuning,
                                           monkeypatch):
    """On the CPU's choices and on the plain paths other devices take."""
    if device_tuning == 'plain':
        monkeypatch.setitem(TUNINGS, 'cpu', PLAIN)
    torch.manual_seed(2)
    layer = PEDConv2d(reduction=4, **case).eval()
    _randomise_generator(layer)
    _assert_matches_loop(layer, torch.randn(batch, case['in_channels'], 5,
                                            5))


@pytest.mark.parametrize('case', CASES[:5] + [
    dict(in_channels=32, out_channels=64, kernel_size=3, stride=2,
         padding=2, dilation=2),
    dict(in_channels=32, out_channels=64, kernel_size=3, padding=1,
         padding_mode='circular'),
    dict(in_channels=32, out_channels=64, kernel_size=(3, 2),
         padding='same'),
    dict(in_channels=32, out_channels=64, kernel_size=3, padding='valid'),
])
@pytest.mark.parametrize('batch', [1, 3])
def test_inference_paths_match_the_loop(case, batch):
    """Under no_grad the deep layers gather their windows differently."""
    torch.manual_seed(3)
    layer = PEDConv2d(reduction=4, **case).eval()
    _randomise_generator(layer)
    x = torch.randn(batch, case['in_channels'], 6, 5)
    x = x.to(memory_format=torch.channels_last) if batch == 3 else x
    with torch.no_grad():
        torch.testing.assert_close(layer(x), loop_reference(layer, x),
                                   rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize('case', RANK1_CASES + CASES[:4])
@pytest.mark.parametrize('device_tuning', list(TEST_TUNINGS))
def test_batch1_inference_path_follows_shape_and_tuning(
        case, device_tuning, monkeypatch):
    """Eager batch-1 inference keeps each input shape's form and takes the
    factors from matrix-vector products: every form it picks gives the
    loop's output, and a new input shape or tuning gets its own form."""
    other = PLAIN if device_tuning != 'plain' else TUNINGS['cpu']
    _use_tuning(device_tuning, monkeypatch)
    torch.manual_seed(6)
    layer = PEDConv2d(reduction=4, **case).eval()
    _randomise_generator(layer)
    inputs = [torch.randn(1, case['in_channels'], *size)
              for size in ((5, 5), (9, 7), (5, 5))]
    with torch.no_grad():
        for x in inputs:
            torch.testing.assert_close(layer(x), loop_reference(layer, x),
                                       rtol=1e-5, atol=1e-5)
        assert set(layer._batch1_plans) == {inputs[0].shape, inputs[1].shape}
        # a channels-last model (its kernels too) on a channels-last input
        x = inputs[0].to(memory_format=torch.channels_last)
        expected = loop_reference(layer, x)
        out = copy.deepcopy(layer).to(memory_format=torch.channels_last)(x)
        torch.testing.assert_close(out, expected, rtol=1e-5, atol=1e-5)
        assert out.is_contiguous(memory_format=torch.channels_last)
        monkeypatch.setitem(TUNINGS, 'cpu', other)
        torch.testing.assert_close(layer(inputs[0]),
                                   loop_reference(layer, inputs[0]),
                                   rtol=1e-5, atol=1e-5)
        out_h, out_w = layer._output_size(inputs[0])
        tuning, form = layer._batch1_plans[inputs[0].shape][:2]
        assert tuning is other
        assert form == layer._rank1_form(inputs[0], out_h * out_w, other)


@pytest.mark.parametrize('implementation', ['compiled', 'python'])
def test_batch1_inference_path_with_pruned_and_parametrized_weights(
        implementation, monkeypatch):
    """Where pruning or a parametrization keeps a weight outside the
    module's parameters, the batch-1 path uses the weight in effect."""
    if implementation == 'python':
        monkeypatch.setattr(ped_conv2d, 'compiled_ops', lambda: None)
    from torch.nn.utils import parametrizations, prune
    torch.manual_seed(8)
    layer = PEDConv2d(8, 8, 3, padding=1, reduction=4).eval()
    _randomise_generator(layer)
    prune.random_unstructured(layer, 'weight', amount=0.5)
    parametrizations.weight_norm(layer.squeeze)
    with torch.no_grad():
        layer.squeeze.parametrizations.weight.original0.mul_(3)
        x = torch.randn(1, 8, 5, 5)
        torch.testing.assert_close(layer(x), loop_reference(layer, x),
                                   rtol=1e-5, atol=1e-5)
    assert list(layer._batch1_plans) == [x.shape]


class _CallCounter:
    """The compiled ops, counting calls of ``ped_rank1_batch1``."""

    def __init__(self, ops):
        self.ops, self.calls = ops, 0

    def ped_rank1_batch1(self, *args):
        self.calls += 1
        return self.ops.ped_rank1_batch1(*args)


@pytest.mark.parametrize('affine', [False, True])
@pytest.mark.parametrize('case', RANK1_CASES + CASES[5:])
@pytest.mark.parametrize('device_tuning', list(TEST_TUNINGS))
def test_batch1_compiled_op_is_the_python_path_bit_for_bit(
        case, device_tuning, affine, monkeypatch):
    """The compiled ``ped_rank1_batch1`` runs the Python path's ATen ops in
    the same order: the same bits, on every form, with and without an
    affine; both equal the loop. String padding and other padding modes
    stay in Python."""
    from mmdgconv.compiled_ops import compiled_ops
    _use_tuning(device_tuning, monkeypatch)
    torch.manual_seed(9)
    layer = PEDConv2d(reduction=4, **case).eval()
    _randomise_generator(layer)
    x = torch.randn(1, case['in_channels'], 6, 5)
    args = (torch.rand(case['out_channels']) + 0.5,
            torch.randn(case['out_channels'])) if affine else ()
    counter = _CallCounter(compiled_ops())
    forward = layer.forward_with_affine if affine else layer
    with torch.no_grad():
        expected = loop_reference(layer, x)
        if affine:
            expected = expected * args[0][:, None, None] + args[1][:, None,
                                                                   None]
        monkeypatch.setattr(ped_conv2d, 'compiled_ops', lambda: counter)
        compiled = forward(x, *args)
        monkeypatch.setattr(ped_conv2d, 'compiled_ops', lambda: None)
        python = forward(x, *args)
    compiles = (layer.padding_mode == 'zeros'
                and not isinstance(layer.padding, str)
                and layer.rank == 1 and layer.mode == 'multiplicative')
    assert counter.calls == int(compiles)
    assert torch.equal(compiled, python)
    torch.testing.assert_close(compiled, expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize('dtype', [torch.float64, torch.bfloat16])
def test_batch1_compiled_op_in_other_dtypes_and_layouts(dtype, monkeypatch):
    """float64 takes the one-pass output affine, bfloat16 and channels-last
    outputs the in-place ops: the Python path's bits either way."""
    torch.manual_seed(10)
    layer = PEDConv2d(8, 16, 3, padding=1, reduction=4).eval()
    _randomise_generator(layer)
    layer = layer.to(dtype)
    scale, shift = torch.rand(16, dtype=dtype) + 0.5, torch.randn(16,
                                                                  dtype=dtype)
    for x in (torch.randn(1, 8, 6, 5, dtype=dtype),
              torch.randn(1, 8, 6, 5, dtype=dtype).to(
                  memory_format=torch.channels_last)):
        with torch.no_grad():
            compiled = layer.forward_with_affine(x, scale, shift)
            monkeypatch.setattr(ped_conv2d, 'compiled_ops', lambda: None)
            python = layer.forward_with_affine(x, scale, shift)
            monkeypatch.undo()
            expected = loop_reference(layer, x) * scale[:, None, None] \
                + shift[:, None, None]
        assert torch.equal(compiled, python)
        assert compiled.dtype == dtype
        tolerance = 1e-12 if dtype == torch.float64 else 0.1
        torch.testing.assert_close(compiled, expected, rtol=tolerance,
                                   atol=tolerance)


def test_batch1_inference_path_only_for_plain_eager_inference():
    """Training (noise), autograd, autocast and a second input dtype take
    the general path, whose results they need."""
    torch.manual_seed(7)
    layer = PEDConv2d(8, 8, 3, padding=1, reduction=4)
    x = torch.randn(1, 8, 5, 5)
    with torch.no_grad():
        assert not torch.equal(layer(x), layer(x))  # training: noisy
        layer.eval()
        with torch.autocast('cpu', dtype=torch.bfloat16):
            assert layer(x).dtype == torch.bfloat16
        with pytest.raises(RuntimeError):
            layer(x.double())  # as nn.Conv2d: one dtype
    layer(x).sum().backward()
    assert not layer.__dict__.get('_batch1_plans')
    with torch.no_grad():
        layer(x)
    assert list(layer._batch1_plans) == [x.shape]


@pytest.mark.slow
def test_torch_compile_matches_eager():
    """The benchmark's compiled rows run the same maths: every rank-1 form
    (folded kernel, scaled activations, scaled columns) under inductor."""
    torch.manual_seed(5)
    model = torch.nn.Sequential(
        PEDConv2d(8, 32, 3, padding=1, reduction=4),  # activations, W * psi
        PEDConv2d(32, 64, 3, padding=1, reduction=4),  # deep: columns
        PEDConv2d(64, 16, 1, reduction=4),  # 1x1: folded at batch 1
    ).eval()
    for layer in model:
        _randomise_generator(layer)
    compiled = torch.compile(model, dynamic=False)
    with torch.no_grad():
        for batch in (1, 2):
            x = torch.randn(batch, 8, 6, 6)
            torch.testing.assert_close(compiled(x), model(x), rtol=1e-4,
                                       atol=1e-5)


@pytest.mark.parametrize('grad', [False, True])
@pytest.mark.parametrize('batch', [1, 3])
@pytest.mark.parametrize('case', RANK1_CASES + CASES[5:])
@pytest.mark.parametrize('device_tuning', list(TEST_TUNINGS))
def test_forward_with_affine_is_the_layer_then_the_affine(
        case, batch, grad, device_tuning, monkeypatch):
    """``forward_with_affine(x, scale, shift) == layer(x) * scale + shift``
    on every form, and with autograd its gradients too (input, layer
    parameters, scale and shift)."""
    _use_tuning(device_tuning, monkeypatch)
    torch.manual_seed(4)
    layer = PEDConv2d(reduction=4, **case).eval()
    _randomise_generator(layer)
    x = torch.randn(batch, case['in_channels'], 5, 5)
    scale = torch.rand(case['out_channels']) + 0.5
    shift = torch.randn(case['out_channels'])

    def reference(x, scale, shift):
        return layer(x) * scale[:, None, None] + shift[:, None, None]

    if not grad:
        with torch.no_grad():
            expected = loop_reference(layer, x) * scale[:, None, None] \
                + shift[:, None, None]
            torch.testing.assert_close(
                layer.forward_with_affine(x, scale, shift), expected,
                rtol=1e-5, atol=1e-5)
        return
    results = []
    for fn in (layer.forward_with_affine, reference):
        layer.zero_grad()
        inputs = [t.clone().requires_grad_() for t in (x, scale, shift)]
        out = fn(*inputs)
        out.backward(torch.ones_like(out) + torch.arange(out.numel()).view(
            out.shape) % 3)
        results.append([out] + [t.grad for t in inputs] + [
            p.grad.clone() for p in layer.parameters() if p.grad is not None])
    assert len(results[0]) == len(results[1])
    for actual, expected in zip(*results):
        torch.testing.assert_close(actual, expected, rtol=1e-4, atol=1e-4)


def test_forward_with_affine_checks_the_shapes():
    layer = PEDConv2d(8, 16, 3, reduction=4)
    with pytest.raises(ValueError, match=r'PEDConv2d\(8, 16\).*\(16,\)'):
        layer.forward_with_affine(torch.randn(1, 8, 5, 5), torch.ones(8),
                                  torch.zeros(16))
