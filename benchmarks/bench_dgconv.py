"""Speed and memory of G-ResNeXt-50 against a static ResNeXt-50 32x4d.

Measures, in one run and interleaved round by round so that drift of the
machine affects every model alike:

- a training step (forward, backward, SGD step) at batch 8, 224x224, with
  the gates held at the pattern measured (see :func:`sgd_holding_gates`);
- inference in eval mode at batch 1 and batch 8, 224x224 (the training form
  of the model, before any conversion);
- the peak memory of a training step (each model in a fresh process, over
  two steps: the growth of its peak resident set, and of the bytes allocated
  and not freed, which does not depend on what glibc keeps or returns);
- inference of the same G-ResNeXt-50s deployed with
  ``tools/model_converters/dgconv_to_static.py``'s conversion (static
  grouped convs, permutations folded); with 32 groups in every layer the
  deployed model is a ResNeXt-50 32x4d and must run within noise of it;
- the training step under bfloat16 autocast (``--no-bf16`` skips it), and
  under ``torch.compile`` (``--no-compile`` skips it), each against the
  static model run the same way;
- inference at batch 1 and 8 of the static and the deployed models exported
  to ONNX and run in onnxruntime (``--no-onnx`` skips it);
- one training iteration of mmdet's Faster R-CNN + FPN (batch 2, 512x512,
  ``model.train_step`` as mmengine's Runner runs it) with each backbone
  (``--no-detector`` skips it);

for mmdet's static ResNeXt-50 32x4d (the baseline); mmdgconv's G-ResNeXt-50
with the gates at 32 contiguous groups (the baseline's grouping) and at the
default random initialisation; and, when ``--reference`` points at the
DGConv authors' reference ``g_resnext.py``/``dgconv.py``, the reference at
32 groups.
Every model ends in global pooling and a 1000-way linear classifier. Prints
medians and ratios to the baseline; ``--update-readme`` also writes them into
README.md between the ``benchmark:dgconv`` markers.

Example:
    python benchmarks/bench_dgconv.py --reference ../shared/reference
"""
import os.path as osp
import random
import sys

import torch
import torch.nn as nn

from common import (REPO, Classifier, benchmark_parser, build_detector,
                    compiled_train_tasks, detector_train_tasks, format_peaks,
                    measure, measure_memory_in_subprocesses,
                    onnxruntime_tasks, peak_growth_mib, report, setup, sgd,
                    standard_tasks, train_step)

from mmdet.models.backbones import ResNeXt  # noqa: E402,I100

from mmdgconv.deploy.dgconv_static import convert_model  # noqa: E402
from mmdgconv.models import DGConv2d, GResNeXt  # noqa: E402

STATIC = 'ResNeXt-50 32x4d (static)'
OURS_32 = 'G-ResNeXt-50, 32 groups'
OURS_RANDOM = 'G-ResNeXt-50, random init'
REFERENCE = 'reference, 32 groups'
DEPLOYED_32 = 'deployed, 32 groups'
DEPLOYED_RANDOM = 'deployed, random init'
DETECTOR_CONFIG = osp.join(REPO, 'configs', 'g_resnext',
                           'faster-rcnn_g-resnext50-32x4d_fpn_1x_coco.py')


