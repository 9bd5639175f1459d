"""Shared machinery of the benchmark scripts: classifier wrappers, the
interleaved timing loop, per-process peak memory and the README table."""
import argparse
import ctypes
import os.path as osp
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from typing import Callable, Dict, List, Optional

import torch
import torch.nn as nn
import torch.nn.functional as F

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
# The benchmarks also run from a bare checkout (the GPU machine's torch has
# no mmdgconv installed), so the repository itself is importable.
sys.path.insert(0, REPO)

from mmdgconv.utils.atomic_write import write_atomically  # noqa: E402


class Classifier(nn.Module):
    """Backbone + global average pooling + linear, returning logits."""

    def __init__(self, backbone: nn.Module, channels: int = 2048):
        super().__init__()
        self.backbone = backbone
        self.fc = nn.Linear(channels, 1000)

    def forward(self, x):
        feature = self.backbone(x)[-1]
        return self.fc(F.adaptive_avg_pool2d(feature, 1).flatten(1))


def sgd(params) -> torch.optim.Optimizer:
    """The benchmarks' optimizer: SGD with momentum over ``params`` (an
    iterable of parameters or of param-group dicts)."""
    return torch.optim.SGD(params, lr=1e-4, momentum=0.9)


def train_step(model, optimizer, batch, target, autocast_dtype=None):
    """Forward, cross-entropy backward and an SGD step; the forward and the
    loss under autocast to ``autocast_dtype`` when given (the backward runs
    outside it, as mmengine's AmpOptimWrapper does)."""
    model.train()
    optimizer.zero_grad(set_to_none=True)
    with torch.autocast(batch.device.type, dtype=autocast_dtype,
                        enabled=autocast_dtype is not None):
        loss = F.cross_entropy(model(batch), target)
    loss.backward()
    optimizer.step()


def inference(model, batch):
    model.eval()
    with torch.no_grad():
        model(batch)


def standard_tasks(models: Dict[str, nn.Module], size: int,
                   train: Optional[List[str]] = None,
                   optimizer_for: Optional[Callable[
                       [nn.Module], torch.optim.Optimizer]] = None,
                   device: torch.device = torch.device('cpu'),
                   bf16: bool = False
                   ) -> Dict[str, Dict[str, Callable[[], None]]]:
    """Train step at batch 8 (for the ``train`` models, default all, each
    with the optimizer ``optimizer_for`` builds; with ``bf16`` also under
    bfloat16 autocast, each with an optimizer of its own) and inference at
    batch 1 and 8, on shared random batches, everything on ``device``.

    Returns:
        dict: Task name -> model name -> a callable running it once.
    """
    batch1 = torch.rand(1, 3, size, size, device=device)
    batch8 = torch.rand(8, 3, size, size, device=device)
    target = torch.randint(0, 1000, (8, ), device=device)
    trainable = train if train is not None else list(models)
    optimizer_for = optimizer_for or (lambda model: sgd(model.parameters()))
    tasks = {'train step, batch 8': {}, 'inference, batch 1': {},
             'inference, batch 8': {}}
    if bf16:
        tasks[BF16_TRAIN] = {}
    for name, model in models.items():
        model.to(device)
        if name in trainable:
            optimizer = optimizer_for(model)
            tasks['train step, batch 8'][name] = (
                lambda m=model, o=optimizer: train_step(m, o, batch8, target))
            if bf16:
                optimizer = optimizer_for(model)
                tasks[BF16_TRAIN][name] = (
                    lambda m=model, o=optimizer: train_step(
                        m, o, batch8, target, torch.bfloat16))
        tasks['inference, batch 1'][name] = lambda m=model: inference(
            m, batch1)
        tasks['inference, batch 8'][name] = lambda m=model: inference(
            m, batch8)
    return tasks


#: The row of the bfloat16-autocast train step.
BF16_TRAIN = 'train step, batch 8, bf16 autocast'


