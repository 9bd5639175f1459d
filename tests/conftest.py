import os.path as osp

import pytest
import torch

import mmdgconv  # noqa: F401  (applies the compat shims, registers modules)
from mmdgconv.datasets import make_synthetic_coco

REPO_ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
CONFIG_DIR = osp.join(REPO_ROOT, 'configs')

# Two cores: one intra-op thread per test process keeps runs predictable.
torch.set_num_threads(2)


@pytest.fixture(scope='session')
def synthetic_coco(tmp_path_factory):
    """A tiny generated COCO dataset shared by the end-to-end tests."""
    root = str(tmp_path_factory.mktemp('synthetic_coco'))
    return make_synthetic_coco(
        root, num_train=4, num_val=3, image_size=(96, 96), seed=1)


@pytest.fixture(scope='session')
def synthetic_kinetics(tmp_path_factory):
    """A tiny generated Kinetics-format video dataset (real MP4 files)."""
    from mmdgconv.datasets import make_synthetic_kinetics
    root = str(tmp_path_factory.mktemp('synthetic_kinetics'))
    return make_synthetic_kinetics(
        root, videos_per_class=1, val_per_class=1, num_frames=12, size=64,
        seed=2)


@pytest.fixture(autouse=True)
def isolated_default_scope():
    """Each test starts with the default scopes it found: a Runner sets the
    scope of its config (e.g. 'mmaction') process-wide, and backbones built
    later pick their output format by the current scope."""
    from mmengine.registry import DefaultScope
    scopes = DefaultScope._instance_dict.copy()
    yield
    DefaultScope._instance_dict = scopes


@pytest.fixture
def run_tool_in_process(monkeypatch):
    """Run a tool script as ``python SCRIPT ARGS`` would, but in this
    process (no interpreter and import start-up, seconds per run): returns
    a CompletedProcess with its exit code, stdout and stderr (where a
    ``SystemExit`` message goes). For the error paths, whose messages come
    from the tool itself, not from loggers."""
    import contextlib
    import io
    import runpy
    import subprocess
    import sys

    def run(script, *args, cwd=None):
        out, err = io.StringIO(), io.StringIO()
        code = 0
        with monkeypatch.context() as patch:
            patch.setattr(sys, 'argv', [script, *args])
            patch.setattr(sys, 'path', list(sys.path))  # the tool's insert
            if cwd is not None:
                patch.chdir(cwd)
            try:
                with contextlib.redirect_stdout(out), \
                        contextlib.redirect_stderr(err):
                    runpy.run_path(script, run_name='__main__')
            except SystemExit as exit_info:
                if isinstance(exit_info.code, int):
                    code = exit_info.code
                elif exit_info.code is not None:
                    code = 1
                    err.write(f'{exit_info.code}\n')
        return subprocess.CompletedProcess([script, *args], code,
                                           out.getvalue(), err.getvalue())

    return run
