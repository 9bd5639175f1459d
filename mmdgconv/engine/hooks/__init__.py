from .checkpoint_digest_hook import CheckpointDigestHook
from .exact_resume_hook import ExactResumeHook
from .loss_term_hook import LossTermHook
from .ped_info_max_hook import PEDInfoMaxHook
from .progress_bar_hook import TrainProgressBarHook
from .resource_constraint_hook import ResourceConstraintHook

__all__ = [
    'CheckpointDigestHook', 'ExactResumeHook', 'LossTermHook', 'PEDInfoMaxHook',
    'ResourceConstraintHook', 'TrainProgressBarHook'
]
