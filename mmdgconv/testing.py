"""Helpers to run stock configs briefly on generated data.

Used by the test-suite and handy for checking a new config before a long
run: the model, optimiser and hooks stay as the config defines them; only
the data, the image scale and the schedule are shrunk.
"""
import copy
from typing import Optional, Sequence

from mmengine.config import Config, ConfigDict

from mmdgconv.datasets import SYNTHETIC_COCO_CLASSES


#: Each dataloader and the generated split it reads (test reuses val).
_LOADERS = (('train', 'train_dataloader'), ('val', 'val_dataloader'),
            ('val', 'test_dataloader'))


def _short_run(cfg: Config, max_iters: int,
               val_interval: Optional[int]) -> None:
    """An iteration-based schedule that logs every iteration, validates
    every ``val_interval`` iterations (None: once, at the end) and keeps the
    last checkpoint; no weights are loaded."""
    cfg.train_cfg = ConfigDict(
        type='IterBasedTrainLoop',
        max_iters=max_iters,
        val_interval=val_interval or max_iters)
    cfg.param_scheduler = []
    cfg.default_hooks.logger = dict(type='LoggerHook', interval=1)
    cfg.default_hooks.checkpoint = dict(
        type='CheckpointHook', interval=max_iters, by_epoch=False)
    cfg.log_processor = dict(type='LogProcessor', window_size=1,
                             by_epoch=False)
    cfg.load_from = None
    cfg.resume = False


def _set_resize_scale(pipeline, scale) -> None:
    for transform in pipeline:
        if transform.get('type') in ('Resize', 'RandomResize',
                                     'RandomChoiceResize'):
            transform.clear()
            transform.update(type='Resize', scale=scale, keep_ratio=True)


def _set_num_classes(node, num_classes: int) -> None:
    """Set every head's ``num_classes`` (bbox, mask, RetinaNet heads)."""
    if isinstance(node, dict):
        if 'num_classes' in node:
            node['num_classes'] = num_classes
        for value in node.values():
            _set_num_classes(value, num_classes)
    elif isinstance(node, list):
        for value in node:
            _set_num_classes(value, num_classes)


def set_score_threshold(cfg: Config, score_thr: float) -> None:
    """Set the test-time score threshold of one- and two-stage detectors.

    Args:
        cfg (Config): The config, changed in place.
        score_thr (float): The new threshold.
    """
    test_cfg = cfg.model.test_cfg
    (test_cfg.rcnn if 'rcnn' in test_cfg else test_cfg).score_thr = score_thr


