"""Resuming a run so that it continues exactly as if it had never stopped.

mmengine's checkpoints restore the weights, the optimiser, the schedulers
and the iteration counter, and its iteration-based loop replays the sampler
up to the resumed iteration. What a training step also depends on, and what
a checkpoint does not hold, are the random number generators: the RPN and
RoI samplers draw from torch's, PEDConv draws its noise from it, and the
data transforms of a loader without workers draw from numpy's and
Python's. A resumed run therefore diverges from its first iteration.
"""
import functools
import random
from typing import List, Optional

import numpy as np
import torch
from mmengine.dist import all_gather_object, get_rank, get_world_size
from mmengine.hooks import CheckpointHook, Hook
from mmengine.runner import EpochBasedTrainLoop, IterBasedTrainLoop

from mmdgconv.registry import HOOKS

#: The checkpoint key that holds one generator state per rank.
RNG_STATES_KEY = 'rng_states'


def capture_rng_state() -> dict:
    """The state of every generator a training step draws from.

    Returns:
        dict: Python's, numpy's and torch's CPU (and CUDA) generator states.
    """
    state = dict(
        python=random.getstate(),
        numpy=np.random.get_state(),
        torch=torch.get_rng_state())
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state['cuda'] = torch.cuda.get_rng_state_all()
    return state


def restore_rng_state(state: dict) -> None:
    """Set every generator to a state from :func:`capture_rng_state`."""
    random.setstate(_as_python_state(state['python']))
    np.random.set_state(state['numpy'])
    torch.set_rng_state(state['torch'])
    if 'cuda' in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state['cuda'])


def _as_python_state(state):
    # A checkpoint round trip turns the state's tuples into lists.
    version, internal, gauss = state
    return version, tuple(internal), gauss


class _RestoreAfterReplay:
    """Wraps the loop's data iterator: once mmengine has replayed the
    ``replay`` batches already trained on, the generators are restored, so
    the next batch is drawn as in the uninterrupted run."""

    def __init__(self, iterator, replay: int, state: dict) -> None:
        self._iterator = iterator
        self._remaining = replay
        self._state = state

    def __iter__(self):
        return self

    def __next__(self):
        batch = next(self._iterator)
        self._remaining -= 1
        if self._remaining == 0:
            restore_rng_state(self._state)
        return batch

    def __getattr__(self, name):
        return getattr(self._iterator, name)


