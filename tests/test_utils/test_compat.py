import collections
import subprocess
import sys

import numpy as np
import pytest
import torch
from mmengine.logging import HistoryBuffer
from mmengine.runner.checkpoint import CheckpointLoader, _load_checkpoint

from mmdgconv.utils import CheckpointSafetyError, load_checkpoint_safely


class _Payload:
    """Stands for an arbitrary object an attacker could pickle."""

    def __init__(self):
        self.value = 1


def test_mmaction_models_import_in_a_fresh_interpreter():
    code = ('import mmdgconv, mmaction.models, mmaction.apis; '
            'from mmaction.models.localizers import DRN; print(DRN.__name__)')
    result = subprocess.run([sys.executable, '-c', code],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == 'DRN'


def test_without_the_shim_mmaction_models_fails():
    # Documents why the shim exists; if mmaction2 ever ships drn again this
    # test tells us the shim has become a no-op.
    result = subprocess.run(
        [sys.executable, '-c', 'import mmaction.models'],
        capture_output=True, text=True, timeout=300)
    assert result.returncode != 0 and 'drn' in result.stderr


def test_drn_standin_refuses_to_build():
    import mmaction.models  # noqa: F401
    from mmaction.registry import MODELS
    from mmengine.registry import DefaultScope
    with DefaultScope.overwrite_default_scope('mmaction'), pytest.raises(
            Exception, match='DRN localizer is not part'):
        MODELS.build(dict(type='DRN'))


def _mmengine_like_checkpoint():
    buffer = HistoryBuffer()
    buffer.update(0.5)
    buffer.update(np.float64(0.25))
    return dict(
        meta=dict(epoch=1, iter=2, seed=np.int64(3),
                  dataset_meta=dict(classes=('a', 'b'), palette=[(1, 2, 3)])),
        state_dict=collections.OrderedDict(w=torch.ones(2)),
        message_hub=dict(
            log_scalars={'train/loss': buffer},
            runtime_info=dict(iter=2, arr=np.arange(3, dtype=np.float32),
                              f=np.float32(1.5)),
            resumed_keys={'iter': True}),
        optimizer=dict(state={}, param_groups=[dict(lr=0.1, params=[0])]))


def test_mmengine_checkpoint_types_load(tmp_path):
    path = str(tmp_path / 'ckpt.pth')
    torch.save(_mmengine_like_checkpoint(), path)
    loaded = _load_checkpoint(path, map_location='cpu')
    buffer = loaded['message_hub']['log_scalars']['train/loss']
    assert isinstance(buffer, HistoryBuffer) and buffer.current() == 0.25
    np.testing.assert_array_equal(
        loaded['message_hub']['runtime_info']['arr'], np.arange(3))
    assert CheckpointLoader._schemes[''] is load_checkpoint_safely


def test_foreign_objects_are_refused_with_their_type(tmp_path):
    path = str(tmp_path / 'evil.pth')
    torch.save(dict(state_dict={}, payload=_Payload()), path)
    with pytest.raises(CheckpointSafetyError) as error:
        _load_checkpoint(path, map_location='cpu')
    message = str(error.value)
    assert path in message and '_Payload' in message


def test_corrupted_checkpoint_names_the_file(tmp_path):
    good = str(tmp_path / 'good.pth')
    torch.save(_mmengine_like_checkpoint(), good)
    bad = tmp_path / 'truncated.pth'
    bad.write_bytes(open(good, 'rb').read()[:200])
    with pytest.raises(CheckpointSafetyError, match='truncated.pth'):
        _load_checkpoint(str(bad), map_location='cpu')
    with pytest.raises(FileNotFoundError, match='missing.pth'):
        _load_checkpoint(str(tmp_path / 'missing.pth'))


def _video_dataset(tmp_path, lines):
    from mmaction.datasets import VideoDataset
    from mmengine.registry import DefaultScope
    (tmp_path / 'ann.txt').write_text(lines)
    pipeline = [
        dict(type='DecordInit'),
        dict(type='SampleFrames', clip_len=1, frame_interval=1,
             num_clips=3),
        dict(type='DecordDecode'),
        dict(type='FormatShape', input_format='NCHW'),
        dict(type='PackActionInputs')
    ]
    with DefaultScope.overwrite_default_scope('mmaction'):
        return VideoDataset(ann_file=str(tmp_path / 'ann.txt'),
                            data_prefix=dict(video=str(tmp_path)),
                            pipeline=pipeline)


def test_undecodable_and_missing_videos_name_the_file(tmp_path,
                                                      synthetic_kinetics):
    from mmdgconv.utils.compat import VideoDecodeError
    (tmp_path / 'broken.mp4').write_bytes(b'\x00\x00\x00\x18ftypmp42' +
                                          b'garbage' * 100)
    dataset = _video_dataset(tmp_path, 'broken.mp4 0\nmissing.mp4 1\n')
    with pytest.raises(VideoDecodeError, match='broken.mp4'):
        dataset[0]
    with pytest.raises(FileNotFoundError, match='missing.mp4'):
        dataset[1]
    # A real video still goes through the wrapped transform.
    import shutil
    shutil.copy(synthetic_kinetics['train_videos'] + '/red_right_000.mp4',
                str(tmp_path / 'good.mp4'))
    good = _video_dataset(tmp_path, 'good.mp4 0\n')[0]
    assert good['inputs'].shape[0] == 3  # three sampled frames


@pytest.mark.parametrize('dtype', [torch.bfloat16, torch.float16])
def test_mmcv_nms_and_roi_align_take_autocast_dtypes_on_cpu(dtype):
    """CPU autocast hands detector heads bfloat16/float16 tensors; mmcv's CPU
    kernels compute them in float32 and answer in the input's dtype."""
    from mmcv.ops import RoIAlign, batched_nms, nms
    torch.manual_seed(0)
    boxes = torch.rand(30, 4) * 50
    boxes[:, 2:] += boxes[:, :2] + 5
    scores = torch.rand(30)
    low_boxes, low_scores = boxes.to(dtype), scores.to(dtype)
    dets, keep = nms(low_boxes, low_scores, 0.5)
    expected_dets, expected_keep = nms(low_boxes.float(), low_scores.float(),
                                       0.5)
    assert dets.dtype == dtype and torch.equal(keep, expected_keep)
    assert torch.equal(dets.float(), expected_dets.to(dtype).float())
    dets, keep = batched_nms(low_boxes, low_scores, torch.zeros(30),
                             dict(type='nms', iou_threshold=0.5))
    assert dets.dtype == dtype and torch.equal(keep, expected_keep)

    features = torch.rand(1, 8, 32, 32).to(dtype).requires_grad_(True)
    rois = torch.tensor([[0., 2., 2., 20., 24.], [0., 0., 5., 9., 30.]])
    layer = RoIAlign((7, 7), spatial_scale=1.0, sampling_ratio=0)
    out = layer(features, rois.to(dtype))
    expected = layer(features.detach().float(), rois)
    assert out.dtype == dtype
    torch.testing.assert_close(out.float(), expected.to(dtype).float())
    out.float().sum().backward()
    assert features.grad.dtype == dtype


def test_optimiser_param_groups_are_plain_dicts_for_torch_compile():
    """A ConfigDict group makes dynamo fail on the optimiser step that a
    config's ``compile`` compiles with ``train_step``."""
    import copy

    import torch.nn as nn
    from mmengine.optim import build_optim_wrapper
    torch.manual_seed(0)
    models = [nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4))]
    models.append(copy.deepcopy(models[0]))
    from mmengine.config import ConfigDict
    wrappers = [build_optim_wrapper(m, ConfigDict(  # as a Runner passes it
        optimizer=dict(type='AdamW', lr=1e-3, weight_decay=0.05),
        paramwise_cfg=dict(norm_decay_mult=0.))) for m in models]
    groups = wrappers[0].optimizer.param_groups
    assert len(groups) == 4 and all(type(g) is dict for g in groups)
    assert [g['weight_decay'] for g in groups] == [0.05, 0.05, 0., 0.]
    for model in models:
        for p in model.parameters():
            p.grad = torch.linspace(-1, 1, p.numel()).reshape(p.shape)
    wrappers[0].optimizer.step()
    torch.compile(wrappers[1].optimizer.step, backend='eager')()
    for a, b in zip(models[0].parameters(), models[1].parameters()):
        torch.testing.assert_close(a, b)


