"""A terminal progress bar over the training iterations."""
from mmengine.dist import is_main_process
from mmengine.hooks import Hook
from mmengine.utils import ProgressBar

from mmdgconv.registry import HOOKS


@HOOKS.register_module()
class TrainProgressBarHook(Hook):
    """Show training progress (done/total, speed, ETA) on the main process.

    The logger's lines interleave with the bar; set the logger interval
    high for a quiet bar.
    """

    priority = 'LOW'

    def __init__(self) -> None:
        self._bar = None

    def before_train(self, runner) -> None:
        if is_main_process():
            self._bar = ProgressBar(runner.max_iters - runner.iter)

    def after_train_iter(self, runner, batch_idx, data_batch=None,
                         outputs=None) -> None:
        if self._bar is not None:
            self._bar.update()

    def after_train(self, runner) -> None:
        if self._bar is not None:
            self._bar.file.write('\n')
            self._bar = None
