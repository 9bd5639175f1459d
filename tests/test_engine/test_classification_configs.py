"""The mmpretrain ImageNet configs build in mmpretrain's scope and train."""
import os.path as osp

import pytest
import torch
from mmengine.config import Config
from mmengine.registry import DefaultScope

from mmdgconv.testing import NARROW_BACKBONES

CONFIGS = osp.join(osp.dirname(__file__), '..', '..', 'configs')


@pytest.mark.parametrize('config', [
    'g_resnext/g-resnext50-32x4d_8xb32_in1k.py',
    'g_resnext/g-resnext101-32x8d_8xb32_in1k.py',
    'p4/p4-resnet50_8xb32_in1k.py',
    'coc/resnet50-coc_8xb32_in1k.py',
    'coc/resnet50-coc_8xb32_in1k_deploy.py',
    'pedconv/ped-resnet18_8xb32_in1k.py',
    'pedconv/ped-resnet50_8xb32_in1k.py',
])
def test_classifier_config_builds_and_trains_a_step(config):
    from mmpretrain.registry import MODELS
    from mmpretrain.structures import DataSample
    cfg = Config.fromfile(osp.join(CONFIGS, config))
    assert cfg.default_scope == 'mmpretrain'
    if '101-32x8d' in config:
        assert (cfg.model.backbone.depth, cfg.model.backbone.groups,
                cfg.model.backbone.base_width) == (101, 32, 8)
    cfg.model.backbone.update(NARROW_BACKBONES[cfg.model.backbone.type])
    # the narrow widths' last stage (P4ResNet: half, group-pooled)
    cfg.model.head.in_channels = 128 if 'resnet18' in config else (
        256 if 'p4' in config else 512)
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        model = MODELS.build(cfg.model)
    model.init_weights()
    model.train()
    inputs = torch.rand(2, 3, 64, 64)
    samples = [DataSample().set_gt_label(label) for label in (1, 7)]
    losses = model(inputs, samples, mode='loss')
    assert torch.isfinite(losses['loss'])
    losses['loss'].backward()
    # Info-max decoders learn only through PEDInfoMaxHook's loss, which the
    # end-to-end tests cover.
    assert all(p.grad is not None
               for name, p in model.backbone.named_parameters()
               if p.requires_grad and '.decoder.' not in name)
    if config.endswith('_deploy.py'):
        assert not any('super_weight' in k for k in model.state_dict())
