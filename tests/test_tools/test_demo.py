"""The main job, run as `make demo` runs it (briefly)."""
import os.path as osp
import subprocess
import sys

import pytest

REPO = osp.abspath(osp.join(osp.dirname(__file__), '..', '..'))


def _demo(tmp_path, *args):
    return subprocess.run(
        [sys.executable, osp.join(REPO, 'tools', 'demo.py'), '--data-root',
         str(tmp_path / 'data'), '--work-dir', str(tmp_path / 'work'), *args],
        capture_output=True, text=True, timeout=900)


@pytest.mark.slow
def test_detection_demo_prints_the_ap_table_and_groups(tmp_path):
    result = _demo(tmp_path, '--max-iters', '4', '--num-train', '8',
                   '--num-val', '4')
    assert result.returncode == 0, result.stderr[-3000:]
    out = result.stdout
    assert 'learned groups per DGConv layer' in out
    assert '  layer4: ' in out
    # The trained model and its static conversion, side by side.
    assert 'trained (DGConv)' in out and 'static (grouped conv)' in out
    for row in ('AP50', 'APl', 'params', 'backbone FLOPs', 'latency'):
        assert row in out
    ap_row = next(line for line in out.splitlines() if line.startswith('AP '))
    trained_ap, static_ap = ap_row.split()[1:]
    assert trained_ap == static_ap  # the conversion is exact
    assert osp.isfile(tmp_path / 'work' / 'iter_4.pth')
    assert osp.isfile(tmp_path / 'work' / 'groups.png')
    assert osp.isfile(tmp_path / 'work' / 'static' / 'iter_4_static.pth')
    assert osp.isfile(tmp_path / 'data' / 'annotations' /
                      'instances_train.json')


@pytest.mark.slow
def test_tsn_demo_prints_top1_top5(tmp_path):
    result = _demo(tmp_path, '--task', 'tsn', '--max-iters', '4',
                   '--num-train', '40', '--num-val', '20')
    assert result.returncode == 0, result.stderr[-3000:]
    assert 'top-1 ' in result.stdout and '| top-5 ' in result.stdout
    assert '4/4' in result.stdout  # the progress bar
    assert osp.isfile(tmp_path / 'data' /
                      'kinetics400_train_list_videos.txt')


@pytest.mark.parametrize('config', [
    'g_resnext/faster-rcnn_g-resnext50-narrow_fpn_synthetic-coco.py',
    'tsn/tsn_g-resnext50-narrow_synthetic-kinetics.py'])
def test_demo_configs_fix_the_seed(config):
    """Run through any tool, the demo configs train the same model twice."""
    from mmengine.config import Config
    cfg = Config.fromfile(osp.join(REPO, 'configs', config))
    assert cfg.randomness.seed == 0
