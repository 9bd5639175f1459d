"""Speed of p4 G-convs against plain convs with as many output maps.

A p4 conv with C channels per group element produces 4C maps; the plain conv
compared with it maps 4C_in to 4C_out channels (the same maps, no weight
sharing, 4x the parameters). Measured in one run, interleaved:

- layer level: P4ConvP4(64, 64, 3) vs Conv2d(256, 256, 3) on 56x56 maps,
  and P4ConvZ2 (lifting) vs Conv2d(3, 4C, 7) on a 224x224 image, forward
  at batch 8 and forward + backward;
- whole backbone: P4ResNet-50 vs a ResNet-50 with the same number of maps
  per layer (base_channels = 32 x 4 = 128) and vs the stock ResNet-50
  (about the same parameter count), inference at batch 1 and 8 and the
  training step at batch 8, 224x224, and the training step under bfloat16
  autocast (``--no-bf16`` skips it) and under ``torch.compile``
  (``--no-compile`` skips it; P4ResNet-50 and the same-maps ResNet-50);
- inference at batch 1 and 8 of the three backbones exported to ONNX and
  run in onnxruntime (``--no-onnx`` skips it);
- one training iteration of mmdet's Faster R-CNN + FPN (batch 2, 512x512,
  ``model.train_step`` as mmengine's Runner runs it) with P4ResNet-50
  (``configs/p4/faster-rcnn_p4-resnet50_fpn_1x_coco.py``) against the
  stock ResNet-50 detector (``--no-detector`` skips it; its ratio is to
  the stock detector, as the row says).

``--update-readme`` writes the tables into README.md between the
``benchmark:p4`` markers.

Example:
    python benchmarks/bench_p4.py
"""
import os.path as osp

import torch
import torch.nn as nn
from mmdet.models.backbones import ResNet

from common import (REPO, Classifier, benchmark_parser, build_detector,
                    compiled_train_tasks, detector_train_tasks, format_table,
                    measure, onnxruntime_tasks, rounds_description,
                    run_description, setup, standard_tasks,
                    update_readme)

from mmdgconv.models import P4ResNet  # noqa: I100
from mmdgconv.models.layers import P4ConvP4, P4ConvZ2

DETECTOR_CONFIG = osp.join(REPO, 'configs', 'p4',
                           'faster-rcnn_p4-resnet50_fpn_1x_coco.py')


SAME_MAPS = 'ResNet-50, same maps (128 base)'
STOCK = 'ResNet-50 (stock)'
P4 = 'P4ResNet-50'


def layer_tasks(batch, device):
    def fwd_bwd(layer, x):
        def run():
            layer.zero_grad(set_to_none=True)
            layer(x).sum().backward()
        return run

    def fwd(layer, x):
        def run():
            with torch.no_grad():
                layer(x)
        return run

    maps = torch.rand(batch, 64, 4, 56, 56, device=device)
    flat = maps.reshape(batch, 256, 56, 56)
    image = torch.rand(batch, 3, 224, 224, device=device)
    p4 = P4ConvP4(64, 64, 3, padding=1).to(device)
    plain = nn.Conv2d(256, 256, 3, padding=1).to(device)
    lift = P4ConvZ2(3, 32, 7, stride=2, padding=3).to(device)
    plain_lift = nn.Conv2d(3, 128, 7, stride=2, padding=3).to(device)
    return {
        'P4ConvP4 3x3, 56x56, forward': {
            'plain conv': fwd(plain, flat), 'p4 conv': fwd(p4, maps)},
        'P4ConvP4 3x3, 56x56, forward+backward': {
            'plain conv': fwd_bwd(plain, flat), 'p4 conv': fwd_bwd(p4, maps)},
        'P4ConvZ2 7x7 lifting, 224x224, forward': {
            'plain conv': fwd(plain_lift, image),
            'p4 conv': fwd(lift, image)},
    }


def main():
    args = benchmark_parser(__doc__.splitlines()[0], repeats=7).parse_args()
    setup(args)

    def header(times):
        return (f'{run_description(args)}, median of '
                f'{rounds_description(times)} rounds; ratios to the first '
                'column, paired round by round')

    times = measure(layer_tasks(8, args.device), args.repeats,
                    args.min_seconds)
    layer_table = format_table(times, None, ['plain conv', 'p4 conv'],
                               header(times) + ', batch 8')
    print(layer_table)
    args_ = dict(depth=50, out_indices=(3, ), norm_eval=False)
    models = {
        SAME_MAPS: Classifier(ResNet(base_channels=128, **args_), 4096),
        STOCK: Classifier(ResNet(**args_)),
        P4: Classifier(P4ResNet(**args_), 1024),
    }
    tasks = standard_tasks(models, args.size, device=args.device,
                           bf16=not args.no_bf16)
    if not args.no_compile:
        tasks.update(compiled_train_tasks(
            {name: models[name] for name in (SAME_MAPS, P4)}, args.size,
            device=args.device))
    if not args.no_onnx and args.device.type == 'cpu':
        tasks.update(onnxruntime_tasks(models, args.size, args.threads))
    if not args.no_detector:
        tasks.update(detector_train_tasks({
            STOCK: build_detector(device=args.device),
            P4: build_detector(DETECTOR_CONFIG, device=args.device),
        }))
    times = measure(tasks, args.repeats, args.min_seconds)
    backbone_table = format_table(
        times, None, list(models),
        header(times) + f', {args.size}x{args.size}')
    print(backbone_table)
    if args.update_readme:
        update_readme(layer_table + '\n\n' + backbone_table, 'p4')


if __name__ == '__main__':
    main()
