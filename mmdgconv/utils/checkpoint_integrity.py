"""Telling a corrupted or foreign file from a checkpoint.

- :func:`checkpoint_digest` is a SHA-256 over everything a checkpoint holds.
  mmdgconv's tools record it in ``meta['sha256']`` when they write a
  checkpoint, and loading checks it: a few flipped bytes in tensor data load
  without any error from torch and silently poison weights or optimiser
  state.
- :func:`foreign_format` names what a file is when it is not a PyTorch
  checkpoint at all (an image passed by mistake), so the error does not send
  the user to unsafe unpickling.
"""
import hashlib
import zipfile
from typing import Optional

import numpy as np
import torch

#: Where the digest is kept, inside ``checkpoint['meta']``.
DIGEST_KEY = 'sha256'

#: Leading bytes of formats that are passed for checkpoints by mistake.
_SIGNATURES = (
    (b'\x89PNG\r\n\x1a\n', 'a PNG image'),
    (b'\xff\xd8\xff', 'a JPEG image'),
    (b'GIF8', 'a GIF image'),
    (b'%PDF', 'a PDF document'),
    (b'\x1f\x8b', 'a gzip archive'),
    (b'\x93NUMPY', 'a numpy .npy array'),
    (b'PK\x03\x04', 'a zip archive that is truncated or is no checkpoint'),
)


def foreign_format(filename: str) -> Optional[str]:
    """What ``filename`` is, if it is not in a PyTorch checkpoint format.

    Args:
        filename (str): An existing file.

    Returns:
        str or None: None for torch's zip format or its legacy pickle
        format; otherwise a description, e.g. ``'a PNG image'``.
    """
    with open(filename, 'rb') as f:
        head = f.read(16)
    if not head:
        return 'an empty file'
    if zipfile.is_zipfile(filename):
        with zipfile.ZipFile(filename) as archive:
            names = archive.namelist()
        if any(name.endswith('data.pkl') for name in names):
            return None
        return 'a zip archive without a PyTorch data.pkl'
    if head[:1] == b'\x80':  # a pickle stream: torch's legacy format
        return None
    for signature, description in _SIGNATURES:
        if head.startswith(signature):
            return description
    if len(head) >= 10 and head[8:10] == b'{"':
        return 'a safetensors file (load it with safetensors)'
    if all(32 <= b < 127 or b in (9, 10, 13) for b in head):
        return 'a text file'
    return 'not a format PyTorch writes'


def _update(digest, value) -> None:
    """Feed one value, its type and its structure into ``digest``."""
    if torch.is_tensor(value):
        tensor = value.detach().cpu().contiguous()
        digest.update(f'T{tensor.dtype}{tuple(tensor.shape)}'.encode())
        if tensor.numel():
            digest.update(tensor.reshape(-1).view(torch.uint8).numpy())
    elif isinstance(value, np.ndarray):
        array = np.ascontiguousarray(value)
        digest.update(f'A{array.dtype}{array.shape}'.encode())
        digest.update(array.view(np.uint8).reshape(-1)
                      if array.dtype != object else repr(array).encode())
    elif isinstance(value, dict):
        digest.update(f'D{len(value)}'.encode())
        for key, item in value.items():
            _update(digest, key)
            _update(digest, item)
    elif isinstance(value, (list, tuple)):
        digest.update(f'{type(value).__name__}{len(value)}'.encode())
        for item in value:
            _update(digest, item)
    elif value is None or isinstance(value, (bool, int, float, str, bytes,
                                             np.generic)):
        digest.update(f'{type(value).__name__}:{value!r}'.encode())
    elif hasattr(value, '__dict__'):  # e.g. mmengine's HistoryBuffer
        digest.update(f'O{type(value).__qualname__}'.encode())
        _update(digest, dict(sorted(vars(value).items())))
    else:
        digest.update(f'{type(value).__qualname__}:{value!r}'.encode())


def checkpoint_digest(checkpoint: dict) -> str:
    """The SHA-256 of a checkpoint's content, its own digest left out.

    It covers every tensor's bytes, dtype and shape, every array, number and
    string, and the nesting they sit in, so any change to what loading
    returns changes it.

    Args:
        checkpoint (dict): A checkpoint as saved or as loaded.

    Returns:
        str: The hex digest.
    """
    content = dict(checkpoint)
    if isinstance(content.get('meta'), dict):
        content['meta'] = {k: v for k, v in content['meta'].items()
                           if k != DIGEST_KEY}
    digest = hashlib.sha256()
    _update(digest, content)
    return digest.hexdigest()


def record_digest(checkpoint: dict) -> dict:
    """Store :func:`checkpoint_digest` in ``checkpoint['meta']``.

    Returns:
        dict: ``checkpoint``, changed in place.
    """
    meta = checkpoint.setdefault('meta', {})
    if not isinstance(meta, dict):
        raise TypeError(f"checkpoint['meta'] is a {type(meta).__name__}, "
                        'not a dict')
    meta[DIGEST_KEY] = checkpoint_digest(checkpoint)
    return checkpoint


def digest_mismatch(checkpoint) -> Optional[str]:
    """Compare a loaded checkpoint with the digest it records.

    Returns:
        str or None: None when there is no digest or it matches; otherwise
        the recorded and the recomputed digests, for the error message.
    """
    meta = checkpoint.get('meta') if isinstance(checkpoint, dict) else None
    recorded = meta.get(DIGEST_KEY) if isinstance(meta, dict) else None
    if not isinstance(recorded, str):
        return None
    actual = checkpoint_digest(checkpoint)
    if actual == recorded:
        return None
    return f'recorded {recorded[:16]}..., content {actual[:16]}...'
