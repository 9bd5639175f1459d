"""The main job: train a G-ResNeXt Faster R-CNN on the embedded dataset.

Generates the deterministic COCO-format dataset (real PNG files and
annotation JSON; the 'cluttered' variant: eight shape classes, small
objects, occlusion, clutter) under ``data/synthetic_coco``, trains the stock
Faster R-CNN + FPN with a G-ResNeXt-50 backbone through mmengine's Runner,
then evaluates COCO AP with mmdet's CocoMetric (pycocotools) and prints the
AP table and the groups each DGConv stage learned.

``--compare`` instead trains the same detector with ResNet-50, ResNeXt-50
and G-ResNeXt-50 backbones (the same narrow widths, data, schedule and seed)
and prints them in the layout of G-ResNeXt's COCO table (Zhang et al., ICCV
2019, Table 2) through ``tools/analysis/results_table.py``'s core, next to
that table's own COCO figures.

``--task tsn`` instead generates Kinetics-format MP4 videos under
``data/synthetic_kinetics``, trains mmaction2's stock TSN with a G-ResNeXt-50
backbone and prints top-1/top-5 accuracy (AccMetric).

Example:
    python tools/demo.py                  # about ten minutes on 2 CPU cores
    python tools/demo.py --max-iters 50   # a quick look
    python tools/demo.py --task tsn       # video recognition, a few minutes
    python tools/demo.py --compare        # three backbones, about 20 minutes
"""
import argparse
import os
import os.path as osp
import statistics
import subprocess
import sys
import time

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))

import torch
from mmengine.config import Config
from mmengine.runner import Runner

from mmdgconv.analysis import build_rows, to_json, to_markdown
from mmdgconv.datasets import (make_synthetic_coco,
                               make_synthetic_kinetics)
from mmdgconv.deploy import random_inputs
from mmdgconv.deploy.checkpoint_io import write_atomically
from mmdgconv.deploy.dgconv_static import dgconv_aware_flops
from mmdgconv.models import DGConv2d

DEFAULT_CONFIGS = dict(
    detection=osp.join(ROOT, 'configs', 'g_resnext',
                       'faster-rcnn_g-resnext50-narrow_fpn_synthetic-coco.py'),
    tsn=osp.join(ROOT, 'configs', 'tsn',
                 'tsn_g-resnext50-narrow_synthetic-kinetics.py'))
#: ``--compare``: G-ResNeXt's Table 2 backbones, as narrow as the demo's.
COMPARE_CONFIGS = tuple(
    osp.join(ROOT, 'configs', 'g_resnext', name) for name in (
        'faster-rcnn_r50-narrow_fpn_synthetic-coco.py',
        'faster-rcnn_x50-narrow_fpn_synthetic-coco.py',
        'faster-rcnn_g-resnext50-narrow_fpn_synthetic-coco.py'))
#: G-ResNeXt's Table 2 (Faster R-CNN + FPN on COCO, 180k iterations at
#: batch 16, ImageNet-pretrained full-width backbones): AP, AP.5, AP.75,
#: APl, APm, APs.
PAPER_TABLE_2 = (('ResNet50', (37.9, 59.3, 41.1, 49.9, 41.1, 21.5)),
                 ('ResNeXt50', (38.4, 60.2, 41.4, 49.5, 41.3, 22.8)),
                 ('G-ResNeXt50', (38.9, 60.7, 42.3, 50.4, 42.1, 22.8)))
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
    parser.add_argument(
        '--compare', action='store_true',
        help='detection: train ResNet-50, ResNeXt-50 and G-ResNeXt-50 '
        'alike and print G-ResNeXt\'s Table 2 layout')
    args = parser.parse_args()
    if args.compare and (args.task != 'detection' or args.config):
        parser.error('--compare trains its own three detection configs; '
                     'it takes neither --task tsn nor --config')
    args.config = args.config or DEFAULT_CONFIGS[args.task]
    dataset = 'synthetic_coco' if args.task == 'detection' \
        else 'synthetic_kinetics'
    args.data_root = args.data_root or osp.join(ROOT, 'data', dataset)
    args.work_dir = args.work_dir or osp.join(
        ROOT, 'work_dirs',
        'demo_compare' if args.compare else f'demo_{args.task}')
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


