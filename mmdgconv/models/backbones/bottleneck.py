"""A ResNet/ResNeXt bottleneck whose convs are built once, through hooks.

mmdet's ResNeXt bottleneck lets its parent build every conv and norm at the
ResNet width, then builds them again at the ResNeXt width, and it pops
``fallback_on_stride`` out of a ``dcn`` dict that every block shares. This
block builds each layer once at its final width, copies the dicts it edits,
and exposes ``_build_conv1/2/3`` so that a backbone replaces exactly the
convs it changes. ``forward`` is mmdet's.
"""
import copy
import math

from mmcv.cnn import build_conv_layer, build_norm_layer
from mmdet.models.backbones.resnet import Bottleneck as _MMDetBottleneck
from mmengine.model import BaseModule
from torch import nn


class Bottleneck(_MMDetBottleneck):
    """Bottleneck block for ResNet (``groups=1``) and ResNeXt.

    Args:
        inplanes (int): Input channels.
        planes (int): Base channels of the block; the output has
            ``planes * 4``.
        groups (int): ResNeXt cardinality; 1 gives a ResNet block.
            Default: 1.
        base_width (int): ResNeXt width per group at ``base_channels``.
            Default: 4.
        base_channels (int): The backbone's base channels. Default: 64.
        stride (int): Stride of the block. Default: 1.
        dilation (int): Dilation of the 3x3 conv. Default: 1.
        downsample (nn.Module, optional): Downsample of the identity.
        style (str): 'pytorch' (stride in the 3x3 conv) or 'caffe' (stride
            in the first 1x1 conv). Default: 'pytorch'.
        with_cp (bool): Use gradient checkpointing. Default: False.
        conv_cfg (dict, optional): Config of the convs. Default: None.
        norm_cfg (dict): Config of the norms. Default: dict(type='BN').
        dcn (dict, optional): Config of a deformable 3x3 conv.
        plugins (list[dict], optional): mmdet block plugins.
        init_cfg (dict | list[dict], optional): Initialisation config.
    """

    expansion = 4

    def __init__(self,
                 inplanes,
                 planes,
                 groups=1,
                 base_width=4,
                 base_channels=64,
                 stride=1,
                 dilation=1,
                 downsample=None,
                 style='pytorch',
                 with_cp=False,
                 conv_cfg=None,
                 norm_cfg=dict(type='BN'),
                 dcn=None,
                 plugins=None,
                 init_cfg=None):
        # The parent's __init__ would build every layer at the ResNet width;
        # only its forward and plugin helpers are reused.
        BaseModule.__init__(self, init_cfg)
        if style not in ('pytorch', 'caffe'):
            raise ValueError(f"style must be 'pytorch' or 'caffe', got "
                             f'{style!r}')
        if dcn is not None and not isinstance(dcn, dict):
            raise TypeError(f'dcn must be None or a dict, got {type(dcn)}')
        self.inplanes = inplanes
        self.planes = planes
        self.groups = groups
        self.stride = stride
        self.dilation = dilation
        self.style = style
        self.with_cp = with_cp
        self.conv_cfg = conv_cfg
        self.norm_cfg = norm_cfg
        self.dcn = copy.deepcopy(dcn)
        self.with_dcn = dcn is not None
        self.plugins = plugins
        self.with_plugins = plugins is not None
        self.conv1_stride, self.conv2_stride = (
            (1, stride) if style == 'pytorch' else (stride, 1))
        self.width = planes if groups == 1 else math.floor(
            planes * (base_width / base_channels)) * groups

        self.norm1_name, norm1 = build_norm_layer(
            norm_cfg, self.width, postfix=1)
        self.norm2_name, norm2 = build_norm_layer(
            norm_cfg, self.width, postfix=2)
        self.norm3_name, norm3 = build_norm_layer(
            norm_cfg, planes * self.expansion, postfix=3)
        self.conv1 = self._build_conv1()
        self.add_module(self.norm1_name, norm1)
        self.conv2 = self._build_conv2()
        self.add_module(self.norm2_name, norm2)
        self.conv3 = self._build_conv3()
        self.add_module(self.norm3_name, norm3)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

        if self.with_plugins:
            positions = ('after_conv1', 'after_conv2', 'after_conv3')
            unknown = [p['position'] for p in plugins
                       if p['position'] not in positions]
            if unknown:
                raise ValueError(f'plugin positions {unknown} are not among '
                                 f'{positions}')
            channels = (self.width, self.width, planes * self.expansion)
            for position, in_channels in zip(positions, channels):
                cfgs = [p['cfg'] for p in plugins if p['position'] == position]
                setattr(self, f'{position}_plugins', cfgs)
                setattr(self, f'{position}_plugin_names',
                        self.make_block_plugins(in_channels, cfgs))

    def _build_conv1(self) -> nn.Module:
        """The first 1x1 conv: ``inplanes -> width``."""
        return build_conv_layer(
            self.conv_cfg,
            self.inplanes,
            self.width,
            kernel_size=1,
            stride=self.conv1_stride,
            bias=False)

    def _build_conv2(self) -> nn.Module:
        """The 3x3 conv: ``width -> width``, grouped, maybe deformable."""
        cfg = self.conv_cfg
        if self.with_dcn and not self.dcn.pop('fallback_on_stride', False):
            if self.conv_cfg is not None:
                raise ValueError('conv_cfg must be None when dcn is set')
            cfg = self.dcn
        return build_conv_layer(
            cfg,
            self.width,
            self.width,
            kernel_size=3,
            stride=self.conv2_stride,
            padding=self.dilation,
            dilation=self.dilation,
            groups=self.groups,
            bias=False)

    def _build_conv3(self) -> nn.Module:
        """The last 1x1 conv: ``width -> planes * 4``."""
        return build_conv_layer(
            self.conv_cfg,
            self.width,
            self.planes * self.expansion,
            kernel_size=1,
            bias=False)
