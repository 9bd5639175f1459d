"""Config loading and runner building shared by ``tools/``."""
import os.path as osp
from typing import Optional

from mmengine.config import Config
from mmengine.registry import RUNNERS
from mmengine.runner import Runner

#: The toolboxes whose configs mmdgconv's tools run, by default scope.
SUPPORTED_SCOPES = ('mmdet', 'mmaction', 'mmpretrain')


def load_config(path: str, cfg_options: Optional[dict] = None) -> Config:
    """Load a config and apply overrides.

    Args:
        path (str): The config file.
        cfg_options (dict, optional): Overrides as parsed by mmengine's
            ``DictAction``, e.g. ``{'train_cfg.max_iters': 10}``.

    Returns:
        Config: The config.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        ValueError: The config does not belong to a supported toolbox.
    """
    if not osp.isfile(path):
        raise FileNotFoundError(f'config file {path} does not exist')
    cfg = Config.fromfile(path)
    if cfg_options:
        cfg.merge_from_dict(cfg_options)
    scope = cfg.get('default_scope')
    if scope not in SUPPORTED_SCOPES:
        raise ValueError(
            f'{path}: default_scope is {scope!r}; mmdgconv tools run configs '
            f'of {SUPPORTED_SCOPES}, inherited from a base such as '
            "'mmdet::faster_rcnn/faster-rcnn_r50_fpn_1x_coco.py'")
    return cfg


def apply_run_options(cfg: Config, config_path: str,
                      work_dir: Optional[str], launcher: str) -> None:
    """Set the launcher and the work dir (``--work-dir``, else the config's,
    else ``./work_dirs/<config name>``), as mmdet's tools do.

    Args:
        cfg (Config): The config, changed in place.
        config_path (str): The config file, for the default work dir.
        work_dir (str, optional): ``--work-dir``.
        launcher (str): ``--launcher``.
    """
    cfg.launcher = launcher
    if work_dir is not None:
        cfg.work_dir = work_dir
    elif cfg.get('work_dir') is None:
        cfg.work_dir = osp.join('./work_dirs',
                                osp.splitext(osp.basename(config_path))[0])


class CheckpointError(RuntimeError):
    """A checkpoint cannot be used as asked; the message names it."""


class ResumeError(CheckpointError):
    """The checkpoint to resume from cannot continue a training run."""


def prepare_resume(cfg: Config, resume: Optional[str]) -> None:
    """Set up ``--resume`` and check the checkpoint before anything is built.

    - ``'auto'`` resumes from the work dir's latest checkpoint (mmengine's
      ``last_checkpoint``), or starts afresh when there is none.
    - The checkpoint must be a training checkpoint: one with the iteration,
      epoch and message-hub state mmengine writes, not weights alone.
    - A config without ``randomness.seed`` takes the checkpoint's seed, so
      the sampler and the data workers are seeded as in the original run
      (mmengine builds them before it reads the checkpoint's seed).

    Args:
        cfg (Config): The config, changed in place.
        resume (str, optional): ``--resume``: None, ``'auto'`` or a path.

    Raises:
        ResumeError: The checkpoint is not a training checkpoint.
        FileNotFoundError: The named checkpoint does not exist.
    """
    if resume is None:
        return
    from mmengine.runner import find_latest_checkpoint

    from mmdgconv.utils import load_checkpoint_safely
    if resume == 'auto':
        cfg.resume, cfg.load_from = True, None
        path = find_latest_checkpoint(cfg.work_dir)
        if path is None:
            return
    else:
        cfg.resume, cfg.load_from = True, resume
        path = resume
    checkpoint = load_checkpoint_safely(path, map_location='cpu')
    meta = checkpoint.get('meta') if isinstance(checkpoint, dict) else None
    missing = [key for key in ('meta', 'state_dict', 'message_hub')
               if not isinstance(checkpoint, dict) or key not in checkpoint]
    if not missing and not {'epoch', 'iter'} <= set(meta or {}):
        missing = ['meta.epoch', 'meta.iter']
    if missing:
        raise ResumeError(
            f'cannot resume from {path}: it is not a training checkpoint '
            f'(it has no {", ".join(missing)}). To start a new run from its '
            f'weights, use --cfg-options load_from={path} instead.')
    randomness = dict(cfg.get('randomness') or {})
    if randomness.get('seed') is None and meta.get('seed') is not None:
        randomness['seed'] = meta['seed']
        cfg.randomness = randomness


class CheckpointMismatchError(CheckpointError):
    """A checkpoint does not fit the model its config builds."""


def check_checkpoint_fits(runner: Runner, checkpoint_path: str,
                          config_path: str) -> None:
    """Check that a checkpoint holds exactly the weights of the runner's
    model: every key, none extra, every shape.

    Raises:
        CheckpointMismatchError: It does not, with the missing, unexpected
            and mis-shaped keys named.
        CheckpointSafetyError: It is unreadable, corrupted or unsafe.
    """
    from mmengine.model import is_model_wrapper

    from mmdgconv.utils import load_checkpoint_safely
    from mmdgconv.utils.state_dict_match import (state_dict_mismatch,
                                                 strip_module_prefix)
    checkpoint = load_checkpoint_safely(checkpoint_path, map_location='cpu')
    if not isinstance(checkpoint, dict):
        raise CheckpointMismatchError(
            f'{checkpoint_path} holds a {type(checkpoint).__name__}, not a '
            'checkpoint')
    model = runner.model.module if is_model_wrapper(
        runner.model) else runner.model
    mismatch = state_dict_mismatch(
        model.state_dict(),
        strip_module_prefix(checkpoint.get('state_dict', checkpoint)))
    if mismatch:
        raise CheckpointMismatchError(
            f'checkpoint {checkpoint_path} does not fit the model built from '
            f'{config_path}: {mismatch}. Is it the checkpoint of another '
            'model? (--non-strict evaluates anyway.)')


#: Added to every run built by :func:`build_runner`.
DEFAULT_HOOKS = ('mmdgconv.ExactResumeHook', 'mmdgconv.CheckpointDigestHook')


def add_default_hooks(cfg: Config) -> None:
    """Add :data:`DEFAULT_HOOKS` to ``custom_hooks``, each unless the config
    has it already (with or without the ``mmdgconv.`` prefix)."""
    hooks = list(cfg.get('custom_hooks') or [])
    present = {h.get('type') for h in hooks if isinstance(h, dict)}
    for name in DEFAULT_HOOKS:
        if not present & {name, name.split('.')[-1]}:
            hooks.append(dict(type=name))
    cfg.custom_hooks = hooks


def build_runner(cfg: Config) -> Runner:
    """Build the config's runner (a custom ``runner_type`` if it names one),
    with :data:`DEFAULT_HOOKS` added: exact resume and checkpoint digests.

    Args:
        cfg (Config): A loaded config.

    Returns:
        Runner: The runner.
    """
    import mmdgconv.engine  # noqa: F401 (registers the hooks)
    add_default_hooks(cfg)
    if 'runner_type' in cfg:
        return RUNNERS.build(cfg)
    return Runner.from_cfg(cfg)
