"""G-ResNeXt: ResNeXt whose bottleneck 3x3 convs learn their groups.

Paper: Zhang et al., "Differentiable Learning-to-Group Channels via Groupable
Convolutional Neural Networks", ICCV 2019. https://arxiv.org/abs/1908.05867
"""
import math

import torch
from mmdet.models.backbones.resnext import ResNeXt
from mmdet.models.layers import ResLayer
from torch import nn

from mmdgconv.models.layers import DGConv2d
from mmdgconv.registry import MODELS
from .backbone_mixin import BackboneMixin
from .bottleneck import Bottleneck


class GBottleneck(Bottleneck):
    """ResNeXt bottleneck whose 3x3 conv is a :class:`DGConv2d`.

    Args:
        with_dgconv (bool): Use DGConv for the 3x3 conv; otherwise the
            stock grouped conv. Default: True.
        **kwargs: As :class:`~mmdgconv.models.backbones.bottleneck.Bottleneck`.
    """

    def __init__(self, *args, with_dgconv=True, deploy_groups=None,
                 **kwargs):
        self.with_dgconv = with_dgconv
        # The backbone's iterator over the learned group counts (deploy form):
        # blocks take their entry in construction, i.e. network, order.
        self.deploy_groups = deploy_groups
        super().__init__(*args, **kwargs)

    def _build_conv2(self):
        if not self.with_dgconv:
            return super()._build_conv2()
        if self.deploy_groups is not None:
            groups = next(self.deploy_groups, None)
            if groups is None:
                raise ValueError('deploy_groups has fewer entries than the '
                                 'backbone has DGConv layers')
            if groups == 0:
                # Not foldable (plugins or a non-BatchNorm norm around it):
                # a grouped conv between fixed permutations, both read from
                # the checkpoint.
                return DGConv2d(
                    self.width,
                    self.width,
                    kernel_size=3,
                    stride=self.conv2_stride,
                    padding=self.dilation,
                    dilation=self.dilation,
                    bias=False,
                    deploy=True)
            # The converted form: the learned grouping as a static grouped
            # conv whose channel order the converter folded into the
            # neighbouring 1x1 convs and norms.
            return nn.Conv2d(
                self.width,
                self.width,
                kernel_size=3,
                stride=self.conv2_stride,
                padding=self.dilation,
                dilation=self.dilation,
                groups=groups,
                bias=False)
        if self.with_dcn:
            raise ValueError('dcn and DGConv both replace the 3x3 conv; '
                             'disable one of them for this stage')
        # Gates start at random signs (as the paper): ``groups`` only sets
        # the widths, the grouping itself is learned.
        return DGConv2d(
            self.width,
            self.width,
            kernel_size=3,
            stride=self.conv2_stride,
            padding=self.dilation,
            dilation=self.dilation,
            bias=False)


