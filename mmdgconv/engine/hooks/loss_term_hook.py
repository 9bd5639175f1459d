"""A hook that adds terms to a model's training loss, for any toolbox."""
from typing import Optional

from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper


class LossTermHook(Hook):
    """Base class: add entries to the loss dict of ``forward(mode='loss')``.

    mmdet detectors, mmaction2 recognisers and mmpretrain classifiers all
    return a dict of losses from ``forward(..., mode='loss')`` and sum the
    entries whose names contain ``'loss'`` (other entries are only logged).
    A forward hook on the unwrapped model, registered at ``before_train``,
    extends that dict, so a config adds a loss term with one
    ``custom_hooks`` line and no change to the model. Under DDP the hook
    runs inside the wrapped forward, so the added terms take part in the
    gradient synchronisation.

    Subclasses implement :meth:`setup` and :meth:`add_terms`.
    """

    priority = 'NORMAL'

    def __init__(self) -> None:
        self._handle = None

    def setup(self, model, runner) -> None:
        """Find what the hook needs in the (unwrapped) model."""
        raise NotImplementedError

    def add_terms(self, losses: dict) -> None:
        """Add loss terms and logged values to ``losses`` in place."""
        raise NotImplementedError

    def before_train(self, runner) -> None:
        model = runner.model.module if is_model_wrapper(
            runner.model) else runner.model
        self.setup(model, runner)
        self._handle = model.register_forward_hook(
            self._extend_losses, with_kwargs=True)

    def after_train(self, runner) -> None:
        if self._handle is not None:
            self._handle.remove()
            self._handle = None

    def _extend_losses(self, module, args, kwargs, output) -> Optional[dict]:
        mode = kwargs.get('mode', args[2] if len(args) > 2 else None)
        if not module.training or mode != 'loss' or not isinstance(
                output, dict):
            return None
        self.add_terms(output)
        return output
