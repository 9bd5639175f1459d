"""Speed of ResNet-50-CoC against a static ResNet-50, side by side.

Measures, in one run and interleaved round by round:

- the training step (forward, backward, SGD step) at batch 8, 224x224 of
  ResNet-50 and of ResNet-50-CoC in its training form;
- inference in eval mode at batch 1 and 8 of ResNet-50 and of the deployed
  (re-parameterised) ResNet-50-CoC, which is the same network as ResNet-50
  and must run within noise of it;
- inference of the training form too, to show what deployment saves.

Each model ends in global pooling and a 1000-way linear classifier.
``--update-readme`` writes the table into README.md between the
``benchmark:coc`` markers.

Example:
    python benchmarks/bench_coc.py
"""
import argparse

import torch
from mmdet.models.backbones import ResNet

from common import Classifier, format_table, measure, standard_tasks, \
    update_readme

from mmdgconv.models import ResNetCoC  # noqa: I100

STATIC = 'ResNet-50 (static)'
COC = 'ResNet-50-CoC, training form'
DEPLOYED = 'ResNet-50-CoC, deployed'


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--repeats', type=int, default=5)
    parser.add_argument('--size', type=int, default=224)
    parser.add_argument('--threads', type=int, default=2)
    parser.add_argument('--update-readme', action='store_true')
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)

    backbone_args = dict(depth=50, out_indices=(3, ), norm_eval=False)
    deployed = Classifier(ResNetCoC(**backbone_args))
    deployed.backbone.switch_to_deploy()
    models = {
        STATIC: Classifier(ResNet(**backbone_args)),
        COC: Classifier(ResNetCoC(**backbone_args)),
        DEPLOYED: deployed,
    }
    tasks = standard_tasks(models, args.size, train=[STATIC, COC])
    times = measure(tasks, args.repeats)
    table = format_table(
        times, None, list(models),
        f'torch {torch.__version__}, {args.threads} threads, '
        f'{args.size}x{args.size}, median of {args.repeats}; ratios to '
        f'{STATIC}')
    print(table)
    if args.update_readme:
        update_readme(table, 'coc')


if __name__ == '__main__':
    main()
