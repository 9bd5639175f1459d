"""Trained checkpoints into the tables the papers print.

Each (config, checkpoint) pair is evaluated through its toolbox's own test
loop (mmengine's Runner with the config's evaluator), then measured, and
becomes one row in the layout of its task:

- detection, as G-ResNeXt's COCO table (Zhang et al., ICCV 2019, Table 2):
  backbone, AP, AP.5, AP.75, APl, APm, APs, parameters, backbone FLOPs
  (DGConv counted by its ``nnz(U)``) and batch-1 latency;
- action recognition, as its Kinetics-400 table (Table 1): top-1, top-5;
- classification, as PEDConv's ImageNet table (Hou and Kung, BMVC 2021,
  Table 1): FLOPs, run-time (batch 1), top-1.
"""
import csv
import io
import json
import os.path as osp
import statistics
import time
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional, Sequence

import torch

#: Task (by the config's default scope) -> its columns, in order.
COLUMNS = {
    'mmdet': ('backbone', 'AP', 'AP.5', 'AP.75', 'APl', 'APm', 'APs',
              'params (M)', 'FLOPs (G)', 'latency (ms)'),
    'mmaction': ('backbone', 'top-1', 'top-5'),
    'mmpretrain': ('backbone', 'FLOPs (G)', 'run-time (ms)', 'top-1'),
}
#: Metric keys of the toolboxes' evaluators, per column.
METRIC_KEYS = {
    'AP': 'coco/bbox_mAP', 'AP.5': 'coco/bbox_mAP_50',
    'AP.75': 'coco/bbox_mAP_75', 'APl': 'coco/bbox_mAP_l',
    'APm': 'coco/bbox_mAP_m', 'APs': 'coco/bbox_mAP_s',
    'top-1': ('acc/top1', 'accuracy/top1'), 'top-5': 'acc/top5',
}
TASK_NAMES = {'mmdet': 'detection', 'mmaction': 'action recognition',
              'mmpretrain': 'classification'}


class ResultsTableError(RuntimeError):
    """A pair cannot be evaluated; the message names the file."""


@dataclass
class Row:
    """One evaluated model: its task, the metrics its evaluator reported
    and the measured costs."""

    config: str
    checkpoint: str
    task: str
    backbone: str
    metrics: Dict[str, float]
    costs: Dict[str, float] = field(default_factory=dict)

    def cells(self) -> Dict[str, object]:
        """The row's values by column (percentages for AP and accuracy;
        None where the evaluator reported nothing, e.g. pycocotools' -1
        for a size bucket without ground truth)."""
        values = {'backbone': self.backbone}
        for column in COLUMNS[self.task][1:]:
            if column in METRIC_KEYS:
                values[column] = self._metric(column)
            else:
                values[column] = self.costs.get(column)
        return values

    def _metric(self, column: str) -> Optional[float]:
        keys = METRIC_KEYS[column]
        for key in (keys, ) if isinstance(keys, str) else keys:
            if key in self.metrics:
                value = float(self.metrics[key])
                if value < 0:
                    return None
                # CocoMetric reports fractions, AccMetric and mmpretrain's
                # Accuracy report fractions and percentages respectively.
                return value if key.startswith('accuracy/') else 100 * value
        return None


def backbone_name(cfg) -> str:
    """The backbone as the tables name it, e.g. ``GResNeXt-50``."""
    backbone = cfg.model.get('backbone', {})
    kind = str(backbone.get('type', '?')).split('.')[-1]
    depth = backbone.get('depth')
    return f'{kind}-{depth}' if depth else kind


def evaluate(config: str, checkpoint: str, work_dir: str,
             cfg_options: Optional[dict] = None):
    """Run the config's test loop on ``checkpoint``.

    Args:
        config (str): The config file.
        checkpoint (str): Its checkpoint.
        work_dir (str): Where the runner writes its logs.
        cfg_options (dict, optional): Overrides (``--cfg-options``).

    Returns:
        tuple[Runner, dict]: The runner (its model loaded) and the metrics
        its evaluator reported.

    Raises:
        ResultsTableError: A missing file, or a checkpoint that does not fit
            the config's model, named in one line.
    """
    from mmdgconv.apis import (CheckpointError, apply_run_options,
                               build_runner, check_checkpoint_fits,
                               load_config)
    from mmdgconv.utils import CheckpointSafetyError
    if not osp.isfile(checkpoint):
        raise ResultsTableError(f'checkpoint {checkpoint} does not exist')
    try:
        cfg = load_config(config, cfg_options)
    except (FileNotFoundError, ValueError) as error:
        raise ResultsTableError(str(error)) from None
    apply_run_options(cfg, config, work_dir, 'none')
    cfg.load_from = checkpoint
    runner = build_runner(cfg)
    try:
        check_checkpoint_fits(runner, checkpoint, config)
    except (CheckpointError, CheckpointSafetyError) as error:
        raise ResultsTableError(str(error)) from None
    metrics = runner.test()
    return runner, dict(metrics)


