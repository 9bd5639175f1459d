"""Test (evaluate) a checkpoint of any mmdgconv config.

The checkpoint must match the model the config builds, key for key and
shape for shape; a checkpoint of another model would otherwise evaluate
random weights. ``--non-strict`` loads what matches, as mmengine does.

Example:
    python tools/test.py CONFIG CHECKPOINT [--out results.pkl]
"""
import argparse
import numbers
import os
import os.path as osp


from mmengine.config import DictAction

from mmdgconv.apis import (CheckpointError, apply_run_options,
                           build_runner, check_checkpoint_fits, load_config)
from mmdgconv.utils import CheckpointSafetyError


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('config', help='test config file path')
    parser.add_argument('checkpoint', help='checkpoint file')
    parser.add_argument('--work-dir', help='where to save the metrics')
    parser.add_argument(
        '--out', help='also dump the raw predictions to this pickle file')
    parser.add_argument(
        '--non-strict', action='store_true',
        help='evaluate even if the checkpoint lacks some of the model\'s '
        'weights or has others (they are reported, the rest is loaded)')
    parser.add_argument(
        '--cfg-options', nargs='+', action=DictAction, metavar='KEY=VALUE',
        help='override config settings')
    parser.add_argument(
        '--launcher', choices=['none', 'pytorch', 'slurm', 'mpi'],
        default='none', help='job launcher')
    parser.add_argument('--local_rank', '--local-rank', type=int, default=0)
    args = parser.parse_args()
    os.environ.setdefault('LOCAL_RANK', str(args.local_rank))
    return args


def main():
    args = parse_args()
    if not osp.isfile(args.checkpoint):
        raise SystemExit(f'error: checkpoint {args.checkpoint} does not exist')
    cfg = load_config(args.config, args.cfg_options)
    apply_run_options(cfg, args.config, args.work_dir, args.launcher)
    cfg.load_from = args.checkpoint
    if args.out is not None:
        if not args.out.endswith(('.pkl', '.pickle')):
            raise SystemExit('error: --out must be a .pkl or .pickle file')
        cfg.test_evaluator = [cfg.test_evaluator] if isinstance(
            cfg.test_evaluator, dict) else list(cfg.test_evaluator)
        cfg.test_evaluator.append(
            dict(type='DumpResults', out_file_path=args.out))
    runner = build_runner(cfg)
    if not args.non_strict:
        try:
            check_checkpoint_fits(runner, args.checkpoint, args.config)
        except (CheckpointError, CheckpointSafetyError) as error:
            raise SystemExit(f'error: {error}')
    metrics = runner.test()
    # Plain numbers (toolboxes return numpy scalars too), one line.
    print({k: round(float(v), 4) if isinstance(v, numbers.Real) else v
           for k, v in metrics.items()})


if __name__ == '__main__':
    main()