class ReferenceClassifier(nn.Module):
    """The reference G_ResNet returns (logits, regulariser)."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, x):
        return self.model(x)[0]


def set_32_groups(gates: nn.Parameter) -> None:
    """Split the 5 most significant bits: 32 contiguous groups."""
    with torch.no_grad():
        gates.copy_(torch.tensor([-1.] * 5 + [1.] * (gates.numel() - 5)))


def build_model(name, reference_dir=None):
    backbone_args = dict(depth=50, groups=32, base_width=4,
                         out_indices=(3, ), norm_eval=False)
    if name == STATIC:
        return Classifier(ResNeXt(**backbone_args))
    if name in (OURS_32, OURS_RANDOM, DEPLOYED_32, DEPLOYED_RANDOM):
        random.seed(0)  # the gates' random signs
        ours = GResNeXt(**backbone_args)
        if name in (OURS_32, DEPLOYED_32):
            for layer in ours.modules():
                if isinstance(layer, DGConv2d) and layer.has_gates:
                    set_32_groups(layer.gate)
        model = Classifier(ours)
        if name in (DEPLOYED_32, DEPLOYED_RANDOM):
            convert_model(model)
        return model
    sys.path.insert(0, osp.abspath(reference_dir))
    from g_resnext import g_resnext50  # d-li14/dgconv.pytorch
    reference = g_resnext50()
    for param_name, param in reference.named_parameters():
        if param_name.endswith('gate'):
            set_32_groups(param)
    return ReferenceClassifier(reference)


def build_detector_of(name, device):
    """Faster R-CNN + FPN with the model's backbone: mmdet's stock
    ResNeXt-50 32x4d for the baseline, G-ResNeXt-50
    (``configs/g_resnext/faster-rcnn_g-resnext50-32x4d_fpn_1x_coco.py``)
    with its gates at 32 groups or at the random init."""
    if name == STATIC:
        return build_detector(backbone=dict(
            type='ResNeXt', depth=50, groups=32, base_width=4, num_stages=4,
            out_indices=(0, 1, 2, 3), frozen_stages=1,
            norm_cfg=dict(type='BN', requires_grad=True), norm_eval=True,
            style='pytorch'), device=device)
    random.seed(0)  # the gates' random signs
    detector = build_detector(DETECTOR_CONFIG, device=device)
    if name == OURS_32:
        for layer in detector.backbone.modules():
            if isinstance(layer, DGConv2d) and layer.has_gates:
                set_32_groups(layer.gate)
    return detector


def sgd_holding_gates(model: nn.Module) -> torch.optim.Optimizer:
    """The benchmarks' SGD, with learning rate 0 for the gates.

    The default init puts every gate at +-1e-8, so each step would flip gate
    signs, and every round would time another gate pattern: over the rounds
    G-ResNeXt-50 drifts, on this fixed batch, towards fewer and wider groups
    (stage 3 from 16-512 groups per layer to 4-32), which costs about 9% more
    per step. Held, every round times the pattern the row names. The gates'
    gradients are still computed and SGD still keeps their momentum; only
    rebuilding the layout after a sign flip (about 1 ms per layer) is left
    out.
    """
    gates, others = [], []
    for name, param in model.named_parameters():
        (gates if name.endswith('gate') else others).append(param)
    return sgd([dict(params=others), dict(params=gates, lr=0.)])


def peak_training_memory(name, reference_dir, size):
    model = build_model(name, reference_dir)
    optimizer = sgd_holding_gates(model)
    batch, target = torch.rand(8, 3, size, size), torch.randint(0, 1000, (8, ))

    def two_steps():
        for _ in range(2):
            train_step(model, optimizer, batch, target)

    return peak_growth_mib(two_steps)


def main():
    parser = benchmark_parser(__doc__.splitlines()[0], repeats=11)
    parser.add_argument('--reference', default=osp.join(
        osp.dirname(__file__), '..', '..', 'shared', 'reference'),
        help='directory of the reference implementation (skipped if absent)')
    parser.add_argument('--no-memory', action='store_true',
                        help='skip the peak-memory measurement')
    parser.add_argument('--memory-of', help='(internal) measure one model')
    args = parser.parse_args()
    setup(args)
    reference = args.reference if args.reference and osp.isfile(
        osp.join(args.reference, 'g_resnext.py')) else None
    if args.memory_of:
        print(format_peaks(
            peak_training_memory(args.memory_of, reference, args.size)))
        return

    trained = [STATIC, OURS_32, OURS_RANDOM]
    if reference:
        trained.append(REFERENCE)
    names = trained + [DEPLOYED_32, DEPLOYED_RANDOM]
    measure_peaks = not args.no_memory and args.device.type == 'cpu'
    peaks = measure_memory_in_subprocesses(
        __file__, trained,
        ['--size', str(args.size), '--reference', reference or '']
    ) if measure_peaks else None
    models = {name: build_model(name, reference) for name in names}
    tasks = standard_tasks(models, args.size, train=trained,
                           optimizer_for=sgd_holding_gates,
                           device=args.device, bf16=not args.no_bf16)
    ours = (STATIC, OURS_32, OURS_RANDOM)
    if not args.no_compile:
        tasks.update(compiled_train_tasks(
            {name: models[name] for name in ours}, args.size,
            optimizer_for=sgd_holding_gates, device=args.device))
    if not args.no_onnx and args.device.type == 'cpu':
        tasks.update(onnxruntime_tasks(
            {name: models[name] for name in (STATIC, DEPLOYED_32,
                                             DEPLOYED_RANDOM)},
            args.size, args.threads))
    if not args.no_detector:
        tasks.update(detector_train_tasks(
            {name: build_detector_of(name, args.device) for name in ours},
            optimizer_for=sgd_holding_gates))
    times = measure(tasks, args.repeats, args.min_seconds)
    report(times, peaks, names, args, 'dgconv')


if __name__ == '__main__':
    main()
