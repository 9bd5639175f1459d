"""Writing files so that they appear complete or not at all.

Every output is written to a temporary file beside it, synced, given the
mode a plain ``open()`` would give it, and moved onto its name in one
``os.replace``; a failure removes the temporary file. Temporary files carry
the writer's PID, so a killed writer's leftovers can be cleaned up without
touching another live writer's.
"""
import os
import os.path as osp
import tempfile
from typing import Callable, IO, List, Tuple

#: Temporary files are ``.<output>.mmdgconv-tmp.<pid>.<random><ext>``, next
#: to the output, so a killed writer's leftovers can be told from anything
#: else and from another live writer's.
_TEMP_MARK = '.mmdgconv-tmp.'


def temp_file_for(out_path: str) -> Tuple[int, str]:
    """A new temporary file beside ``out_path`` with its extension.

    Returns:
        tuple[int, str]: An open OS-level handle and the path.
    """
    return tempfile.mkstemp(
        prefix=f'.{osp.basename(out_path)}{_TEMP_MARK}{os.getpid()}.',
        suffix=osp.splitext(out_path)[1],
        dir=osp.dirname(osp.abspath(out_path)))


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's live process
        return True
    return True


def remove_stale_temp_files(out_path: str) -> List[str]:
    """Remove the temporary files of writes to ``out_path`` whose process
    is gone (killed mid-write), never another live writer's.

    Returns:
        list: The removed paths.
    """
    directory = osp.dirname(osp.abspath(out_path))
    prefix = f'.{osp.basename(out_path)}{_TEMP_MARK}'
    removed = []
    for name in os.listdir(directory):
        if not name.startswith(prefix):
            continue
        pid = name[len(prefix):].split('.', 1)[0]
        if pid.isdigit() and not _pid_alive(int(pid)):
            path = osp.join(directory, name)
            try:
                os.remove(path)
                removed.append(path)
            except FileNotFoundError:
                pass
    return removed


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def finish_temp_file(tmp_path: str, out_path: str) -> None:
    """Give a written temporary file the mode a plain ``open()`` would
    (``0666`` less the umask, not ``mkstemp``'s ``0600``) and move it onto
    ``out_path`` in one step."""
    os.chmod(tmp_path, 0o666 & ~_umask())
    os.replace(tmp_path, out_path)


def write_atomically(write: Callable[[IO], object], out_path: str,
                     binary: bool = True) -> None:
    """Call ``write(file)`` on a temporary file beside ``out_path``, then
    move it there, so ``out_path`` is either complete or untouched."""
    handle, tmp_path = temp_file_for(out_path)
    try:
        with os.fdopen(handle, 'wb' if binary else 'w') as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        finish_temp_file(tmp_path, out_path)
    except BaseException:
        if osp.exists(tmp_path):
            os.remove(tmp_path)
        raise


__all__ = [
    'finish_temp_file', 'remove_stale_temp_files', 'temp_file_for',
    'write_atomically'
]
