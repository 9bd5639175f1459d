"""Every config loads to exactly the contents recorded in
``tests/data/config_contents.json`` (written by
``tests/data/generate_config_contents.py`` before the configs were rewritten
to share backbone files), and the shared files leave no key behind."""
import json
import os.path as osp
import sys

import pytest
from mmengine.config import Config

from mmdgconv.testing import config_contents

REPO = osp.abspath(osp.join(osp.dirname(__file__), '..', '..'))
sys.path.insert(0, osp.join(REPO, 'tests', 'data'))
from generate_config_contents import FIXTURE, config_paths  # noqa: E402

with open(FIXTURE) as f:
    RECORDED = json.load(f)


def _differences(recorded, loaded, path=''):
    if isinstance(recorded, dict) and isinstance(loaded, dict):
        for key in sorted(set(recorded) | set(loaded)):
            if key not in loaded or key not in recorded:
                yield f'{path}.{key}: only in the ' + (
                    'record' if key in recorded else 'loaded config')
            else:
                yield from _differences(recorded[key], loaded[key],
                                        f'{path}.{key}')
    elif recorded != loaded:
        yield f'{path}: {recorded!r} -> {loaded!r}'


def test_every_config_is_recorded():
    assert sorted(RECORDED) == config_paths()


@pytest.mark.parametrize('path', config_paths())
def test_config_loads_to_the_recorded_contents(path):
    loaded = config_contents(Config.fromfile(osp.join(REPO, path)))
    differences = list(_differences(RECORDED[path], loaded))
    assert not differences, '\n'.join(differences[:20])


def test_the_contents_tell_tuples_from_lists_and_see_every_value():
    cfg = Config(dict(a=(1, 2), b=[1, 2], c=dict(d=None)))
    assert config_contents(cfg) == {
        'a': {'tuple': [1, 2]}, 'b': [1, 2], 'c': {'d': None}}
    recorded = RECORDED['configs/coc/faster-rcnn_r50-coc_fpn_1x_coco.py']
    changed = Config(dict(recorded, pretrained='other.pth'))
    assert list(_differences(recorded, config_contents(changed))) == [
        ".pretrained: 'checkpoints/resnet50-coc_in1k.pth' -> 'other.pth'"]


def test_the_shared_backbone_files_leave_no_helper_key():
    cfg = Config.fromfile(osp.join(
        REPO, 'configs', 'g_resnext',
        'mask-rcnn_g-resnext101-32x8d_fpn_1x_coco.py'))
    assert 'backbone' not in cfg
    backbone = cfg.model.backbone
    # the stock ResNet-50 settings, G-ResNeXt-101's type and widths
    assert (backbone.type, backbone.depth, backbone.groups,
            backbone.base_width, backbone.frozen_stages,
            backbone.init_cfg.checkpoint) == (
                'mmdgconv.GResNeXt', 101, 32, 8, 1,
                'checkpoints/g-resnext101-32x8d_in1k.pth')
