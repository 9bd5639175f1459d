"""mmdgconv: backbones that learn their own structure, for OpenMMLab."""
from .utils.compat import apply_compat_shims

apply_compat_shims()

from . import engine, models  # noqa: E402,F401  (registers the modules)
from .version import __version__  # noqa: E402

__all__ = ['__version__']
