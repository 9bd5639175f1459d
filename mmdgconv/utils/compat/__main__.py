"""``python -m mmdgconv.utils.compat``: which stack shims are active in
this environment, and the defect each repairs."""
import mmdgconv  # noqa: F401  (applies the shims)
from mmdgconv.utils.compat import shim_report

print(shim_report())
