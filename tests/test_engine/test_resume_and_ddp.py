"""Resume under torch 2.14 and DDP (gloo, 2 processes) with DGConv."""
import os
import os.path as osp
import subprocess
import sys

import pytest
import torch
from mmengine.config import Config
from mmengine.hooks import Hook
from mmengine.runner import Runner

from mmdgconv.models import DGConv2d
from mmdgconv.testing import shrink_detection_config

REPO = osp.abspath(osp.join(osp.dirname(__file__), '..', '..'))
CONFIG = osp.join(REPO, 'configs', 'g_resnext',
                  'faster-rcnn_g-resnext50-32x4d_fpn_1x_coco.py')
HELPERS = osp.join(osp.dirname(osp.abspath(__file__)), 'helpers')
NARROW_BACKBONE = dict(groups=4, base_width=4, base_channels=16)


def _small_faster_rcnn(data, work_dir, max_iters):
    cfg = shrink_detection_config(
        Config.fromfile(CONFIG), data, work_dir, max_iters=max_iters,
        val_interval=1000)
    cfg.model.backbone.update(NARROW_BACKBONE)
    cfg.model.neck.in_channels = [64, 128, 256, 512]
    # No validation: these tests are about training state.
    cfg.val_dataloader = cfg.val_cfg = cfg.val_evaluator = None
    cfg.default_hooks.checkpoint.interval = 2
    return cfg


def _gates(model):
    return {n: m.gate.detach().clone() for n, m in model.named_modules()
            if isinstance(m, DGConv2d) and m.has_gates}


class _CaptureAtStart(Hook):
    """Records the state right after loading/resuming, before iterating."""

    def before_train(self, runner):
        self.iter = runner.iter
        self.gates = _gates(runner.model)
        self.optimizer = {
            k: {n: t.clone() for n, t in v.items()}
            for k, v in runner.optim_wrapper.optimizer.state_dict()
            ['state'].items()
        }


@pytest.mark.slow
def test_resume_restores_gates_optimizer_and_iteration(synthetic_coco,
                                                       tmp_path):
    work_dir = str(tmp_path)
    first = Runner.from_cfg(_small_faster_rcnn(synthetic_coco, work_dir, 2))
    first.train()
    saved_gates = _gates(first.model)
    saved_state = first.optim_wrapper.optimizer.state_dict()['state']
    assert saved_state, 'SGD with momentum keeps a buffer per parameter'
    checkpoint = osp.join(work_dir, 'iter_2.pth')
    assert osp.isfile(checkpoint)

    cfg = _small_faster_rcnn(synthetic_coco, work_dir, 3)
    cfg.resume, cfg.load_from = True, checkpoint
    second = Runner.from_cfg(cfg)
    capture = _CaptureAtStart()
    second.register_hook(capture)
    second.train()

    assert capture.iter == 2
    assert capture.gates.keys() == saved_gates.keys()
    for name, gate in saved_gates.items():
        torch.testing.assert_close(capture.gates[name], gate, rtol=0, atol=0)
    assert capture.optimizer.keys() == saved_state.keys()
    for key, state in saved_state.items():
        torch.testing.assert_close(
            capture.optimizer[key]['momentum_buffer'],
            state['momentum_buffer'], rtol=0, atol=0)
    assert second.iter == 3


@pytest.mark.slow
def test_ddp_two_processes_end_with_identical_gates(synthetic_coco,
                                                    tmp_path):
    cfg = _small_faster_rcnn(synthetic_coco, str(tmp_path), 3)
    cfg.custom_imports = dict(
        imports=['mmdgconv', 'gate_dump_hook'], allow_failed_imports=False)
    cfg.custom_hooks = list(cfg.custom_hooks) + [dict(type='GateDumpHook')]
    config_path = str(tmp_path / 'ddp_config.py')
    cfg.dump(config_path)

    env = dict(os.environ, PYTHONPATH=HELPERS + os.pathsep + REPO,
               PYTHON=sys.executable, PORT='29517', OMP_NUM_THREADS='1')
    result = subprocess.run(
        ['bash', osp.join(REPO, 'tools', 'dist_train.sh'), config_path, '2',
         '--work-dir', str(tmp_path)],
        env=env, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, (result.stdout[-3000:] +
                                    result.stderr[-5000:])

    ranks = [torch.load(str(tmp_path / f'gates_rank{r}.pth'))
             for r in (0, 1)]
    assert ranks[0]['wrapper'] == 'MMDistributedDataParallel'
    assert ranks[0]['iter'] == ranks[1]['iter'] == 3
    assert ranks[0]['gates'].keys() == ranks[1]['gates'].keys()
    for name, gate in ranks[0]['gates'].items():
        torch.testing.assert_close(ranks[1]['gates'][name], gate, rtol=0,
                                   atol=0)


def _dist_train(cfg, tmp_path, name, port, *extra):
    config_path = str(tmp_path / f'{name}.py')
    cfg.dump(config_path)
    env = dict(os.environ, PYTHONPATH=REPO, PYTHON=sys.executable,
               PORT=str(port), OMP_NUM_THREADS='1')
    result = subprocess.run(
        ['bash', osp.join(REPO, 'tools', 'dist_train.sh'), config_path, '2',
         *extra], env=env, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, (result.stdout[-3000:] +
                                    result.stderr[-5000:])
    return result


@pytest.mark.slow
def test_ddp_resume_is_bit_identical(synthetic_coco, tmp_path):
    """Each rank draws its own RPN/RoI samples: every rank's generators are
    gathered into the checkpoint and handed back to it on resume."""
    from mmdgconv.utils import load_checkpoint_safely
    whole = _small_faster_rcnn(synthetic_coco, str(tmp_path / 'whole'), 4)
    whole.randomness = dict(seed=0, diff_rank_seed=True)
    _dist_train(whole, tmp_path, 'whole', 29523)
    checkpoint = load_checkpoint_safely(str(tmp_path / 'whole' /
                                            'iter_2.pth'))
    states = checkpoint['rng_states']
    assert len(states) == 2 and not torch.equal(states[0]['torch'],
                                                states[1]['torch'])

    resumed = _small_faster_rcnn(synthetic_coco, str(tmp_path / 'resumed'),
                                 4)
    resumed.randomness = dict(seed=0, diff_rank_seed=True)
    _dist_train(resumed, tmp_path, 'resumed', 29524, '--resume',
                str(tmp_path / 'whole' / 'iter_2.pth'))
    a, b = (load_checkpoint_safely(str(tmp_path / d / 'iter_4.pth'))
            for d in ('whole', 'resumed'))
    differing = [k for k, v in a['state_dict'].items()
                 if not torch.equal(v, b['state_dict'][k])]
    assert not differing, differing[:5]
    for rank in (0, 1):
        assert torch.equal(a['rng_states'][rank]['torch'],
                           b['rng_states'][rank]['torch'])