def format_comparison(columns: dict) -> str:
    """Rows of AP, params, FLOPs and latency; a column per model."""
    names = list(columns)
    lines = [f'{"":<22}' + ''.join(f'{n:>22}' for n in names)]
    for label, key in AP_KEYS:
        cells = []
        for name in names:
            value = columns[name][key]
            # pycocotools reports -1 for a size bucket without ground truth.
            cells.append(f'{100 * value:22.1f}' if value >= 0 else
                         f'{"n/a":>22}')
        lines.append(f'{label:<22}' + ''.join(cells))
    for label, key, unit in (('params', 'params', 'M'),
                             ('backbone FLOPs', 'flops', 'G'),
                             ('latency, batch 1', 'latency', 'ms')):
        lines.append(f'{label:<22}' + ''.join(
            f'{columns[n][key]:>20.2f} {unit:<1}' for n in names))
    return '\n'.join(lines)


def measure_model(model, size: int) -> dict:
    """Parameters (M), backbone FLOPs (G, DGConv by its nnz) and the median
    eval latency (ms) of a batch of one ``size`` x ``size`` image."""
    model.eval()
    image = torch.rand(1, 3, size, size)
    flops = dgconv_aware_flops(model.backbone, image)['']
    inputs, samples = random_inputs(model, size, batch=1)
    times = []
    with torch.no_grad():
        for _ in range(12):
            start = time.perf_counter()
            model(inputs, samples, mode='tensor')
            times.append(time.perf_counter() - start)
    return dict(params=sum(p.numel() for p in model.parameters()) / 1e6,
                flops=flops / 1e9,
                latency=1000 * statistics.median(times[2:]))


def coco_metrics(runner) -> dict:
    return {
        name[len(prefix):]: buffer.current()
        for name, buffer in runner.message_hub.log_scalars.items()
        for prefix in ('val/coco/', 'test/coco/') if name.startswith(prefix)
    }


def deploy_and_compare(args, cfg, runner, trained_metrics) -> None:
    """Convert the trained model to static grouped convs, evaluate both with
    CocoMetric and print them side by side; save the group plot."""
    max_iters = cfg.train_cfg.max_iters
    checkpoint = osp.join(args.work_dir, f'iter_{max_iters}.pth')
    config = osp.join(args.work_dir, osp.basename(args.config))
    static_dir = osp.join(args.work_dir, 'static')
    os.makedirs(static_dir, exist_ok=True)
    tools = osp.join(ROOT, 'tools')
    subprocess.run([
        sys.executable,
        osp.join(tools, 'model_converters', 'dgconv_to_static.py'), config,
        checkpoint, static_dir, '--verify', '--flops-size', '128'
    ], check=True, stdout=subprocess.DEVNULL)
    plot = osp.join(args.work_dir, 'groups.png')
    subprocess.run([
        sys.executable,
        osp.join(tools, 'analysis', 'plot_groups.py'), checkpoint, '--out',
        plot
    ], check=True, stdout=subprocess.DEVNULL)

    stem = osp.splitext(osp.basename(args.config))[0]
    static_cfg = Config.fromfile(osp.join(static_dir, stem + '_static.py'))
    static_cfg.work_dir = osp.join(args.work_dir, 'static_test')
    static_cfg.load_from = osp.join(static_dir,
                                    f'iter_{max_iters}_static.pth')
    static_runner = Runner.from_cfg(static_cfg)
    static_runner.test()
    static_model = static_runner.model
    columns = {
        'trained (DGConv)':
        dict(trained_metrics, **measure_model(runner.model, 128)),
        'static (grouped conv)':
        dict(coco_metrics(static_runner), **measure_model(static_model, 128)),
    }
    print(format_comparison(columns))
    print(f'static model: {static_dir} (config and checkpoint)')
    print(f'group plot: {plot}')


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


