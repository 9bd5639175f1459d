"""Training as users train, on a CPU: ``--amp`` and a config's own
``AmpOptimWrapper`` (bfloat16, and float16 with dynamic loss scaling), and a
config's ``compile``."""
import os.path as osp
import subprocess
import sys

import pytest
import torch
import torch.nn as nn
from mmengine.config import Config
from mmengine.hooks import Hook
from mmengine.optim import AmpOptimWrapper as MMEngineAmpOptimWrapper

from mmdgconv.apis import build_runner
from mmdgconv.engine import DeviceAmpOptimWrapper
from mmdgconv.testing import shrink_detection_config
from mmdgconv.utils import load_checkpoint_safely

REPO = osp.abspath(osp.join(osp.dirname(__file__), '..', '..'))
DEMO = osp.join(REPO, 'configs', 'g_resnext',
                'faster-rcnn_g-resnext50-narrow_fpn_synthetic-coco.py')


def _demo(data, work_dir, **optim_wrapper):
    cfg = shrink_detection_config(Config.fromfile(DEMO), data, work_dir,
                                  max_iters=2)
    cfg.optim_wrapper.update(optim_wrapper)
    return cfg


class _RecordBackboneDtype(Hook):

    def before_train(self, runner):
        self.dtypes = []
        runner.model.backbone.register_forward_hook(
            lambda module, args, out: self.dtypes.append(out[-1].dtype))


def test_the_bare_name_builds_the_device_wrapper_on_this_machine():
    from mmengine.registry import OPTIM_WRAPPERS
    if not torch.cuda.is_available():
        assert OPTIM_WRAPPERS.get('AmpOptimWrapper') is DeviceAmpOptimWrapper
    assert issubclass(DeviceAmpOptimWrapper, MMEngineAmpOptimWrapper)
    wrapper = DeviceAmpOptimWrapper(optimizer=torch.optim.SGD(
        [nn.Parameter(torch.zeros(1))], lr=0.1))
    assert wrapper.cast_dtype == torch.bfloat16
    assert not wrapper.loss_scaler.is_enabled()  # bf16 needs no scaling
    with pytest.raises(ValueError, match="dtype must be one of"):
        DeviceAmpOptimWrapper(dtype='float8', optimizer=wrapper.optimizer)


def test_float16_loss_scaling_skips_overflowing_steps_and_backs_off():
    weight = nn.Parameter(torch.ones(4))
    wrapper = DeviceAmpOptimWrapper(
        dtype='float16', loss_scale=dict(init_scale=1024.),  # dynamic
        optimizer=torch.optim.SGD([weight], lr=0.1))
    assert wrapper.loss_scaler.is_enabled()
    model = nn.Linear(4, 1)
    with wrapper.optim_context(model):
        assert torch.get_autocast_dtype('cpu') == torch.float16
        assert torch.is_autocast_enabled('cpu')
        # The matrix product runs in float16; its weight gradient, 100
        # times the scale 1024, overflows float16's 65504.
        loss = (torch.full((1, 4), 100.) @ weight[:, None]).sum()
    assert loss.dtype == torch.float16
    wrapper.update_params(loss)
    assert torch.equal(weight.detach(), torch.ones(4))  # the step skipped
    assert wrapper.loss_scaler.get_scale() == 512.  # and the scale halved
    with wrapper.optim_context(model):
        loss = (torch.ones(1, 4) @ weight[:, None]).sum()
    wrapper.update_params(loss)
    # The unscaled gradient, 1, at lr 0.1.
    torch.testing.assert_close(weight.detach(), torch.full((4, ), 0.9))


@pytest.mark.slow
@pytest.mark.parametrize('dtype', [None, 'float16'])
def test_config_amp_optim_wrapper_trains_the_demo_detector(
        synthetic_coco, tmp_path, dtype):
    cfg = _demo(synthetic_coco, str(tmp_path), type='AmpOptimWrapper',
                **({} if dtype is None else dict(dtype=dtype)))
    runner = build_runner(cfg)
    record = _RecordBackboneDtype()
    runner.register_hook(record)
    runner.train()
    expected = torch.bfloat16 if dtype is None else torch.float16
    assert isinstance(runner.optim_wrapper, DeviceAmpOptimWrapper)
    assert record.dtypes[:2] == [expected, expected]
    scalars = runner.message_hub.log_scalars
    assert torch.isfinite(torch.tensor(scalars['train/loss'].current()))
    checkpoint = load_checkpoint_safely(str(tmp_path / 'iter_2.pth'))
    scaler = checkpoint['optimizer']['loss_scaler']
    assert (dtype == 'float16') == bool(scaler)
    if scaler:
        assert 0 < scaler['scale'] <= 65536.


@pytest.mark.slow
def test_train_tool_amp_trains_the_demo_detector(synthetic_coco, tmp_path):
    config = str(tmp_path / 'demo.py')
    _demo(synthetic_coco, str(tmp_path / 'work')).dump(config)
    result = subprocess.run(
        [sys.executable, osp.join(REPO, 'tools', 'train.py'), config,
         '--amp'], capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    logs = result.stdout + result.stderr
    assert 'Iter(train) [2/2]' in logs
    checkpoint = load_checkpoint_safely(str(tmp_path / 'work' /
                                            'iter_2.pth'))
    assert 'loss_scaler' in checkpoint['optimizer']
    assert "type='AmpOptimWrapper'" in checkpoint['meta']['cfg']


@pytest.mark.slow
def test_config_compile_trains_the_demo_detector(synthetic_coco, tmp_path):
    """``compile`` in a config: mmengine compiles ``train_step`` (forward,
    losses, backward and the optimiser step). The default inductor backend
    spends minutes generating code for a whole detector on two cores, so
    this run captures the graphs with dynamo and runs them with the
    ``eager`` backend; AOTAutograd and inductor are tested on the backbone
    (tests/test_models/test_backbones/test_compile.py)."""
    torch._dynamo.reset()
    cfg = _demo(synthetic_coco, str(tmp_path))
    cfg.compile = dict(backend='eager')
    runner = build_runner(cfg)
    runner.train()
    assert getattr(runner.model.train_step, '_torchdynamo_orig_callable',
                   None) is not None  # it ran compiled
    scalars = runner.message_hub.log_scalars
    assert torch.isfinite(torch.tensor(scalars['train/loss'].current()))
    assert load_checkpoint_safely(str(tmp_path / 'iter_2.pth'))['meta'][
        'iter'] == 2
