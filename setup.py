"""Install mmdgconv. The OpenMMLab stack it needs is installed by
``tools/install.sh`` (mmcv must be built from source with its ops)."""
import os
import os.path as osp
import shutil
import sys

from setuptools import find_packages, setup

REPO = osp.dirname(osp.abspath(__file__))
#: What OpenMMLab packages ship in ``<package>/.mim``: mmengine resolves
#: ``mmdgconv::path/to/config.py`` in ``.mim/configs``, and ``mim train
#: mmdgconv CONFIG`` runs ``.mim/tools/train.py``.
MIM_CONTENT = ('configs', 'tools', 'model-index.yml')


def read_version():
    namespace = {}
    with open(osp.join(osp.dirname(__file__), 'mmdgconv', 'version.py')) as f:
        exec(f.read(), namespace)
    return namespace['__version__']


def bundle_mim_content():
    """Put the configs, tools and model index into ``mmdgconv/.mim``, as the
    OpenMMLab toolboxes do: links for an editable install (edits show
    through), copies for a wheel or an sdist (the package stands alone).
    Any other command leaves ``.mim`` as it is."""
    commands = set(sys.argv[1:])
    if commands & {'develop', 'editable_wheel'}:
        link = os.name != 'nt'
    elif commands & {'bdist_wheel', 'sdist', 'build', 'install'}:
        link = False
    else:
        return
    mim = osp.join(REPO, 'mmdgconv', '.mim')
    os.makedirs(mim, exist_ok=True)
    for name in MIM_CONTENT:
        source, target = osp.join(REPO, name), osp.join(mim, name)
        if osp.islink(target) or osp.isfile(target):
            os.remove(target)
        elif osp.isdir(target):
            shutil.rmtree(target)
        if not osp.exists(source):
            continue
        if link:
            os.symlink(osp.relpath(source, mim), target)
        elif osp.isdir(source):
            shutil.copytree(source, target, ignore=shutil.ignore_patterns(
                '__pycache__', '*.pyc'))
        else:
            shutil.copyfile(source, target)


def extensions():
    """The compiled operators in ``mmdgconv/csrc`` (``mmdgconv._ext``).
    Skipped, leaving their Python paths to run, where torch is not
    importable (an isolated build) or ``MMDGCONV_WITH_EXT=0``."""
    if os.environ.get('MMDGCONV_WITH_EXT', '1') == '0':
        return {}
    try:
        from torch.utils.cpp_extension import BuildExtension, CppExtension
    except ImportError:
        print('mmdgconv: torch is not importable here, so the compiled '
              'operators (mmdgconv._ext) are not built; build without '
              'isolation (pip install --no-build-isolation --use-pep517 -e .) '
              'to get them')
        return {}
    sources = sorted(
        osp.join('mmdgconv', 'csrc', name)
        for name in os.listdir(osp.join(REPO, 'mmdgconv', 'csrc'))
        if name.endswith('.cpp'))
    # C++20: torch 2.14's headers need it.
    extension = CppExtension(
        'mmdgconv._ext', sources, extra_compile_args=[
            '-O3', '-std=c++20', '-g0'],
        extra_link_args=['-s'])
    return dict(ext_modules=[extension],
                cmdclass={'build_ext': BuildExtension})


bundle_mim_content()
setup(
    name='mmdgconv',
    version=read_version(),
    description='Backbones that learn their own structure (DGConv, CoC, '
    'PEDConv, G-CNN) for mmdet, mmaction2 and mmpretrain',
    long_description=open('README.md').read()
    if osp.exists('README.md') else '',
    long_description_content_type='text/markdown',
    packages=find_packages(include=['mmdgconv', 'mmdgconv.*']),
    include_package_data=True,
    python_requires='>=3.8',
    install_requires=[
        'mmengine==0.10.7', 'mmcv==2.1.0', 'mmdet==3.3.0',
        'mmpretrain==1.2.0', 'mmaction2==1.2.0'
    ],
    license='Apache-2.0',
    zip_safe=False,
    **extensions())
