"""Train any mmdgconv config: mmdet, mmaction2 or mmpretrain.

The toolbox is chosen by the config's ``default_scope`` (inherited from its
``mmdet::``, ``mmaction::`` or ``mmpretrain::`` base).

Example:
    python tools/train.py \\
        configs/g_resnext/faster-rcnn_g-resnext50-32x4d_fpn_1x_coco.py
    bash tools/dist_train.sh CONFIG 2          # DDP through torchrun
"""
import argparse
import os


from mmengine.config import DictAction

from mmdgconv.apis import (ResumeError, apply_run_options,
                           build_runner, load_config, prepare_resume)
from mmdgconv.utils import CheckpointSafetyError


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('config', help='train config file path')
    parser.add_argument('--work-dir', help='where to save logs and models')
    parser.add_argument(
        '--resume',
        nargs='?',
        type=str,
        const='auto',
        help='resume from this checkpoint, or from the latest one in the '
        'work dir when no path is given')
    parser.add_argument(
        '--amp', action='store_true', help='mixed precision training')
    parser.add_argument(
        '--cfg-options',
        nargs='+',
        action=DictAction,
        metavar='KEY=VALUE',
        help='override config settings, e.g. train_cfg.max_iters=10')
    parser.add_argument(
        '--launcher',
        choices=['none', 'pytorch', 'slurm', 'mpi'],
        default='none',
        help='job launcher')
    parser.add_argument('--local_rank', '--local-rank', type=int, default=0)
    args = parser.parse_args()
    os.environ.setdefault('LOCAL_RANK', str(args.local_rank))
    return args


def main():
    args = parse_args()
    cfg = load_config(args.config, args.cfg_options)
    apply_run_options(cfg, args.config, args.work_dir, args.launcher)
    if args.amp:
        cfg.optim_wrapper.type = 'AmpOptimWrapper'
        cfg.optim_wrapper.setdefault('loss_scale', 'dynamic')
    try:
        prepare_resume(cfg, args.resume)
    except (ResumeError, CheckpointSafetyError, FileNotFoundError) as error:
        raise SystemExit(f'error: {error}')
    build_runner(cfg).train()


if __name__ == '__main__':
    main()
