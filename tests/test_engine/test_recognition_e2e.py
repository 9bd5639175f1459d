"""Stock mmaction2 TSN configs with each backbone, trained through
mmengine's Runner on generated MP4 videos (decoded by mmaction2's decord
pipeline) and validated with AccMetric (top-1/top-5)."""
import os.path as osp

import pytest
from mmengine.config import Config
from mmengine.runner import Runner

from mmdgconv.testing import shrink_recognition_config

CONFIGS = osp.join(osp.dirname(__file__), '..', '..', 'configs', 'tsn')
NARROW = {
    'mmdgconv.GResNeXt': dict(groups=4, base_width=4, base_channels=16),
    'mmdgconv.ResNetCoC': dict(base_channels=16),
    'mmdgconv.PEDResNet': dict(base_channels=16, ped_cfg=dict(reduction=4)),
    'mmpretrain.ResNeXt': dict(groups=4, width_per_group=4,
                               base_channels=16),
    'mmdgconv.P4ResNet': dict(base_channels=16),
}


def _config(name, segments='1x1x3'):
    return osp.join(CONFIGS, f'tsn_imagenet-pretrained-{name}_8xb32-'
                    f'{segments}-100e_kinetics400-rgb.py')


def _narrow_head_channels(backbone_type):
    """The last stage's width at the narrow widths (P4ResNet: half)."""
    return 256 if backbone_type == 'mmdgconv.P4ResNet' else 512


def _top_k_accuracy(runner, ks):
    """Top-k accuracy of the trained model over the validation set, from
    its own predictions, counted here."""
    import torch
    hits, total = {k: 0 for k in ks}, 0
    runner.model.eval()
    with torch.no_grad():
        for batch in runner.val_dataloader:
            for sample in runner.model.val_step(batch):
                ranked = sample.pred_score.argsort(descending=True)
                label = int(sample.gt_label)
                for k in ks:
                    hits[k] += int(label in ranked[:k].tolist())
                total += 1
    return {k: hits[k] / total for k in ks}


@pytest.mark.slow
@pytest.mark.parametrize('backbone,segments', [
    (backbone, segments)
    for backbone in ('g-resnext50-32x4d', 'r50-coc', 'ped-r50', 'r50',
                     'x50-32x4d')
    for segments in ('1x1x3', '1x1x8')
] + [('p4-r50', '1x1x3')])
def test_tsn_trains_and_validates_on_videos(backbone, segments,
                                            synthetic_kinetics, tmp_path):
    cfg = Config.fromfile(_config(backbone, segments))
    assert cfg.default_scope == 'mmaction'
    assert cfg.model.type == 'Recognizer2D'
    # the segments the config's name promises, in training and testing
    num_clips = int(segments.split('x')[-1])
    assert cfg.train_dataloader.dataset.pipeline[1].num_clips == num_clips
    assert cfg.val_dataloader.dataset.pipeline[1].num_clips == num_clips
    cfg = shrink_recognition_config(cfg, synthetic_kinetics, str(tmp_path))
    narrow = NARROW.get(cfg.model.backbone.type)
    if narrow:
        cfg.model.backbone.update(narrow)
        cfg.model.cls_head.in_channels = _narrow_head_channels(
            cfg.model.backbone.type)
    # top-2 as well: with 4 classes, top-5 is 1 whatever the model does
    cfg.val_evaluator.metric_options = dict(
        top_k_accuracy=dict(topk=(1, 2, 5)))
    runner = Runner.from_cfg(cfg)
    runner.train()
    scalars = runner.message_hub.log_scalars
    expected = _top_k_accuracy(runner, (1, 2))
    for k in (1, 2):
        assert scalars[f'val/acc/top{k}'].current() == pytest.approx(
            expected[k], abs=1e-6)
    assert osp.isfile(osp.join(str(tmp_path), 'iter_2.pth'))
    if backbone == 'g-resnext50-32x4d':  # groups stay fixed (freeze_groups)
        layers = runner.model.backbone.dgconv_layers()
        assert layers and not any(layer.gate.requires_grad
                                  for layer in layers)


@pytest.mark.parametrize('backbone', ['g-resnext50-32x4d', 'r50-coc',
                                      'ped-r50', 'p4-r50'])