def measure_costs(model: torch.nn.Module, task: str, size: int,
                  repeats: int = 10) -> Dict[str, float]:
    """Parameters (M), FLOPs (G; the backbone's for detection, DGConv by
    ``nnz(U)``) and the median batch-1 latency (ms) of ``forward(mode=
    'tensor')`` on a ``size`` x ``size`` input."""
    from mmdgconv.deploy import random_inputs
    from mmdgconv.deploy.dgconv_static import dgconv_aware_flops
    model.eval()
    inputs, samples = random_inputs(model, size, batch=1)
    with torch.no_grad():
        if task == 'mmdet':
            flops = dgconv_aware_flops(model.backbone, inputs)['']
        elif task == 'mmpretrain':
            flops = dgconv_aware_flops(model, inputs)['']
        else:
            flops = None
        times = []
        for _ in range(repeats + 2):
            start = time.perf_counter()
            model(inputs, samples, mode='tensor')
            times.append(time.perf_counter() - start)
    latency = 1000 * statistics.median(times[2:])
    costs = {'params (M)': sum(p.numel() for p in model.parameters()) / 1e6,
             'latency (ms)': latency, 'run-time (ms)': latency}
    if flops is not None:
        costs['FLOPs (G)'] = flops / 1e9
    return costs


def build_rows(pairs: Sequence[Sequence[str]], work_dir: str,
               size: int = 224,
               progress: Callable[[str], None] = print) -> List[Row]:
    """Evaluate and measure every (config, checkpoint) pair, in order.

    Args:
        pairs: (config, checkpoint) pairs.
        work_dir (str): A folder per pair is made under it for the logs.
        size (int): Input size of the cost measurements. Default: 224.
        progress (callable): Receives a line per model as it starts.

    Returns:
        list[Row]: One row per pair.
    """
    for config, checkpoint in pairs:  # fail before the first long run
        for path, what in ((config, 'config'), (checkpoint, 'checkpoint')):
            if not osp.isfile(path):
                raise ResultsTableError(f'{what} {path} does not exist')
    rows = []
    for index, (config, checkpoint) in enumerate(pairs):
        progress(f'[{index + 1}/{len(pairs)}] {osp.basename(config)} '
                 f'with {osp.basename(checkpoint)}')
        runner, metrics = evaluate(
            config, checkpoint,
            osp.join(work_dir, f'{index}_' + osp.splitext(
                osp.basename(config))[0]))
        task = runner.cfg.default_scope
        model = runner.model.module if hasattr(runner.model,
                                               'module') else runner.model
        rows.append(Row(config, checkpoint, task, backbone_name(runner.cfg),
                        metrics, measure_costs(model, task, size)))
    return rows


def _format(value, column: str) -> str:
    if value is None:
        return 'n/a'
    if isinstance(value, str):
        return value
    return f'{value:.2f}' if column.endswith(('(M)', '(G)')) else \
        f'{value:.1f}'


def to_markdown(rows: Sequence[Row]) -> str:
    """A markdown table per task, in the papers' layouts."""
    parts = []
    for task in COLUMNS:
        task_rows = [row for row in rows if row.task == task]
        if not task_rows:
            continue
        columns = COLUMNS[task]
        lines = [f'{TASK_NAMES[task]}:', '',
                 '| ' + ' | '.join(columns) + ' |',
                 '|' + '|'.join(['---'] + ['---:'] * (len(columns) - 1)) +
                 '|']
        for row in task_rows:
            cells = row.cells()
            lines.append('| ' + ' | '.join(
                _format(cells[c], c) for c in columns) + ' |')
        parts.append('\n'.join(lines))
    return '\n\n'.join(parts) + '\n'


def to_csv(rows: Sequence[Row]) -> str:
    """One CSV line per model: task, config, checkpoint and every column of
    any task (empty where a task has no such column)."""
    columns = [c for task in COLUMNS for c in COLUMNS[task]]
    columns = list(dict.fromkeys(columns))
    out = io.StringIO()
    writer = csv.writer(out, lineterminator='\n')
    writer.writerow(['task', 'config', 'checkpoint'] + columns)
    for row in rows:
        cells = row.cells()
        writer.writerow([TASK_NAMES[row.task], row.config, row.checkpoint] +
                        ['' if cells.get(c) is None else cells[c]
                         for c in columns])
    return out.getvalue()


def to_json(rows: Sequence[Row]) -> str:
    """The rows with their cells, raw metrics and costs."""
    return json.dumps([
        dict(task=TASK_NAMES[row.task], config=row.config,
             checkpoint=row.checkpoint, cells=row.cells(),
             metrics=row.metrics, costs=row.costs) for row in rows
    ], indent=2) + '\n'
