"""tools/analysis/plot_groups.py, run as a user runs it."""
import os.path as osp
import runpy
import subprocess
import sys

import pytest
import torch
from mmengine.config import Config

from mmdgconv.deploy import build_model, save_atomically
from mmdgconv.models import GResNeXt
from mmdgconv.utils import load_checkpoint_safely

REPO = osp.abspath(osp.join(osp.dirname(__file__), '..', '..'))
TOOL = osp.join(REPO, 'tools', 'analysis', 'plot_groups.py')
PNG_SIGNATURE = b'\x89PNG\r\n\x1a\n'


def _checkpoint(path, seed):
    torch.manual_seed(seed)
    model = GResNeXt(depth=50, groups=4, base_width=4, base_channels=16)
    generator = torch.Generator().manual_seed(seed)
    for layer in model.dgconv_layers():
        with torch.no_grad():
            layer.gate.copy_(torch.rand(layer.gate.shape,
                                        generator=generator) - 0.5)
    torch.save({'state_dict': {f'backbone.{k}': v for k, v in
                               model.state_dict().items()}}, path)


def _expected(model):
    """(C_in, 2^(number of negative gates)) of each gated layer: the
    paper's G = 2^(gates that split), counted here from the gates."""
    return [(layer.in_channels, 2**sum(1 for g in layer.gate.tolist()
                                          if g < 0))
            for layer in model.modules()
            if getattr(layer, 'gate', None) is not None]


def _tool_module():
    return runpy.run_path(TOOL)


def test_plots_the_learned_groups_of_trained_and_converted_checkpoints(
        tmp_path, monkeypatch):
    """A G-ResNeXt whose first stage has no DGConv (so layer names, not
    weight shapes, must pair groups with layers), trained (random gates)
    and converted by dgconv_to_static.py: both plot the same values."""
    cfg = Config.fromfile(osp.join(REPO, 'configs', 'g_resnext',
                                   'g-resnext50-32x4d_8xb32_in1k.py'))
    cfg.model.backbone.update(groups=4, base_width=4, base_channels=16,
                              stage_with_dgconv=(False, True, True, True))
    cfg.model.head.in_channels = 512
    config = str(tmp_path / 'g50.py')
    cfg.dump(config)
    torch.manual_seed(3)
    model = build_model(cfg)
    with torch.no_grad():
        for layer in model.backbone.dgconv_layers():
            layer.gate.copy_(torch.randn_like(layer.gate))
    expected = _expected(model)
    assert len({g for _, g in expected}) > 2
    trained = str(tmp_path / 'trained.pth')
    torch.save(dict(meta={}, state_dict=model.state_dict()), trained)
    monkeypatch.setattr(sys, 'argv', [
        'dgconv_to_static.py', config, trained, str(tmp_path / 'static')])
    runpy.run_path(osp.join(REPO, 'tools', 'model_converters',
                            'dgconv_to_static.py'), run_name='__main__')
    converted = str(tmp_path / 'static' / 'trained_static.pth')

    tool = _tool_module()
    out = str(tmp_path / 'groups.png')
    plotted = tool['plot']([trained, converted], out, ['trained', 'static'])
    assert plotted == {'trained': expected, 'static': expected}
    from matplotlib.image import imread
    assert imread(out).shape[2] in (3, 4)

    # A conversion that did not record its layers is not guessed at.
    checkpoint = load_checkpoint_safely(converted)
    del checkpoint['meta']['mmdgconv_conversion']['dgconv_layers']
    old = str(tmp_path / 'old_static.pth')
    save_atomically(checkpoint, old)
    with pytest.raises(Exception, match='older dgconv_to_static.py'):
        tool['learned_groups'](old)


def test_overlays_several_checkpoints_into_a_png(tmp_path):
    first, second = str(tmp_path / 'run1.pth'), str(tmp_path / 'run2.pth')
    _checkpoint(first, 0)
    _checkpoint(second, 1)
    out = str(tmp_path / 'groups.png')
    result = subprocess.run([sys.executable, TOOL, first, second, '--out',
                             out, '--labels', 'run 1', 'run 2'],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    data = open(out, 'rb').read()
    assert data.startswith(PNG_SIGNATURE) and len(data) > 10000
    from matplotlib.image import imread
    assert imread(out).shape[2] in (3, 4)


def test_refuses_a_checkpoint_without_gates(tmp_path):
    plain = str(tmp_path / 'plain.pth')
    torch.save({'state_dict': {'conv.weight': torch.zeros(2, 2, 3, 3)}},
               plain)
    result = subprocess.run([sys.executable, TOOL, plain, '--out',
                             str(tmp_path / 'x.png')],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode != 0 and 'no DGConv gates' in result.stderr
    assert not osp.exists(tmp_path / 'x.png')