def test_tsn_predict_mode_with_the_stock_recognizer(backbone):
    import torch
    from mmaction.registry import MODELS
    from mmaction.structures import ActionDataSample
    from mmengine.registry import DefaultScope
    cfg = Config.fromfile(_config(backbone))
    cfg.model.backbone.update(NARROW[cfg.model.backbone.type])
    cfg.model.backbone.init_cfg = None
    cfg.model.cls_head.update(
        in_channels=_narrow_head_channels(cfg.model.backbone.type),
        num_classes=4)
    with DefaultScope.overwrite_default_scope('mmaction'):
        model = MODELS.build(cfg.model).eval()
    inputs = torch.rand(2, 3, 3, 56, 56) * 255  # (N, segments, C, H, W)
    samples = [ActionDataSample().set_gt_label(i) for i in (0, 3)]
    with torch.no_grad():
        data = model.data_preprocessor(dict(inputs=list(inputs),
                                            data_samples=samples))
        predictions = model(**data, mode='predict')
    assert len(predictions) == 2
    assert predictions[0].pred_score.shape == (4, )


@pytest.mark.parametrize('backbone,backbone_type', [
    ('g-resnext50-32x4d', 'mmdgconv.GResNeXt'), ('r50', 'ResNet'),
    ('x50-32x4d', 'mmpretrain.ResNeXt')
])
def test_seed_schedule_configs(backbone, backbone_type):
    """The DGConv paper, appendix C: 5 training segments, 25 test frames,
    SGD lr 0.001 decayed at 50k and 80k, 100k iterations, 32 videos per GPU."""
    cfg = Config.fromfile(osp.join(
        CONFIGS, f'tsn_imagenet-pretrained-{backbone}_8xb32-paper-schedule_'
        'kinetics400-rgb.py'))
    assert cfg.model.backbone.type == backbone_type
    assert cfg.train_dataloader.dataset.pipeline[1].num_clips == 5
    assert cfg.test_dataloader.dataset.pipeline[1].num_clips == 25
    assert cfg.train_dataloader.batch_size == 32
    assert cfg.optim_wrapper.optimizer.lr == 0.001
    assert cfg.train_cfg.max_iters == 100000
    assert cfg.param_scheduler[0].milestones == [50000, 80000]
    if backbone == 'g-resnext50-32x4d':
        assert cfg.model.backbone.freeze_groups


def _stock_tsn_config():
    import mmaction
    return osp.join(osp.dirname(mmaction.__file__), '.mim', 'configs',
                    'recognition', 'tsn', 'tsn_imagenet-pretrained-r50_8xb32-'
                    '1x1x3-100e_kinetics400-rgb.py')


@pytest.mark.parametrize('backbone', [
    dict(type='mmdgconv.GResNeXt', depth=50),
    dict(type='mmdgconv.ResNetCoC', depth=50),
    dict(type='mmdgconv.PEDResNet', depth=50),
])
def test_swapping_the_backbone_dict_of_the_stock_tsn_config(backbone):
    """Nothing but the type (and depth) changes in mmaction2's own config:
    the backbone gives its last stage as a tensor, as mmaction2's ResNet,
    while the same backbone built for mmdet keeps all four stages in a
    tuple for the neck."""
    import torch
    from mmaction.registry import MODELS
    from mmaction.structures import ActionDataSample
    from mmengine.registry import DefaultScope

    from mmdgconv.registry import MODELS as MMDGCONV_MODELS
    cfg = Config.fromfile(_stock_tsn_config())
    cfg.merge_from_dict(dict(model=dict(backbone=backbone)))
    assert cfg.model.backbone.pretrained.startswith('https://')  # kept, unused
    with DefaultScope.overwrite_default_scope('mmaction'):
        model = MODELS.build(cfg.model).eval()
    assert model.backbone.out_indices == (3, )
    assert model.backbone.return_tuple is False
    inputs = torch.rand(2, 3, 3, 64, 64) * 255  # (N, segments, C, H, W)
    samples = [ActionDataSample().set_gt_label(i) for i in (0, 3)]
    with torch.no_grad():
        data = model.data_preprocessor(dict(inputs=list(inputs),
                                            data_samples=samples))
        predictions = model(**data, mode='predict')
    assert [p.pred_score.shape for p in predictions] == [(400, )] * 2
    for scope in ('mmdet', 'mmpretrain', None):
        with DefaultScope.overwrite_default_scope(scope):
            elsewhere = MMDGCONV_MODELS.build(backbone)
        assert elsewhere.return_tuple is True
        assert elsewhere.out_indices == (0, 1, 2, 3)
    explicit = dict(backbone, out_indices=(2, 3), return_tuple=True)
    with DefaultScope.overwrite_default_scope('mmaction'):
        model = MMDGCONV_MODELS.build(explicit)
    assert model.out_indices == (2, 3) and model.return_tuple is True
