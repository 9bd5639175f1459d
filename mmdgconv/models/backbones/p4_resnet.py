"""P4ResNet: a rotation (and flip) equivariant ResNet built from G-convs.

Paper: Cohen and Welling, "Group Equivariant Convolutional Networks", ICML
2016. https://arxiv.org/abs/1602.07576
"""
import math

import torch.nn as nn
from mmcv.cnn import build_norm_layer
from mmengine.model import BaseModule
from torch.nn.modules.batchnorm import _BatchNorm

from mmdgconv.models.layers import GroupConv2d, GroupPool, GroupSpatialPool
from mmdgconv.models.layers.p4_conv2d import group_size
from mmdgconv.registry import MODELS
from .backbone_mixin import (built_for_mmaction, format_outputs,
                             resolve_return_tuple)


def _group_norm_cfg(norm_cfg: dict) -> dict:
    """Norms with statistics shared over the group axis: a 3-d BatchNorm
    treats (|H|, height, width) alike."""
    cfg = dict(norm_cfg)
    if cfg['type'] in ('BN', 'BN2d'):
        cfg['type'] = 'BN3d'
    return cfg


class P4BasicBlock(BaseModule):
    """Two 3x3 G-convs with a residual connection."""

    expansion = 1

    def __init__(self, inplanes, planes, stride=1, downsample=None,
                 group='p4', norm_cfg=dict(type='BN'), init_cfg=None):
        super().__init__(init_cfg)
        self.conv1 = GroupConv2d(inplanes, planes, 3, stride=stride,
                                 padding=1, bias=False, group=group)
        self.norm1 = build_norm_layer(norm_cfg, planes)[1]
        self.conv2 = GroupConv2d(planes, planes, 3, padding=1, bias=False,
                                 group=group)
        self.norm2 = build_norm_layer(norm_cfg, planes)[1]
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x):
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.norm1(self.conv1(x)))
        out = self.norm2(self.conv2(out))
        return self.relu(out + identity)


class P4Bottleneck(BaseModule):
    """1x1, 3x3 (strided) and 1x1 G-convs with a residual connection."""

    expansion = 4

    def __init__(self, inplanes, planes, stride=1, downsample=None,
                 group='p4', norm_cfg=dict(type='BN'), init_cfg=None):
        super().__init__(init_cfg)
        self.conv1 = GroupConv2d(inplanes, planes, 1, bias=False, group=group)
        self.norm1 = build_norm_layer(norm_cfg, planes)[1]
        self.conv2 = GroupConv2d(planes, planes, 3, stride=stride, padding=1,
                                 bias=False, group=group)
        self.norm2 = build_norm_layer(norm_cfg, planes)[1]
        self.conv3 = GroupConv2d(planes, planes * 4, 1, bias=False,
                                 group=group)
        self.norm3 = build_norm_layer(norm_cfg, planes * 4)[1]
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x):
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.norm1(self.conv1(x)))
        out = self.relu(self.norm2(self.conv2(out)))
        out = self.norm3(self.conv3(out))
        return self.relu(out + identity)