def compiled_inference_tasks(models: Dict[str, nn.Module], size: int,
                             device: torch.device = torch.device('cpu')
                             ) -> Dict[str, Dict[str, Callable[[], None]]]:
    """Inference at batch 1 and 8 of every model under ``torch.compile``
    (inductor, the default mode), each model compiled the same way.

    The first run of each compiles (tens of seconds on 2 cores); measure()
    makes it the warm-up run.
    """
    compiled = {name: torch.compile(model.to(device).eval(), dynamic=False)
                for name, model in models.items()}
    tasks = {}
    for batch_size in (1, 8):
        batch = torch.rand(batch_size, 3, size, size, device=device)
        tasks[f'inference, batch {batch_size}, torch.compile'] = {
            name: lambda m=model, b=batch: inference(m, b)
            for name, model in compiled.items()
        }
    return tasks


def compiled_train_tasks(models: Dict[str, nn.Module], size: int,
                         optimizer_for: Optional[Callable[
                             [nn.Module], torch.optim.Optimizer]] = None,
                         device: torch.device = torch.device('cpu')
                         ) -> Dict[str, Dict[str, Callable[[], None]]]:
    """The train step at batch 8 of every model under ``torch.compile``
    (inductor, default mode: forward and backward compiled, the optimizer
    step eager, as ``compile=True`` in an mmengine config does it).

    The first run compiles (minutes on 2 cores); measure() makes it the
    warm-up run.
    """
    batch = torch.rand(8, 3, size, size, device=device)
    target = torch.randint(0, 1000, (8, ), device=device)
    optimizer_for = optimizer_for or (lambda model: sgd(model.parameters()))
    runners = {}
    for name, model in models.items():
        model.to(device)
        optimizer = optimizer_for(model)
        compiled = torch.compile(model, dynamic=False)
        runners[name] = lambda m=compiled, o=optimizer: train_step(
            m, o, batch, target)
    return {'train step, batch 8, torch.compile': runners}


def onnxruntime_tasks(models: Dict[str, nn.Module], size: int,
                      threads: int, folder: Optional[str] = None
                      ) -> Dict[str, Dict[str, Callable[[], None]]]:
    """Inference at batch 1 and 8 of every model exported to ONNX (torch's
    TorchScript exporter, as ``tools/deployment/pytorch2onnx.py`` does it)
    and run in onnxruntime's CPU provider with ``threads`` intra-op threads.

    The files go under ``folder`` (default: a temporary folder, removed once
    the sessions are built; they hold what they need in memory). Training
    forms cannot be exported (see ``mmdgconv/deploy/onnx_export.py``): give
    deployed models.
    """
    import onnxruntime

    from mmdgconv.deploy.onnx_export import check_exportable, write_onnx
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    tasks = {}
    scratch = None if folder else tempfile.mkdtemp(prefix='bench_onnx_')
    try:
        for batch_size in (1, 8):
            batch = torch.rand(batch_size, 3, size, size)
            runners = {}
            for index, (name, model) in enumerate(models.items()):
                check_exportable(model)
                path = osp.join(folder or scratch,
                                f'{index}_b{batch_size}.onnx')
                write_onnx(model.cpu().eval(), batch, path)
                session = onnxruntime.InferenceSession(
                    path, options, providers=['CPUExecutionProvider'])
                feed = {'input': batch.numpy()}
                runners[name] = lambda s=session, f=feed: s.run(None, f)
            tasks[f'inference, batch {batch_size}, onnxruntime'] = runners
    finally:
        if scratch:
            shutil.rmtree(scratch)
    return tasks


def replace_layers(model: nn.Module, kind: type,
                   build: Callable[[nn.Module], Optional[nn.Module]]
                   ) -> nn.Module:
    """Replace every ``kind`` layer of ``model`` by ``build(layer)`` (a
    layer left as it is where that returns None)."""
    for name, layer in list(model.named_modules()):
        if not isinstance(layer, kind):
            continue
        replacement = build(layer)
        if replacement is not None:
            parent, _, child = name.rpartition('.')
            setattr(model.get_submodule(parent), child, replacement)
    return model


