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
from mmdet.models.backbones import ResNet

from common import (Classifier, benchmark_parser, measure, report, setup,
                    standard_tasks)

from mmdgconv.models import ResNetCoC  # noqa: I100

STATIC = 'ResNet-50 (static)'
COC = 'ResNet-50-CoC, training form'
DEPLOYED = 'ResNet-50-CoC, deployed'


def main():
    args = benchmark_parser(__doc__.splitlines()[0], repeats=7).parse_args()
    setup(args)

    backbone_args = dict(depth=50, out_indices=(3, ), norm_eval=False)
    deployed = Classifier(ResNetCoC(**backbone_args))
    deployed.backbone.switch_to_deploy()
    models = {
        STATIC: Classifier(ResNet(**backbone_args)),
        COC: Classifier(ResNetCoC(**backbone_args)),
        DEPLOYED: deployed,
    }
    tasks = standard_tasks(models, args.size, train=[STATIC, COC])
    report(measure(tasks, args.repeats), None, list(models), args, 'coc')


if __name__ == '__main__':
    main()
