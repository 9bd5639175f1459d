"""ImageNet-style pre-training with tools/train.py (mmpretrain), then the
classifier checkpoint initialises detection and TSN backbones through
``init_cfg=dict(type='Pretrained', prefix='backbone.')``."""
import contextlib
import logging
import os.path as osp
import subprocess
import sys

import pytest
import torch
from mmengine.config import Config
from mmengine.logging import MMLogger
from mmengine.registry import DefaultScope

from mmdgconv.datasets import make_synthetic_imagefolder
from mmdgconv.testing import shrink_classification_config
from mmdgconv.utils import load_checkpoint_safely

REPO = osp.abspath(osp.join(osp.dirname(__file__), '..', '..'))
CONFIGS = osp.join(REPO, 'configs')
CLASSIFIERS = {
    'mmdgconv.GResNeXt': 'g_resnext/g-resnext50-32x4d_8xb32_in1k.py',
    'mmdgconv.ResNetCoC': 'coc/resnet50-coc_8xb32_in1k.py',
    'mmdgconv.PEDResNet': 'pedconv/ped-resnet50_8xb32_in1k.py',
}
DOWNSTREAM = {
    'mmdgconv.GResNeXt': (
        'g_resnext/faster-rcnn_g-resnext50-32x4d_fpn_1x_coco.py',
        'tsn/tsn_imagenet-pretrained-g-resnext50-32x4d_8xb32-1x1x3-100e_'
        'kinetics400-rgb.py'),
    'mmdgconv.ResNetCoC': (
        'coc/retinanet_r50-coc_fpn_1x_coco.py',
        'tsn/tsn_imagenet-pretrained-r50-coc_8xb32-1x1x3-100e_kinetics400-'
        'rgb.py'),
    'mmdgconv.PEDResNet': (
        'pedconv/faster-rcnn_ped-r50_fpn_1x_coco.py',
        'tsn/tsn_imagenet-pretrained-ped-r50_8xb32-1x1x3-100e_kinetics400-'
        'rgb.py'),
}
NARROW = {
    'mmdgconv.GResNeXt': dict(groups=4, base_width=4, base_channels=16),
    'mmdgconv.ResNetCoC': dict(base_channels=16),
    'mmdgconv.PEDResNet': dict(base_channels=16, ped_cfg=dict(reduction=4)),
}


@contextlib.contextmanager
def _captured_log():
    """The messages mmengine's current logger emits inside the block."""
    logger = MMLogger.get_current_instance()
    records = []
    handler = logging.Handler()
    handler.emit = records.append
    logger.addHandler(handler)
    try:
        yield records
    finally:
        logger.removeHandler(handler)


def _build_backbone(config, backbone_type, checkpoint, scope):
    cfg = Config.fromfile(osp.join(CONFIGS, config))
    backbone = cfg.model.backbone
    backbone.update(NARROW[backbone_type])
    backbone.init_cfg = dict(type='Pretrained', prefix='backbone.',
                             checkpoint=checkpoint)
    from mmengine.registry import MODELS
    with DefaultScope.overwrite_default_scope(scope):
        model = MODELS.build(backbone)
    model.init_weights()
    return model


@pytest.mark.slow
@pytest.mark.parametrize('backbone_type', sorted(CLASSIFIERS))
def test_pretrain_with_train_tool_then_initialise_downstream(
        backbone_type, tmp_path):
    data = make_synthetic_imagefolder(str(tmp_path / 'images'),
                                      train_per_class=3, val_per_class=1)
    cfg = shrink_classification_config(
        Config.fromfile(osp.join(CONFIGS, CLASSIFIERS[backbone_type])), data,
        str(tmp_path / 'work'))
    cfg.model.backbone.update(NARROW[backbone_type])
    cfg.model.head.in_channels = 512
    config = str(tmp_path / 'classifier.py')
    cfg.dump(config)
    result = subprocess.run(
        [sys.executable, osp.join(REPO, 'tools', 'train.py'), config],
        cwd=str(tmp_path), capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    assert 'accuracy/top1' in result.stdout + result.stderr
    checkpoint = str(tmp_path / 'work' / 'iter_2.pth')
    classifier = load_checkpoint_safely(checkpoint)['state_dict']
    expected = {k[len('backbone.'):]: v for k, v in classifier.items()
                if k.startswith('backbone.')}

    for config, scope in zip(DOWNSTREAM[backbone_type],
                             ('mmdet', 'mmaction')):
        with _captured_log() as records:
            model = _build_backbone(config, backbone_type, checkpoint, scope)
        messages = ' '.join(r.getMessage() for r in records)
        assert 'missing keys' not in messages, messages
        state = model.state_dict()
        # Every downstream key comes from the classifier; the classifier may
        # hold more (PED's info-max decoders, unused by the TSN config).
        assert set(state) <= set(expected)
        for key, value in state.items():
            torch.testing.assert_close(value, expected[key])


def test_mismatched_init_checkpoint_names_the_keys(tmp_path):
    checkpoint = str(tmp_path / 'other.pth')
    torch.save({'state_dict': {'backbone.conv1.weight': torch.zeros(1),
                               'backbone.not_a_layer.weight': torch.ones(2)}},
               checkpoint)
    with _captured_log() as records:
        _build_backbone(DOWNSTREAM['mmdgconv.ResNetCoC'][0],
                        'mmdgconv.ResNetCoC', checkpoint, 'mmdet')
    messages = ' '.join(r.getMessage() for r in records)
    assert 'size mismatch for conv1.weight' in messages
    assert 'unexpected key in source state_dict: not_a_layer.weight' in \
        messages
    assert 'missing keys in source state_dict' in messages
    assert 'layer1.0.conv1.weight' in messages