def detection_config(args, config: str, data: dict, work_dir: str):
    """``config`` pointed at the generated dataset, with the run's seed and
    schedule."""
    cfg = Config.fromfile(config)
    cfg.work_dir = work_dir
    cfg.randomness = dict(seed=args.seed, deterministic=False)
    cfg.data_root = data['data_root']
    for loader in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
        cfg[loader].dataset.data_root = data['data_root']
    for evaluator in ('val_evaluator', 'test_evaluator'):
        cfg[evaluator].ann_file = data['val_ann']
    if args.max_iters is not None:
        shorten_schedule(cfg, args.max_iters)
    add_progress_bar(cfg)
    return cfg


def format_paper_table() -> str:
    columns = ('AP', 'AP.5', 'AP.75', 'APl', 'APm', 'APs')
    lines = ['| backbone | ' + ' | '.join(columns) + ' |',
             '|---|' + '---:|' * len(columns)]
    lines += [f'| {name} | ' + ' | '.join(f'{v:.1f}' for v in values) + ' |'
              for name, values in PAPER_TABLE_2]
    return '\n'.join(lines)


def run_compare(args, data: dict, start: float) -> None:
    """Train the three Table 2 backbones alike, then evaluate each through
    its config's test loop and print the table."""
    pairs = []
    for index, config in enumerate(COMPARE_CONFIGS):
        name = osp.splitext(osp.basename(config))[0]
        print(f'[{index + 1}/{len(COMPARE_CONFIGS)}] training {name}',
              flush=True)
        cfg = detection_config(args, config, data,
                               osp.join(args.work_dir, name))
        # Evaluated once, below, by the results table's test loop.
        cfg.val_dataloader = cfg.val_cfg = cfg.val_evaluator = None
        runner = Runner.from_cfg(cfg)
        runner.train()
        # The config as the runner ran it (data paths included), beside the
        # checkpoint it wrote.
        pairs.append((osp.join(cfg.work_dir, osp.basename(config)),
                      osp.join(cfg.work_dir,
                               f'iter_{cfg.train_cfg.max_iters}.pth')))
    rows = build_rows(pairs, osp.join(args.work_dir, 'evaluation'),
                      size=128, progress=lambda line: print(
                          f'evaluating {line}', flush=True))
    table = to_markdown(rows)
    for suffix, text in (('md', table), ('json', to_json(rows))):
        write_atomically(lambda f, text=text: f.write(text),
                         osp.join(args.work_dir, f'compare.{suffix}'),
                         binary=False)
    iters = Config.fromfile(pairs[0][0]).train_cfg.max_iters
    print('\n==== mmdgconv demo --compare: Faster R-CNN + FPN, synthetic '
          f'COCO, {iters} iterations from scratch ====')
    print(table)
    print('\nFor reference, G-ResNeXt\'s Table 2 (COCO, full-width '
          'ImageNet-pretrained backbones, 180k iterations):')
    print(format_paper_table())
    print(f'table: {osp.join(args.work_dir, "compare.md")} (and .json)')
    print(f'total time: {(time.time() - start) / 60:.1f} min')


def main():
    args = parse_args()
    start = time.time()
    if args.task == 'tsn':
        run_tsn(args, start)
        return
    data = make_synthetic_coco(
        args.data_root, num_train=args.num_train, num_val=args.num_val,
        image_size=(128, 128), seed=args.seed, variant='cluttered')
    print(f'dataset: {data["data_root"]} ({args.num_train} train / '
          f'{args.num_val} val images, {len(data["classes"])} classes)')
    if args.compare:
        run_compare(args, data, start)
        return

    cfg = detection_config(args, args.config, data, args.work_dir)
    runner = Runner.from_cfg(cfg)
    runner.train()  # validates with CocoMetric once training ends
    metrics = coco_metrics(runner)
    groups = format_groups(runner.model)

    print('\n==== mmdgconv demo: G-ResNeXt-50 Faster R-CNN, synthetic COCO '
          '====')
    print('learned groups per DGConv layer (groups/channels):')
    print(groups)
    print('\nCOCO AP of the trained model and of its static conversion:')
    deploy_and_compare(args, cfg, runner, metrics)
    checkpoint = osp.join(args.work_dir,
                          f'iter_{cfg.train_cfg.max_iters}.pth')
    print(f'checkpoint: {checkpoint}')
    print(f'total time: {(time.time() - start) / 60:.1f} min')


if __name__ == '__main__':
    os.chdir(ROOT)
    main()