def detection_batch(batch: int, size: int, num_classes: int = 80,
                    boxes_per_image: int = 8, seed: int = 0) -> dict:
    """A batch in the layout an mmdet detector's ``train_step`` takes: uint8
    images and data samples with random ground-truth boxes and labels."""
    from mmdet.structures import DetDataSample
    from mmengine.structures import InstanceData
    generator = torch.Generator().manual_seed(seed)
    inputs, samples = [], []
    for _ in range(batch):
        inputs.append((255 * torch.rand(3, size, size, generator=generator)
                       ).to(torch.uint8))
        corner = 0.7 * size * torch.rand(boxes_per_image, 2,
                                         generator=generator)
        extent = 16 + 0.3 * size * torch.rand(boxes_per_image, 2,
                                              generator=generator)
        sample = DetDataSample(metainfo=dict(
            img_shape=(size, size), ori_shape=(size, size),
            scale_factor=(1.0, 1.0), flip=False))
        sample.gt_instances = InstanceData(
            bboxes=torch.cat([corner, (corner + extent).clamp(max=size)], 1),
            labels=torch.randint(0, num_classes, (boxes_per_image, ),
                                 generator=generator))
        samples.append(sample)
    return dict(inputs=inputs, data_samples=samples)


#: The stock detector every method's detector row is measured in.
FASTER_RCNN = 'mmdet::faster_rcnn/faster-rcnn_r50_fpn_1x_coco.py'


def build_detector(config: str = FASTER_RCNN,
                   backbone: Optional[dict] = None,
                   device: torch.device = torch.device('cpu')) -> nn.Module:
    """A detector from a config (``backbone`` replaces its backbone dict),
    randomly initialised: no pre-trained weights are loaded.

    The backbone's norms use batch statistics (``norm_eval=False``): with
    random weights, frozen statistics (mean 0, variance 1) do not normalise,
    and the activations of some backbones overflow to inf, which changes
    what the heads compute (and how fast). Frozen stages stay frozen.
    """
    from mmengine.config import Config

    from mmdgconv.deploy import build_model
    if '::' in config:  # a toolbox's own config, e.g. 'mmdet::...'
        package, relative = config.split('::')
        module = __import__(package)
        config = osp.join(osp.dirname(module.__file__), '.mim', 'configs',
                          relative)
    cfg = Config.fromfile(config)
    if backbone is not None:
        cfg.model.backbone = backbone
    cfg.model.backbone.init_cfg = None
    cfg.model.backbone.norm_eval = False
    return build_model(cfg).to(device)


def detector_train_tasks(detectors: Dict[str, nn.Module], batch: int = 2,
                         size: int = 512,
                         optimizer_for: Optional[Callable[
                             [nn.Module], torch.optim.Optimizer]] = None
                         ) -> Dict[str, Dict[str, Callable[[], None]]]:
    """One training iteration of each detector, as mmengine's Runner runs
    it (``model.train_step`` with an ``OptimWrapper``), on one shared
    random batch.

    Returns:
        dict: Task name -> model name -> a callable running it once.
    """
    from mmengine.optim import OptimWrapper
    data = detection_batch(batch, size)
    optimizer_for = optimizer_for or (lambda model: sgd(model.parameters()))
    runners = {}
    for name, model in detectors.items():
        model.train()
        wrapper = OptimWrapper(optimizer_for(model))
        runners[name] = lambda m=model, w=wrapper: m.train_step(data, w)
    return {f'Faster R-CNN + FPN train iteration, batch {batch}, '
            f'{size}x{size}': runners}


def measure(tasks: Dict[str, Dict[str, Callable[[], None]]],
            repeats: int,
            min_seconds: float = 0.0) -> Dict[str, Dict[str, List[float]]]:
    """Seconds per run, interleaving the models round by round so that any
    drift of the machine affects them alike; one warm-up run each. On
    CUDA each run is timed to its completion (synchronised).

    Every task runs ``repeats`` rounds, then more until its rounds have
    taken ``min_seconds`` in all: a cheap row (inference at batch 1) gets
    many rounds for about the time one round of a train step takes, and
    the median of its paired ratios is the steadier for it.
    """
    def synchronize():
        if torch.cuda.is_available() and torch.cuda.is_initialized():
            torch.cuda.synchronize()

    times = {}
    for task, runners in tasks.items():
        print(f'measuring: {task}', file=sys.stderr, flush=True)
        for run in runners.values():
            run()
        times[task] = {name: [] for name in runners}
        rounds, elapsed = 0, 0.0
        while rounds < repeats or elapsed < min_seconds:
            round_start = time.perf_counter()
            for name, run in runners.items():
                synchronize()
                start = time.perf_counter()
                run()
                synchronize()
                times[task][name].append(time.perf_counter() - start)
            elapsed += time.perf_counter() - round_start
            rounds += 1
    return times


