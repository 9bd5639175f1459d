"""The mmpretrain ImageNet configs build in mmpretrain's scope and train."""
import os.path as osp

import pytest
import torch
from mmengine.config import Config
from mmengine.registry import DefaultScope

CONFIGS = osp.join(osp.dirname(__file__), '..', '..', 'configs')
NARROW = {
    'mmdgconv.GResNeXt': dict(groups=4, base_width=4, base_channels=16),
    'mmdgconv.ResNetCoC': dict(base_channels=16),
}


@pytest.mark.parametrize('config', [
    'g_resnext/g-resnext50-32x4d_8xb32_in1k.py',
    'coc/resnet50-coc_8xb32_in1k.py',
    'coc/resnet50-coc_8xb32_in1k_deploy.py',
])
def test_classifier_config_builds_and_trains_a_step(config):
    from mmpretrain.registry import MODELS
    from mmpretrain.structures import DataSample
    cfg = Config.fromfile(osp.join(CONFIGS, config))
    assert cfg.default_scope == 'mmpretrain'
    cfg.model.backbone.update(NARROW[cfg.model.backbone.type])
    cfg.model.head.in_channels = 512
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        model = MODELS.build(cfg.model)
    model.init_weights()
    model.train()
    inputs = torch.rand(2, 3, 64, 64)
    samples = [DataSample().set_gt_label(label) for label in (1, 7)]
    losses = model(inputs, samples, mode='loss')
    assert torch.isfinite(losses['loss'])
    losses['loss'].backward()
    assert all(p.grad is not None for p in model.backbone.parameters()
               if p.requires_grad)
    if config.endswith('_deploy.py'):
        assert not any('super_weight' in k for k in model.state_dict())
