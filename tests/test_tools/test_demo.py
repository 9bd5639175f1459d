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


def _detections(config, checkpoint):
    """``predict`` of the model a config and checkpoint build, on two fixed
    random batches, keeping every box the heads give (no score floor)."""
    import torch
    from mmengine.config import Config

    from mmdgconv.deploy import build_model, load_state_dict_strict
    from mmdgconv.deploy.detection_end2end import predict_detections
    cfg = Config.fromfile(str(config))
    cfg.model.test_cfg.rcnn.score_thr = 0.0
    model = build_model(cfg)
    load_state_dict_strict(model, str(checkpoint), str(config))
    model.eval()
    generator = torch.Generator().manual_seed(0)
    return [predict_detections(model, torch.randn(1, 3, 128, 128,
                                                  generator=generator))
            for _ in range(2)]


def _assert_same_detections(first, second, margin=1e-4):
    """Every detection scored clearly above the last one kept (away from
    where a 1e-6 difference could reorder the cut) is in both, with the
    same label, box and score."""
    for (dets_a, labels_a), (dets_b, labels_b) in zip(first, second):
        dets_a, labels_a = dets_a[0], labels_a[0]
        dets_b, labels_b = dets_b[0], labels_b[0]
        assert len(dets_a) > 10
        floor = max(dets_a[-1, 4], dets_b[-1, 4]) + margin
        clear_a = dets_a[:, 4] > floor
        clear_b = dets_b[:, 4] > floor
        assert int(clear_a.sum()) == int(clear_b.sum()) > 0
        for det, label in zip(dets_a[clear_a], labels_a[clear_a]):
            same = ((dets_b[:, :4] - det[:4]).abs().amax(1) < 1e-3) & (
                (dets_b[:, 4] - det[4]).abs() < 1e-5) & (labels_b == label)
            assert bool(same.any()), f'{det.tolist()} ({int(label)})'


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
    # ... and, since 4 iterations score an AP of about 0 either way, the
    # detections themselves: the files the demo wrote, loaded as a user
    # loads them, give the same boxes, scores and labels.
    work = tmp_path / 'work'
    stem = 'faster-rcnn_g-resnext50-narrow_fpn_synthetic-coco'
    trained = _detections(work / f'{stem}.py', work / 'iter_4.pth')
    static = _detections(work / 'static' / f'{stem}_static.py',
                         work / 'static' / 'iter_4_static.pth')
    _assert_same_detections(trained, static)
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


@pytest.mark.slow
def test_compare_trains_three_backbones_alike_and_prints_table_2(tmp_path):
    result = _demo(tmp_path, '--compare', '--max-iters', '3', '--num-train',
                   '6', '--num-val', '3')
    assert result.returncode == 0, result.stderr[-3000:]
    out = result.stdout
    import json

    from mmengine.config import Config
    rows = json.load(open(tmp_path / 'work' / 'compare.json'))
    assert [row['cells']['backbone'] for row in rows] == [
        'ResNet-50', 'ResNeXt-50', 'GResNeXt-50']
    for row in rows:
        assert row['task'] == 'detection'
        assert 0 <= row['cells']['AP'] <= 100
        assert row['cells']['AP'] == pytest.approx(
            100 * row['metrics']['coco/bbox_mAP'])
    # The printed table is the written one, then the paper's for reference.
    table = open(tmp_path / 'work' / 'compare.md').read()
    assert table.strip() in out
    assert '| G-ResNeXt50 | 38.9 | 60.7 | 42.3 | 50.4 | 42.1 | 22.8 |' in out
    # Alike: the configs the runs dumped differ only in the backbone (and
    # the resource-constraint hook, which needs DGConv gates).
    dumped = [
        Config.fromfile(str(tmp_path / 'work' / stem / f'{stem}.py'))
        for stem in ('faster-rcnn_r50-narrow_fpn_synthetic-coco',
                     'faster-rcnn_x50-narrow_fpn_synthetic-coco',
                     'faster-rcnn_g-resnext50-narrow_fpn_synthetic-coco')]
    plain = []
    for cfg in dumped:
        d = cfg.to_dict()
        d['model'].pop('backbone')
        d['custom_hooks'] = [h for h in d['custom_hooks']
                             if 'ResourceConstraint' not in h['type']]
        for key in ('work_dir', 'experiment_name'):
            d.pop(key, None)
        plain.append(d)
    assert plain[0] == plain[1] == plain[2]
    assert dumped[0].train_cfg.max_iters == 3
    assert dumped[2].randomness.seed == 0
    # The narrow widths: ResNeXt's grouped 3x3s as wide as G-ResNeXt's
    # DGConvs (32 to 256 channels), ResNet's half as wide.
    assert dumped[1].model.backbone.groups == 8
    assert dumped[1].model.backbone.base_channels == 16 == \
        dumped[0].model.backbone.base_channels
    # Parameters as the models define them (independent of the tool):
    # counted from the weights each run saved.
    from mmengine.runner.checkpoint import _load_checkpoint
    for row, stem in zip(rows, ('faster-rcnn_r50-narrow_fpn_synthetic-coco',
                                'faster-rcnn_x50-narrow_fpn_synthetic-coco',
                                'faster-rcnn_g-resnext50-narrow_fpn_'
                                'synthetic-coco')):
        state = _load_checkpoint(
            str(tmp_path / 'work' / stem / 'iter_3.pth'),
            map_location='cpu')['state_dict']
        count = sum(v.numel() for k, v in state.items()
                    if v.is_floating_point() and 'running_' not in k)
        assert abs(row['costs']['params (M)'] - count / 1e6) < 1e-6
