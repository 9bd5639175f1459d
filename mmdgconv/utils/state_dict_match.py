"""Comparing a checkpoint's state dict with the model it is meant for."""
from typing import Dict, Optional


def strip_module_prefix(state_dict: Dict) -> Dict:
    """Drop the ``module.`` prefix (Data)DistributedDataParallel adds."""
    return {
        k[len('module.'):] if k.startswith('module.') else k: v
        for k, v in state_dict.items()
    }


def state_dict_mismatch(expected: Dict, actual: Dict,
                        shown: int = 8) -> Optional[str]:
    """Say how ``actual`` (a checkpoint's) differs from ``expected`` (the
    model's), or None when every key and shape matches.

    Args:
        expected (dict): ``model.state_dict()``.
        actual (dict): The checkpoint's state dict.
        shown (int): Keys listed per kind of difference. Default: 8.

    Returns:
        str or None: E.g. ``'3 missing keys (a, b, c); 1 shape mismatches
        (d: (2,) vs (3,))'``.
    """
    missing = sorted(set(expected) - set(actual))
    unexpected = sorted(set(actual) - set(expected))
    shapes = sorted(
        f'{k}: {tuple(actual[k].shape)} in the checkpoint, '
        f'{tuple(expected[k].shape)} in the model'
        for k in set(expected) & set(actual)
        if hasattr(actual[k], 'shape') and hasattr(expected[k], 'shape')
        and tuple(actual[k].shape) != tuple(expected[k].shape))
    details = []
    for label, keys in (('missing keys', missing),
                        ('unexpected keys', unexpected),
                        ('shape mismatches', shapes)):
        if keys:
            listed = ', '.join(keys[:shown])
            listed += f', ... ({len(keys) - shown} more)' if len(
                keys) > shown else ''
            details.append(f'{len(keys)} {label} ({listed})')
    return '; '.join(details) or None
