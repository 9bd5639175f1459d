"""The main job: train a G-ResNeXt Faster R-CNN on the embedded dataset.

Generates the deterministic COCO-format dataset (real PNG files and
annotation JSON) under ``data/synthetic_coco``, trains the stock Faster
R-CNN + FPN with a G-ResNeXt-50 backbone through mmengine's Runner, then
evaluates COCO AP with mmdet's CocoMetric (pycocotools) and prints the AP
table and the groups each DGConv stage learned.

``--task tsn`` instead generates Kinetics-format MP4 videos under
``data/synthetic_kinetics``, trains mmaction2's stock TSN with a G-ResNeXt-50
backbone and prints top-1/top-5 accuracy (AccMetric).

Example:
    python tools/demo.py                  # about ten minutes on 2 CPU cores
    python tools/demo.py --max-iters 50   # a quick look
    python tools/demo.py --task tsn       # video recognition, a few minutes
"""
import argparse
import os
import os.path as osp
import sys
import time

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
sys.path.insert(0, ROOT)

from mmengine.config import Config  # noqa: E402
from mmengine.runner import Runner  # noqa: E402

from mmdgconv.datasets import (make_synthetic_coco,  # noqa: E402
                               make_synthetic_kinetics)
from mmdgconv.models import DGConv2d  # noqa: E402

DEFAULT_CONFIGS = dict(
    detection=osp.join(ROOT, 'configs', 'g_resnext',
                       'faster-rcnn_g-resnext50-narrow_fpn_synthetic-coco.py'),
    tsn=osp.join(ROOT, 'configs', 'tsn',
                 'tsn_g-resnext50-narrow_synthetic-kinetics.py'))
AP_KEYS = (('AP', 'bbox_mAP'), ('AP50', 'bbox_mAP_50'),
           ('AP75', 'bbox_mAP_75'), ('APs', 'bbox_mAP_s'),
           ('APm', 'bbox_mAP_m'), ('APl', 'bbox_mAP_l'))


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--task', choices=sorted(DEFAULT_CONFIGS),
                        default='detection')
    parser.add_argument('--config', help='default: the task\'s demo config')
    parser.add_argument('--data-root', help='default: data/synthetic_<task>')
    parser.add_argument('--work-dir', help='default: work_dirs/demo_<task>')
    parser.add_argument(
        '--max-iters', type=int, default=None,
        help='training iterations (default: the config\'s)')
    parser.add_argument('--num-train', type=int, default=400,
                        help='training images (per class for tsn: /20)')
    parser.add_argument('--num-val', type=int, default=100,
                        help='validation images (per class for tsn: /20)')
    parser.add_argument('--seed', type=int, default=0)
    args = parser.parse_args()
    args.config = args.config or DEFAULT_CONFIGS[args.task]
    dataset = 'synthetic_coco' if args.task == 'detection' \
        else 'synthetic_kinetics'
    args.data_root = args.data_root or osp.join(ROOT, 'data', dataset)
    args.work_dir = args.work_dir or osp.join(ROOT, 'work_dirs',
                                              f'demo_{args.task}')
    return args


def add_progress_bar(cfg) -> None:
    cfg.custom_hooks = list(cfg.get('custom_hooks', [])) + [
        dict(type='mmdgconv.TrainProgressBarHook')
    ]


