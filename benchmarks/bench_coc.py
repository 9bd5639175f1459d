"""Speed of ResNet-50-CoC against a static ResNet-50, side by side.

Measures, in one run and interleaved round by round:

- the training step (forward, backward, SGD step) at batch 8, 224x224 of
  ResNet-50, of ResNet-50-CoC in its training form and, when ``--official``
  points at the authors' released ``coc_layers.py``, of the same ResNet-50
  with the released ``Coc2d`` in the same places and options;
- inference in eval mode at batch 1 and 8 of all of them and of the deployed
  (re-parameterised) ResNet-50-CoC, which is the same network as ResNet-50
  and must run within noise of it. In eval mode the training form computes
  its kernels once and caches them, so it runs like the deployed one; the
  released layer recomputes them in every forward;
- the training step under bfloat16 autocast (``--no-bf16`` skips it), and
  ResNet-50-CoC's under ``torch.compile`` against the compiled ResNet-50
  (``--no-compile`` skips it);
- inference at batch 1 and 8 of ResNet-50 and the deployed ResNet-50-CoC
  exported to ONNX and run in onnxruntime (``--no-onnx`` skips it);
- one training iteration of mmdet's Faster R-CNN + FPN (batch 2, 512x512,
  through ``model.train_step`` as mmengine's Runner runs it) with the
  ResNet-50-CoC backbone (``configs/coc/faster-rcnn_r50-coc_fpn_1x_coco.py``)
  against the stock ResNet-50 detector (``--no-detector`` skips it).

Each classifier ends in global pooling and a 1000-way linear classifier.
``--update-readme`` writes the table into README.md between the
``benchmark:coc`` markers.

Example:
    python benchmarks/bench_coc.py --official ../shared/reference/coc_official
"""
import os.path as osp
import sys

from mmdet.models.backbones import ResNet

from common import (REPO, Classifier, benchmark_parser, build_detector,
                    compiled_train_tasks, detector_train_tasks, measure,
                    onnxruntime_tasks, replace_layers, report, setup,
                    standard_tasks)

from mmdgconv.models import ResNetCoC  # noqa: I100
from mmdgconv.models.layers import CoCConv2d  # noqa: I100

STATIC = 'ResNet-50 (static)'
COC = 'ResNet-50-CoC, training form'
OFFICIAL = 'released Coc2d, training form'
DEPLOYED = 'ResNet-50-CoC, deployed'
DETECTOR_CONFIG = osp.join(REPO, 'configs', 'coc',
                           'faster-rcnn_r50-coc_fpn_1x_coco.py')


def with_released_layers(model, official_dir: str):
    """``model`` with each CoC layer replaced by the released ``Coc2d`` of
    the same shape and options (the released code's own init)."""
    sys.path.insert(0, osp.abspath(official_dir))
    from coc_layers import Coc2d  # the authors' released layer

    def released(layer):
        if not layer.with_coc:
            return None
        return Coc2d(
            layer.in_channels, layer.out_channels, layer.kernel_size,
            layer.stride, layer.padding, layer.dilation, layer.groups,
            layer.bias is not None, sa=layer.sa, sk_plus=layer.sk_plus,
            skip=layer.skip, dilat=layer.dilat, wsc=layer.wsc,
            share=layer.share, ws=layer.ws, both=layer.both,
            sbn=layer.super_norm or 'BN')

    return replace_layers(model, CoCConv2d, released)


def main():
    parser = benchmark_parser(__doc__.splitlines()[0], repeats=7)
    parser.add_argument('--official', default=osp.join(
        REPO, '..', 'shared', 'reference', 'coc_official'),
        help='directory of the released coc_layers.py (skipped if absent)')
    args = parser.parse_args()
    setup(args)
    official = args.official if args.official and osp.isfile(
        osp.join(args.official, 'coc_layers.py')) else None

    backbone_args = dict(depth=50, out_indices=(3, ), norm_eval=False)
    deployed = Classifier(ResNetCoC(**backbone_args))
    deployed.backbone.switch_to_deploy()
    models = {
        STATIC: Classifier(ResNet(**backbone_args)),
        COC: Classifier(ResNetCoC(**backbone_args)),
    }
    if official:
        models[OFFICIAL] = Classifier(with_released_layers(
            ResNetCoC(**backbone_args), official))
    models[DEPLOYED] = deployed
    trained = [name for name in models if name != DEPLOYED]
    tasks = standard_tasks(models, args.size, train=trained,
                           device=args.device, bf16=not args.no_bf16)
    if not args.no_compile:
        tasks.update(compiled_train_tasks(
            {name: models[name] for name in (STATIC, COC)}, args.size,
            device=args.device))
    if not args.no_onnx and args.device.type == 'cpu':
        tasks.update(onnxruntime_tasks(
            {name: models[name] for name in (STATIC, DEPLOYED)}, args.size,
            args.threads))
    if not args.no_detector:
        tasks.update(detector_train_tasks({
            STATIC: build_detector(device=args.device),
            COC: build_detector(DETECTOR_CONFIG, device=args.device),
        }))
    times = measure(tasks, args.repeats, args.min_seconds)
    report(times, None, list(models), args, 'coc')


if __name__ == '__main__':
    main()
