"""Compatibility shims for the measured dependency stack.

Applied once by ``import mmdgconv``:

- mmaction2 1.2.0's PyPI package lacks ``mmaction/models/localizers/drn``,
  so ``import mmaction.models`` fails. A stand-in module is provided only
  when the real one is missing; building the DRN localizer from it raises
  a clear error instead.
- mmengine 0.10.7's pytorch launcher calls ``torch.cuda.set_device`` and its
  Runner hands DDP ``device_ids=[LOCAL_RANK]``; both fail on a CPU-only
  machine. Without CUDA, the launcher skips the device and uses gloo, and
  DDP wraps CPU modules with ``device_ids=None``, as torch requires.
- mmaction2's ``DecordInit`` decodes from an in-memory buffer, so decord's
  error for an undecodable video does not say which file it was; the shim
  re-raises it naming the file.
- mmengine 0.10.7's ``AmpOptimWrapper`` refuses a machine without GPU, NPU,
  MLU or MUSA; there ``type='AmpOptimWrapper'`` builds
  :class:`~mmdgconv.engine.amp_optim_wrapper.DeviceAmpOptimWrapper`, which
  autocasts on the CPU (bfloat16 by default, float16 with loss scaling).
- mmcv 2.1.0's CPU ``nms`` and ``roi_align`` kernels refuse bfloat16 (and
  ``nms`` float16) inputs, which CPU autocast gives every detector head;
  they are run in float32 there, returning the input's dtype.
- mmengine 0.10.7 builds ``ConfigDict`` optimiser parameter groups, on which
  dynamo fails when a config's ``compile`` compiles ``train_step``; they
  are made plain dicts.
- mmengine 0.10.7 resolves ``package::`` config paths only for the
  packages in its own table; ``mmdgconv`` is added to it, so a config can
  start from ``_base_ = 'mmdgconv::...'`` once mmdgconv is imported.
- torch >= 2.6 loads checkpoints with ``weights_only=True``, which refuses
  the Python objects mmengine stores (its message hub's history buffers,
  numpy scalars and arrays). Local checkpoints are loaded with an explicit
  allow-list of exactly those types; anything else is refused with an error
  naming the file and the offending types. Arbitrary objects are never
  unpickled.
"""
import importlib.abc
import importlib.machinery
import importlib.util
import os.path as osp
import pickle
import sys
from typing import List

import torch

from ..checkpoint_integrity import DIGEST_KEY, digest_mismatch, foreign_format

_DRN_PACKAGE = 'mmaction.models.localizers.drn'
_DRN_MODULE = _DRN_PACKAGE + '.drn'


class CheckpointSafetyError(RuntimeError):
    """A checkpoint holds objects outside the allow-list, or is unreadable."""


# ---------------------------------------------------------------------------
# mmaction2: the missing DRN localizer
# ---------------------------------------------------------------------------
class _DRNStandInLoader(importlib.abc.Loader):
    """Creates the stand-in ``drn`` package and its ``drn.DRN`` module."""

    def create_module(self, spec):
        return None  # the default module object

    def exec_module(self, module):
        if module.__name__ == _DRN_PACKAGE:
            module.__path__ = []  # a package, so ``drn.drn`` can be found
            return
        from mmaction.registry import MODELS

        class DRN(torch.nn.Module):
            """Stand-in for mmaction2's DRN localizer.

            mmaction2 1.2.0's PyPI package does not ship the DRN sources,
            so this model cannot be built from it.
            """

            def __init__(self, *args, **kwargs):
                raise RuntimeError(
                    'The DRN localizer is not part of the installed mmaction2 '
                    'package (mmaction2 1.2.0 on PyPI lacks '
                    "'mmaction/models/localizers/drn'); install mmaction2 "
                    'from source to use it.')

        MODELS.register_module(name='DRN', module=DRN, force=False)
        module.DRN = DRN
        module.__all__ = ['DRN']


