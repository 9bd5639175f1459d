"""tools/train.py and tools/test.py, run as a user runs them."""
import json
import os.path as osp
import re
import subprocess
import sys

import pytest
import torch
from mmengine.config import Config

from mmdgconv.testing import set_score_threshold, shrink_detection_config

REPO = osp.abspath(osp.join(osp.dirname(__file__), '..', '..'))
CONFIG = osp.join(REPO, 'configs', 'g_resnext',
                  'faster-rcnn_g-resnext50-32x4d_fpn_1x_coco.py')


def _run(*args, cwd):
    return subprocess.run([sys.executable, *args], cwd=cwd,
                          capture_output=True, text=True, timeout=600)


@pytest.fixture
def small_config(synthetic_coco, tmp_path):
    cfg = shrink_detection_config(Config.fromfile(CONFIG), synthetic_coco,
                                  str(tmp_path / 'unused'))
    cfg.model.backbone.update(groups=4, base_width=4, base_channels=16)
    cfg.model.neck.in_channels = [64, 128, 256, 512]
    set_score_threshold(cfg, 0.0)
    path = str(tmp_path / 'small_faster_rcnn.py')
    cfg.dump(path)
    return path


@pytest.mark.slow
def test_train_resume_then_test(small_config, tmp_path):
    work = str(tmp_path / 'work')
    train = _run(osp.join(REPO, 'tools', 'train.py'), small_config,
                 '--work-dir', work, cwd=str(tmp_path))
    assert train.returncode == 0, train.stderr[-3000:]
    assert osp.isfile(osp.join(work, 'iter_2.pth'))
    logs = train.stdout + train.stderr
    assert 'dg_zeta' in logs and 'coco/bbox_mAP' in logs

    resume = _run(osp.join(REPO, 'tools', 'train.py'), small_config,
                  '--work-dir', work, '--resume', '--cfg-options',
                  'train_cfg.max_iters=3', 'train_cfg.val_interval=3',
                  'default_hooks.checkpoint.interval=3', cwd=str(tmp_path))
    assert resume.returncode == 0, resume.stderr[-3000:]
    logs = resume.stdout + resume.stderr
    assert 'resumed epoch: 0, iter: 2' in logs
    assert 'Iter(train) [3/3]' in logs and 'Iter(train) [1/3]' not in logs

    predictions = str(tmp_path / 'predictions.pkl')
    test = _run(osp.join(REPO, 'tools', 'test.py'), small_config,
                osp.join(work, 'iter_3.pth'), '--work-dir',
                str(tmp_path / 'test'), '--out', predictions,
                cwd=str(tmp_path))
    assert test.returncode == 0, test.stderr[-3000:]
    assert "'coco/bbox_mAP'" in test.stdout
    assert osp.getsize(predictions) > 0

    # The results table evaluates through the same test loop: the AP the
    # test tool printed, and the parameters of the model it built.
    table_json = str(tmp_path / 'table.json')
    table = _run(osp.join(REPO, 'tools', 'analysis', 'results_table.py'),
                 small_config, osp.join(work, 'iter_3.pth'), '--json',
                 table_json, '--out', str(tmp_path / 'table.md'), '--size',
                 '64', cwd=str(tmp_path))
    assert table.returncode == 0, table.stderr[-3000:]
    assert '[1/1] small_faster_rcnn.py with iter_3.pth' in table.stdout
    printed = {key: float(value) for key, value in re.findall(
        r"'coco/(bbox_mAP\w*)': (-?[0-9.]+)", test.stdout)}
    assert len(printed) == 6
    with open(table_json) as f:
        row, = json.load(f)
    assert row['task'] == 'detection'
    for key, value in printed.items():
        assert row['metrics'][f'coco/{key}'] == value, key
    assert row['cells']['AP'] == pytest.approx(100 * printed['bbox_mAP'])
    cfg = Config.fromfile(small_config)
    from mmdet.registry import MODELS
    from mmengine.registry import DefaultScope
    with DefaultScope.overwrite_default_scope('mmdet'):
        params = sum(p.numel() for p in MODELS.build(cfg.model).parameters())
    assert row['cells']['params (M)'] == pytest.approx(params / 1e6)
    assert row['cells']['backbone'] == 'GResNeXt-50'
    with open(tmp_path / 'table.md') as f:
        assert f.read().startswith('detection:\n\n| backbone | AP | AP.5 |')


