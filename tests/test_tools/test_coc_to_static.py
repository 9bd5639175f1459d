"""tools/model_converters/coc_to_static.py, run as a user runs it."""
import os.path as osp
import subprocess
import sys

import pytest
import torch
from mmengine.config import Config

from mmdgconv.deploy import (build_model, model_outputs, random_inputs)
from mmdgconv.testing import shrink_detection_config

REPO = osp.abspath(osp.join(osp.dirname(__file__), '..', '..'))
TOOL = osp.join(REPO, 'tools', 'model_converters', 'coc_to_static.py')
RETINANET = osp.join(REPO, 'configs', 'coc',
                     'retinanet_r50-coc_fpn_1x_coco.py')


def _run(*args, cwd):
    return subprocess.run([sys.executable, TOOL, *args], cwd=cwd,
                          capture_output=True, text=True, timeout=600)


@pytest.fixture
def retinanet(synthetic_coco, tmp_path):
    """A narrow RetinaNet-CoC config, its deploy twin and a checkpoint."""
    cfg = shrink_detection_config(Config.fromfile(RETINANET), synthetic_coco,
                                  str(tmp_path / 'work'))
    cfg.model.backbone.base_channels = 16
    cfg.model.neck.in_channels = [64, 128, 256, 512]
    config = str(tmp_path / 'retinanet_coc.py')
    cfg.dump(config)
    cfg.model.backbone.deploy = True
    deploy_config = str(tmp_path / 'retinanet_coc_deploy.py')
    cfg.dump(deploy_config)

    torch.manual_seed(0)
    model = build_model(Config.fromfile(config))
    model.init_weights()
    # Trained-looking super kernels and norms, not their initial values.
    with torch.no_grad():
        for name, param in model.named_parameters():
            if name.endswith(('norm_weight', 'norm_bias')):
                param.uniform_(0.5, 1.5)
    checkpoint = str(tmp_path / 'trained.pth')
    torch.save(dict(meta=dict(epoch=12, note='kept'),
                    state_dict=model.state_dict()), checkpoint)
    return dict(config=config, deploy_config=deploy_config,
                checkpoint=checkpoint, model=model)


@pytest.mark.slow
def test_converts_a_whole_retinanet_exactly(retinanet, tmp_path):
    out = str(tmp_path / 'static.pth')
    result = _run(retinanet['config'], retinanet['checkpoint'], out,
                  '--verify', cwd=str(tmp_path))
    assert result.returncode == 0, result.stderr[-3000:]
    assert 'converted 17 CoC layers' in result.stdout
    assert [line[:5] for line in result.stdout.splitlines()
            if line.startswith('[')] == ['[1/3]', '[2/3]', '[3/3]']

    converted = torch.load(out, weights_only=True)
    assert converted['meta']['note'] == 'kept'
    assert converted['meta']['mmdgconv_conversion']['layers'] == 17
    assert not any('super_weight' in k for k in converted['state_dict'])

    deployed = build_model(Config.fromfile(retinanet['deploy_config']))
    deployed.load_state_dict(converted['state_dict'], strict=True)
    inputs, samples = random_inputs(retinanet['model'], 96, seed=3)
    expected, _ = model_outputs(retinanet['model'], inputs, samples)
    actual, _ = model_outputs(deployed, inputs, samples)
    assert len(expected) == len(actual) == 10  # 5 levels x (cls, reg)
    for a, b in zip(actual, expected):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4)


def test_failure_paths_leave_files_untouched(retinanet, tmp_path,
                                            run_tool_in_process):
    checkpoint = retinanet['checkpoint']
    original = open(checkpoint, 'rb').read()

    same = run_tool_in_process(TOOL, retinanet['config'], checkpoint, checkpoint,
                cwd=str(tmp_path))
    assert same.returncode != 0
    assert 'refusing to overwrite the input' in same.stderr
    assert open(checkpoint, 'rb').read() == original

    no_coc = run_tool_in_process(TOOL, retinanet['deploy_config'], checkpoint,
                  str(tmp_path / 'x.pth'), cwd=str(tmp_path))
    assert no_coc.returncode != 0
    assert 'does not match the model built from' in no_coc.stderr
    assert 'unexpected keys' in no_coc.stderr

    deployed_ckpt = str(tmp_path / 'deployed.pth')
    deployed = build_model(Config.fromfile(retinanet['deploy_config']))
    torch.save(dict(state_dict=deployed.state_dict()), deployed_ckpt)
    nothing = run_tool_in_process(TOOL, retinanet['deploy_config'], deployed_ckpt,
                   str(tmp_path / 'y.pth'), cwd=str(tmp_path))
    assert nothing.returncode != 0 and 'no CoC layer' in nothing.stderr

    corrupted = tmp_path / 'corrupted.pth'
    corrupted.write_bytes(original[:1000])
    bad = run_tool_in_process(TOOL, retinanet['config'], str(corrupted), str(tmp_path / 'z.pth'),
               cwd=str(tmp_path))
    assert bad.returncode != 0 and 'corrupted.pth' in bad.stderr

    # Under /proc even root cannot create files: refused before converting,
    # in one line.
    unwritable = run_tool_in_process(TOOL, retinanet['config'], checkpoint, '/proc/out.pth',
                      cwd=str(tmp_path))
    assert unwritable.returncode != 0
    assert unwritable.stderr.strip().splitlines()[-1].startswith(
        'error: cannot write /proc/out.pth')
    assert 'converted' not in unwritable.stdout
    for name in ('x.pth', 'y.pth', 'z.pth'):
        assert not osp.exists(tmp_path / name)
