from .hooks import (ExactResumeHook, LossTermHook, PEDInfoMaxHook,
                    ResourceConstraintHook, TrainProgressBarHook)

__all__ = [
    'ExactResumeHook', 'LossTermHook', 'PEDInfoMaxHook',
    'ResourceConstraintHook', 'TrainProgressBarHook'
]
