"""Speed of G-ResNeXt-50 against a static ResNeXt-50 32x4d, side by side.

Measures, in one run and interleaved round by round so that drift of the
machine affects every model alike:

- a training step (forward, backward, SGD step) at batch 8, 224x224;
- inference in eval mode at batch 1 and batch 8, 224x224;

for mmdet's static ResNeXt-50 32x4d (the baseline), mmdgconv's G-ResNeXt-50
and, when ``--reference`` points at a directory holding the seed's reference
``g_resnext.py``/``dgconv.py``, the reference implementation. Every model
ends in global pooling and a 1000-way linear classifier. The DGConv gates
are set to the 32-group grouping of the baseline, so all models compute the
same function class. Prints medians and ratios to the baseline.

Example:
    python benchmarks/bench_dgconv.py --reference ../shared/reference
"""
import argparse
import os.path as osp
import statistics
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))

from mmdet.models.backbones import ResNeXt  # noqa: E402

from mmdgconv.models import DGConv2d, GResNeXt  # noqa: E402


class Classifier(nn.Module):
    """Backbone + global average pooling + linear, returning logits."""

    def __init__(self, backbone: nn.Module, channels: int = 2048):
        super().__init__()
        self.backbone = backbone
        self.fc = nn.Linear(channels, 1000)

    def forward(self, x):
        feature = self.backbone(x)[-1]
        return self.fc(F.adaptive_avg_pool2d(feature, 1).flatten(1))


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


def build_models(reference_dir):
    backbone_args = dict(depth=50, groups=32, base_width=4,
                         out_indices=(3, ), norm_eval=False)
    models = {'ResNeXt-50 32x4d (static)': Classifier(ResNeXt(**backbone_args))}
    ours = GResNeXt(**backbone_args)
    for layer in ours.modules():
        if isinstance(layer, DGConv2d) and layer.has_gates:
            set_32_groups(layer.gate)
    models['G-ResNeXt-50 (mmdgconv)'] = Classifier(ours)
    if reference_dir:
        sys.path.insert(0, osp.abspath(reference_dir))
        from g_resnext import g_resnext50  # the seed's reference
        reference = g_resnext50()
        for name, param in reference.named_parameters():
            if name.endswith('gate'):
                set_32_groups(param)
        models['G-ResNeXt-50 (reference)'] = ReferenceClassifier(reference)
    return models


def train_step(model, optimizer, batch, target):
    model.train()
    optimizer.zero_grad(set_to_none=True)
    F.cross_entropy(model(batch), target).backward()
    optimizer.step()


def inference(model, batch):
    model.eval()
    with torch.no_grad():
        model(batch)


def measure(models, repeats, size):
    batch1 = torch.rand(1, 3, size, size)
    batch8 = torch.rand(8, 3, size, size)
    target = torch.randint(0, 1000, (8, ))
    optimizers = {
        name: torch.optim.SGD(m.parameters(), lr=1e-4, momentum=0.9)
        for name, m in models.items()
    }
    tasks = {
        'train step, batch 8':
        lambda name, m: train_step(m, optimizers[name], batch8, target),
        'inference, batch 1': lambda name, m: inference(m, batch1),
        'inference, batch 8': lambda name, m: inference(m, batch8),
    }
    times = {task: {name: [] for name in models} for task in tasks}
    for task, run in tasks.items():
        for name, model in models.items():  # warm-up
            run(name, model)
        for _ in range(repeats):
            for name, model in models.items():
                start = time.perf_counter()
                run(name, model)
                times[task][name].append(time.perf_counter() - start)
    return times


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--reference', default=osp.join(
        osp.dirname(__file__), '..', '..', 'shared', 'reference'),
        help='directory of the reference implementation (skipped if absent)')
    parser.add_argument('--repeats', type=int, default=3)
    parser.add_argument('--size', type=int, default=224)
    parser.add_argument('--threads', type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    reference = args.reference if osp.isfile(
        osp.join(args.reference, 'g_resnext.py')) else None
    models = build_models(reference)
    times = measure(models, args.repeats, args.size)

    baseline = next(iter(models))
    print(f'torch {torch.__version__}, {args.threads} threads, '
          f'{args.size}x{args.size}, median of {args.repeats}')
    print(f'{"task":<22}{"model":<28}{"ms":>10}{"ratio":>8}')
    for task, per_model in times.items():
        base = statistics.median(per_model[baseline])
        for name, samples in per_model.items():
            median = statistics.median(samples)
            print(f'{task:<22}{name:<28}{1000 * median:>10.1f}'
                  f'{median / base:>7.2f}x')


if __name__ == '__main__':
    main()