def rounds_description(times: Dict[str, Dict[str, List[float]]]) -> str:
    """How many rounds the rows of ``times`` ran: 'N' or 'N to M'."""
    counts = sorted({len(t) for row in times.values() for t in row.values()})
    return str(counts[0]) if len(counts) == 1 else \
        f'{counts[0]} to {counts[-1]}'


def _status_kib(field: str) -> int:
    with open('/proc/self/status') as f:
        for line in f:
            if line.startswith(field + ':'):
                return int(line.split()[1])
    raise RuntimeError(f'{field} not in /proc/self/status')


class _MallInfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in (
        'arena', 'ordblks', 'smblks', 'hblks', 'hblkhd', 'usmblks',
        'fsmblks', 'uordblks', 'fordblks', 'keepcost')]


def _allocated_bytes_reader() -> Optional[Callable[[], int]]:
    """A function returning the bytes malloc has handed out and not yet
    freed (all arenas, mmapped chunks included), or None without glibc's
    ``mallinfo2`` (glibc < 2.33, other C libraries)."""
    try:
        mallinfo2 = ctypes.CDLL('libc.so.6').mallinfo2
    except (OSError, AttributeError):
        return None
    mallinfo2.restype = _MallInfo2

    def allocated() -> int:
        info = mallinfo2()
        return info.uordblks + info.hblkhd

    return allocated


def peak_growth_mib(run: Callable[[], None]) -> Dict[str, float]:
    """Peak memory growth (MiB) while ``run`` runs, in this process.

    Returns:
        dict: ``resident``: growth of the peak resident set (the high-water
        mark is reset first: a child process otherwise inherits its
        parent's across fork and exec); ``allocated``: growth of the bytes
        allocated and not freed, sampled every millisecond (absent without
        glibc). Freed memory that glibc keeps or returns changes the first
        but not the second, so the second varies less between runs.
    """
    allocated = _allocated_bytes_reader()
    with open('/proc/self/clear_refs', 'w') as f:
        f.write('5')  # reset VmHWM to the current RSS
    before = _status_kib('VmRSS')
    if allocated is None:
        run()
        return dict(resident=(_status_kib('VmHWM') - before) / 1024)
    samples, done = [allocated()], threading.Event()

    def sample():
        while not done.is_set():
            samples.append(allocated())
            time.sleep(0.001)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        run()
    finally:
        done.set()
        sampler.join()
    samples.append(allocated())  # also covers a run shorter than 1 ms
    return dict(resident=(_status_kib('VmHWM') - before) / 1024,
                allocated=(max(samples) - samples[0]) / 2**20)


def measure_memory_in_subprocesses(
        script: str, names: List[str],
        extra_args: List[str]) -> Dict[str, Dict[str, float]]:
    """Run ``script --memory-of NAME`` for each model in a fresh process;
    the script prints :func:`peak_growth_mib`'s result as its last line,
    ``key=value`` pairs."""
    peaks = {}
    for name in names:
        result = subprocess.run(
            [sys.executable, script, '--memory-of', name, *extra_args],
            capture_output=True, text=True, check=True)
        last = result.stdout.strip().splitlines()[-1]
        peaks[name] = {
            key: float(value)
            for key, value in (pair.split('=') for pair in last.split())
        }
    return peaks


def format_peaks(peaks: Dict[str, float]) -> str:
    """The last line ``--memory-of`` prints."""
    return ' '.join(f'{key}={value:.1f}' for key, value in peaks.items())


