"""``type='mmdgconv.X'`` from other toolboxes' configs, with nothing but
``custom_imports`` (checked in fresh interpreters, as a user's run is)."""
import subprocess
import sys
import textwrap

import pytest

BUILD = textwrap.dedent('''
    import sys, tempfile, os
    from mmengine.config import Config
    from mmengine.registry import init_default_scope
    scope, registry_module = sys.argv[1], sys.argv[2]
    text = (f"default_scope = '{scope}'\\n"
            "custom_imports = dict(imports=['mmdgconv'], "
            "allow_failed_imports=False)\\n"
            "backbone = dict(type='mmdgconv.GResNeXt', depth=50, groups=4, "
            "base_width=4, base_channels=16)\\n"
            "conv = dict(type='DGConv')\\n")
    path = os.path.join(tempfile.mkdtemp(), 'cfg.py')
    open(path, 'w').write(text)
    cfg = Config.fromfile(path)
    init_default_scope(scope)
    MODELS = __import__(registry_module, fromlist=['MODELS']).MODELS
    backbone = MODELS.build(cfg.backbone)
    from mmcv.cnn import build_conv_layer
    conv = build_conv_layer(cfg.conv, 16, 16, 3)
    print(type(backbone).__module__, type(backbone).__name__,
          type(conv).__name__)
''')


@pytest.mark.parametrize('scope,registry', [
    ('mmdet', 'mmdet.registry'),
    ('mmaction', 'mmaction.registry'),
    ('mmpretrain', 'mmpretrain.registry'),
])
def test_scoped_names_resolve_with_custom_imports_only(scope, registry):
    result = subprocess.run([sys.executable, '-c', BUILD, scope, registry],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.split()[-3:] == [
        'mmdgconv.models.backbones.g_resnext', 'GResNeXt', 'DGConv2d'
    ]


def test_registries_are_children_of_mmengine_roots():
    from mmengine.registry import HOOKS as ROOT_HOOKS
    from mmengine.registry import MODELS as ROOT_MODELS

    from mmdgconv.registry import HOOKS, MODELS
    assert MODELS.parent is ROOT_MODELS and MODELS.scope == 'mmdgconv'
    assert HOOKS.parent is ROOT_HOOKS
    assert 'mmdgconv.models' in MODELS._locations
    assert MODELS.get('GResNeXt').__name__ == 'GResNeXt'
    assert HOOKS.get('ResourceConstraintHook').__name__ == \
        'ResourceConstraintHook'
