"""torch.compile: every backbone's forward and train step compile without a
graph break inside the operators and give eager's outputs and gradients;
a DGConv gate that flips between compiled steps is followed without a
recompilation."""
import copy

import pytest
import torch
from mmengine.registry import DefaultScope

from mmdgconv.models import GResNeXt, P4ResNet, PEDResNet, ResNetCoC
from mmdgconv.models.layers import DGConv2d


def _resnext_with_dgconv_cfg():
    from mmdet.registry import MODELS
    with DefaultScope.overwrite_default_scope('mmdet'):
        return MODELS.build(
            dict(type='ResNeXt', depth=50, groups=4, base_width=4,
                 base_channels=16, conv_cfg=dict(type='DGConv')))


BACKBONES = {
    'GResNeXt': lambda: GResNeXt(depth=50, groups=4, base_width=4,
                                 base_channels=16),
    # One stage: dynamo traces each CoC layer's kernel generation op by op
    # (about 200 ops, 2 s per layer on two cores); the layer code is the
    # same in every stage.
    'ResNetCoC': lambda: ResNetCoC(depth=18, base_channels=16, num_stages=1,
                                   coc_stages=(True, ), strides=(1, ),
                                   dilations=(1, ), out_indices=(0, )),
    'PEDResNet': lambda: PEDResNet(depth=50, base_channels=16,
                                   ped_cfg=dict(reduction=4)),
    'P4ResNet': lambda: P4ResNet(depth=50, base_channels=16),
    'ResNeXt + DGConv via conv_cfg': _resnext_with_dgconv_cfg,
}


#: AOT autograd traces the backward too (custom ops' fake kernels and
#: autograd formulas, functionalised norm statistics). For ResNet-CoC that
#: takes two minutes on two cores, and it has no custom op to check there:
#: dynamo's graph with eager autograd.
BACKENDS = {'ResNetCoC': 'eager'}


def _mixed_gates(model):
    """Gates of several groupings, as training leaves them."""
    generator = torch.Generator().manual_seed(3)
    with torch.no_grad():
        for layer in model.modules():
            if isinstance(layer, DGConv2d) and layer.has_gates:
                layer.gate.copy_(torch.randn(layer.gate.shape,
                                             generator=generator))


def _step(model, x):
    """A train step's forward and backward; the outputs and every
    gradient."""
    model.zero_grad(set_to_none=True)
    torch.manual_seed(7)  # PEDConv's noise: the same draws
    outs = model(x)
    outs = outs if isinstance(outs, (tuple, list)) else [outs]
    loss = sum((o.float() * torch.linspace(-1, 1, o.numel()).reshape(
        o.shape)).sum() for o in outs)
    loss.backward()
    module = getattr(model, '_orig_mod', model)  # torch.compile's wrapper
    grads = {n: p.grad.clone() for n, p in module.named_parameters()
             if p.grad is not None}
    return [o.detach() for o in outs], grads


@pytest.mark.parametrize('name', sorted(BACKBONES))
def test_eval_forward_has_no_graph_breaks(name):
    """(The train step below compiles with ``fullgraph=True``, which fails
    on any graph break.)"""
    torch.manual_seed(0)
    model = BACKBONES[name]()
    model.eval()
    _mixed_gates(model)
    explanation = torch._dynamo.explain(model)(torch.rand(2, 3, 64, 64))
    assert explanation.graph_break_count == 0, [
        str(r.reason) for r in explanation.break_reasons[:3]]
    assert explanation.graph_count == 1


@pytest.mark.parametrize('name', sorted(BACKBONES))
def test_compiled_train_step_equals_eager(name):
    torch.manual_seed(0)
    model = BACKBONES[name]()
    model.train()
    _mixed_gates(model)
    eager = copy.deepcopy(model)
    x = torch.rand(2, 3, 64, 64)
    expected_outs, expected_grads = _step(eager, x)
    torch._dynamo.reset()
    compiled = torch.compile(model, fullgraph=True,
                             backend=BACKENDS.get(name, 'aot_eager'))
    outs, grads = _step(compiled, x)
    for out, expected in zip(outs, expected_outs):
        torch.testing.assert_close(out, expected, rtol=1e-4, atol=1e-5)
    assert grads.keys() == expected_grads.keys()
    for key, grad in expected_grads.items():
        torch.testing.assert_close(
            grads[key], grad, rtol=1e-4,
            atol=1e-5 * max(1., grad.abs().max().item()), msg=key)


def test_a_gate_flip_between_compiled_steps_is_followed_without_recompiling():
    from torch._dynamo.utils import counters
    torch.manual_seed(0)
    model = GResNeXt(depth=50, groups=4, base_width=4, base_channels=16)
    _mixed_gates(model)
    torch._dynamo.reset()
    counters.clear()
    compiled = torch.compile(model, backend='aot_eager', fullgraph=True)
    x = torch.rand(2, 3, 64, 64)
    _step(compiled, x)
    graphs = counters['stats']['unique_graphs']
    layer = model.layer2[0].conv2
    before = layer.num_groups
    with torch.no_grad():
        layer.gate[0] = -layer.gate[0] if layer.gate[0] != 0 else 1.
    assert layer.num_groups != before  # a different grouping
    outs, grads = _step(compiled, x)
    assert counters['stats']['unique_graphs'] == graphs  # no recompilation
    expected_outs, expected_grads = _step(model, x)  # eager, new grouping
    for out, expected in zip(outs, expected_outs):
        torch.testing.assert_close(out, expected, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(grads['layer2.0.conv2.gate'],
                               expected_grads['layer2.0.conv2.gate'],
                               rtol=1e-4, atol=1e-5)


@pytest.mark.slow
def test_inductor_compiles_the_g_resnext_train_step():
    """The default backend generates code for it, and it computes what eager
    computes."""
    torch.manual_seed(0)
    model = GResNeXt(depth=50, groups=4, base_width=4, base_channels=16,
                     out_indices=(3, ))
    _mixed_gates(model)
    eager = copy.deepcopy(model)
    x = torch.rand(2, 3, 64, 64)
    expected_outs, expected_grads = _step(eager, x)
    torch._dynamo.reset()
    outs, grads = _step(torch.compile(model, fullgraph=True), x)

    # Inductor fuses and reorders float sums, and 50 layers of batch norms
    # over few values (8 in layer4 at batch 2) amplify that going back: the
    # same network with stock grouped convs instead of DGConv differs from
    # eager by up to 4e-2 (relative norm) in its gradients, 1e-4 in its
    # output. A wrong layout or gate formula would be off by O(1).
    def relative(a, b):
        return ((a - b).norm() / b.norm().clamp_min(1e-12)).item()

    assert relative(outs[0], expected_outs[0]) < 1e-3
    assert grads.keys() == expected_grads.keys()
    for key, grad in expected_grads.items():
        assert relative(grads[key], grad) < 5e-2, key