@HOOKS.register_module()
class ExactResumeHook(Hook):
    """Make a resumed run bit-identical to one that never stopped.

    - Every checkpoint also stores the generator states of every rank at the
      moment it is written (gathered, so DDP resumes exactly too).
    - On resume they are restored at the point where the uninterrupted run
      continued: for an iteration-based loop, right after mmengine has
      replayed the sampler (the replay itself runs the transforms, which
      draw random numbers); for an epoch-based loop, at the start of the
      next epoch.
    - Validation during training leaves the generators as it found them, so
      the training stream does not depend on whether or when a run
      validated. (Otherwise the val loop's data iterator alone draws a seed
      from torch's generator.)
    - Persistent data workers of an epoch-based loop are restarted at each
      epoch with a seed derived from the run's seed and the epoch: a worker
      that lives across epochs carries generator state a checkpoint cannot
      reach. Iteration-based loops replay their workers exactly and are left
      alone.

    ``tools/train.py`` adds this hook to every run. With a toolbox's own
    ``train.py``, add it in the config::

        custom_hooks = [dict(type='mmdgconv.ExactResumeHook')]

    Resume is exact only at the granularity mmengine resumes at: an
    epoch-based loop resumed from a checkpoint taken inside an epoch restarts
    that epoch, and the hook says so.
    """

    # Restore before any other hook starts an epoch; capture for validation
    # before any other hook runs and hand back after all of them.
    priority = 'HIGHEST'

    def __init__(self) -> None:
        self._resumed_state: Optional[dict] = None
        self._own_before_val: Optional[dict] = None
        self._before_val: Optional[List[dict]] = None  # of every rank
        self._gathered: Optional[List[dict]] = None
        self._restore_at_epoch = False

    # -- saving ------------------------------------------------------------
    # mmengine saves on rank 0 only, so the other ranks' states are gathered
    # beforehand, where every rank runs: when a CheckpointHook is about to
    # save, and before validation (which may save the best checkpoint).
    def after_train_iter(self, runner, batch_idx: int, data_batch=None,
                         outputs=None) -> None:
        self._gather_if_saving(runner, by_epoch=False)

    def after_train_epoch(self, runner) -> None:
        self._gather_if_saving(runner, by_epoch=True)

    def _gather_if_saving(self, runner, by_epoch: bool) -> None:
        self._gathered = None
        if get_world_size() > 1 and _checkpoint_due(runner, by_epoch):
            self._gathered = all_gather_object(capture_rng_state())

    def before_save_checkpoint(self, runner, checkpoint: dict) -> None:
        # A checkpoint written during validation (``save_best``) records the
        # state training continues from, i.e. the one before validation.
        if self._before_val is not None:
            states = self._before_val
        elif get_world_size() > 1:
            # None: saved outside the hooks above; then rank 0's state only,
            # and a resume says it cannot be exact.
            states = self._gathered or [capture_rng_state()]
        else:
            states = [capture_rng_state()]
        checkpoint[RNG_STATES_KEY] = states

    # -- resuming ----------------------------------------------------------
    def after_load_checkpoint(self, runner, checkpoint: dict) -> None:
        states = checkpoint.get(RNG_STATES_KEY)
        self._resumed_state = None
        if not states:
            return
        if len(states) != get_world_size():
            runner.logger.warning(
                f'ExactResumeHook: the checkpoint holds generator states for '
                f'{len(states)} ranks, this run has {get_world_size()}; the '
                'resumed run will not repeat the original one exactly.')
            return
        self._resumed_state = states[get_rank()]

    def before_train(self, runner) -> None:
        state, self._resumed_state = self._resumed_state, None
        loop = runner.train_loop
        if state is None or (loop.iter == 0 and loop.epoch == 0):
            return  # a fresh run, or weights loaded with ``load_from``
        if isinstance(loop, IterBasedTrainLoop):
            loop.dataloader_iterator = _RestoreAfterReplay(
                loop.dataloader_iterator, loop.iter, state)
            return
        if not isinstance(loop, EpochBasedTrainLoop):
            runner.logger.warning(
                f'ExactResumeHook: {type(loop).__name__} is neither an '
                'iteration- nor an epoch-based loop; the generators are '
                'restored before it starts, which is exact only if it '
                'draws nothing before its first step.')
            restore_rng_state(state)
            return
        per_epoch = len(loop.dataloader)
        if loop.iter != loop.epoch * per_epoch:
            runner.logger.warning(
                f'ExactResumeHook: iteration {loop.iter} is inside epoch '
                f'{loop.epoch + 1}; the epoch-based loop restarts that epoch, '
                'so the resumed run will not repeat the original one exactly. '
                'Resume from a checkpoint taken at the end of an epoch.')
        self._resumed_state = state
        self._restore_at_epoch = True

    def before_train_epoch(self, runner) -> None:
        loop = runner.train_loop
        if isinstance(loop, EpochBasedTrainLoop):
            _reseed_persistent_workers(loop.dataloader, loop.epoch)
        if self._restore_at_epoch:
            restore_rng_state(self._resumed_state)
            self._resumed_state, self._restore_at_epoch = None, False

    # -- validation --------------------------------------------------------
    def before_val(self, runner) -> None:
        state = capture_rng_state()
        self._own_before_val = state
        self._before_val = all_gather_object(state) if get_world_size(
        ) > 1 else [state]

    def after_val(self, runner) -> None:
        if self._before_val is not None:
            restore_rng_state(self._own_before_val)
            self._before_val = self._own_before_val = None


def _checkpoint_due(runner, by_epoch: bool) -> bool:
    """Whether a ``CheckpointHook`` saves at this point of the loop, by the
    hook's own rule (its after-iteration or after-epoch save)."""
    for hook in runner.hooks:
        if not isinstance(hook, CheckpointHook) or hook.by_epoch != by_epoch:
            continue
        if by_epoch:
            due = hook.every_n_epochs(runner, hook.interval, hook.save_begin)
            last = hook.is_last_train_epoch(runner)
        else:
            due = hook.every_n_train_iters(runner, hook.interval,
                                           hook.save_begin)
            last = hook.is_last_train_iter(runner)
        if due or (hook.save_last and last):
            return True
    return False


def _reseed_persistent_workers(loader, epoch: int) -> None:
    """Restart a loader's persistent workers with an epoch-specific seed.

    Only for mmengine's ``worker_init_fn`` (a partial with a ``seed``); a
    loader without it seeds its workers from torch's generator, which the
    hook restores anyway.
    """
    init_fn = getattr(loader, 'worker_init_fn', None)
    if (not getattr(loader, 'persistent_workers', False)
            or not isinstance(init_fn, functools.partial)
            or 'seed' not in init_fn.keywords):
        return
    base = getattr(init_fn, '_mmdgconv_base_seed', init_fn.keywords['seed'])
    # Distinct from every (epoch, rank, worker) of every other epoch:
    # mmengine seeds a worker with seed + num_workers * rank + worker_id.
    stride = loader.num_workers * get_world_size()
    reseeded = functools.partial(
        init_fn.func, *init_fn.args,
        **dict(init_fn.keywords, seed=base + epoch * stride))
    reseeded._mmdgconv_base_seed = base
    loader.worker_init_fn = reseeded
    if loader._iterator is not None:  # running workers keep the old seed
        loader._iterator._shutdown_workers()
        loader._iterator = None