class _DRNStandInFinder(importlib.abc.MetaPathFinder):
    """Serves the stand-in only where mmaction2 has no real ``drn``."""

    def find_spec(self, fullname, path=None, target=None):
        if fullname == _DRN_PACKAGE:
            if any(osp.exists(osp.join(p, 'drn')) for p in path or []):
                return None  # the real package is installed
        elif fullname == _DRN_MODULE:
            parent = sys.modules.get(_DRN_PACKAGE)
            spec = getattr(parent, '__spec__', None)
            if not isinstance(getattr(spec, 'loader', None),
                              _DRNStandInLoader):
                return None
        else:
            return None
        return importlib.machinery.ModuleSpec(
            fullname, _DRNStandInLoader(), is_package=fullname == _DRN_PACKAGE)


def _mmaction_lacks_drn() -> bool:
    spec = importlib.util.find_spec('mmaction')
    if spec is None or not spec.submodule_search_locations:
        return False  # mmaction2 is not installed: nothing to repair
    return not any(
        osp.isdir(osp.join(p, 'models', 'localizers', 'drn'))
        for p in spec.submodule_search_locations)


def install_mmaction_drn_standin() -> bool:
    """Let ``import mmaction.models`` work on mmaction2 1.2.0 from PyPI."""
    if not _mmaction_lacks_drn():
        return False
    if not any(isinstance(f, _DRNStandInFinder) for f in sys.meta_path):
        sys.meta_path.insert(0, _DRNStandInFinder())
    return True


# ---------------------------------------------------------------------------
# torch >= 2.6: loading mmengine checkpoints safely
# ---------------------------------------------------------------------------
def _history_buffer_statistic(owner, name):
    """Stand-in for ``builtins.getattr`` while unpickling.

    mmengine's ``HistoryBuffer`` pickles its statistic methods as
    ``getattr(HistoryBuffer, 'mean')``. Allowing the real ``getattr`` would
    let a checkpoint walk from any allowed object to arbitrary code, so only
    that exact lookup is served.
    """
    from mmengine.logging import HistoryBuffer
    statistics = {'min', 'max', 'current', 'mean'} | set(
        HistoryBuffer._statistics_methods)
    if owner is HistoryBuffer and name in statistics:
        return getattr(HistoryBuffer, name)
    raise pickle.UnpicklingError(
        f'getattr({owner!r}, {name!r}) is not allowed in a checkpoint')


def mmengine_checkpoint_allowlist() -> List[object]:
    """The non-tensor types mmengine writes into its checkpoints.

    Returns:
        list: Entries for ``torch.serialization.safe_globals``: classes and
        functions, and ``(callable, name)`` pairs that serve ``name``.
    """
    import numpy as np
    from mmengine.logging import HistoryBuffer

    try:  # numpy >= 2 moved the pickling helpers to numpy._core
        from numpy._core.multiarray import _reconstruct, scalar
    except ImportError:  # pragma: no cover - numpy 1.x
        from numpy.core.multiarray import _reconstruct, scalar
    # Scalars and arrays are pickled with their dtype class (numpy >= 1.25).
    dtype_classes = [type(np.dtype(t)) for t in np.sctypeDict.values()]
    return [
        HistoryBuffer, _reconstruct, scalar, np.ndarray, np.dtype,
        *dict.fromkeys(dtype_classes),
        (_history_buffer_statistic, 'builtins.getattr')
    ]


