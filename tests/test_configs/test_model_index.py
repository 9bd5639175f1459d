"""The OpenMMLab model index: model-index.yml imports one metafile per
method folder, and every entry names a config that exists and loads."""
import glob
import os.path as osp

import pytest
import yaml
from mmengine.config import Config

REPO = osp.abspath(osp.join(osp.dirname(__file__), '..', '..'))


def _metafiles():
    with open(osp.join(REPO, 'model-index.yml')) as f:
        index = yaml.safe_load(f)
    return [osp.join(REPO, path) for path in index['Import']]


def _entries():
    collections, models = {}, []
    for path in _metafiles():
        with open(path) as f:
            meta = yaml.safe_load(f)
        for collection in meta.get('Collections', []):
            collections[collection['Name']] = collection
        models += meta['Models']
    return collections, models


def test_every_metafile_is_imported_and_every_config_listed():
    metafiles = _metafiles()
    assert sorted(metafiles) == sorted(
        glob.glob(osp.join(REPO, 'configs', '*', 'metafile.yml')))
    _, models = _entries()
    listed = {model['Config'] for model in models}
    ours = {osp.relpath(path, REPO)
            for path in glob.glob(osp.join(REPO, 'configs', '*', '*.py'))
            if 'synthetic' not in path}
    # the stock ResNet-50 / ResNeXt-50 TSN baselines are mmaction2's models
    baselines = {path for path in ours
                 if osp.basename(path).startswith((
                     'tsn_imagenet-pretrained-r50_',
                     'tsn_imagenet-pretrained-x50-'))}
    assert listed == ours - baselines


def test_entries_name_their_config_and_a_defined_collection():
    collections, models = _entries()
    assert set(collections) == {'G-ResNeXt', 'ResNet-CoC', 'PED-ResNet',
                                'P4ResNet'}
    for collection in collections.values():
        assert collection['Paper']['URL'].startswith('https://')
    names = [model['Name'] for model in models]
    assert len(names) == len(set(names))
    for model in models:
        assert model['In Collection'] in collections, model['Name']
        assert osp.basename(model['Config']) == model['Name'] + '.py'
        # nothing is claimed that was not trained here
        assert 'Results' not in model and 'Weights' not in model


@pytest.mark.parametrize('model', _entries()[1], ids=lambda m: m['Name'])
def test_each_config_loads_with_the_listed_metadata(model):
    cfg = Config.fromfile(osp.join(REPO, model['Config']))
    meta = model['Metadata']
    train_cfg = cfg.get('train_cfg', {})
    assert train_cfg.get('max_epochs') == meta.get('Epochs')
    assert train_cfg.get('max_iters') == meta.get('Iterations')
    expected_scope = {'Object Detection': 'mmdet',
                      'Instance Segmentation': 'mmdet',
                      'Image Classification': 'mmpretrain',
                      'Action Recognition': 'mmaction'}[meta['Task']]
    assert cfg.default_scope == expected_scope
