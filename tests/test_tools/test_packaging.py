"""mmdgconv packaged as the OpenMMLab toolboxes package themselves: a built
wheel carries the configs, tools and model index in ``mmdgconv/.mim``, so
another project's config can start from ``mmdgconv::...``, and the compiled
operators (``mmdgconv._ext``)."""
import os
import os.path as osp
import shutil
import subprocess
import sys
import textwrap
import zipfile

import pytest

REPO = osp.abspath(osp.join(osp.dirname(__file__), '..', '..'))


@pytest.mark.slow
def test_a_built_wheel_ships_the_configs(tmp_path):
    # Built from a copy: the build replaces .mim's links with copies.
    source = tmp_path / 'source'
    ignore = shutil.ignore_patterns('__pycache__', '*.pyc', '.mim',
                                    '*.egg-info')
    for name in ('mmdgconv', 'configs', 'tools'):
        shutil.copytree(osp.join(REPO, name), source / name, ignore=ignore)
    for name in ('setup.py', 'MANIFEST.in', 'README.md', 'model-index.yml'):
        shutil.copy(osp.join(REPO, name), source / name)
    dist = tmp_path / 'dist'
    subprocess.run(
        [sys.executable, '-m', 'pip', 'wheel', '--no-deps',
         '--no-build-isolation', '--wheel-dir', str(dist), str(source)],
        check=True, capture_output=True)
    wheel, = dist.glob('mmdgconv-*.whl')
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
    for path in ('configs/g_resnext/faster-rcnn_g-resnext50-32x4d_fpn_1x_'
                 'coco.py', 'configs/coc/metafile.yml', 'model-index.yml',
                 'tools/train.py', 'tools/slurm_train.sh'):
        assert f'mmdgconv/.mim/{path}' in names, path
    assert not any('__pycache__' in name for name in names)
    # with the compiled operators, built against this torch
    assert any(name.startswith('mmdgconv/_ext.') and name.endswith('.so')
               for name in names), sorted(names)[:20]

    # Installed on its own (no editable checkout on the path), the config
    # prefix resolves into the installed package.
    site = tmp_path / 'site'
    subprocess.run(
        [sys.executable, '-m', 'pip', 'install', '--no-deps', '--no-index',
         '--target', str(site), str(wheel)], check=True, capture_output=True)
    project = tmp_path / 'project'
    project.mkdir()
    (project / 'my_detector.py').write_text(textwrap.dedent("""\
        _base_ = 'mmdgconv::g_resnext/faster-rcnn_g-resnext50-32x4d_fpn_1x_coco.py'
        train_cfg = dict(max_epochs=3)
        """))
    script = textwrap.dedent(f"""\
        import os.path as osp
        import mmdgconv
        from mmengine.config import Config
        assert mmdgconv.__file__.startswith({str(site)!r}), mmdgconv.__file__
        from mmdgconv.compiled_ops import compiled_ops
        cfg = Config.fromfile({str(project / 'my_detector.py')!r})
        print(cfg.model.backbone.type, cfg.train_cfg.max_epochs,
              cfg.default_scope, compiled_ops().__file__.startswith(
                  {str(site)!r}))
        """)
    env = dict(os.environ, PYTHONPATH=str(site))
    result = subprocess.run([sys.executable, '-c', script], env=env,
                            cwd=str(tmp_path), capture_output=True,
                            text=True)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.split() == ['mmdgconv.GResNeXt', '3', 'mmdet',
                                     'True']
