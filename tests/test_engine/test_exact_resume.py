"""Stopping and resuming ends bit-identical to never stopping.

Each run trains four iterations and checkpoints every two; a second run
resumes from the first one's iteration-2 checkpoint and must end with the
same weights, optimiser state and generator states, bit for bit.
"""
import copy
import os
import os.path as osp
import signal
import subprocess
import sys
import time

import pytest
import torch
from mmengine.config import Config
from mmengine.runner import Runner

from mmdgconv.apis import ResumeError, build_runner, prepare_resume
from mmdgconv.datasets import make_synthetic_imagefolder
from mmdgconv.testing import (shrink_classification_config,
                              shrink_detection_config,
                              shrink_recognition_config)
from mmdgconv.utils import load_checkpoint_safely
from mmdgconv.utils.checkpoint_integrity import checkpoint_digest

REPO = osp.abspath(osp.join(osp.dirname(__file__), '..', '..'))
CONFIGS = osp.join(REPO, 'configs')
NARROW_GRESNEXT = dict(groups=4, base_width=4, base_channels=16)


def _every_two_iterations(cfg, work_dir, seed=0):
    cfg.work_dir = work_dir
    cfg.default_hooks.checkpoint = dict(
        type='CheckpointHook', by_epoch=False, interval=2)
    cfg.randomness = dict(seed=seed, deterministic=True)
    return cfg


def _detector(data, work_dir):
    cfg = shrink_detection_config(
        Config.fromfile(
            osp.join(CONFIGS, 'g_resnext',
                     'faster-rcnn_g-resnext50-32x4d_fpn_1x_coco.py')),
        data, work_dir, max_iters=4, val_interval=2)
    cfg.model.backbone.update(NARROW_GRESNEXT)
    cfg.model.neck.in_channels = [64, 128, 256, 512]
    # As the demo config: one persistent worker process loads the data.
    cfg.train_dataloader.update(num_workers=1, persistent_workers=True)
    return _every_two_iterations(cfg, work_dir)


def _recogniser(data, work_dir):
    cfg = shrink_recognition_config(
        Config.fromfile(
            osp.join(CONFIGS, 'tsn',
                     'tsn_g-resnext50-narrow_synthetic-kinetics.py')),
        data, work_dir, max_iters=4)
    return _every_two_iterations(cfg, work_dir)


def _classifier(data, work_dir):
    # PEDConv samples its noise from torch's generator in every step.
    cfg = shrink_classification_config(
        Config.fromfile(osp.join(CONFIGS, 'pedconv',
                                 'ped-resnet18_8xb32_in1k.py')),
        data, work_dir, max_iters=4)
    cfg.model.backbone.update(base_channels=16, ped_cfg=dict(reduction=4))
    cfg.model.head.in_channels = 128
    return _every_two_iterations(cfg, work_dir)


def _train(cfg, resume_from=None, build=build_runner):
    cfg = copy.deepcopy(cfg)
    if resume_from is not None:
        cfg.resume, cfg.load_from = True, resume_from
    runner = build(cfg)
    runner.train()
    return runner


def _assert_bit_identical(first: str, second: str) -> None:
    a, b = (load_checkpoint_safely(p) for p in (first, second))
    assert a['meta']['iter'] == b['meta']['iter']
    # Training recorded each one's SHA-256 (and loading checked it).
    for checkpoint in (a, b):
        assert checkpoint['meta']['sha256'] == checkpoint_digest(checkpoint)
    assert a['state_dict'].keys() == b['state_dict'].keys()
    differing = [k for k, v in a['state_dict'].items()
                 if not torch.equal(v, b['state_dict'][k])]
    assert not differing, f'{len(differing)} tensors differ: {differing[:5]}'
    for key, state in a['optimizer']['state'].items():
        for name, value in state.items():
            if torch.is_tensor(value):
                assert torch.equal(value, b['optimizer']['state'][key][name])
    assert torch.equal(a['rng_states'][0]['torch'],
                       b['rng_states'][0]['torch'])


