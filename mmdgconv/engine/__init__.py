from .hooks import (LossTermHook, PEDInfoMaxHook, ResourceConstraintHook,
                    TrainProgressBarHook)

__all__ = [
    'LossTermHook', 'PEDInfoMaxHook', 'ResourceConstraintHook',
    'TrainProgressBarHook'
]
