import math
from types import SimpleNamespace

import pytest
import torch
from mmengine.logging import MMLogger
from mmengine.model import BaseModel

from mmdgconv.engine import ResourceConstraintHook
from mmdgconv.models import DGConv2d


class _TwoLayerModel(BaseModel):

    def __init__(self):
        super().__init__()
        self.layer1 = DGConv2d(8, 8, 3, padding=1, bias=False)
        self.layer2 = DGConv2d(8, 16, 1, bias=False)

    def forward(self, inputs, data_samples=None, mode='tensor'):
        out = self.layer2(self.layer1(inputs))
        if mode == 'loss':
            return dict(loss_a=out.pow(2).mean(),
                        loss_b=[out.mean(), out.abs().mean()],
                        acc=torch.tensor(1.0))
        return out


def _runner(model):
    return SimpleNamespace(
        model=model, logger=MMLogger.get_instance('test_resource_hook'))


def _set(model, gates1, gates2):
    with torch.no_grad():
        model.layer1.gate.copy_(torch.tensor(gates1))
        model.layer2.gate.copy_(torch.tensor(gates2))


def test_error_paths():
    with pytest.raises(ValueError, match='budget'):
        ResourceConstraintHook(budget=0)
    with pytest.raises(ValueError, match='budget_groups'):
        ResourceConstraintHook(budget_groups=0)
    hook = ResourceConstraintHook()
    plain = _TwoLayerModel()
    plain.layer1 = plain.layer2 = torch.nn.Conv2d(8, 8, 1)
    with pytest.raises(RuntimeError, match='no DGConv layer'):
        hook.before_train(_runner(plain))


def test_total_loss_is_l_times_budget_ratio_power_alpha():
    model = _TwoLayerModel().train()
    _set(model, [1., 1., 1.], [1., -1., 1.])  # dense, 2 groups
    hook = ResourceConstraintHook(budget_groups=4, alpha=-0.02)
    hook.before_train(_runner(model))
    assert hook.budget == (64 + 128) / 4
    zeta = 64 + 128 / 2
    assert hook.zeta() == zeta

    x = torch.rand(2, 8, 5, 5)
    losses = model(x, mode='loss')
    task = losses['loss_a'] + losses['loss_b'][0] + losses['loss_b'][1]
    parsed, log_vars = model.parse_losses(losses)
    factor = (hook.budget / zeta)**-0.02
    torch.testing.assert_close(parsed, task * factor)
    assert log_vars['dg_zeta'].item() == zeta
    assert log_vars['dg_zeta_ratio'].item() == pytest.approx(
        zeta / hook.budget)
    assert log_vars['dg_groups_layer1'].item() == 1.0
    assert log_vars['dg_groups_layer2'].item() == 2.0
    assert log_vars['loss_a'].item() == pytest.approx(
        losses['loss_a'].item())

    # d/dg of L * f(zeta), f = (o / zeta)^alpha: f * dL/dg + L * f'(zeta) *
    # dzeta/dg, with f' = -alpha * f / zeta and dnnz/dg = ln2 * nnz through
    # the straight-through gates (layer1 is dense: nnz = 64).
    losses = model(x, mode='loss')
    task = losses['loss_a'] + sum(losses['loss_b'])
    task_grad, = torch.autograd.grad(task, model.layer1.gate,
                                     retain_graph=True)
    total, _ = model.parse_losses(losses)
    total_grad, = torch.autograd.grad(total, model.layer1.gate)
    expected = factor * task_grad + task.item() * 0.02 * factor / zeta * \
        math.log(2) * 64
    torch.testing.assert_close(total_grad, expected, rtol=1e-5, atol=1e-8)
    hook.after_train(None)


def test_within_budget_adds_nothing():
    model = _TwoLayerModel().train()
    _set(model, [-1., -1., -1.], [-1., -1., -1.])  # depthwise: zeta = 24
    hook = ResourceConstraintHook(budget_groups=2)  # o = 96
    hook.before_train(_runner(model))
    losses = model(torch.rand(1, 8, 4, 4), mode='loss')
    assert losses['loss_resource'].item() == 0
    hook.after_train(None)
    after = model(torch.rand(1, 8, 4, 4), mode='loss')
    assert 'loss_resource' not in after  # the forward hook is removed


def test_inactive_outside_training_loss_mode():
    model = _TwoLayerModel()
    hook = ResourceConstraintHook()
    hook.before_train(_runner(model))
    model.eval()
    assert 'loss_resource' not in model(torch.rand(1, 8, 4, 4), mode='loss')
    model.train()
    out = model(torch.rand(1, 8, 4, 4), mode='tensor')
    assert isinstance(out, torch.Tensor)
    hook.after_train(None)
