"""Mixed-precision training on every device, CPUs included.

mmengine 0.10.7's ``AmpOptimWrapper`` asserts that a GPU, NPU, MLU or MUSA
device is present, and its ``autocast`` accepts only bfloat16 on CPUs,
although torch autocasts convolutions and matrix products to bfloat16 and
float16 on CPUs too (fast on CPUs with AVX-512 BF16 or AMX).
"""
from contextlib import contextmanager
from typing import Optional, Union

import torch
import torch.nn as nn
from mmengine.device import get_device
from mmengine.optim import AmpOptimWrapper as MMEngineAmpOptimWrapper
from mmengine.optim import OptimWrapper

from mmdgconv.registry import OPTIM_WRAPPERS


@OPTIM_WRAPPERS.register_module(name='AmpOptimWrapper')
class DeviceAmpOptimWrapper(MMEngineAmpOptimWrapper):
    """mmengine's ``AmpOptimWrapper`` for any device type.

    - The autocast dtype defaults to bfloat16 on a CPU and to torch's
      autocast default (float16) elsewhere; ``dtype`` sets it.
    - float16 is trained with a dynamic (or the given) loss scale, on the
      CPU too (``torch.amp.GradScaler('cpu')``). bfloat16 has float32's
      exponent range and cannot underflow where float32 would not, so it
      trains without loss scaling, as the bfloat16 recipes of torch do.
    - Checkpoints keep the scaler state under ``loss_scaler``, as mmengine's.

    On a machine without GPU, ``import mmdgconv`` makes the plain
    ``type='AmpOptimWrapper'`` (and ``tools/train.py --amp``) build this
    class; ``type='mmdgconv.AmpOptimWrapper'`` names it anywhere.

    Args:
        loss_scale (float | str | dict): ``'dynamic'``, an initial scale, or
            ``torch.amp.GradScaler`` arguments. Default: 'dynamic'.
        dtype (str | torch.dtype, optional): ``'float16'``, ``'bfloat16'``
            (or ``'float32'``/``'float64'``, autocast off in effect).
            Default: None, the device's default.
        use_fsdp (bool): Not supported here; mmengine's wrapper handles FSDP
            on GPUs. Default: False.
        **kwargs: As :class:`mmengine.optim.OptimWrapper`.
    """

    def __init__(self,
                 loss_scale: Union[str, float, dict] = 'dynamic',
                 dtype: Optional[Union[str, torch.dtype]] = None,
                 use_fsdp: bool = False,
                 **kwargs) -> None:
        if use_fsdp:
            raise ValueError('AmpOptimWrapper: use_fsdp needs mmengine\'s '
                             'own wrapper on a GPU')
        # mmengine's __init__ would refuse a CPU-only machine.
        OptimWrapper.__init__(self, **kwargs)
        self.device_type = get_device().split(':')[0]
        if isinstance(dtype, str):
            if dtype not in self.valid_dtypes:
                raise ValueError(f'AmpOptimWrapper: dtype must be one of '
                                 f'{self.valid_dtypes}, got {dtype!r}')
            dtype = getattr(torch, dtype)
        if dtype is None:
            dtype = torch.get_autocast_dtype(self.device_type)
        if not isinstance(dtype, torch.dtype):
            raise TypeError(f'AmpOptimWrapper: dtype must be a str or a '
                            f'torch.dtype, got {type(dtype).__name__}')
        self.cast_dtype = dtype
        self._scale_update_param = None
        scaled = dtype == torch.float16
        if loss_scale == 'dynamic':
            scaler_args = {}
        elif isinstance(loss_scale, float):
            self._scale_update_param = loss_scale
            scaler_args = dict(init_scale=loss_scale)
        elif isinstance(loss_scale, dict):
            scaler_args = dict(loss_scale)
        else:
            raise TypeError('AmpOptimWrapper: loss_scale must be a float, a '
                            f"dict or 'dynamic', got {loss_scale!r}")
        self.loss_scaler = torch.amp.GradScaler(
            self.device_type, enabled=scaled, **scaler_args)

    @contextmanager
    def optim_context(self, model: nn.Module):
        """Autocast to :attr:`cast_dtype` on the model's device type, and
        skip gradient synchronisation while accumulating (as mmengine)."""
        with OptimWrapper.optim_context(self, model), torch.autocast(
                self.device_type, dtype=self.cast_dtype,
                enabled=self.cast_dtype in (torch.float16, torch.bfloat16)):
            yield


def mmengine_amp_needs_an_accelerator() -> bool:
    """Whether mmengine's own ``AmpOptimWrapper`` refuses this machine
    (tried, not read from a version number)."""
    optimizer = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=0.1)
    try:
        MMEngineAmpOptimWrapper(optimizer=optimizer)
    except AssertionError:
        return True
    return False