def format_table(times, peaks, names, header: str) -> str:
    """A markdown table of medians with ratios to the first model.

    A ratio is the median over rounds of that round's time divided by the
    baseline's time in the same round: measure() interleaves the models
    round by round, so pairing the rounds cancels the machine's drift, which
    on a shared machine is larger than the differences measured. A row
    without the baseline takes its first model as its own, and says so.
    """
    baseline = names[0]
    lines = [
        header, '', '| measure | ' + ' | '.join(names) + ' |',
        '|---|' + '---:|' * len(names)
    ]
    for task, per_model in times.items():
        if baseline in per_model:
            base = per_model[baseline]
        else:
            row_baseline = next(n for n in names if n in per_model)
            base = per_model[row_baseline]
            task = f'{task} (ratios to {row_baseline})'
        cells = []
        for name in names:
            if name not in per_model:
                cells.append('n/a')
                continue
            median = statistics.median(per_model[name])
            ratio = statistics.median(
                t / b for t, b in zip(per_model[name], base))
            cells.append(f'{1000 * median:.0f} ms ({ratio:.2f}x)')
        lines.append(f'| {task} | ' + ' | '.join(cells) + ' |')
    rows = {'resident': 'peak train-step memory, batch 8 (resident set)',
            'allocated': 'peak train-step memory, batch 8 (allocated)'}
    for key, row in rows.items():
        if not peaks or key not in peaks[baseline]:
            continue
        cells = [
            f'{peaks[n][key]:.0f} MiB '
            f'({peaks[n][key] / peaks[baseline][key]:.2f}x)'
            if n in peaks else 'n/a' for n in names
        ]
        lines.append(f'| {row} | ' + ' | '.join(cells) + ' |')
    return '\n'.join(lines)


def update_readme(table: str, key: str) -> None:
    """Replace README's text between ``<!-- benchmark:KEY:start/end -->``."""
    start, end = f'<!-- benchmark:{key}:start -->', \
        f'<!-- benchmark:{key}:end -->'
    readme = osp.join(REPO, 'README.md')
    with open(readme) as f:
        text = f.read()
    pattern = re.compile(re.escape(start) + '.*?' + re.escape(end), re.S)
    if not pattern.search(text):
        raise SystemExit(f'{readme} has no {start} ... {end}')
    # Written whole, then renamed over README: never left half-written.
    write_atomically(
        lambda f: f.write(
            pattern.sub(lambda _: f'{start}\n{table}\n{end}', text)),
        readme, binary=False)


def benchmark_parser(description: str,
                     repeats: int) -> argparse.ArgumentParser:
    """The options every benchmark script takes."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument('--repeats', type=int, default=repeats)
    parser.add_argument(
        '--min-seconds', type=float, default=15.0,
        help='keep adding rounds to a row until its rounds took this long '
        '(cheap rows then get more rounds than --repeats)')
    parser.add_argument('--size', type=int, default=224)
    parser.add_argument('--threads', type=int, default=2)
    parser.add_argument('--update-readme', action='store_true')
    parser.add_argument(
        '--no-detector', action='store_true',
        help='skip the Faster R-CNN train-iteration row (batch 2, 512x512)')
    parser.add_argument(
        '--device', default='cpu', choices=('cpu', 'cuda'),
        help='where the models run (memory rows: CPU only)')
    parser.add_argument('--no-bf16', action='store_true',
                        help='skip the bfloat16-autocast train-step row')
    parser.add_argument(
        '--no-compile', action='store_true',
        help='skip the torch.compile rows (they need a C++ compiler and '
        'take minutes to compile)')
    parser.add_argument(
        '--no-onnx', action='store_true',
        help='skip the onnxruntime inference rows (CPU only)')
    return parser


def setup(args) -> None:
    """Fix the thread count and the seed before building any model, and
    turn ``args.device`` into a device (an error if CUDA is asked for and
    missing)."""
    if args.device == 'cuda' and not torch.cuda.is_available():
        raise SystemExit('--device cuda: this torch build sees no CUDA '
                         'device (torch.cuda.is_available() is False)')
    args.device = torch.device(args.device)
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)


def run_description(args) -> str:
    """torch's version and where the run ran: the CPU's thread count or the
    GPU's name."""
    where = (f'{args.threads} threads' if args.device.type == 'cpu' else
             torch.cuda.get_device_name(args.device))
    return f'torch {torch.__version__}, {args.device.type}, {where}'


def report(times, peaks, names, args, key: str, baseline: str = None) -> str:
    """Print the table and, with ``--update-readme``, write it to README."""
    table = format_table(
        times, peaks, names,
        f'{run_description(args)}, {args.size}x{args.size}, median of '
        f'{rounds_description(times)} rounds; ratios to '
        f'{baseline or names[0]}, paired round by round')
    print(table)
    if args.update_readme:
        update_readme(table, key)
    return table
