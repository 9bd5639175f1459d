"""Stock mmdet configs with a G-ResNeXt backbone, trained through mmengine's
Runner on generated data and validated with CocoMetric (pycocotools)."""
import os.path as osp

import pytest
import torch
from mmengine.config import Config
from mmengine.hooks import Hook
from mmengine.runner import Runner

from mmdgconv.models import DGConv2d
from mmdgconv.testing import (NARROW_BACKBONES, set_score_threshold,
                               shrink_detection_config)

CONFIGS = osp.join(osp.dirname(__file__), '..', '..', 'configs')
# Output channels of the narrowed backbones (P4ResNet: widths / sqrt(4)).
NECK_IN = {'mmdgconv.P4ResNet': [32, 64, 128, 256]}


def _narrow_fpn(cfg):
    backbone_type = cfg.model.backbone.type
    cfg.model.backbone.update(NARROW_BACKBONES[backbone_type])
    cfg.model.neck.in_channels = NECK_IN.get(backbone_type,
                                             [64, 128, 256, 512])
    cfg.model.neck.out_channels = 32
    for head in ('rpn_head', 'bbox_head'):
        if head in cfg.model:
            cfg.model[head].in_channels = 32
            if 'feat_channels' in cfg.model[head]:
                cfg.model[head].feat_channels = 32
    if 'roi_head' in cfg.model:
        roi = cfg.model.roi_head
        roi.bbox_roi_extractor.out_channels = 32
        roi.bbox_head.in_channels = 32
        roi.bbox_head.fc_out_channels = 64
        if 'mask_head' in roi:
            roi.mask_roi_extractor.out_channels = 32
            roi.mask_head.in_channels = 32
            roi.mask_head.conv_out_channels = 32


def _coco_ap(ann_file, detections_file, metric):
    """AP@[.5:.95] of a detections file, by pycocotools directly."""
    import contextlib
    import io
    import json

    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval
    with contextlib.redirect_stdout(io.StringIO()):
        truth = COCO(ann_file)
        with open(detections_file) as f:
            detections = json.load(f)
        assert detections, 'the model gave no detection to score'
        evaluation = COCOeval(truth, truth.loadRes(detections),
                              'segm' if metric == 'segm' else 'bbox')
        evaluation.evaluate()
        evaluation.accumulate()
        evaluation.summarize()
    return float(evaluation.stats[0])


class _RecordLogs(Hook):
    """Collects the scalars logged at every training iteration."""

    def __init__(self):
        self.outputs = []

    def after_train_iter(self, runner, batch_idx, data_batch=None,
                         outputs=None):
        self.outputs.append({k: float(v) for k, v in outputs.items()})