def shorten_schedule(cfg, max_iters: int) -> None:
    """Run ``max_iters`` iterations with the config's schedule shape."""
    cfg.train_cfg.max_iters = cfg.train_cfg.val_interval = max_iters
    cfg.default_hooks.checkpoint.interval = max_iters
    warmup, decay = cfg.param_scheduler
    warmup.end = min(warmup.end, max(1, max_iters // 5))
    decay.begin, decay.end = warmup.end, max_iters


def format_ap_table(metrics: dict) -> str:
    header = ' | '.join(f'{name:>6}' for name, _ in AP_KEYS)
    # pycocotools reports -1 for a size bucket without ground truth.
    values = ' | '.join(
        f'{100 * metrics[key]:6.1f}' if metrics[key] >= 0 else f'{"n/a":>6}'
        for _, key in AP_KEYS)
    return f'{header}\n{values}'


def format_groups(model) -> str:
    stages = {}
    for name, module in model.named_modules():
        if isinstance(module, DGConv2d) and module.has_gates:
            stage = name.split('.')[1] if name.startswith('backbone.') \
                else name
            stages.setdefault(stage, []).append(
                f'{module.num_groups}/{module.in_channels}')
    return '\n'.join(f'  {stage}: ' + ' '.join(groups)
                     for stage, groups in stages.items())


def run_tsn(args, start: float) -> None:
    data = make_synthetic_kinetics(
        args.data_root, videos_per_class=max(2, args.num_train // 20),
        val_per_class=max(1, args.num_val // 20), seed=args.seed)
    print(f'dataset: {data["data_root"]} ({data["num_classes"]} classes of '
          'MP4 videos)')
    cfg = Config.fromfile(args.config)
    cfg.work_dir = args.work_dir
    cfg.randomness = dict(seed=args.seed, deterministic=False)
    for split, loader in (('train', 'train_dataloader'),
                          ('val', 'val_dataloader'),
                          ('val', 'test_dataloader')):
        cfg[loader].dataset.ann_file = data[f'{split}_ann']
        cfg[loader].dataset.data_prefix = dict(video=data[f'{split}_videos'])
    if args.max_iters is not None:
        shorten_schedule(cfg, args.max_iters)
    add_progress_bar(cfg)
    runner = Runner.from_cfg(cfg)
    runner.train()  # validates with AccMetric once training ends
    scalars = runner.message_hub.log_scalars
    print('\n==== mmdgconv demo: G-ResNeXt-50 TSN, synthetic Kinetics ====')
    print(f'top-1 {100 * scalars["val/acc/top1"].current():.1f} | '
          f'top-5 {100 * scalars["val/acc/top5"].current():.1f} | '
          f'mean class accuracy '
          f'{100 * scalars["val/acc/mean1"].current():.1f}')
    print(f'total time: {(time.time() - start) / 60:.1f} min')


def main():
    args = parse_args()
    start = time.time()
    if args.task == 'tsn':
        run_tsn(args, start)
        return
    data = make_synthetic_coco(
        args.data_root, num_train=args.num_train, num_val=args.num_val,
        image_size=(128, 128), seed=args.seed)
    print(f'dataset: {data["data_root"]} ({args.num_train} train / '
          f'{args.num_val} val images)')

    cfg = Config.fromfile(args.config)
    cfg.work_dir = args.work_dir
    cfg.randomness = dict(seed=args.seed, deterministic=False)
    cfg.data_root = data['data_root']
    for loader in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
        cfg[loader].dataset.data_root = data['data_root']
    for evaluator in ('val_evaluator', 'test_evaluator'):
        cfg[evaluator].ann_file = data['val_ann']
    if args.max_iters is not None:
        shorten_schedule(cfg, args.max_iters)
    add_progress_bar(cfg)
    runner = Runner.from_cfg(cfg)
    runner.train()  # validates with CocoMetric once training ends
    metrics = {
        name[len('val/coco/'):]: buffer.current()
        for name, buffer in runner.message_hub.log_scalars.items()
        if name.startswith('val/coco/')
    }
    minutes = (time.time() - start) / 60

    print('\n==== mmdgconv demo: G-ResNeXt-50 Faster R-CNN, synthetic COCO '
          '====')
    print(format_ap_table(metrics))
    print('learned groups per DGConv layer (groups/channels):')
    print(format_groups(runner.model))
    print(f'checkpoint: {osp.join(args.work_dir, "iter_%d.pth" % cfg.train_cfg.max_iters)}')
    print(f'total time: {minutes:.1f} min')


if __name__ == '__main__':
    os.chdir(ROOT)
    main()
