import importlib.machinery
import sys
import warnings

import pytest

from mmdgconv.compiled_ops import compiled_ops, load_compiled_ops


def test_the_compiled_ops_are_built_here():
    """tools/install.sh builds mmdgconv._ext; without it PEDConv's batch-1
    inference would silently run its slower Python path."""
    ops = compiled_ops()
    assert ops is not None, (
        'mmdgconv._ext is not built: run `bash tools/install.sh`')
    assert callable(ops.ped_rank1_batch1)
    assert compiled_ops() is ops  # loaded once


def test_a_missing_build_is_none_without_a_warning():
    with warnings.catch_warnings():
        warnings.simplefilter('error')
        assert load_compiled_ops('mmdgconv._not_built') is None


def test_a_build_that_does_not_load_warns_and_is_none(tmp_path, monkeypatch):
    """A library that the loader rejects (here not even ELF; in practice a
    build for another torch) is reported, with how to rebuild."""
    package = tmp_path / 'broken_pkg'
    package.mkdir()
    (package / '__init__.py').write_text('')
    suffix = importlib.machinery.EXTENSION_SUFFIXES[0]
    (package / f'_ext{suffix}').write_bytes(b'not a shared library')
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.warns(UserWarning, match=r'broken_pkg\._ext does not load.*'
                      r'tools/install\.sh'):
        assert load_compiled_ops('broken_pkg._ext') is None
    sys.modules.pop('broken_pkg', None)


def test_a_missing_dependency_of_the_module_is_not_hidden(
        tmp_path, monkeypatch):
    """Only the module itself being absent means "not built"."""
    package = tmp_path / 'needs_pkg'
    package.mkdir()
    (package / '__init__.py').write_text('')
    (package / '_ext.py').write_text('import a_module_nobody_has\n')
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(ModuleNotFoundError, match='a_module_nobody_has'):
        load_compiled_ops('needs_pkg._ext')
    sys.modules.pop('needs_pkg', None)
