"""Record the effective contents of every config in ``configs/``.

``config_contents.json`` maps each config (path relative to the repository)
to :func:`mmdgconv.testing.config_contents` of ``Config.fromfile(path)``.
``tests/test_configs/test_config_contents.py`` checks that the configs still
load to exactly these contents, so a change to the way the configs are
written (shared base files, inheritance) cannot change what they train.

Run it only when a config is meant to change, and review the diff of the
JSON file:

    python tests/data/generate_config_contents.py
"""
import glob
import json
import os.path as osp

from mmengine.config import Config

from mmdgconv.testing import config_contents

REPO = osp.abspath(osp.join(osp.dirname(__file__), '..', '..'))
FIXTURE = osp.join(REPO, 'tests', 'data', 'config_contents.json')


def config_paths():
    """Every config users run: ``configs/<folder>/*.py`` (the shared
    fragments under ``configs/_base_/`` are not configs of their own)."""
    return sorted(
        osp.relpath(path, REPO)
        for path in glob.glob(osp.join(REPO, 'configs', '*', '*.py'))
        if osp.basename(osp.dirname(path)) != '_base_')


def main():
    contents = {
        path: config_contents(Config.fromfile(osp.join(REPO, path)))
        for path in config_paths()
    }
    with open(FIXTURE, 'w') as f:
        json.dump(contents, f, indent=1, sort_keys=True)
        f.write('\n')
    print(f'wrote {len(contents)} configs to {osp.relpath(FIXTURE, REPO)}')


if __name__ == '__main__':
    main()
