"""Import checkpoints of the DGConv reference implementation.

The reference ``G_ResNet`` (seed 001, d-li14/dgconv.pytorch) stores a
torchvision-style ResNet whose 3x3 convs are ``DGConv2d`` modules holding
``gate``, ``conv.weight`` and two constant buffers ``D``/``I``. Its layout
(stride in the 3x3 conv, 1x1 downsample + BN) is mmdet's 'pytorch' style, so
the import renames keys only.
"""
from typing import Dict, Tuple

import torch

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
    if not any(k.endswith('conv2.gate') for k in state_dict):
        raise KeyError('no "layerX.Y.conv2.gate" keys: this is not a state '
                       'dict of the reference G_ResNet')
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
