"""Recording a checkpoint's SHA-256 in its meta as it is written."""
from mmengine.hooks import Hook

from mmdgconv.registry import HOOKS
from mmdgconv.utils.checkpoint_integrity import record_digest


@HOOKS.register_module()
class CheckpointDigestHook(Hook):
    """Store the SHA-256 of every checkpoint's content in ``meta['sha256']``.

    mmdgconv's checkpoint loader (used by ``load_from``, ``--resume``,
    ``tools/test.py`` and the converters) checks it and names the file when
    the content has changed since it was written: flipped bytes in tensor
    data otherwise load without error. ``tools/train.py`` adds this hook to
    every run; with a toolbox's own ``train.py``, add it in the config::

        custom_hooks = [dict(type='mmdgconv.CheckpointDigestHook')]
    """

    # After every other hook has added its part of the checkpoint.
    priority = 'LOWEST'

    def before_save_checkpoint(self, runner, checkpoint: dict) -> None:
        record_digest(checkpoint)