@pytest.mark.slow
@pytest.mark.parametrize('config,metrics', [
    ('g_resnext/faster-rcnn_g-resnext50-32x4d_fpn_1x_coco.py', ('bbox', )),
    ('g_resnext/retinanet_g-resnext50-32x4d_fpn_1x_coco.py', ('bbox', )),
    ('g_resnext/mask-rcnn_g-resnext50-32x4d_fpn_1x_coco.py', ('bbox',
                                                              'segm')),
    ('coc/faster-rcnn_r50-coc_fpn_1x_coco.py', ('bbox', )),
    ('coc/retinanet_r50-coc_fpn_1x_coco.py', ('bbox', )),
    ('coc/mask-rcnn_r50-coc_fpn_1x_coco.py', ('bbox', 'segm')),
    ('pedconv/faster-rcnn_ped-r50_fpn_1x_coco.py', ('bbox', )),
    ('pedconv/retinanet_ped-r50_fpn_1x_coco.py', ('bbox', )),
    ('pedconv/mask-rcnn_ped-r50_fpn_1x_coco.py', ('bbox', 'segm')),
    ('p4/faster-rcnn_p4-resnet50_fpn_1x_coco.py', ('bbox', )),
])
def test_detector_trains_and_validates(config, metrics, synthetic_coco,
                                       tmp_path):
    cfg = Config.fromfile(osp.join(CONFIGS, config))
    assert cfg.default_scope == 'mmdet'
    cfg = shrink_detection_config(cfg, synthetic_coco, str(tmp_path))
    _narrow_fpn(cfg)
    # Two iterations leave scores below the stock 0.05 threshold; keep every
    # box so that pycocotools has detections to score.
    set_score_threshold(cfg, 0.0)
    # The evaluator also writes the detections it scores, so the logged AP
    # can be recomputed independently below.
    prefix = str(tmp_path / 'detections')
    cfg.val_evaluator.outfile_prefix = prefix
    runner = Runner.from_cfg(cfg)
    recorder = _RecordLogs()
    runner.register_hook(recorder)
    runner.train()

    assert len(recorder.outputs) == 2
    for logged in recorder.outputs:
        assert logged['loss'] > 0
        if cfg.model.backbone.type == 'mmdgconv.PEDResNet':
            # The info-max loss reaches the total loss and the log.
            assert logged['loss_infomax'] > 0
        if cfg.model.backbone.type == 'mmdgconv.GResNeXt':
            assert 'loss_resource' in logged and 'dg_zeta' in logged
            assert logged['dg_zeta_ratio'] > 0
            assert {f'dg_groups_layer{i}'
                    for i in range(1, 5)} <= set(logged)
    # The validation pass ran the COCO evaluation: the logged AP is
    # pycocotools' own AP of the detections the model gave.
    metrics_seen = runner.message_hub.log_scalars
    for metric in metrics:
        logged = metrics_seen[f'val/coco/{metric}_mAP'].current()
        assert logged == pytest.approx(
            _coco_ap(synthetic_coco['val_ann'], f'{prefix}.{metric}.json',
                     metric), abs=5e-4)
    assert osp.isfile(osp.join(str(tmp_path), 'iter_2.pth'))


@pytest.mark.parametrize('config', [
    'faster-rcnn_g-resnext101-32x8d_fpn_1x_coco.py',
    'retinanet_g-resnext101-32x8d_fpn_1x_coco.py',
    'mask-rcnn_g-resnext101-32x8d_fpn_1x_coco.py',
])
def test_101_configs_build_full_width(config):
    from mmdet.registry import MODELS
    from mmengine.registry import DefaultScope
    cfg = Config.fromfile(osp.join(CONFIGS, 'g_resnext', config))
    with DefaultScope.overwrite_default_scope('mmdet'):
        backbone = MODELS.build(cfg.model.backbone)
    widths = [m.in_channels for m in backbone.modules()
              if isinstance(m, DGConv2d)]
    assert len(widths) == 33
    assert sorted(set(widths)) == [256, 512, 1024, 2048]  # 32x8d
    assert cfg.custom_hooks[0].type == 'mmdgconv.ResourceConstraintHook'
    with torch.no_grad():
        outs = backbone.eval()(torch.rand(1, 3, 32, 32))
    assert [o.shape[1] for o in outs] == [256, 512, 1024, 2048]


@pytest.mark.parametrize('config', [
    'faster-rcnn_r50-coc_fpn_1x_coco_deploy.py',
    'retinanet_r50-coc_fpn_1x_coco_deploy.py',
    'mask-rcnn_r50-coc_fpn_1x_coco_deploy.py',
])
def test_coc_deploy_configs_build_plain_convs(config):
    from mmdet.registry import MODELS
    from mmengine.registry import DefaultScope
    cfg = Config.fromfile(osp.join(CONFIGS, 'coc', config))
    assert cfg.model.backbone.deploy and cfg.model.backbone.init_cfg is None
    with DefaultScope.overwrite_default_scope('mmdet'):
        model = MODELS.build(cfg.model)
    keys = model.state_dict().keys()
    assert not any(k.endswith(('super_weight', 'norm_weight', 'weight_pad'))
                   for k in keys)
    assert model.backbone.coc_layers()  # still CoC layers, in deployed form
    assert all(layer.deploy for layer in model.backbone.coc_layers())
