"""Building a config's model and moving checkpoints in and out of it,
safely, for the converter tools."""
import os
import os.path as osp
import tempfile
from typing import Tuple

import torch
from mmengine.config import Config
from mmengine.registry import DefaultScope

from mmdgconv.utils import load_checkpoint_safely


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
    state_dict = checkpoint.get('state_dict', checkpoint)
    state_dict = {
        k[len('module.'):] if k.startswith('module.') else k: v
        for k, v in state_dict.items()
    }
    missing, unexpected, shapes = _compare(model.state_dict(), state_dict)
    if missing or unexpected or shapes:
        details = []
        for label, keys in (('missing keys', missing),
                            ('unexpected keys', unexpected),
                            ('shape mismatches', shapes)):
            if keys:
                shown = ', '.join(keys[:8])
                shown += ', ...' if len(keys) > 8 else ''
                details.append(f'{len(keys)} {label} ({shown})')
        raise ConversionError(
            f'checkpoint {checkpoint_path} does not match the model built '
            f'from {config_path}: ' + '; '.join(details))
    model.load_state_dict(state_dict, strict=True)
    return checkpoint


def _compare(expected: dict, actual: dict) -> Tuple[list, list, list]:
    missing = sorted(set(expected) - set(actual))
    unexpected = sorted(set(actual) - set(expected))
    shapes = sorted(
        f'{k}: {tuple(actual[k].shape)} vs {tuple(expected[k].shape)}'
        for k in set(expected) & set(actual)
        if hasattr(actual[k], 'shape')
        and actual[k].shape != expected[k].shape)
    return missing, unexpected, shapes


def check_output_path(out_path: str, *inputs: str) -> None:
    """Refuse to overwrite an input, and fail early on an unwritable path.

    Raises:
        ConversionError: ``out_path`` is one of ``inputs``, or its directory
            cannot be written.
    """
    for path in inputs:
        if osp.exists(out_path) and osp.exists(path) and osp.samefile(
                out_path, path):
            raise ConversionError(
                f'refusing to overwrite the input {path} with the output')
    directory = osp.dirname(osp.abspath(out_path))
    if not osp.isdir(directory):
        raise ConversionError(f'output directory {directory} does not exist')
    if not os.access(directory, os.W_OK):
        raise ConversionError(f'output directory {directory} is not writable')


def save_atomically(obj, out_path: str) -> None:
    """``torch.save`` through a temporary file in the same directory, so
    ``out_path`` is either the complete new file or untouched."""
    directory = osp.dirname(osp.abspath(out_path))
    handle, tmp_path = tempfile.mkstemp(
        prefix='.' + osp.basename(out_path) + '.', dir=directory)
    try:
        with os.fdopen(handle, 'wb') as f:
            torch.save(obj, f)
        os.replace(tmp_path, out_path)
    except BaseException:
        if osp.exists(tmp_path):
            os.remove(tmp_path)
        raise