def _resume_matches_uninterrupted(make_cfg, data, tmp_path):
    whole = make_cfg(data, str(tmp_path / 'whole'))
    _train(whole)
    resumed = make_cfg(data, str(tmp_path / 'resumed'))
    _train(resumed, resume_from=str(tmp_path / 'whole' / 'iter_2.pth'))
    _assert_bit_identical(str(tmp_path / 'whole' / 'iter_4.pth'),
                          str(tmp_path / 'resumed' / 'iter_4.pth'))


@pytest.mark.slow
def test_detector_resumes_bit_identically(synthetic_coco, tmp_path):
    # Validation at iteration 2 sits between the checkpoint and the next
    # step of the uninterrupted run.
    _resume_matches_uninterrupted(_detector, synthetic_coco, tmp_path)


@pytest.mark.slow
def test_recogniser_resumes_bit_identically(synthetic_kinetics, tmp_path):
    _resume_matches_uninterrupted(_recogniser, synthetic_kinetics, tmp_path)


@pytest.fixture(scope='module')
def synthetic_images(tmp_path_factory):
    root = str(tmp_path_factory.mktemp('images'))
    return make_synthetic_imagefolder(root, train_per_class=2,
                                      val_per_class=1)


@pytest.mark.slow
def test_classifier_resumes_bit_identically(synthetic_images, tmp_path):
    _resume_matches_uninterrupted(_classifier, synthetic_images, tmp_path)


@pytest.mark.slow
def test_epoch_based_classifier_with_persistent_workers_resumes_exactly(
        synthetic_images, tmp_path):
    """As the ImageNet and Kinetics configs train: by epoch, with persistent
    worker processes, checkpointing each epoch."""
    def config(work_dir):
        cfg = _classifier(synthetic_images, work_dir)
        cfg.train_cfg = dict(type='EpochBasedTrainLoop', max_epochs=2,
                             val_interval=1)
        cfg.default_hooks.checkpoint = dict(type='CheckpointHook',
                                            interval=1)
        cfg.train_dataloader.update(
            num_workers=1, persistent_workers=True,
            sampler=dict(type='DefaultSampler', shuffle=True))
        cfg.log_processor = dict(by_epoch=True)
        return cfg

    _train(config(str(tmp_path / 'whole')))
    _train(config(str(tmp_path / 'resumed')),
           resume_from=str(tmp_path / 'whole' / 'epoch_1.pth'))
    _assert_bit_identical(str(tmp_path / 'whole' / 'epoch_2.pth'),
                          str(tmp_path / 'resumed' / 'epoch_2.pth'))


@pytest.mark.slow
def test_without_the_hook_the_classifier_run_diverges(synthetic_images,
                                                      tmp_path):
    """The setting above is sensitive: mmengine alone does not resume it
    exactly, so the test above can fail."""
    whole = _classifier(synthetic_images, str(tmp_path / 'whole'))
    _train(whole, build=Runner.from_cfg)
    resumed = _classifier(synthetic_images, str(tmp_path / 'resumed'))
    _train(resumed, resume_from=str(tmp_path / 'whole' / 'iter_2.pth'),
           build=Runner.from_cfg)
    a, b = (load_checkpoint_safely(str(tmp_path / d / 'iter_4.pth'))
            for d in ('whole', 'resumed'))
    assert any(not torch.equal(v, b['state_dict'][k])
               for k, v in a['state_dict'].items())


