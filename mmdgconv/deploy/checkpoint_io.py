"""Building a config's model and moving checkpoints in and out of it,
safely, for the converter tools."""
import os
import os.path as osp

import torch
from mmengine.config import Config
from mmengine.registry import DefaultScope

from mmdgconv.utils import load_checkpoint_safely
from mmdgconv.utils.atomic_write import (finish_temp_file,
                                         remove_stale_temp_files,
                                         temp_file_for, write_atomically)
from mmdgconv.utils.checkpoint_integrity import record_digest
from mmdgconv.utils.state_dict_match import (state_dict_mismatch,
                                             strip_module_prefix)


class ConversionError(RuntimeError):
    """A checkpoint or path cannot be converted; the message says why."""


def build_model(cfg: Config) -> torch.nn.Module:
    """Build ``cfg.model`` in the config's toolbox scope, weights untouched.

    Args:
        cfg (Config): A loaded config.

    Returns:
        nn.Module: The model, on the CPU.
    """
    scope = cfg.get('default_scope', 'mmdgconv')
    with DefaultScope.overwrite_default_scope(scope):
        from mmengine.registry import MODELS
        return MODELS.build(cfg.model)


def load_state_dict_strict(model: torch.nn.Module, checkpoint_path: str,
                           config_path: str) -> dict:
    """Load a checkpoint into ``model`` with ``strict=True``.

    Returns:
        dict: The whole checkpoint (``meta`` included).

    Raises:
        ConversionError: The checkpoint is unreadable, unsafe or does not
            match the model the config builds.
    """
    try:
        checkpoint = load_checkpoint_safely(checkpoint_path,
                                            map_location='cpu')
    except (OSError, RuntimeError) as error:
        raise ConversionError(str(error)) from None
    if not isinstance(checkpoint, dict):
        raise ConversionError(
            f'{checkpoint_path} holds a {type(checkpoint).__name__}, not a '
            'checkpoint dict')
    state_dict = strip_module_prefix(checkpoint.get('state_dict', checkpoint))
    mismatch = state_dict_mismatch(model.state_dict(), state_dict)
    if mismatch:
        raise ConversionError(
            f'checkpoint {checkpoint_path} does not match the model built '
            f'from {config_path}: {mismatch}')
    model.load_state_dict(state_dict, strict=True)
    return checkpoint


def check_output_path(out_path: str, *inputs: str) -> None:
    """Refuse to overwrite an input, and fail early on an unwritable path.

    The output's directory is created when missing, and writability is
    probed by creating and removing a real file there: ``os.access`` says
    yes for root under ``/sys`` or ``/proc``, and on read-only mounts.
    Temporary files that a killed earlier write left for ``out_path`` are
    removed.

    Raises:
        ConversionError: ``out_path`` is one of ``inputs``, is a directory,
            or cannot be written.
    """
    for path in inputs:
        if osp.exists(out_path) and osp.exists(path) and osp.samefile(
                out_path, path):
            raise ConversionError(
                f'refusing to overwrite the input {path} with the output')
    if osp.isdir(out_path):
        raise ConversionError(f'output {out_path} is a directory; give a '
                              'file name')
    directory = osp.dirname(osp.abspath(out_path))
    try:
        os.makedirs(directory, exist_ok=True)
        handle, probe = temp_file_for(out_path)
        os.close(handle)
        os.remove(probe)
    except OSError as error:
        raise ConversionError(
            f'cannot write {out_path}: {error.strerror or error}') from None
    remove_stale_temp_files(out_path)


def save_atomically(obj, out_path: str) -> None:
    """``torch.save`` through a temporary file in the same directory, so
    ``out_path`` is either the complete new file or untouched.

    A dict checkpoint gets its SHA-256 recorded in ``meta['sha256']``, which
    loading checks.
    """
    if isinstance(obj, dict):
        record_digest(obj)
    write_atomically(lambda f: torch.save(obj, f), out_path)


def save_pair_atomically(*items) -> None:
    """Save several checkpoints that belong together, all or none.

    Every file is written and synced to a temporary name first; only then
    are they moved into place, so a failure while writing (a full disk, an
    interrupt) leaves none of the outputs changed.

    Args:
        *items: ``(obj, out_path)`` pairs.
    """
    written = []
    try:
        for obj, out_path in items:
            if isinstance(obj, dict):
                record_digest(obj)
            handle, tmp_path = temp_file_for(out_path)
            written.append((tmp_path, out_path))
            with os.fdopen(handle, 'wb') as f:
                torch.save(obj, f)
                f.flush()
                os.fsync(f.fileno())
        for tmp_path, out_path in written:
            finish_temp_file(tmp_path, out_path)
    except BaseException:
        for tmp_path, _ in written:
            if osp.exists(tmp_path):
                os.remove(tmp_path)
        raise
