from types import SimpleNamespace

import pytest
import torch
from mmengine.logging import MMLogger
from mmengine.model import BaseModel

from mmdgconv.engine import PEDInfoMaxHook
from mmdgconv.models import PEDConv2d


class _Model(BaseModel):

    def __init__(self, info_max=True):
        super().__init__()
        self.a = PEDConv2d(8, 8, 3, padding=1, reduction=2, info_max=info_max,
                           info_max_weight=0.5)
        self.b = PEDConv2d(8, 8, 1, reduction=2, info_max=info_max,
                           info_max_weight=0.25)

    def forward(self, inputs, data_samples=None, mode='tensor'):
        out = self.b(self.a(inputs))
        return dict(loss_task=out.mean()) if mode == 'loss' else out


def _runner(model):
    return SimpleNamespace(model=model,
                           logger=MMLogger.get_instance('ped_hook_test'))


def test_requires_info_max_layers():
    with pytest.raises(RuntimeError, match='info_max=True'):
        PEDInfoMaxHook().before_train(_runner(_Model(info_max=False)))


def test_weighted_sum_reaches_the_loss_once():
    torch.manual_seed(0)
    model = _Model().train()
    hook = PEDInfoMaxHook()
    hook.before_train(_runner(model))
    losses = model(torch.randn(2, 8, 5, 5), mode='loss')
    assert set(losses) == {'loss_task', 'loss_infomax'}
    total, log_vars = model.parse_losses(losses)
    assert 'loss_infomax' in log_vars
    total.backward()
    assert model.a.decoder[0].weight.grad is not None
    assert model.a.info_max_loss is None  # consumed
    # The weights apply per layer: check against the layers' own MSEs.
    model.zero_grad()
    hook.after_train(None)
    torch.manual_seed(1)
    model(torch.randn(2, 8, 5, 5), mode='loss')
    expected = 0.5 * model.a.info_max_loss + 0.25 * model.b.info_max_loss
    hook.before_train(_runner(model))
    model.a.info_max_loss, model.b.info_max_loss = (model.a.info_max_loss,
                                                    model.b.info_max_loss)
    losses = {}
    hook.add_terms(losses)
    torch.testing.assert_close(losses['loss_infomax'], expected)
    hook.after_train(None)
