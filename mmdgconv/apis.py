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


def build_runner(cfg: Config) -> Runner:
    """Build the config's runner (a custom ``runner_type`` if it names one).

    Args:
        cfg (Config): A loaded config.

    Returns:
        Runner: The runner.
    """
    if 'runner_type' in cfg:
        return RUNNERS.build(cfg)
    return Runner.from_cfg(cfg)