@pytest.mark.slow
def test_train_tool_resumes_exactly_after_a_hard_kill(synthetic_images,
                                                      tmp_path):
    """SIGKILL ``tools/train.py`` mid-run; ``--resume`` from the latest
    checkpoint ends where an uninterrupted run ends."""
    def config(work_dir, name):
        cfg = _classifier(synthetic_images, work_dir)
        cfg.train_cfg.max_iters = 8
        path = str(tmp_path / name)
        cfg.dump(path)
        return path

    train = [sys.executable, osp.join(REPO, 'tools', 'train.py')]
    env = dict(os.environ, OMP_NUM_THREADS='1')
    whole = config(str(tmp_path / 'whole'), 'whole.py')
    subprocess.run(train + [whole], check=True, capture_output=True,
                   env=env, timeout=600)

    killed_dir = tmp_path / 'killed'
    killed = config(str(killed_dir), 'killed.py')
    process = subprocess.Popen(train + [killed], env=env,
                               stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    deadline = time.time() + 600
    while not (killed_dir / 'last_checkpoint').exists():
        assert process.poll() is None, 'the run ended before it was killed'
        assert time.time() < deadline
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    assert process.wait() == -signal.SIGKILL
    assert not (killed_dir / 'iter_8.pth').exists()

    result = subprocess.run(train + [killed, '--resume'], env=env,
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    assert 'resumed epoch' in result.stdout + result.stderr
    _assert_bit_identical(str(tmp_path / 'whole' / 'iter_8.pth'),
                          str(killed_dir / 'iter_8.pth'))


def _config_without_seed(work_dir):
    return Config(dict(work_dir=work_dir, randomness=dict(seed=None)))


def test_resume_takes_the_seed_of_the_checkpoint(tmp_path):
    checkpoint = str(tmp_path / 'iter_4.pth')
    torch.save(dict(meta=dict(epoch=0, iter=4, seed=1234), state_dict={},
                    message_hub={}), checkpoint)
    cfg = _config_without_seed(str(tmp_path))
    prepare_resume(cfg, checkpoint)
    assert (cfg.resume, cfg.load_from) == (True, checkpoint)
    assert cfg.randomness.seed == 1234
    # An explicit seed wins, as in mmengine (which warns about it).
    cfg = Config(dict(work_dir=str(tmp_path), randomness=dict(seed=5)))
    prepare_resume(cfg, checkpoint)
    assert cfg.randomness.seed == 5


def test_auto_resume_finds_the_latest_checkpoint_or_starts_afresh(tmp_path):
    cfg = _config_without_seed(str(tmp_path))
    prepare_resume(cfg, 'auto')  # nothing to resume from yet
    assert (cfg.resume, cfg.load_from, cfg.randomness.seed) == (True, None,
                                                                 None)
    checkpoint = str(tmp_path / 'iter_2.pth')
    torch.save(dict(meta=dict(epoch=0, iter=2, seed=99), state_dict={},
                    message_hub={}), checkpoint)
    (tmp_path / 'last_checkpoint').write_text(checkpoint)
    prepare_resume(cfg, 'auto')
    assert cfg.load_from is None and cfg.randomness.seed == 99


@pytest.mark.parametrize('content, missing', [
    (dict(state_dict={}), 'meta'),  # weights only, e.g. a converter output
    ({'conv.weight': torch.zeros(1)}, 'meta'),  # a bare state dict
    (dict(meta=dict(config=''), state_dict={}, message_hub={}),
     'meta.epoch'),
])
def test_resume_from_weights_names_the_file(tmp_path, content, missing):
    checkpoint = str(tmp_path / 'weights.pth')
    torch.save(content, checkpoint)
    with pytest.raises(ResumeError) as error:
        prepare_resume(_config_without_seed(str(tmp_path)), checkpoint)
    message = str(error.value)
    assert checkpoint in message and 'not a training checkpoint' in message
    assert missing in message and f'load_from={checkpoint}' in message


def test_train_tool_refuses_to_resume_from_weights(tmp_path):
    checkpoint = str(tmp_path / 'static.pth')
    torch.save(dict(state_dict={'w': torch.zeros(1)}), checkpoint)
    result = subprocess.run(
        [sys.executable, osp.join(REPO, 'tools', 'train.py'),
         osp.join(CONFIGS, 'g_resnext',
                  'faster-rcnn_g-resnext50-narrow_fpn_synthetic-coco.py'),
         '--work-dir', str(tmp_path / 'work'), '--resume', checkpoint],
        capture_output=True, text=True, timeout=300)
    assert result.returncode != 0
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith('error: cannot resume from ' + checkpoint), last
    assert 'Traceback' not in result.stderr


def test_default_hooks_are_added_once():
    from mmdgconv.apis import DEFAULT_HOOKS, add_default_hooks
    cfg = Config(dict(custom_hooks=[dict(type='ExactResumeHook')]))
    add_default_hooks(cfg)
    add_default_hooks(cfg)
    assert [h['type'] for h in cfg.custom_hooks] == [
        'ExactResumeHook', 'mmdgconv.CheckpointDigestHook']
    cfg = Config(dict())
    add_default_hooks(cfg)
    assert [h['type'] for h in cfg.custom_hooks] == list(DEFAULT_HOOKS)
