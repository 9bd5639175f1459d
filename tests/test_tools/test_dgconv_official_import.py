"""tools/model_converters/dgconv_official_to_mmdgconv.py on a state dict of
the reference G_ResNet: identical logits after conversion."""
import importlib.util
import os.path as osp
import subprocess
import sys

import torch
from mmengine.config import Config
from mmengine.registry import DefaultScope

from mmdgconv.utils import load_checkpoint_safely

REPO = osp.abspath(osp.join(osp.dirname(__file__), '..', '..'))
TOOL = osp.join(REPO, 'tools', 'model_converters',
                'dgconv_official_to_mmdgconv.py')
DATA = osp.join(REPO, 'tests', 'data')
CONFIG = osp.join(REPO, 'configs', 'g_resnext',
                  'g-resnext50-32x4d_8xb32_in1k.py')


def _fixture_generator():
    spec = importlib.util.spec_from_file_location(
        'fixture_generator',
        osp.join(DATA, 'generate_reference_import_fixture.py'))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _reference_state_dict(fixture):
    """The reference model's state dict, refilled as the fixture says."""
    state = _fixture_generator().fill(fixture['shapes'])
    state.update(fixture['constants'])
    for key in fixture['num_batches_tracked']:
        state[key] = torch.tensor(0)
    return state


def _run(*args, cwd):
    return subprocess.run([sys.executable, TOOL, *args], cwd=cwd,
                          capture_output=True, text=True, timeout=600)


def test_imported_classifier_gives_the_reference_logits(tmp_path):
    fixture = torch.load(osp.join(DATA, 'reference_import_fixture.pt'),
                         weights_only=True)
    reference = str(tmp_path / 'g_resnext50_reference.pth.tar')
    # The reference repository saves {'state_dict': ...} from DataParallel.
    torch.save({'state_dict': {'module.' + k: v for k, v in
                               _reference_state_dict(fixture).items()}},
               reference)
    classifier, backbone = str(tmp_path / 'cls.pth'), str(tmp_path / 'bb.pth')
    options = ['--cfg-options', 'model.backbone.groups=2',
               'model.backbone.base_width=4']
    result = _run(reference, classifier, backbone, *options,
                  cwd=str(tmp_path))
    assert result.returncode == 0, result.stderr[-3000:]

    from mmpretrain.registry import MODELS
    cfg = Config.fromfile(CONFIG)
    cfg.model.backbone.update(groups=2, base_width=4)
    cfg.model.head.num_classes = 10
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        model = MODELS.build(cfg.model)
    model.load_state_dict(load_checkpoint_safely(classifier)['state_dict'],
                          strict=True)
    model.eval()
    with torch.no_grad():
        logits = model(fixture['input'], mode='tensor')
    torch.testing.assert_close(logits, fixture['logits'], rtol=1e-4,
                               atol=1e-4)

    backbone_state = load_checkpoint_safely(backbone)['state_dict']
    assert all(k.startswith('backbone.') for k in backbone_state)
    assert set(backbone_state) == {
        k for k in model.state_dict() if k.startswith('backbone.')
    }


def test_foreign_and_mismatched_checkpoints_are_refused(tmp_path,
                                                        run_tool_in_process):
    foreign = str(tmp_path / 'foreign.pth')
    torch.save({'state_dict': {'conv1.weight': torch.zeros(1)}}, foreign)
    result = run_tool_in_process(TOOL, foreign, str(tmp_path / 'a.pth'), str(tmp_path / 'b.pth'),
                  cwd=str(tmp_path))
    assert result.returncode != 0
    assert 'it is not a reference G_ResNet checkpoint: it has no ' \
        '"layerX.Y.conv2.gate"' in result.stderr

    # An mmdgconv checkpoint (as tools/train.py writes) is named as such.
    from mmdgconv.models import GResNeXt
    ours = str(tmp_path / 'iter_100.pth')
    backbone = GResNeXt(depth=50, groups=4, base_width=4, base_channels=16)
    torch.save(dict(meta=dict(iter=100), state_dict={
        'backbone.' + k: v for k, v in backbone.state_dict().items()}), ours)
    result = run_tool_in_process(TOOL, ours, str(tmp_path / 'a.pth'), str(tmp_path / 'b.pth'),
                  cwd=str(tmp_path))
    assert result.returncode != 0
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith(f'error: {ours}: it is not a reference G_ResNet '
                           'checkpoint'), last
    assert "already in mmdgconv's format" in last and 'KeyError' not in \
        result.stderr

    # The same path twice would write one file over the other.
    same = str(tmp_path / 'same.pth')
    result = run_tool_in_process(TOOL, ours, same, same, cwd=str(tmp_path))
    assert result.returncode != 0 and 'give two different paths' in \
        result.stderr
    fixture = torch.load(osp.join(DATA, 'reference_import_fixture.pt'),
                         weights_only=True)
    reference = str(tmp_path / 'ref.pth')
    torch.save(_reference_state_dict(fixture), reference)
    # Without --cfg-options the default config is 32x4d: a clear mismatch.
    result = run_tool_in_process(TOOL, reference, str(tmp_path / 'a.pth'),
                  str(tmp_path / 'b.pth'), cwd=str(tmp_path))
    assert result.returncode != 0 and 'does not match' in result.stderr
    assert not osp.exists(tmp_path / 'a.pth')
