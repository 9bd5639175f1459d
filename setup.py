"""Install mmdgconv. The OpenMMLab stack it needs is installed by
``tools/install.sh`` (mmcv must be built from source with its ops)."""
import os.path as osp

from setuptools import find_packages, setup


def read_version():
    namespace = {}
    with open(osp.join(osp.dirname(__file__), 'mmdgconv', 'version.py')) as f:
        exec(f.read(), namespace)
    return namespace['__version__']


setup(
    name='mmdgconv',
    version=read_version(),
    description='Backbones that learn their own structure (DGConv, CoC, '
    'PEDConv, G-CNN) for mmdet, mmaction2 and mmpretrain',
    long_description=open('README.md').read()
    if osp.exists('README.md') else '',
    long_description_content_type='text/markdown',
    packages=find_packages(include=['mmdgconv', 'mmdgconv.*']),
    python_requires='>=3.8',
    install_requires=[
        'mmengine==0.10.7', 'mmcv==2.1.0', 'mmdet==3.3.0',
        'mmpretrain==1.2.0', 'mmaction2==1.2.0'
    ],
    license='Apache-2.0',
    zip_safe=False)
