from .hooks import (CheckpointDigestHook, ExactResumeHook, LossTermHook,
                    PEDInfoMaxHook, ResourceConstraintHook,
                    TrainProgressBarHook)

__all__ = [
    'CheckpointDigestHook', 'ExactResumeHook', 'LossTermHook',
    'PEDInfoMaxHook', 'ResourceConstraintHook', 'TrainProgressBarHook'
]