def load_checkpoint_safely(filename: str, map_location=None):
    """Load a local checkpoint with torch's weights-only unpickler.

    Only tensors, plain containers and :func:`mmengine_checkpoint_allowlist`
    are accepted.

    Args:
        filename (str): Path of the checkpoint.
        map_location: As :func:`torch.load`.

    Returns:
        dict: The checkpoint.

    Raises:
        FileNotFoundError: The file does not exist.
        CheckpointSafetyError: The file holds other objects, or it is not a
            readable checkpoint (corrupted or truncated).
    """
    filename = osp.expanduser(str(filename))
    if not osp.isfile(filename):
        raise FileNotFoundError(f'Checkpoint {filename} can not be found.')
    foreign = foreign_format(filename)
    if foreign is not None:
        raise CheckpointSafetyError(
            f'{filename} is not a PyTorch checkpoint: it is {foreign}.')
    checkpoint = _load_weights_only(filename, map_location)
    mismatch = digest_mismatch(checkpoint)
    if mismatch is not None:
        raise CheckpointSafetyError(
            f'Checkpoint {filename} is corrupted: its content does not match '
            f"the SHA-256 recorded in its meta['{DIGEST_KEY}'] when it was "
            f'written ({mismatch}). Use an intact copy.')
    return checkpoint


