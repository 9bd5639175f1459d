"""A test-only hook, imported through ``custom_imports`` in DDP runs: every
rank saves its final DGConv gates, so the test can compare the ranks."""
import os.path as osp

import torch
from mmengine.dist import get_rank
from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper
from mmengine.registry import HOOKS

from mmdgconv.models import DGConv2d


@HOOKS.register_module()
class GateDumpHook(Hook):

    def after_train(self, runner):
        model = runner.model.module if is_model_wrapper(
            runner.model) else runner.model
        gates = {
            name: module.gate.detach().clone()
            for name, module in model.named_modules()
            if isinstance(module, DGConv2d) and module.has_gates
        }
        torch.save(
            dict(gates=gates, wrapper=type(runner.model).__name__,
                 iter=runner.iter),
            osp.join(runner.work_dir, f'gates_rank{get_rank()}.pth'))