def test_configs_start_from_the_mmdgconv_prefix(tmp_path):
    """The install puts the configs in mmdgconv/.mim; the shim lets
    mmengine resolve the prefix to them."""
    from mmengine.config import Config
    from mmengine.config.utils import MODULE2PACKAGE
    assert MODULE2PACKAGE['mmdgconv'] == 'mmdgconv'
    config = tmp_path / 'my_detector.py'
    config.write_text(
        "_base_ = 'mmdgconv::coc/retinanet_r50-coc_fpn_1x_coco.py'\n"
        'model = dict(backbone=dict(depth=101))\n')
    cfg = Config.fromfile(str(config))
    assert cfg.model.backbone.type == 'mmdgconv.ResNetCoC'
    assert cfg.model.backbone.depth == 101
    assert cfg.default_scope == 'mmdet'


def test_the_shim_table_reports_what_this_stack_needs():
    """Run as a user runs it: every shim is listed, each one this stack's
    defect needs is active (this machine has no accelerator, mmaction2 1.2.0
    lacks drn, torch 2.14 loads weights-only, mmcv 2.1's CPU kernels refuse
    bfloat16)."""
    result = subprocess.run(
        [sys.executable, '-m', 'mmdgconv.utils.compat'],
        capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert 'RuntimeWarning' not in result.stderr
    from mmdgconv.utils import compat
    rows = {line.split('  ')[0]: line
            for line in result.stdout.splitlines()[1:]}
    assert set(rows) == {name for name, *_ in compat.SHIMS}
    for name in ('mmaction2 drn', 'safe checkpoint loading',
                 'CPU distributed', 'AMP without an accelerator',
                 'mmcv ops under CPU autocast'):
        assert '  active  ' in rows[name], rows[name]


def test_shims_apply_once_and_only_where_the_defect_is(monkeypatch):
    from mmdgconv.utils import compat
    first = compat.apply_compat_shims()
    launcher = __import__('mmengine.dist.utils',
                          fromlist=['_init_dist_pytorch'])._init_dist_pytorch
    finders = list(sys.meta_path)
    assert compat.apply_compat_shims() == first  # idempotent
    assert sys.meta_path == finders  # no second stand-in finder
    assert __import__('mmengine.dist.utils', fromlist=['x'])\
        ._init_dist_pytorch is launcher  # not wrapped twice
    # Where torch.load accepts mmengine's objects, the loader is left as
    # mmengine has it.
    monkeypatch.setattr(compat, '_torch_load_refuses_mmengine_objects',
                        lambda: False)
    before = dict(CheckpointLoader._schemes)
    assert compat.install_safe_checkpoint_loader() is False
    assert CheckpointLoader._schemes == before
    # With an accelerator, the CPU launcher needs no change.
    monkeypatch.setattr(compat, '_has_accelerator', lambda: True)
    assert compat.install_cpu_distributed_support() is False