@MODELS.register_module()
class P4ResNet(BaseModule):
    """An equivariant ResNet on p4 or p4m whose outputs are group-pooled.

    Every conv is a G-conv (the stem lifts the image to the group), norms
    share their statistics over the group axis, and spatial pooling and
    strides are symmetric, so rotating the input by 90 degrees (and, for
    p4m, flipping it) rotates every feature map and permutes the group axis.
    Each output stage is pooled over the group axis into a plain
    (B, C, H, W) map, which rotates with the input and which a stock FPN and
    heads consume. Equivariance is exact for odd spatial sizes at every
    stage (e.g. 65, 129 or 193 pixels).

    Args:
        depth (int): 18 or 50.
        group (str): 'p4' or 'p4m'. Default: 'p4'.
        in_channels (int): Image channels. Default: 3.
        base_channels (int): The ResNet width the model is compared with.
            Default: 64.
        width_divisor (float, optional): Channels are ``base_channels /
            width_divisor`` per group element. The default, ``sqrt(|H|)``,
            keeps the parameter count close to the ResNet's.
        strides (Sequence[int]): First-block stride of each stage.
            Default: (1, 2, 2, 2).
        out_indices (Sequence[int], optional): Output stages. Default: None,
            the last one in mmaction2's scope (as mmaction2's ResNet) and
            all four elsewhere.
        frozen_stages (int): Stages to freeze (the stem is stage 0); -1
            freezes nothing. Default: -1.
        norm_cfg (dict): Norm config; 'BN' becomes a 3-d BatchNorm over the
            group axis and space. Default: dict(type='BN').
        norm_eval (bool): Keep norms in eval mode while training.
            Default: True.
        group_pool (str): 'max' or 'mean' pooling of the outputs over the
            group axis. Default: 'max'.
        return_tuple (bool, optional): False returns a tensor for a single
            output index (mmaction2's TSN). Default: None, False when built
            in mmaction2's scope and True elsewhere.
        init_cfg (dict | list[dict], optional): Initialisation config.

    Example:
        >>> import torch
        >>> from mmdgconv.models import P4ResNet
        >>> model = P4ResNet(depth=18).eval()
        >>> [tuple(o.shape) for o in model(torch.rand(1, 3, 65, 65))]
        [(1, 32, 17, 17), (1, 64, 9, 9), (1, 128, 5, 5), (1, 256, 3, 3)]
    """

    arch_settings = {
        18: (P4BasicBlock, (2, 2, 2, 2)),
        50: (P4Bottleneck, (3, 4, 6, 3)),
    }

    def __init__(self,
                 depth,
                 group='p4',
                 in_channels=3,
                 base_channels=64,
                 width_divisor=None,
                 strides=(1, 2, 2, 2),
                 out_indices=None,
                 frozen_stages=-1,
                 norm_cfg=dict(type='BN', requires_grad=True),
                 norm_eval=True,
                 group_pool='max',
                 return_tuple=None,
                 init_cfg=None):
        if init_cfg is None:
            init_cfg = [
                dict(type='Kaiming', layer='GroupConv2d'),
                dict(type='Constant', val=1, layer=['_BatchNorm', 'GroupNorm'])
            ]
        super().__init__(init_cfg)
        if out_indices is None:
            out_indices = (3, ) if built_for_mmaction() else (0, 1, 2, 3)
        if depth not in self.arch_settings:
            raise KeyError(f'invalid depth {depth} for P4ResNet, expected one '
                           f'of {sorted(self.arch_settings)}')
        if len(strides) != 4 or not out_indices or max(out_indices) > 3:
            raise ValueError('P4ResNet has 4 stages: strides needs 4 entries '
                             f'and out_indices values in 0..3, got {strides} '
                             f'and {out_indices}')
        self.depth, self.group = depth, group
        self.out_indices = tuple(out_indices)
        self.return_tuple = resolve_return_tuple(return_tuple)
        self.frozen_stages = frozen_stages
        self.norm_eval = norm_eval
        norm_cfg = _group_norm_cfg(norm_cfg)
        divisor = width_divisor or math.sqrt(group_size(group))
        width = max(1, int(round(base_channels / divisor)))
        block, stage_blocks = self.arch_settings[depth]

        self.conv1 = GroupConv2d(in_channels, width, 7, stride=2, padding=3,
                                 bias=False, group=group, lifting=True)
        self.norm1 = build_norm_layer(norm_cfg, width)[1]
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = GroupSpatialPool(3, 2, padding=1)
        self.res_layers = []
        inplanes = width
        for i, num_blocks in enumerate(stage_blocks):
            planes = width * 2**i
            downsample = None
            if strides[i] != 1 or inplanes != planes * block.expansion:
                downsample = nn.Sequential(
                    GroupConv2d(inplanes, planes * block.expansion, 1,
                                stride=strides[i], bias=False, group=group),
                    build_norm_layer(norm_cfg, planes * block.expansion)[1])
            blocks = [block(inplanes, planes, strides[i], downsample, group,
                            norm_cfg)]
            inplanes = planes * block.expansion
            blocks += [block(inplanes, planes, 1, None, group, norm_cfg)
                       for _ in range(1, num_blocks)]
            name = f'layer{i + 1}'
            self.add_module(name, nn.Sequential(*blocks))
            self.res_layers.append(name)
        self.pool = GroupPool(group_pool)
        self.feat_dim = inplanes
        self._freeze_stages()

    def _freeze_stages(self):
        if self.frozen_stages >= 0:
            for module in (self.conv1, self.norm1):
                module.eval()
                for param in module.parameters():
                    param.requires_grad = False
        for i in range(1, self.frozen_stages + 1):
            layer = getattr(self, f'layer{i}')
            layer.eval()
            for param in layer.parameters():
                param.requires_grad = False

    def forward(self, x):
        x = self.maxpool(self.relu(self.norm1(self.conv1(x))))
        outs = []
        for i, name in enumerate(self.res_layers):
            x = getattr(self, name)(x)
            if i in self.out_indices:
                outs.append(self.pool(x))
        return format_outputs(outs, self.return_tuple)

    def train(self, mode=True):
        """Set training mode, keeping frozen stages and ``norm_eval``."""
        super().train(mode)
        self._freeze_stages()
        if mode and self.norm_eval:
            for module in self.modules():
                if isinstance(module, _BatchNorm):
                    module.eval()
        return self
