"""tools/model_converters/dgconv_to_static.py, run as a user runs it."""
import ast
import copy
import os.path as osp
import re
import subprocess
import sys

import pytest
import torch
from mmengine.config import Config
from mmengine.runner import Runner

from mmdgconv.deploy import build_model, model_outputs, random_inputs
from mmdgconv.models import DGConv2d
from mmdgconv.testing import (set_score_threshold, shrink_detection_config,
                              shrink_recognition_config)
from mmdgconv.utils import load_checkpoint_safely

REPO = osp.abspath(osp.join(osp.dirname(__file__), '..', '..'))
TOOL = osp.join(REPO, 'tools', 'model_converters', 'dgconv_to_static.py')
CONFIGS = osp.join(REPO, 'configs')


def _run(script, *args, cwd):
    return subprocess.run([sys.executable, script, *args], cwd=cwd,
                          capture_output=True, text=True, timeout=600)


def _randomise_gates(model, seed):
    """Random gate patterns, interleaved groupings included."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for layer in model.modules():
            if isinstance(layer, DGConv2d) and layer.has_gates:
                layer.gate.copy_(
                    torch.rand(layer.gate.shape, generator=generator) - 0.5)


def _train_and_save(cfg, tmp_path, seed=0):
    """Train two iterations, randomise the gates, save a checkpoint."""
    config = str(tmp_path / 'model.py')
    cfg.dump(config)
    runner = Runner.from_cfg(Config.fromfile(config))
    runner.train()
    model = runner.model
    _randomise_gates(model, seed)
    checkpoint = str(tmp_path / 'trained.pth')
    torch.save(dict(meta=dict(note='kept'), state_dict=model.state_dict()),
               checkpoint)
    return config, checkpoint


def _metrics(stdout):
    return ast.literal_eval(stdout.strip().splitlines()[-1])


@pytest.fixture
def faster_rcnn(synthetic_coco, tmp_path):
    cfg = shrink_detection_config(
        Config.fromfile(osp.join(
            CONFIGS, 'g_resnext',
            'faster-rcnn_g-resnext50-32x4d_fpn_1x_coco.py')), synthetic_coco,
        str(tmp_path / 'work'), max_iters=2)
    cfg.model.backbone.update(groups=4, base_width=4, base_channels=16)
    cfg.model.neck.in_channels = [64, 128, 256, 512]
    set_score_threshold(cfg, 0.0)
    return _train_and_save(cfg, tmp_path)


@pytest.mark.slow
def test_faster_rcnn_converts_and_tests_to_the_identical_ap(
        faster_rcnn, tmp_path):
    config, checkpoint = faster_rcnn
    out = tmp_path / 'static'
    out.mkdir()
    result = _run(TOOL, config, checkpoint, str(out), '--verify',
                  cwd=str(tmp_path))
    assert result.returncode == 0, result.stderr[-3000:]
    assert 'converted 16 DGConv layers' in result.stdout
    # Progress, step by step, in order.
    steps = re.findall(r'^\[(\d)/5\] ', result.stdout, re.M)
    assert steps == ['1', '2', '3', '4', '5']
    static_cfg_text = (out / 'model_static.py').read_text()
    assert 'deploy=True' in static_cfg_text.replace("'deploy': True",
                                                   'deploy=True')
    static_ckpt = str(out / 'trained_static.pth')
    static_cfg = str(out / 'model_static.py')
    report = (out / 'trained_report.txt').read_text()
    assert 'backbone.layer4.2.conv2' in report and 'folded' in report
    assert re.search(r'backbone_flops_before: [\d,]+', report)

    converted = load_checkpoint_safely(static_ckpt)
    assert converted['meta']['note'] == 'kept'
    groups = converted['meta']['mmdgconv_conversion']['groups']
    assert len(groups) == 16 and len(set(groups)) > 1
    assert not any(k.endswith('.gate') for k in converted['state_dict'])
    grouped = converted['state_dict']['backbone.layer3.0.conv2.weight']
    assert grouped.shape[1] == 64 // groups[7]  # (C, C / G, 3, 3)

    # The deployed model runs in mmdet's tools/test.py with the same AP.
    test = osp.join(REPO, 'tools', 'test.py')
    before = _run(test, config, checkpoint, '--work-dir',
                  str(tmp_path / 't1'), cwd=str(tmp_path))
    after = _run(test, static_cfg, static_ckpt, '--work-dir',
                 str(tmp_path / 't2'), cwd=str(tmp_path))
    assert before.returncode == 0, before.stderr[-3000:]
    assert after.returncode == 0, after.stderr[-3000:]
    assert _metrics(after.stdout) == _metrics(before.stdout)
    assert 'coco/bbox_mAP' in _metrics(after.stdout)


@pytest.mark.slow
def test_tsn_converts_and_tests_to_the_identical_accuracy(
        synthetic_kinetics, tmp_path):
    cfg = shrink_recognition_config(
        Config.fromfile(osp.join(
            CONFIGS, 'tsn', 'tsn_imagenet-pretrained-g-resnext50-32x4d_'
            '8xb32-1x1x3-100e_kinetics400-rgb.py')), synthetic_kinetics,
        str(tmp_path / 'work'))
    cfg.model.backbone.update(groups=4, base_width=4, base_channels=16,
                              freeze_groups=False)
    cfg.model.cls_head.in_channels = 512
    config, checkpoint = _train_and_save(cfg, tmp_path, seed=1)
    out = tmp_path / 'static'
    out.mkdir()
    result = _run(TOOL, config, checkpoint, str(out), cwd=str(tmp_path))
    assert result.returncode == 0, result.stderr[-3000:]
    test = osp.join(REPO, 'tools', 'test.py')
    before = _run(test, config, checkpoint, cwd=str(tmp_path))
    after = _run(test, str(out / 'model_static.py'),
                 str(out / 'trained_static.pth'), cwd=str(tmp_path))
    assert after.returncode == 0, after.stderr[-3000:]
    assert _metrics(after.stdout) == _metrics(before.stdout)


def test_group_up_down_layers_via_conv_cfg(tmp_path):
    """A stock mmdet ResNeXt with conv_cfg=DGConv: its 1x1 convs are
    GroupUp/GroupDown layers and no permutation can be folded, so every layer
    takes the deployed DGConv form."""
    cfg = Config.fromfile(osp.join(
        CONFIGS, 'g_resnext', 'retinanet_g-resnext50-32x4d_fpn_1x_coco.py'))
    cfg.model.backbone = dict(
        type='ResNeXt', depth=50, groups=4, base_width=4, base_channels=16,
        conv_cfg=dict(type='DGConv'), norm_eval=False, init_cfg=None)
    cfg.model.neck.in_channels = [64, 128, 256, 512]
    cfg.custom_hooks = []
    config = str(tmp_path / 'resnext_dgconv.py')
    cfg.dump(config)
    model = build_model(Config.fromfile(config))
    _randomise_gates(model, 2)
    shapes = {(m.in_channels, m.out_channels)
              for m in model.modules() if isinstance(m, DGConv2d)}
    assert (16, 64) in shapes and (64, 16) in shapes  # GroupUp, GroupDown
    checkpoint = str(tmp_path / 'trained.pth')
    torch.save(dict(state_dict=model.state_dict()), checkpoint)
    out = tmp_path / 'static'
    out.mkdir()
    result = _run(TOOL, config, checkpoint, str(out), cwd=str(tmp_path))
    assert result.returncode == 0, result.stderr[-3000:]
    assert 'in the layer' in (out / 'trained_report.txt').read_text()

    # The per-layer structure is in the config, so the layers are built
    # in their deployed shapes before any checkpoint is read.
    static_cfg = Config.fromfile(str(out / 'resnext_dgconv_static.py'))
    assert static_cfg.model.type == 'mmdgconv.WithDeployedDGConv'
    learned = {
        name: 2**(len(m.gate) - int((m.gate >= 0).sum()))
        for name, m in model.named_modules()
        if isinstance(m, DGConv2d) and m.has_gates
    }
    assert static_cfg.model.deployed_groups == learned
    assert len(set(learned.values())) > 1  # layers differ: no shared G
    deployed = build_model(static_cfg)
    assert type(deployed) is type(model)
    for name, groups in learned.items():
        layer = deployed.get_submodule(name)
        assert layer.deploy and layer.num_groups == groups
        assert layer.weight.shape[1] == layer.in_channels // groups
    deployed.load_state_dict(
        load_checkpoint_safely(str(out / 'trained_static.pth'))['state_dict'],
        strict=True)
    inputs, samples = random_inputs(model, 96, seed=5)
    expected, _ = model_outputs(model, inputs, samples)
    actual, _ = model_outputs(deployed, inputs, samples)
    for a, b in zip(actual, expected):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4)

    # A config of the older converter (deploy=True in the shared conv_cfg,
    # G left to the checkpoint) stops with how to reconvert.
    old_style = Config.fromfile(config)
    old_style.model.backbone.conv_cfg = dict(type='DGConv', deploy=True)
    with pytest.raises(ValueError, match='reconvert the trained checkpoint'):
        build_model(old_style)
    # A listed structure that does not match the model names the layer.
    for change, message in (
            (dict(learned, **{'backbone.layer9.conv2': 2}), 'layer9.conv2'),
            ({k: v for k, v in learned.items()
              if k != 'backbone.layer2.0.conv2'}, 'layer2.0.conv2')):
        wrong = copy.deepcopy(static_cfg)
        wrong.model.deployed_groups = change
        with pytest.raises(KeyError, match=message):
            build_model(wrong)
    # Loading into another structure fails, naming the layer.
    mismatched = copy.deepcopy(static_cfg)
    layer = 'backbone.layer1.0.conv2'
    mismatched.model.deployed_groups[layer] = (
        2 if learned[layer] != 2 else 4)
    with pytest.raises(RuntimeError, match=f'{layer} is built with'):
        build_model(mismatched).load_state_dict(load_checkpoint_safely(
            str(out / 'trained_static.pth'))['state_dict'])


def test_failure_paths(tmp_path, run_tool_in_process):
    cfg = Config.fromfile(osp.join(
        CONFIGS, 'g_resnext', 'retinanet_g-resnext50-32x4d_fpn_1x_coco.py'))
    cfg.model.backbone.update(groups=4, base_width=4, base_channels=16,
                              init_cfg=None)
    cfg.model.neck.in_channels = [64, 128, 256, 512]
    config = str(tmp_path / 'retinanet.py')
    cfg.dump(config)
    model = build_model(Config.fromfile(config))
    state = model.state_dict()
    out = tmp_path / 'out'
    out.mkdir()

    no_gates = str(tmp_path / 'no_gates.pth')
    torch.save(dict(state_dict={k: v for k, v in state.items()
                                if not k.endswith('.gate')}), no_gates)
    result = run_tool_in_process(TOOL, config, no_gates, str(out), cwd=str(tmp_path))
    assert result.returncode != 0
    assert 'missing keys' in result.stderr and '.gate' in result.stderr

    bad_shape = dict(state)
    bad_shape['backbone.layer1.0.conv2.gate'] = torch.zeros(7)
    wrong = str(tmp_path / 'wrong_gates.pth')
    torch.save(dict(state_dict=bad_shape), wrong)
    result = run_tool_in_process(TOOL, config, wrong, str(out), cwd=str(tmp_path))
    assert result.returncode != 0 and 'shape mismatches' in result.stderr
    assert 'layer1.0.conv2.gate' in result.stderr

    coc = osp.join(CONFIGS, 'coc', 'retinanet_r50-coc_fpn_1x_coco.py')
    coc_cfg = Config.fromfile(coc)
    coc_cfg.model.backbone.init_cfg = None
    coc_config = str(tmp_path / 'coc.py')
    coc_cfg.dump(coc_config)
    coc_ckpt = str(tmp_path / 'coc.pth')
    torch.save(dict(state_dict=build_model(coc_cfg).state_dict()), coc_ckpt)
    result = run_tool_in_process(TOOL, coc_config, coc_ckpt, str(out), cwd=str(tmp_path))
    assert result.returncode != 0
    assert 'no DGConv layer with gates' in result.stderr

    result = run_tool_in_process(TOOL, config, str(tmp_path / 'missing.pth'), str(out),
                  cwd=str(tmp_path))
    assert result.returncode != 0 and 'missing.pth' in result.stderr
    result = run_tool_in_process(TOOL, config, wrong, '/proc/nowhere', cwd=str(tmp_path))
    assert result.returncode != 0
    assert 'error: cannot write /proc/nowhere' in result.stderr
    assert list(out.iterdir()) == []  # nothing half-written


def test_unfoldable_bottleneck_keeps_the_permutation_in_the_layer():
    """GroupNorm mixes channel groups, so the permutation cannot move into
    it: that block deploys as DGConv2d(deploy=True), the rest fold."""
    from mmdgconv.deploy.dgconv_static import convert_model
    from mmdgconv.models import GResNeXt
    torch.manual_seed(0)
    model = GResNeXt(depth=50, groups=4, base_width=4, base_channels=16)
    model.layer2[1].bn2 = torch.nn.GroupNorm(4, 32)  # norm2 is bn2
    _randomise_gates(model, 3)
    model.eval()
    x = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        expected = model(x)
    rows = convert_model(model)
    assert [r['folded'] for r in rows].count(False) == 1
    assert isinstance(model.layer2[1].conv2, DGConv2d)
    assert model.deploy_permuted == [i == 4 for i in range(16)]
    assert model.deploy_groups[4] == model.layer2[1].conv2.num_groups
    with torch.no_grad():
        for a, b in zip(model(x), expected):
            torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4)
    deployed = GResNeXt(depth=50, groups=4, base_width=4, base_channels=16,
                        deploy=True, deploy_groups=model.deploy_groups,
                        deploy_permuted=model.deploy_permuted)
    deployed.layer2[1].bn2 = torch.nn.GroupNorm(4, 32)
    deployed.load_state_dict(model.state_dict(), strict=True)
    deployed.eval()
    with torch.no_grad():
        for a, b in zip(deployed(x), expected):
            torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4)
