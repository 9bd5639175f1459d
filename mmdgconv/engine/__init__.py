from .amp_optim_wrapper import DeviceAmpOptimWrapper
from .hooks import (CheckpointDigestHook, ExactResumeHook, LossTermHook,
                    PEDInfoMaxHook, ResourceConstraintHook,
                    TrainProgressBarHook)

__all__ = [
    'CheckpointDigestHook', 'DeviceAmpOptimWrapper', 'ExactResumeHook',
    'LossTermHook', 'PEDInfoMaxHook', 'ResourceConstraintHook',
    'TrainProgressBarHook'
]
