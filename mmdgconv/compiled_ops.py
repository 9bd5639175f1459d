"""mmdgconv's compiled operators (``mmdgconv/csrc``), where they are built.

``tools/install.sh`` builds them with the package (``setup.py``'s
``CppExtension``, module ``mmdgconv._ext``). They only speed up paths that
Python runs too: an install without a C++ compiler, or a build for another
torch, still runs every operator, and :func:`compiled_ops` is then None.

Example:
    >>> from mmdgconv.compiled_ops import compiled_ops
    >>> ops = compiled_ops()  # the module, or None where not built
"""
import importlib
import warnings
from types import ModuleType
from typing import Optional

_UNLOADED = object()
_ops = _UNLOADED


def load_compiled_ops(name: str = 'mmdgconv._ext') -> Optional[ModuleType]:
    """Import the extension module ``name``.

    Returns:
        ModuleType | None: The module; None where it is not built, and,
        with a warning that says how to rebuild it, where it is built but
        does not load (for instance against another torch).
    """
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as error:
        if error.name != name:  # a module it needs is missing, not itself
            raise
        return None
    except ImportError as error:
        warnings.warn(
            f'{name} does not load ({error}); mmdgconv runs the Python '
            'paths of its compiled operators instead. Rebuild it with '
            '`bash tools/install.sh`, or `pip install --no-build-isolation '
            '--use-pep517 -e .` in the checkout.')
        return None


def compiled_ops() -> Optional[ModuleType]:
    """``mmdgconv._ext`` (see :func:`load_compiled_ops`), loaded once."""
    global _ops
    if _ops is _UNLOADED:
        _ops = load_compiled_ops()
    return _ops