@pytest.mark.slow
def test_mim_trains_through_the_packaged_tools(small_config, tmp_path):
    """``mim train mmdgconv CONFIG`` runs ``mmdgconv/.mim/tools/train.py``
    (the install puts the tools there, as the toolboxes do)."""
    mim = osp.join(osp.dirname(sys.executable), 'mim')
    work = str(tmp_path / 'work')
    result = subprocess.run(
        [mim, 'train', 'mmdgconv', small_config, '--work-dir', work, '-y'],
        cwd=str(tmp_path), capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, (result.stdout + result.stderr)[-3000:]
    command = next(line for line in result.stdout.splitlines()
                   if line.startswith('Training command is'))
    assert osp.join('mmdgconv', '.mim', 'tools', 'train.py') in command
    assert osp.isfile(osp.join(work, 'iter_2.pth'))


def test_test_tool_rejects_missing_and_corrupted_checkpoints(
        small_config, tmp_path):
    missing = str(tmp_path / 'missing.pth')
    result = _run(osp.join(REPO, 'tools', 'test.py'), small_config, missing,
                  cwd=str(tmp_path))
    assert result.returncode != 0 and 'missing.pth does not exist' in \
        result.stderr

    corrupted = tmp_path / 'corrupted.pth'
    corrupted.write_bytes(b'PK\x03\x04 definitely not a checkpoint')
    result = _run(osp.join(REPO, 'tools', 'test.py'), small_config,
                  str(corrupted), '--work-dir', str(tmp_path / 'w'),
                  cwd=str(tmp_path))
    assert result.returncode != 0
    assert 'corrupted.pth is not a PyTorch checkpoint' in result.stderr


@pytest.mark.slow
def test_test_tool_refuses_the_checkpoint_of_another_model(
        small_config, tmp_path):
    # As an ImageNet ResNet-50's: a wider stem, a classifier, nothing else.
    foreign = str(tmp_path / 'r50.pth')
    torch.save(dict(meta={}, state_dict={
        'backbone.conv1.weight': torch.zeros(64, 3, 7, 7),
        'fc.weight': torch.zeros(1000, 2048)}), foreign)
    test = osp.join(REPO, 'tools', 'test.py')
    result = _run(test, small_config, foreign, '--work-dir',
                  str(tmp_path / 'w'), cwd=str(tmp_path))
    assert result.returncode != 0
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith(f'error: checkpoint {foreign} does not fit the '
                           f'model built from {small_config}'), last
    assert 'missing keys (backbone.bn1.bias' in last
    assert '1 unexpected keys (fc.weight)' in last
    assert ('1 shape mismatches (backbone.conv1.weight: (64, 3, 7, 7) in '
            'the checkpoint, (16, 3, 7, 7) in the model)') in last
    assert 'bbox_mAP' not in result.stdout

    # The way out is explicit, and then it evaluates what it has.
    result = _run(test, small_config, foreign, '--non-strict', '--work-dir',
                  str(tmp_path / 'w'), cwd=str(tmp_path))
    assert result.returncode == 0, result.stderr[-3000:]
    assert "'coco/bbox_mAP'" in result.stdout


def _results_table(monkeypatch, *args):
    """Run tools/analysis/results_table.py in this process; its exit
    message."""
    import runpy
    monkeypatch.setattr(sys, 'argv', ['results_table.py', *args])
    with pytest.raises(SystemExit) as exit_info:
        runpy.run_path(osp.join(REPO, 'tools', 'analysis',
                                'results_table.py'), run_name='__main__')
    return str(exit_info.value)


def test_results_table_rejects_bad_pairs_before_evaluating(
        small_config, tmp_path, monkeypatch, capsys):
    missing = str(tmp_path / 'missing.pth')
    assert _results_table(monkeypatch, small_config, missing) == (
        f'error: checkpoint {missing} does not exist')
    assert _results_table(monkeypatch, small_config) == '2'  # argparse
    assert 'has no partner' in capsys.readouterr().err
    checkpoint = tmp_path / 'c.pth'
    checkpoint.write_bytes(b'')
    message = _results_table(monkeypatch, small_config, str(checkpoint),
                             '--csv', '/proc/table.csv')
    assert message.startswith('error: cannot write /proc/table.csv')
    assert not any(tmp_path.glob('**/*.log'))  # nothing was evaluated


def test_train_tool_rejects_missing_config_and_foreign_scope(tmp_path):
    result = _run(osp.join(REPO, 'tools', 'train.py'),
                  str(tmp_path / 'nope.py'), cwd=str(tmp_path))
    assert result.returncode != 0 and 'nope.py does not exist' in \
        result.stderr
    foreign = tmp_path / 'foreign.py'
    foreign.write_text("default_scope = 'mmseg'\n")
    result = _run(osp.join(REPO, 'tools', 'train.py'), str(foreign),
                  cwd=str(tmp_path))
    assert result.returncode != 0 and "default_scope is 'mmseg'" in \
        result.stderr


@pytest.mark.slow
def test_train_and_test_tools_run_a_tsn_config(synthetic_kinetics, tmp_path):
    from mmdgconv.testing import shrink_recognition_config
    config = osp.join(REPO, 'configs', 'tsn',
                      'tsn_imagenet-pretrained-ped-r50_8xb32-1x1x3-100e_'
                      'kinetics400-rgb.py')
    cfg = shrink_recognition_config(Config.fromfile(config),
                                    synthetic_kinetics, str(tmp_path / 'w'))
    cfg.model.backbone.update(base_channels=16, ped_cfg=dict(reduction=4))
    cfg.model.cls_head.in_channels = 512
    path = str(tmp_path / 'tsn.py')
    cfg.dump(path)
    train = _run(osp.join(REPO, 'tools', 'train.py'), path, cwd=str(tmp_path))
    assert train.returncode == 0, train.stderr[-3000:]
    assert 'acc/top1' in train.stdout + train.stderr
    test = _run(osp.join(REPO, 'tools', 'test.py'), path,
                str(tmp_path / 'w' / 'iter_2.pth'), cwd=str(tmp_path))
    assert test.returncode == 0, test.stderr[-3000:]
    assert "'acc/top1'" in test.stdout