def _load_weights_only(filename: str, map_location):
    try:
        with torch.serialization.safe_globals(mmengine_checkpoint_allowlist()):
            return torch.load(
                filename, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as error:
        try:
            unsafe = torch.serialization.get_unsafe_globals_in_checkpoint(
                filename)
        except Exception:  # not a zip checkpoint; keep torch's own words
            unsafe = []
        allowed = {
            entry[1] if isinstance(entry, tuple) else
            f'{entry.__module__}.{entry.__qualname__}'
            for entry in mmengine_checkpoint_allowlist()
        }
        unsafe = [name for name in unsafe if name not in allowed]
        what = (f'objects of types outside the allow-list: {unsafe}'
                if unsafe else 'data the safe unpickler rejects '
                f'({_unpickler_reason(error)})')
        raise CheckpointSafetyError(
            f'Refusing to load checkpoint {filename}: it holds {what}. '
            'mmdgconv only loads tensors, plain containers and the types '
            'mmengine itself stores, because unpickling arbitrary objects '
            'can run arbitrary code.') from None
    except (RuntimeError, EOFError, ValueError) as error:
        raise CheckpointSafetyError(
            f'Checkpoint {filename} is not a readable PyTorch checkpoint '
            f'(corrupted, truncated or another format): {error}') from None


def _unpickler_reason(error: Exception) -> str:
    """torch's reason without its advice to load with
    ``weights_only=False``, which would run whatever the file holds."""
    text = str(error)
    marker = 'WeightsUnpickler error:'
    if marker in text:
        text = text.split(marker, 1)[1]
    text = text.split('Check the documentation of torch.load')[0]
    return ' '.join(text.split()) or type(error).__name__


def _torch_load_refuses_mmengine_objects() -> bool:
    """Whether plain ``torch.load`` refuses what mmengine stores in a
    checkpoint (a numpy scalar stands for them): torch >= 2.6's
    weights-only default."""
    import io

    import numpy as np
    buffer = io.BytesIO()
    torch.save({'meta': np.float64(1.0)}, buffer)
    buffer.seek(0)
    try:
        torch.load(buffer)
    except pickle.UnpicklingError:
        return True
    return False


def install_safe_checkpoint_loader() -> bool:
    """Route mmengine's local-path checkpoint loading through
    :func:`load_checkpoint_safely` (used by ``load_from``, ``resume`` and
    ``init_cfg=dict(type='Pretrained')``)."""
    from mmengine.runner.checkpoint import CheckpointLoader
    if not _torch_load_refuses_mmengine_objects():
        return False
    CheckpointLoader.register_scheme(
        prefixes='', loader=load_checkpoint_safely, force=True)
    return True


# ---------------------------------------------------------------------------
# mmengine: distributed training on CPU-only machines
# ---------------------------------------------------------------------------
def _has_accelerator() -> bool:
    from mmengine.device import (is_mlu_available, is_musa_available,
                                 is_npu_available)
    return (torch.cuda.is_available() or is_mlu_available()
            or is_npu_available() or is_musa_available())


def install_cpu_distributed_support() -> bool:
    """Let ``--launcher pytorch`` (torchrun) train on CPU through gloo."""
    import inspect

    from mmengine.dist import utils as dist_utils
    from mmengine.model import MMDistributedDataParallel

    launch = dist_utils._init_dist_pytorch
    if _has_accelerator() or (
            not getattr(launch, '_mmdgconv_cpu', False)
            and 'set_device' not in inspect.getsource(launch)):
        return False  # a device to set, or a launcher that sets none
    if not getattr(launch, '_mmdgconv_cpu', False):

        def init_dist_pytorch(backend, init_backend='torch', **kwargs):
            if _has_accelerator() or init_backend != 'torch':
                return launch(backend, init_backend=init_backend, **kwargs)
            if backend != 'gloo':  # nccl needs CUDA; mpi is not used here
                from mmengine.logging import print_log
                print_log(f'No GPU: using the gloo backend instead of '
                          f'{backend!r}.', logger='current')
            torch.distributed.init_process_group(backend='gloo', **kwargs)

        init_dist_pytorch._mmdgconv_cpu = True
        dist_utils._init_dist_pytorch = init_dist_pytorch

    wrap = MMDistributedDataParallel.__init__
    if not getattr(wrap, '_mmdgconv_cpu', False):

        def ddp_init(self, module, *args, **kwargs):
            first = next(module.parameters(), None)
            if first is not None and first.device.type == 'cpu':
                kwargs['device_ids'] = None  # required for CPU modules
            wrap(self, module, *args, **kwargs)

        ddp_init._mmdgconv_cpu = True
        MMDistributedDataParallel.__init__ = ddp_init
    return True


# ---------------------------------------------------------------------------
# mmaction2: name the video that cannot be decoded
# ---------------------------------------------------------------------------
class VideoDecodeError(RuntimeError):
    """A video file exists but cannot be decoded."""


def install_video_decode_errors() -> bool:
    """Make ``DecordInit`` errors name the video file."""
    import inspect
    try:
        from mmaction.datasets.transforms.loading import DecordInit
    except ImportError:  # mmaction2 is optional for mmdgconv's own use
        return False
    transform = DecordInit.transform
    if getattr(transform, '_mmdgconv_names_file', False):
        return True
    # decord names no file when it decodes from an in-memory buffer
    if 'BytesIO' not in inspect.getsource(DecordInit):
        return False

    def transform_naming_the_file(self, results):
        try:
            return transform(self, results)
        except (FileNotFoundError, VideoDecodeError):
            raise
        except Exception as error:
            raise VideoDecodeError(
                f"cannot decode video {results.get('filename')!r}: "
                f'{error}') from error

    transform_naming_the_file._mmdgconv_names_file = True
    DecordInit.transform = transform_naming_the_file
    return True


# ---------------------------------------------------------------------------
# mmengine: mixed precision without an accelerator
# ---------------------------------------------------------------------------
def install_device_amp_optim_wrapper() -> bool:
    """Let ``type='AmpOptimWrapper'`` (and ``--amp``) train where mmengine's
    wrapper refuses to: on a machine without GPU, NPU, MLU or MUSA."""
    from mmengine.registry import OPTIM_WRAPPERS

    from mmdgconv.engine.amp_optim_wrapper import (
        DeviceAmpOptimWrapper, mmengine_amp_needs_an_accelerator)
    if OPTIM_WRAPPERS.get('AmpOptimWrapper') is DeviceAmpOptimWrapper:
        return True
    if not mmengine_amp_needs_an_accelerator():
        return False
    OPTIM_WRAPPERS.register_module(
        name='AmpOptimWrapper', module=DeviceAmpOptimWrapper, force=True)
    return True


# ---------------------------------------------------------------------------
# mmcv: its CPU nms and RoIAlign kernels under CPU autocast
# ---------------------------------------------------------------------------
_LOW_PRECISION = (torch.bfloat16, torch.float16)


def _cpu_kernel_rejects(op, *args) -> bool:
    """Whether ``op`` refuses bfloat16 or float16 CPU tensors (tried)."""
    for dtype in _LOW_PRECISION:
        try:
            op(*(a.to(dtype) if torch.is_tensor(a) else a for a in args))
        except RuntimeError:
            return True
    return False


def install_mmcv_low_precision_cpu_ops() -> bool:
    """Run mmcv's ``nms`` and ``roi_align`` in float32 for bfloat16 or
    float16 CPU inputs, which their CPU kernels refuse (mmcv 2.1.0: 'expected
    scalar type Float', '"ROIAlign_forward" not implemented for
    'BFloat16''); the result has the input's dtype again. Under CPU
    autocast every detector's RPN and RoI head reaches them."""
    try:
        import mmcv.ops  # noqa: F401
    except ImportError:  # mmcv without its compiled ops
        return False
    nms_module = sys.modules['mmcv.ops.nms']
    roi_align_module = sys.modules['mmcv.ops.roi_align']
    if getattr(nms_module.nms, '_mmdgconv_float32', False) or getattr(
            roi_align_module.roi_align, '_mmdgconv_float32', False):
        return True
    boxes = torch.tensor([[0., 0., 2., 2.], [0., 0., 2., 1.9]])
    scores = torch.tensor([0.9, 0.8])
    features = torch.rand(1, 1, 4, 4)
    rois = torch.tensor([[0., 0., 0., 2., 2.]])

    def in_float32(op):

        def wrapped(*args, **kwargs):
            first = args[0]
            if first.device.type != 'cpu' or first.dtype not in \
                    _LOW_PRECISION:
                return op(*args, **kwargs)
            dtype = first.dtype
            args = [a.float() if torch.is_tensor(a) and a.is_floating_point()
                    else a for a in args]
            result = op(*args, **kwargs)
            if isinstance(result, tuple):  # nms: (dets, keep)
                return (result[0].to(dtype), ) + tuple(result[1:])
            return result.to(dtype)

        wrapped._mmdgconv_float32 = True
        wrapped.__doc__, wrapped.__name__ = op.__doc__, op.__name__
        return wrapped

    applied = False
    if _cpu_kernel_rejects(nms_module.nms, boxes, scores, 0.5):
        nms_module.nms = in_float32(nms_module.nms)  # batched_nms looks it up
        mmcv.ops.nms = nms_module.nms
        applied = True
    if _cpu_kernel_rejects(lambda f, r: roi_align_module.roi_align(
            f, r, (2, 2), 1.0, 0, 'avg', True), features, rois):
        # RoIAlign's forward calls the module-level function.
        roi_align_module.roi_align = in_float32(roi_align_module.roi_align)
        mmcv.ops.roi_align = roi_align_module.roi_align
        applied = True
    return applied


# ---------------------------------------------------------------------------
# mmengine: optimiser parameter groups that torch.compile can trace
# ---------------------------------------------------------------------------
def install_plain_param_groups() -> bool:
    """Give optimisers built by mmengine plain ``dict`` parameter groups.

    mmengine 0.10.7's ``DefaultOptimWrapperConstructor`` leaves them as
    ``ConfigDict`` when the config has ``paramwise_cfg``; with ``compile``
    in the config, mmengine compiles ``train_step``, the optimiser step
    included, and dynamo fails on a dict subclass there
    (``'UserDefinedDictVariable' object has no attribute 'items'``).
    """
    from mmengine.optim import DefaultOptimWrapperConstructor
    build = DefaultOptimWrapperConstructor.__call__
    if getattr(build, '_mmdgconv_plain_groups', False):
        return True
    # A config's optim_wrapper arrives as ConfigDict; probe with one,
    # quietly (the constructor logs its paramwise options).
    from mmengine.config import ConfigDict
    from mmengine.logging import MMLogger
    logger = MMLogger.get_current_instance()
    level = logger.level
    logger.setLevel('WARNING')
    try:
        probe = DefaultOptimWrapperConstructor(
            ConfigDict(type='OptimWrapper', optimizer=dict(
                type='SGD', lr=0.1, weight_decay=1e-4)),
            paramwise_cfg=ConfigDict(bias_decay_mult=0.0))(
                torch.nn.Linear(1, 1))
    finally:
        logger.setLevel(level)
    if all(type(group) is dict for group in probe.optimizer.param_groups):
        return False

    def build_with_plain_groups(self, model):
        optim_wrapper = build(self, model)
        groups = optim_wrapper.optimizer.param_groups
        for index, group in enumerate(groups):
            if type(group) is not dict:
                groups[index] = dict(group)
        return optim_wrapper

    build_with_plain_groups._mmdgconv_plain_groups = True
    DefaultOptimWrapperConstructor.__call__ = build_with_plain_groups
    return True


def install_config_prefix() -> bool:
    """Let mmengine resolve ``mmdgconv::path/to/config.py``.

    mmengine 0.10.7 resolves a ``package::`` config path only for the
    packages in its own table (``MODULE2PACKAGE``), then reads the config
    from ``<package>/.mim/configs``, where the install puts ours. The entry
    is added unless the installed mmengine has one.
    """
    from mmengine.config import utils as config_utils
    if 'mmdgconv' in config_utils.MODULE2PACKAGE:
        # ours from an earlier call, or the installed mmengine's own entry
        return _STATUS.get('config prefix', False)
    config_utils.MODULE2PACKAGE['mmdgconv'] = 'mmdgconv'
    return True


#: Every shim: its name, the component whose behaviour it repairs, the
#: defect, and the function that applies it where the defect is found
#: (returning whether it is active). README's "Stack shims" table lists
#: the same.
SHIMS = (
    ('config prefix', 'mmengine',
     "resolves 'package::' config paths only for packages in its table",
     install_config_prefix),
    ('mmaction2 drn', 'mmaction2',
     "the PyPI package lacks models/localizers/drn, so 'import "
     "mmaction.models' fails", install_mmaction_drn_standin),
    ('safe checkpoint loading', 'torch / mmengine',
     "torch.load's weights-only default refuses mmengine's checkpoint "
     'objects', install_safe_checkpoint_loader),
    ('CPU distributed', 'mmengine',
     'its launcher sets a CUDA device and DDP gets device_ids on a '
     'machine without an accelerator', install_cpu_distributed_support),
    ('video decode errors', 'mmaction2',
     "DecordInit decodes from a buffer, so decord's errors name no file",
     install_video_decode_errors),
    ('AMP without an accelerator', 'mmengine',
     'AmpOptimWrapper refuses a machine without GPU, NPU, MLU or MUSA',
     install_device_amp_optim_wrapper),
    ('mmcv ops under CPU autocast', 'mmcv',
     'CPU nms and roi_align refuse bfloat16 / float16 inputs',
     install_mmcv_low_precision_cpu_ops),
    ('plain parameter groups', 'mmengine',
     'paramwise_cfg leaves ConfigDict parameter groups, on which dynamo '
     'fails', install_plain_param_groups),
)

#: Shim name -> whether it is active, filled by :func:`apply_compat_shims`.
_STATUS = {}


def apply_compat_shims() -> dict:
    """Apply every shim whose defect the installed stack has; idempotent.

    Returns:
        dict: Shim name to whether it is active.
    """
    for name, _, _, install in SHIMS:
        _STATUS[name] = bool(install())
    return dict(_STATUS)


def shim_report() -> str:
    """A table of the shims: active or not needed, and why."""
    status = _STATUS or apply_compat_shims()
    rows = [('shim', 'component', 'status', 'defect repaired')]
    for name, component, defect, _ in SHIMS:
        rows.append((name, component,
                     'active' if status.get(name) else 'not needed', defect))
    widths = [max(len(row[i]) for row in rows) for i in range(3)]
    return '\n'.join('  '.join(cell.ljust(width) for cell, width in zip(
        row[:3], widths)) + '  ' + row[3] for row in rows)
