"""Speed of PED-ResNet-50 against a static ResNet-50, side by side.

The paper's anchor (PEDConv paper, Table 1) is CPU inference at batch 1:
ResNet-50 276 ms -> PEDConv 288 ms (+4.3%). This script measures, in one
run and interleaved round by round, eval inference at batch 1 and 8 and the
training step at batch 8, all at 224x224, for mmdet's ResNet-50 and
mmdgconv's PED-ResNet-50 (rank 1, the paper's setting), the training step
under bfloat16 autocast (``--no-bf16`` skips it), then eval inference and
the training step again with both models under ``torch.compile``
(``--no-compile`` skips that; it needs a C++ compiler and takes a few
minutes), and eval inference of both models exported to ONNX and run in
onnxruntime (``--no-onnx`` skips it). When
``--official`` points at the authors' released layer (``ped_layers.py``,
``Variational_DYConv2d``), the same ResNet-50 with that layer in the same
places is measured too (eager). Last, one training iteration of mmdet's
Faster R-CNN + FPN (batch 2, 512x512, ``model.train_step`` as mmengine's
Runner runs it) with the PED-ResNet-50 backbone
(``configs/pedconv/faster-rcnn_ped-r50_fpn_1x_coco.py``) against the stock
ResNet-50 detector (``--no-detector`` skips it). Each classifier ends in
global pooling and a 1000-way linear classifier. ``--update-readme`` writes
the table into README.md between the ``benchmark:pedconv`` markers.

Example:
    python benchmarks/bench_pedconv.py \\
        --official ../shared/reference/pedconv_official
"""
import os.path as osp
import sys

import torch.nn as nn
from mmdet.models.backbones import ResNet

from common import (REPO, Classifier, benchmark_parser, build_detector,
                    compiled_inference_tasks, compiled_train_tasks,
                    detector_train_tasks, measure, onnxruntime_tasks,
                    replace_layers, report, setup, standard_tasks)

from mmdgconv.models import PEDResNet  # noqa: I100
from mmdgconv.models.layers import PEDConv2d  # noqa: I100

STATIC = 'ResNet-50 (static)'
PED = 'PED-ResNet-50'
OFFICIAL = 'released Variational_DYConv2d'
DETECTOR_CONFIG = osp.join(REPO, 'configs', 'pedconv',
                           'faster-rcnn_ped-r50_fpn_1x_coco.py')


def with_released_layers(model: nn.Module, official_dir: str) -> nn.Module:
    """``model`` with each PEDConv layer replaced by the released
    ``Variational_DYConv2d`` of the same shape."""
    sys.path.insert(0, osp.abspath(official_dir))
    from ped_layers import Variational_DYConv2d  # the released layer
    return replace_layers(model, PEDConv2d, lambda layer: Variational_DYConv2d(
        layer.in_channels, layer.out_channels, layer.kernel_size[0],
        layer.stride[0], layer.padding[0], layer.dilation[0], layer.groups))


def main():
    parser = benchmark_parser(__doc__.splitlines()[0], repeats=7)
    parser.add_argument('--official', default=osp.join(
        REPO, '..', 'shared', 'reference', 'pedconv_official'),
        help='directory of the released ped_layers.py (skipped if absent)')
    args = parser.parse_args()
    setup(args)
    official = args.official if args.official and osp.isfile(
        osp.join(args.official, 'ped_layers.py')) else None
    backbone_args = dict(depth=50, out_indices=(3, ), norm_eval=False)
    models = {
        STATIC: Classifier(ResNet(**backbone_args)),
        PED: Classifier(PEDResNet(**backbone_args)),
    }
    bf16 = not args.no_bf16
    tasks = standard_tasks(models, args.size, device=args.device, bf16=bf16)
    if not args.no_compile:
        tasks.update(compiled_inference_tasks(models, args.size,
                                              args.device))
        tasks.update(compiled_train_tasks(models, args.size,
                                          device=args.device))
    if not args.no_onnx and args.device.type == 'cpu':
        tasks.update(onnxruntime_tasks(models, args.size, args.threads))
    names = list(models)
    if official:
        released = {OFFICIAL: Classifier(with_released_layers(
            PEDResNet(**backbone_args), official))}
        for task, runners in standard_tasks(
                released, args.size, device=args.device, bf16=bf16).items():
            tasks[task].update(runners)
        names.append(OFFICIAL)
    if not args.no_detector:
        tasks.update(detector_train_tasks({
            STATIC: build_detector(device=args.device),
            PED: build_detector(DETECTOR_CONFIG, device=args.device),
        }))
    times = measure(tasks, args.repeats, args.min_seconds)
    report(times, None, names, args, 'pedconv')


if __name__ == '__main__':
    main()
