"""Speed of PED-ResNet-50 against a static ResNet-50, side by side.

The paper's anchor (seed 002, Table 1) is CPU inference at batch 1:
ResNet-50 276 ms -> PEDConv 288 ms (+4.3%). This script measures, in one
run and interleaved round by round, eval inference at batch 1 and 8 and the
training step at batch 8, all at 224x224, for mmdet's ResNet-50 and
mmdgconv's PED-ResNet-50 (rank 1, the paper's setting), then eval
inference again with both models under ``torch.compile`` (``--no-compile``
skips that; it needs a C++ compiler and takes a few minutes). Each model ends
in global pooling and a 1000-way linear classifier. ``--update-readme`` writes
the table into README.md between the ``benchmark:pedconv`` markers.

Example:
    python benchmarks/bench_pedconv.py
"""
from mmdet.models.backbones import ResNet

from common import (Classifier, benchmark_parser, compiled_inference_tasks,
                    measure, report, setup, standard_tasks)

from mmdgconv.models import PEDResNet  # noqa: I100

STATIC = 'ResNet-50 (static)'
PED = 'PED-ResNet-50'


def main():
    parser = benchmark_parser(__doc__.splitlines()[0], repeats=7)
    parser.add_argument('--no-compile', action='store_true',
                        help='skip the torch.compile rows')
    args = parser.parse_args()
    setup(args)
    backbone_args = dict(depth=50, out_indices=(3, ), norm_eval=False)
    models = {
        STATIC: Classifier(ResNet(**backbone_args)),
        PED: Classifier(PEDResNet(**backbone_args)),
    }
    tasks = standard_tasks(models, args.size)
    if not args.no_compile:
        tasks.update(compiled_inference_tasks(models, args.size))
    report(measure(tasks, args.repeats), None, list(models), args, 'pedconv')


if __name__ == '__main__':
    main()
