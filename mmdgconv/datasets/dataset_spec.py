"""Reuse a generated dataset only if it is complete and was written with
the same arguments."""
import json
import os
import os.path as osp

SPEC_FILE = 'dataset_spec.json'


def is_complete(root: str, spec: dict) -> bool:
    """Whether ``root`` holds a complete dataset generated from ``spec``.

    A stale or foreign marker is removed, so an interrupted regeneration
    can never be mistaken for a complete one.
    """
    path = osp.join(root, SPEC_FILE)
    if not osp.exists(path):
        return False
    with open(path) as f:
        if json.load(f) == spec:
            return True
    os.remove(path)
    return False


def mark_complete(root: str, spec: dict) -> None:
    """Record ``spec``; written last, once every file is in place."""
    with open(osp.join(root, SPEC_FILE), 'w') as f:
        json.dump(spec, f)