@MODELS.register_module()
class GResNeXt(BackboneMixin, ResNeXt):
    """G-ResNeXt backbone: ResNeXt with learned channel groups (DGConv).

    Only the bottleneck 3x3 convs are DGConv; the stem, the 1x1 convs and
    the downsample stay static, as in the paper. Widths follow ResNeXt, so
    at 32 groups every layer has the shape and effective parameter count of
    mmdet's ResNeXt (the stored 3x3 weights are dense, because the grouping
    may change while training).

    Args:
        depth (int): Depth, from {50, 101, 152}.
        groups (int): ResNeXt cardinality that sets the widths; also the
            reference grouping of the resource budget. Default: 32.
        base_width (int): Width per group. Default: 4.
        stage_with_dgconv (Sequence[bool]): Which stages use DGConv; the
            others use the stock grouped conv. Default: all.
        freeze_groups (bool): Keep every gate fixed (no gradient), e.g. when
            fine-tuning a pre-trained G-ResNeXt on detection or video, where
            the paper fixes the learned groups. Default: False.
        deploy_groups (Sequence[int], optional): The deployed form written
            by ``tools/model_converters/dgconv_to_static.py``: each DGConv,
            in network order, becomes an ``nn.Conv2d`` with this many
            groups, or, for 0, a ``DGConv2d(deploy=True)`` (a grouped conv
            between fixed channel permutations, for a block whose
            permutation could not be folded). Default: None.
        return_tuple (bool, optional): False returns a tensor for a single
            output index (mmaction2's TSN). Default: None, False when built
            in mmaction2's scope and True elsewhere.
        **kwargs: The mmdet ResNet interface: ``in_channels, stem_channels,
            base_channels, num_stages, strides, dilations, out_indices,
            style, deep_stem, avg_down, frozen_stages, conv_cfg, norm_cfg,
            norm_eval, dcn, stage_with_dcn, plugins, with_cp,
            zero_init_residual, init_cfg``.

    Example:
        >>> import torch
        >>> from mmdgconv.models import GResNeXt
        >>> model = GResNeXt(depth=50, groups=4, base_width=4,
        ...                  base_channels=16, out_indices=(0, 1, 2, 3))
        >>> outs = model(torch.rand(1, 3, 64, 64))
        >>> [tuple(o.shape) for o in outs]
        [(1, 64, 16, 16), (1, 128, 8, 8), (1, 256, 4, 4), (1, 512, 2, 2)]
    """

    arch_settings = {
        50: (GBottleneck, (3, 4, 6, 3)),
        101: (GBottleneck, (3, 4, 23, 3)),
        152: (GBottleneck, (3, 8, 36, 3))
    }

    def __init__(self,
                 depth,
                 groups=32,
                 base_width=4,
                 stage_with_dgconv=(True, True, True, True),
                 freeze_groups=False,
                 deploy_groups=None,
                 **kwargs):
        if depth not in self.arch_settings:
            raise KeyError(f'invalid depth {depth} for GResNeXt, expected one '
                           f'of {sorted(self.arch_settings)}')
        num_stages = kwargs.get('num_stages', 4)
        if len(stage_with_dgconv) != num_stages:
            raise ValueError(
                f'stage_with_dgconv has {len(stage_with_dgconv)} entries, but '
                f'the backbone has num_stages={num_stages}')
        self._check_dgconv_widths(groups, base_width,
                                  kwargs.get('base_channels', 64),
                                  stage_with_dgconv)
        # Read by make_res_layer, which the parent's __init__ calls.
        self.stage_with_dgconv = tuple(stage_with_dgconv)
        self.freeze_groups = freeze_groups
        self.deploy_groups = None if deploy_groups is None else list(
            deploy_groups)
        groups_iter = None if deploy_groups is None else iter(
            self.deploy_groups)
        self._deploy_groups_iter = groups_iter
        super().__init__(
            depth=depth, groups=groups, base_width=base_width, **kwargs)
        del self._deploy_groups_iter
        if groups_iter is not None and next(groups_iter, None) is not None:
            raise ValueError(
                f'deploy_groups has {len(self.deploy_groups)} entries, more '
                'than the backbone has DGConv layers')
        if freeze_groups:
            for layer in self.dgconv_layers():
                layer.gate.requires_grad_(False)

    @staticmethod
    def _check_dgconv_widths(groups, base_width, base_channels,
                             stage_with_dgconv) -> None:
        """Name ``groups``/``base_width`` (not a deep DGConv2d) when the
        stages' 3x3 widths cannot carry DGConv's one-gate-per-bit U."""
        for label, value in (('groups', groups), ('base_width', base_width),
                             ('base_channels', base_channels)):
            if not isinstance(value, int) or value < 1:
                raise ValueError(f'GResNeXt: {label} must be a positive '
                                 f'integer, got {value!r}')
        # The bottleneck's width: floor(planes * base_width / base_channels)
        # * groups, with planes = base_channels * 2**stage.
        widths = [
            math.floor(base_channels * 2**stage * base_width / base_channels)
            * groups for stage in range(len(stage_with_dgconv))
        ]
        bad = [w for w, dg in zip(widths, stage_with_dgconv)
               if dg and w & (w - 1)]
        if bad:
            raise ValueError(
                f'GResNeXt: groups={groups} and base_width={base_width} give '
                f'3x3 widths {widths}, and DGConv needs powers of two '
                f'(one gate per channel-index bit; {bad} are not). Choose '
                'both as powers of two, e.g. groups=32, base_width=4, or '
                'disable DGConv in those stages with stage_with_dgconv.')

    def make_res_layer(self, **kwargs):
        """Pack a stage's blocks into a ``ResLayer``."""
        # The parent appends each stage's name after building it.
        stage = len(self.res_layers)
        return ResLayer(
            groups=self.groups,
            base_width=self.base_width,
            base_channels=self.base_channels,
            with_dgconv=self.stage_with_dgconv[stage],
            deploy_groups=self._deploy_groups_iter,
            **kwargs)

    def forward(self, x):
        # Gathering every DGConv's weight blocks before the stem defers
        # their dense weight gradients to the end of the backward, past the
        # memory peak (see DGConv2d.gather_blocks_early).
        # Nothing to defer in inference; under torch.compile each DGConv is
        # one custom op that gathers its own blocks.
        if not torch.is_grad_enabled() or torch.compiler.is_compiling():
            return super().forward(x)
        layers = self.dgconv_layers()
        for layer in layers:
            layer.gather_blocks_early()
        try:
            return super().forward(x)
        finally:  # a layer this forward did not reach keeps no blocks
            for layer in layers:
                layer.drop_early_blocks()

    def dgconv_layers(self):
        """All DGConv layers, in network order.

        Returns:
            list[DGConv2d]: The layers.
        """
        return [m for m in self.modules() if isinstance(m, DGConv2d)]
