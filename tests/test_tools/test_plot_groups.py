"""tools/analysis/plot_groups.py, run as a user runs it."""
import os.path as osp
import subprocess
import sys

import torch

from mmdgconv.models import GResNeXt

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
