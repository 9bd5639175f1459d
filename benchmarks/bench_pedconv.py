"""Speed of PED-ResNet-50 against a static ResNet-50, side by side.

The paper's anchor (seed 002, Table 1) is CPU inference at batch 1:
ResNet-50 276 ms -> PEDConv 288 ms (+4.3%). This script measures, in one
run and interleaved round by round, eval inference at batch 1 and 8 and the
training step at batch 8, all at 224x224, for mmdet's ResNet-50 and
mmdgconv's PED-ResNet-50 (rank 1, the paper's setting). Each model ends in
global pooling and a 1000-way linear classifier. ``--update-readme`` writes
the table into README.md between the ``benchmark:pedconv`` markers.

Example:
    python benchmarks/bench_pedconv.py
"""
import argparse

import torch
from mmdet.models.backbones import ResNet

from common import Classifier, format_table, measure, standard_tasks, \
    update_readme

from mmdgconv.models import PEDResNet  # noqa: I100

STATIC = 'ResNet-50 (static)'
PED = 'PED-ResNet-50'


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--repeats', type=int, default=7)
    parser.add_argument('--size', type=int, default=224)
    parser.add_argument('--threads', type=int, default=2)
    parser.add_argument('--update-readme', action='store_true')
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    backbone_args = dict(depth=50, out_indices=(3, ), norm_eval=False)
    models = {
        STATIC: Classifier(ResNet(**backbone_args)),
        PED: Classifier(PEDResNet(**backbone_args)),
    }
    times = measure(standard_tasks(models, args.size), args.repeats)
    table = format_table(
        times, None, list(models),
        f'torch {torch.__version__}, {args.threads} threads, '
        f'{args.size}x{args.size}, median of {args.repeats}; ratios to '
        f'{STATIC}')
    print(table)
    if args.update_readme:
        update_readme(table, 'pedconv')


if __name__ == '__main__':
    main()
