"""Import checkpoints of the DGConv reference implementation.

The reference ``G_ResNet`` (the DGConv authors' code,
d-li14/dgconv.pytorch) stores a torchvision-style ResNet whose 3x3 convs are
``DGConv2d`` modules holding ``gate``, ``conv.weight`` and two constant
buffers ``D``/``I``. Its layout (stride in the 3x3 conv, 1x1 downsample +
BN) is mmdet's 'pytorch' style, so the import renames keys only.
"""
from typing import Dict, Tuple

import torch

#: Key prefixes of OpenMMLab models (mmdgconv's own checkpoints included).
_OPENMMLAB_PREFIXES = ('backbone.', 'neck.', 'head.', 'cls_head.',
                       'rpn_head.', 'roi_head.', 'bbox_head.',
                       'data_preprocessor.')

#: Buffers of the reference DGConv2d that are constants, not weights.
_REFERENCE_CONSTANTS = ('.D', '.I')


def reference_to_mmpretrain(
        state_dict: Dict[str, torch.Tensor]
) -> Tuple[Dict[str, torch.Tensor], Dict[str, torch.Tensor]]:
    """Map a reference ``G_ResNet`` state dict to mmdgconv's names.

    Args:
        state_dict (dict): The reference model's state dict (a
            ``module.`` prefix from DataParallel is accepted).

    Returns:
        tuple[dict, dict]: The classifier state dict (``backbone.*`` and
        ``head.fc.*``, as mmpretrain's ``ImageClassifier`` with
        ``LinearClsHead``) and the backbone-only state dict (``backbone.*``,
        for ``init_cfg=dict(type='Pretrained', prefix='backbone.')``).

    Raises:
        KeyError: The state dict is not a reference G_ResNet's.
    """
    keys = [k[len('module.'):] if k.startswith('module.') else k
            for k in state_dict]
    if any(k.startswith(_OPENMMLAB_PREFIXES) for k in keys):
        raise KeyError(
            'it is not a reference G_ResNet checkpoint: its keys start with '
            '"backbone." as in mmdgconv and OpenMMLab models, so it is '
            'already in mmdgconv\'s format; load it directly (load_from, or '
            "init_cfg=dict(type='Pretrained')) instead of importing it")
    missing = [what for what, present in (
        ('"layerX.Y.conv2.gate"', any(k.endswith('.conv2.gate')
                                      for k in keys)),
        ('"layerX.Y.conv2.conv.weight"', any(k.endswith('.conv2.conv.weight')
                                             for k in keys)),
        ('"fc.weight"', 'fc.weight' in keys)) if not present]
    if missing:
        raise KeyError('it is not a reference G_ResNet checkpoint: it has no '
                       + ', no '.join(missing) + ' keys')
    classifier = {}
    for key, value in state_dict.items():
        key = key[len('module.'):] if key.startswith('module.') else key
        if key.endswith(_REFERENCE_CONSTANTS):
            continue
        if key.startswith('fc.'):
            classifier['head.' + key] = value
            continue
        classifier['backbone.' + key.replace('.conv2.conv.', '.conv2.')] = \
            value
    backbone = {k: v for k, v in classifier.items()
                if k.startswith('backbone.')}
    return classifier, backbone
