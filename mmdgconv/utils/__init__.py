from .compat import (CheckpointSafetyError, apply_compat_shims,
                     load_checkpoint_safely, mmengine_checkpoint_allowlist)

__all__ = [
    'CheckpointSafetyError', 'apply_compat_shims', 'load_checkpoint_safely',
    'mmengine_checkpoint_allowlist'
]