def shrink_detection_config(cfg: Config,
                            data: dict,
                            work_dir: str,
                            max_iters: int = 2,
                            image_scale: Sequence[int] = (96, 96),
                            batch_size: int = 2,
                            val_interval: Optional[int] = None) -> Config:
    """Point an mmdet COCO config at a synthetic COCO dataset, briefly.

    Args:
        cfg (Config): A config built on an ``mmdet::`` COCO base.
        data (dict): As returned by
            :func:`mmdgconv.datasets.make_synthetic_coco`.
        work_dir (str): The run's work dir.
        max_iters (int): Training iterations. Default: 2.
        image_scale (Sequence[int]): Resize scale (w, h). Default: (96, 96).
        batch_size (int): Training batch size. Default: 2.
        val_interval (int, optional): Validate every this many iterations;
            None validates once, at the end. Default: None.

    Returns:
        Config: A new config; ``cfg`` is left untouched. Every head's
        ``num_classes`` matches the synthetic dataset.
    """
    cfg = copy.deepcopy(cfg)
    cfg.work_dir = work_dir
    classes = tuple(data.get('classes', SYNTHETIC_COCO_CLASSES))
    metainfo = dict(classes=classes)
    for split, loader_key in _LOADERS:
        loader = cfg[loader_key]
        dataset = loader.dataset
        dataset.update(
            data_root=data['data_root'],
            ann_file=data[f'{split}_ann'],
            data_prefix=dict(img=f'{split}/'),
            metainfo=metainfo)
        if split == 'train':
            dataset.filter_cfg = dict(filter_empty_gt=True, min_size=1)
        _set_resize_scale(dataset.pipeline, tuple(image_scale))
        loader.update(
            batch_size=batch_size if split == 'train' else 1,
            num_workers=0,
            persistent_workers=False)
    for key in ('val_evaluator', 'test_evaluator'):
        evaluators = cfg[key] if isinstance(cfg[key], list) else [cfg[key]]
        for evaluator in evaluators:
            evaluator.ann_file = data['val_ann']
            evaluator.backend_args = None
    _short_run(cfg, max_iters, val_interval)
    cfg.param_scheduler = [
        dict(type='LinearLR', start_factor=0.1, by_epoch=False, begin=0,
             end=max(1, max_iters // 10))
    ]
    cfg.default_hooks.pop('visualization', None)
    _set_num_classes(cfg.model, len(classes))
    cfg.model.data_preprocessor.pad_size_divisor = 32
    cfg.model.backbone.init_cfg = None
    return cfg


def _set_video_scale(pipeline, size: int) -> None:
    for transform in pipeline:
        kind = transform.get('type')
        if kind == 'Resize':
            transform.scale = (-1, size) if transform.scale[0] == -1 else (
                size, size)
        elif kind == 'MultiScaleCrop':
            transform.input_size = size
        elif kind in ('CenterCrop', 'TenCrop', 'ThreeCrop'):
            transform.crop_size = size


def shrink_recognition_config(cfg: Config,
                              data: dict,
                              work_dir: str,
                              max_iters: int = 2,
                              image_size: int = 56,
                              batch_size: int = 2,
                              val_interval: Optional[int] = None) -> Config:
    """Point an mmaction2 Kinetics config at a synthetic video dataset.

    Args:
        cfg (Config): A config built on an ``mmaction::`` Kinetics base.
        data (dict): As returned by
            :func:`mmdgconv.datasets.make_synthetic_kinetics`.
        work_dir (str): The run's work dir.
        max_iters (int): Training iterations. Default: 2.
        image_size (int): Crop size. Default: 56.
        batch_size (int): Videos per training batch. Default: 2.
        val_interval (int, optional): Validate every this many iterations;
            None validates once, at the end. Default: None.

    Returns:
        Config: A new config; ``cfg`` is left untouched. The head's
        ``num_classes`` matches the dataset; the test split uses the
        validation pipeline.
    """
    cfg = copy.deepcopy(cfg)
    cfg.work_dir = work_dir
    for split, loader_key in _LOADERS:
        loader = cfg[loader_key]
        if loader_key == 'test_dataloader':
            loader.dataset.pipeline = copy.deepcopy(
                cfg.val_dataloader.dataset.pipeline)
        loader.dataset.update(
            ann_file=data[f'{split}_ann'],
            data_prefix=dict(video=data[f'{split}_videos']))
        _set_video_scale(loader.dataset.pipeline, image_size)
        loader.update(
            batch_size=batch_size if split == 'train' else 1,
            num_workers=0,
            persistent_workers=False)
        if loader_key == 'train_dataloader':
            loader.sampler = dict(type='InfiniteSampler', shuffle=True)
    cfg.model.cls_head.num_classes = data['num_classes']
    backbone = cfg.model.backbone
    if 'pretrained' in backbone:
        backbone.pretrained = None
    backbone.init_cfg = None
    _short_run(cfg, max_iters, val_interval)
    return cfg


def _set_image_scale(pipeline, size: int) -> None:
    for transform in pipeline:
        kind = transform.get('type')
        if kind in ('RandomResizedCrop', 'ResizeEdge'):
            transform.scale = size
        elif kind == 'CenterCrop':
            transform.crop_size = size


def shrink_classification_config(cfg: Config,
                                 data: dict,
                                 work_dir: str,
                                 max_iters: int = 2,
                                 image_size: int = 56,
                                 batch_size: int = 4) -> Config:
    """Point an mmpretrain ImageNet config at a synthetic ImageFolder.

    Args:
        cfg (Config): A config built on an ``mmpretrain::`` ImageNet base.
        data (dict): As returned by
            :func:`mmdgconv.datasets.make_synthetic_imagefolder`.
        work_dir (str): The run's work dir.
        max_iters (int): Training iterations. Default: 2.
        image_size (int): Crop size. Default: 56.
        batch_size (int): Training batch size. Default: 4.

    Returns:
        Config: A new config; the head's ``num_classes`` and the top-k of
        the accuracy match the dataset.
    """
    cfg = copy.deepcopy(cfg)
    cfg.work_dir = work_dir
    for split, loader_key in _LOADERS:
        loader = cfg[loader_key]
        pipeline = loader.dataset.pipeline
        _set_image_scale(pipeline, image_size)
        loader.dataset = ConfigDict(
            type='CustomDataset', data_root=data['data_root'],
            data_prefix=split, classes=list(data['classes']),
            pipeline=pipeline)
        loader.update(batch_size=batch_size if split == 'train' else 2,
                      num_workers=0, persistent_workers=False)
        if loader_key == 'train_dataloader':
            loader.sampler = dict(type='InfiniteSampler', shuffle=True)
    for key in ('val_evaluator', 'test_evaluator'):
        cfg[key] = dict(type='Accuracy', topk=(1, ))
    cfg.model.head.num_classes = len(data['classes'])
    _short_run(cfg, max_iters, None)
    return cfg


def randomise_norms(model, seed: int = 0):
    """Move every BatchNorm's running statistics and affine away from their
    initial values (as training would), so that a check of a converted or
    exported model covers them; returns ``model`` in eval mode."""
    import torch
    from torch.nn.modules.batchnorm import _BatchNorm
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, _BatchNorm):
                shape = module.running_mean.shape
                module.running_mean.copy_(
                    0.1 * torch.randn(shape, generator=generator))
                module.running_var.copy_(
                    0.5 + torch.rand(shape, generator=generator))
                module.weight.copy_(0.5 + torch.rand(shape,
                                                     generator=generator))
                module.bias.copy_(0.1 * torch.randn(shape,
                                                    generator=generator))
    return model.eval()


def config_contents(cfg: Config):
    """The effective contents of a config as plain JSON values.

    Dicts keep their keys (JSON sorts them, so the order in which a config
    and its bases wrote them does not count), tuples are kept apart from
    lists as ``{'tuple': [...]}``, and any other object is its ``repr``.
    Two configs with equal contents build the same runner.
    """

    def plain(value):
        if isinstance(value, dict):
            return {str(key): plain(item) for key, item in value.items()}
        if isinstance(value, tuple):
            return {'tuple': [plain(item) for item in value]}
        if isinstance(value, list):
            return [plain(item) for item in value]
        if value is None or isinstance(value, (bool, int, float, str)):
            return value
        return repr(value)

    return plain(cfg.to_dict())


#: Narrow widths per mmdgconv backbone, for quick runs of a stock config:
#: depth, necks, heads and every training component stay the config's.
NARROW_BACKBONES = {
    'mmdgconv.GResNeXt': dict(groups=4, base_width=4, base_channels=16),
    'mmdgconv.ResNetCoC': dict(base_channels=16),
    'mmdgconv.PEDResNet': dict(base_channels=16, ped_cfg=dict(reduction=4)),
    'mmdgconv.P4ResNet': dict(base_channels=16),
}
