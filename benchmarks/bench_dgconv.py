"""Speed and memory of G-ResNeXt-50 against a static ResNeXt-50 32x4d.

Measures, in one run and interleaved round by round so that drift of the
machine affects every model alike:

- a training step (forward, backward, SGD step) at batch 8, 224x224;
- inference in eval mode at batch 1 and batch 8, 224x224 (the training form
  of the model, before any conversion);
- the peak memory of a training step (each model in a fresh process: the
  growth of its peak resident set over two steps);

for mmdet's static ResNeXt-50 32x4d (the baseline); mmdgconv's G-ResNeXt-50
with the gates at 32 contiguous groups (the baseline's grouping) and at the
default random initialisation; and, when ``--reference`` points at the
seed's reference ``g_resnext.py``/``dgconv.py``, the reference at 32 groups.
Every model ends in global pooling and a 1000-way linear classifier. Prints
medians and ratios to the baseline; ``--update-readme`` also writes them into
README.md between the benchmark markers.

Example:
    python benchmarks/bench_dgconv.py --reference ../shared/reference
"""
import argparse
import os.path as osp
import random
import re
import resource
import statistics
import subprocess
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


STATIC = 'ResNeXt-50 32x4d (static)'
OURS_32 = 'G-ResNeXt-50, 32 groups'
OURS_RANDOM = 'G-ResNeXt-50, random init'
REFERENCE = 'reference, 32 groups'


def build_model(name, reference_dir=None):
    backbone_args = dict(depth=50, groups=32, base_width=4,
                         out_indices=(3, ), norm_eval=False)
    if name == STATIC:
        return Classifier(ResNeXt(**backbone_args))
    if name in (OURS_32, OURS_RANDOM):
        random.seed(0)  # the gates' random signs
        ours = GResNeXt(**backbone_args)
        if name == OURS_32:
            for layer in ours.modules():
                if isinstance(layer, DGConv2d) and layer.has_gates:
                    set_32_groups(layer.gate)
        return Classifier(ours)
    sys.path.insert(0, osp.abspath(reference_dir))
    from g_resnext import g_resnext50  # the seed's reference
    reference = g_resnext50()
    for param_name, param in reference.named_parameters():
        if param_name.endswith('gate'):
            set_32_groups(param)
    return ReferenceClassifier(reference)


def build_models(reference_dir):
    names = [STATIC, OURS_32, OURS_RANDOM] + ([REFERENCE]
                                              if reference_dir else [])
    return {name: build_model(name, reference_dir) for name in names}


def peak_training_memory(name, reference_dir, size):
    """Peak RSS growth (MiB) of two training steps, in this process."""
    model = build_model(name, reference_dir)
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-4, momentum=0.9)
    batch, target = torch.rand(8, 3, size, size), torch.randint(0, 1000, (8, ))
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    for _ in range(2):
        train_step(model, optimizer, batch, target)
    after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return (after - before) / 1024


def measure_memory(names, reference_dir, size):
    peaks = {}
    for name in names:
        result = subprocess.run(
            [sys.executable, __file__, '--memory-of', name, '--size',
             str(size), '--reference', reference_dir or ''],
            capture_output=True, text=True, check=True)
        peaks[name] = float(result.stdout.strip().splitlines()[-1])
    return peaks


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


README_START = '<!-- benchmark:dgconv:start -->'
README_END = '<!-- benchmark:dgconv:end -->'


def format_table(times, peaks, names, size, threads, repeats):
    baseline = names[0]
    lines = [
        f'torch {torch.__version__}, {threads} threads, {size}x{size}, '
        f'median of {repeats}; ratios to {baseline}', '',
        '| measure | ' + ' | '.join(names) + ' |',
        '|---|' + '---:|' * len(names)
    ]
    for task, per_model in times.items():
        base = statistics.median(per_model[baseline])
        cells = [
            f'{1000 * statistics.median(per_model[n]):.0f} ms '
            f'({statistics.median(per_model[n]) / base:.2f}x)' for n in names
        ]
        lines.append(f'| {task} | ' + ' | '.join(cells) + ' |')
    if peaks:
        cells = [f'{peaks[n]:.0f} MiB ({peaks[n] / peaks[baseline]:.2f}x)'
                 for n in names]
        lines.append('| peak train-step memory, batch 8 | ' +
                     ' | '.join(cells) + ' |')
    return '\n'.join(lines)


def update_readme(table):
    readme = osp.join(osp.dirname(osp.dirname(osp.abspath(__file__))),
                      'README.md')
    with open(readme) as f:
        text = f.read()
    pattern = re.compile(
        re.escape(README_START) + '.*?' + re.escape(README_END), re.S)
    if not pattern.search(text):
        raise SystemExit(f'{readme} has no {README_START} ... {README_END}')
    with open(readme, 'w') as f:
        f.write(pattern.sub(
            lambda _: f'{README_START}\n{table}\n{README_END}', text))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--reference', default=osp.join(
        osp.dirname(__file__), '..', '..', 'shared', 'reference'),
        help='directory of the reference implementation (skipped if absent)')
    parser.add_argument('--repeats', type=int, default=3)
    parser.add_argument('--size', type=int, default=224)
    parser.add_argument('--threads', type=int, default=2)
    parser.add_argument('--no-memory', action='store_true',
                        help='skip the peak-memory measurement')
    parser.add_argument('--update-readme', action='store_true')
    parser.add_argument('--memory-of', help=argparse.SUPPRESS)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    reference = args.reference if args.reference and osp.isfile(
        osp.join(args.reference, 'g_resnext.py')) else None
    if args.memory_of:
        print(peak_training_memory(args.memory_of, reference, args.size))
        return

    models = build_models(reference)
    names = list(models)
    times = measure(models, args.repeats, args.size)
    del models
    peaks = None if args.no_memory else measure_memory(
        names, reference, args.size)
    table = format_table(times, peaks, names, args.size, args.threads,
                         args.repeats)
    print(table)
    if args.update_readme:
        update_readme(table)


if __name__ == '__main__':
    main()
