"""The DGConv resource constraint of the paper's objective (eq. 9).

Paper: Zhang et al., "Differentiable Learning-to-Group Channels via Groupable
Convolutional Neural Networks", ICCV 2019. https://arxiv.org/abs/1908.05867
"""
import re
from collections import defaultdict
from typing import Dict, List, Optional, Tuple

import torch

from mmdgconv.models.layers import DGConv2d
from mmdgconv.registry import HOOKS
from .loss_term_hook import LossTermHook

_STAGE_PATTERN = re.compile(r'(?:^|\.)(layer\d+)(?:\.|$)')


def _stage_of(layer_name: str) -> str:
    """'backbone.layer2.3.conv2' -> 'layer2'; otherwise the parent path."""
    match = _STAGE_PATTERN.search(layer_name)
    return match.group(1) if match else layer_name.rpartition('.')[0]


def _task_loss(losses: dict) -> torch.Tensor:
    """The total loss as mmengine's ``BaseModel.parse_losses`` sums it."""
    total = 0.
    for name, value in losses.items():
        if 'loss' not in name:
            continue
        if isinstance(value, torch.Tensor):
            total = total + value.mean()
        else:
            total = total + sum(item.mean() for item in value)
    return total


@HOOKS.register_module()
class ResourceConstraintHook(LossTermHook):
    """Train DGConv models on ``L * (o / zeta) ** alpha`` (paper, eq. 9).

    ``zeta`` is the model's complexity: the sum of ``nnz(U)`` over all
    DGConv layers. Training adds ``loss_resource = L * ((o / zeta)**alpha -
    1)`` to the model's loss dict, so the summed loss is exactly
    ``L * (o / zeta)**alpha`` while every task loss is logged unchanged.
    Works for any mmdet, mmaction2 or mmpretrain model (see
    :class:`LossTermHook`). It also logs
    ``dg_zeta``, ``dg_zeta_ratio`` (zeta / o) and ``dg_groups_<stage>``,
    the mean learned group count of each stage, at every logging interval.

    Add it with one config line::

        custom_hooks = [dict(type='mmdgconv.ResourceConstraintHook')]

    Args:
        budget (float, optional): The target complexity ``o``. None uses
            the complexity of the same layers at ``budget_groups`` groups,
            ``sum(C_in * C_out / budget_groups)``. Default: None.
        budget_groups (int): The grouping that defines the default budget:
            32, the ResNeXt a G-ResNeXt replaces. Default: 32.
        alpha (float): The exponent while ``zeta > o``; it is 0 (no
            pressure) once the model is within budget. Default: -0.02.
    """

    def __init__(self,
                 budget: Optional[float] = None,
                 budget_groups: int = 32,
                 alpha: float = -0.02) -> None:
        if budget is not None and budget <= 0:
            raise ValueError(f'budget must be positive, got {budget}')
        if budget_groups < 1:
            raise ValueError(
                f'budget_groups must be >= 1, got {budget_groups}')
        super().__init__()
        self.budget = budget
        self.budget_groups = budget_groups
        self.alpha = alpha
        self._layers: List[Tuple[str, DGConv2d]] = []

    def setup(self, model, runner) -> None:
        self._layers = [(name, m) for name, m in model.named_modules()
                        if isinstance(m, DGConv2d) and m.has_gates]
        if not self._layers:
            raise RuntimeError(
                f'ResourceConstraintHook: {type(model).__name__} has no '
                'DGConv layer with gates, so there is no complexity to '
                'constrain; remove the hook from custom_hooks.')
        if self.budget is None:
            self.budget = float(
                sum(m.in_channels * m.out_channels
                    for _, m in self._layers)) / self.budget_groups
        runner.logger.info(
            f'ResourceConstraintHook: {len(self._layers)} DGConv layers, '
            f'budget o={self.budget:.0f}, current zeta={self.zeta():.0f}')

    def zeta(self) -> float:
        """The current complexity ``sum(nnz(U))``."""
        return float(sum(m.nnz for _, m in self._layers))

    def groups_per_stage(self) -> Dict[str, float]:
        """Mean learned group count of each stage's DGConv layers."""
        groups = defaultdict(list)
        for name, layer in self._layers:
            groups[_stage_of(name)].append(layer.num_groups)
        return {stage: sum(g) / len(g) for stage, g in groups.items()}

    def add_terms(self, losses: dict) -> None:
        task_loss = _task_loss(losses)
        zeta = sum(layer.complexity() for _, layer in self._layers)
        alpha = self.alpha if zeta.item() > self.budget else 0.
        factor = (self.budget / zeta)**alpha
        losses['loss_resource'] = task_loss * (factor - 1)
        losses['dg_zeta'] = zeta.detach()
        losses['dg_zeta_ratio'] = zeta.detach() / self.budget
        for stage, groups in self.groups_per_stage().items():
            losses[f'dg_groups_{stage}'] = zeta.new_tensor(groups)
