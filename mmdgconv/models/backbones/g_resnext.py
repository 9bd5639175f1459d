"""G-ResNeXt: ResNeXt whose bottleneck 3x3 convs learn their groups.

Paper: Zhang et al., "Differentiable Learning-to-Group Channels via Groupable
Convolutional Neural Networks", ICCV 2019. https://arxiv.org/abs/1908.05867
"""
import math
from typing import List, Optional, Tuple

import torch
from mmdet.models.backbones.resnext import ResNeXt
from mmdet.models.layers import ResLayer
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from mmdgconv.models.layers import DGConv2d, enable_early_block_gather
from mmdgconv.registry import MODELS
from .backbone_mixin import BackboneMixin
from .bottleneck import Bottleneck


class GBottleneck(Bottleneck):
    """ResNeXt bottleneck whose 3x3 conv is a :class:`DGConv2d`.

    Args:
        with_dgconv (bool): Use DGConv for the 3x3 conv; otherwise the
            stock grouped conv. Default: True.
        deploy_form (Iterator, optional): The backbone's iterator over the
            deployed structure (see :class:`GResNeXt`); the block takes the
            next ``(groups, permuted)`` entry and builds its deployed 3x3
            conv. Default: None (the training form).
        **kwargs: As :class:`~mmdgconv.models.backbones.bottleneck.Bottleneck`.
    """

    def __init__(self, *args, with_dgconv=True, deploy_form=None, **kwargs):
        self.with_dgconv = with_dgconv
        # Blocks take their entry in construction, i.e. network, order.
        self._deploy_form = deploy_form
        super().__init__(*args, **kwargs)
        del self._deploy_form

    def _build_conv2(self):
        if not self.with_dgconv:
            return super()._build_conv2()
        if self.with_dcn:
            raise ValueError('dcn and DGConv both replace the 3x3 conv; '
                             'disable one of them for this stage')
        conv_args = dict(kernel_size=3, stride=self.conv2_stride,
                         padding=self.dilation, dilation=self.dilation,
                         bias=False)
        if self._deploy_form is not None:
            entry = next(self._deploy_form, None)
            if entry is None:
                raise ValueError('deploy_groups has fewer entries than the '
                                 'backbone has DGConv layers')
            groups, permuted = entry
            if permuted:
                # The learned grouping between fixed channel permutations
                # (buffers of the checkpoint): see switch_to_deploy.
                return DGConv2d(self.width, self.width, deploy=True,
                                deployed_groups=groups, **conv_args)
            # The permutations folded into the neighbours: a plain ResNeXt
            # 3x3 conv with the learned cardinality.
            return nn.Conv2d(self.width, self.width, groups=groups,
                             **conv_args)
        # Gates start at random signs (as the paper): ``groups`` only sets
        # the widths, the grouping itself is learned.
        return DGConv2d(self.width, self.width, **conv_args)

    # ------------------------------------------------------------------
    # Deployment
    # ------------------------------------------------------------------
    def foldable(self) -> bool:
        """Whether the DGConv's channel permutations can move into the
        block's own 1x1 convs and BatchNorms (not across plugins, a
        GroupNorm or a conv that is not a plain 1x1)."""
        def plain_1x1(conv):
            return type(conv) is nn.Conv2d and conv.groups == 1 and \
                conv.kernel_size == (1, 1)

        return (not self.with_plugins and plain_1x1(self.conv1)
                and plain_1x1(self.conv3) and self.conv1.bias is None
                and isinstance(self.norm1, _BatchNorm)
                and isinstance(self.norm2, _BatchNorm))

    def deployed_form(self) -> Optional[Tuple[int, bool]]:
        """``(groups, permuted)`` of the deployed 3x3 conv, or None while it
        is still a DGConv with gates (or not a DGConv block)."""
        conv = self.conv2
        if not self.with_dgconv:
            return None
        if isinstance(conv, DGConv2d):
            return (conv.num_groups, True) if conv.deploy else None
        return conv.groups, False

    @torch.no_grad()
    def switch_to_deploy(self) -> None:
        """Turn the DGConv into a static conv of its learned grouping;
        idempotent.

        In a foldable block (see :meth:`foldable`) the input channel order
        moves into conv1's output channels and norm1, the output order into
        norm2 and conv3's input channels, and the 3x3 conv becomes an
        ``nn.Conv2d(groups=G)``: a plain ResNeXt block, nothing permuted at
        run time. Otherwise the DGConv keeps the permutations inside
        (:meth:`DGConv2d.switch_to_deploy`).
        """
        conv = self.conv2
        if not (isinstance(conv, DGConv2d) and conv.has_gates):
            return
        if not self.foldable():
            conv.switch_to_deploy()
            return
        layout = conv.group_layout()
        static = nn.Conv2d(conv.in_channels, conv.out_channels,
                           conv.kernel_size, conv.stride, conv.padding,
                           conv.dilation, groups=layout.groups, bias=False)
        static.weight.data = layout.diagonal_blocks(conv.weight).clone()
        if not layout.identity:
            in_order, out_order = layout.in_order, layout.out_order
            self.conv1.weight.data = self.conv1.weight.data[in_order]
            _permute_norm(self.norm1, in_order)
            _permute_norm(self.norm2, out_order)
            self.conv3.weight.data = self.conv3.weight.data[:, out_order]
        self.conv2 = static


def _permute_norm(norm: _BatchNorm, order: torch.Tensor) -> None:
    for name in ('weight', 'bias', 'running_mean', 'running_var'):
        tensor = getattr(norm, name)
        if tensor is not None:
            tensor.data = tensor.data[order]


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
        deploy (bool): Build the deployed form that :meth:`switch_to_deploy`
            gives and ``tools/model_converters/dgconv_to_static.py`` writes
            into its config, with exactly the converted checkpoint's shapes.
            Needs ``deploy_groups``. Default: False.
        deploy_groups (Sequence[int], optional): The learned number of
            groups of each DGConv layer, in network order: each becomes an
            ``nn.Conv2d`` with that many groups (its channel permutations
            folded into the block's 1x1 convs and norms). Given alone, it
            implies ``deploy=True``. Default: None.
        deploy_permuted (Sequence[bool], optional): Per DGConv layer, whether
            its permutations stay in the layer (a block with plugins or a
            GroupNorm, where they cannot fold): that layer becomes a
            ``DGConv2d(deploy=True)`` of its groups. Default: none.
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
                 deploy=False,
                 deploy_groups=None,
                 deploy_permuted=None,
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
        deploy_form = self._check_deploy_form(deploy, deploy_groups,
                                              deploy_permuted)
        self.deploy = deploy_form is not None
        self.deploy_groups = None if deploy_form is None else [
            groups for groups, _ in deploy_form]
        self.deploy_permuted = None if deploy_form is None else [
            permuted for _, permuted in deploy_form]
        self._deploy_form = None if deploy_form is None else iter(
            deploy_form)
        super().__init__(
            depth=depth, groups=groups, base_width=base_width, **kwargs)
        remaining = self._deploy_form
        del self._deploy_form
        if remaining is not None and next(remaining, None) is not None:
            raise ValueError(
                f'deploy_groups has {len(self.deploy_groups)} entries, more '
                'than the backbone has DGConv layers')
        if freeze_groups:
            for layer in self.dgconv_layers():
                if layer.has_gates:  # deployed layers have none
                    layer.gate.requires_grad_(False)
        # The dense weight gradients after the memory peak (see
        # enable_early_block_gather).
        enable_early_block_gather(self)

    @staticmethod
    def _check_deploy_form(deploy, deploy_groups, deploy_permuted
                           ) -> Optional[List[Tuple[int, bool]]]:
        """The deployed structure as ``(groups, permuted)`` pairs, or None
        for the training form."""
        if deploy_groups is None:
            if deploy or deploy_permuted is not None:
                raise ValueError(
                    'GResNeXt: deploy=True needs deploy_groups, the learned '
                    'groups per DGConv layer that tools/model_converters/'
                    'dgconv_to_static.py writes into its config')
            return None
        groups = [int(g) for g in deploy_groups]
        if 0 in groups:
            raise ValueError(
                'GResNeXt: deploy_groups holds 0, the marker of a layer with '
                'its permutation inside as an older dgconv_to_static.py '
                'wrote it; reconvert the training checkpoint with '
                'tools/model_converters/dgconv_to_static.py')
        if any(g < 1 for g in groups):
            raise ValueError(f'GResNeXt: deploy_groups must be positive, got '
                             f'{groups}')
        permuted = [False] * len(groups) if deploy_permuted is None else [
            bool(p) for p in deploy_permuted]
        if len(permuted) != len(groups):
            raise ValueError(
                f'GResNeXt: deploy_permuted has {len(permuted)} entries and '
                f'deploy_groups {len(groups)}; give one per DGConv layer')
        return list(zip(groups, permuted))

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
            deploy_form=self._deploy_form,
            **kwargs)

    def switch_to_deploy(self) -> None:
        """Turn every block's DGConv into a static conv of its learned
        grouping (:meth:`GBottleneck.switch_to_deploy`) and record the
        deployed structure in ``deploy_groups`` and ``deploy_permuted``, the
        arguments that build this form directly; idempotent."""
        blocks = [m for m in self.modules()
                  if isinstance(m, GBottleneck) and m.with_dgconv]
        for block in blocks:
            block.switch_to_deploy()
        forms = [block.deployed_form() for block in blocks]
        self.deploy_groups = [groups for groups, _ in forms]
        self.deploy_permuted = [permuted for _, permuted in forms]
        self.deploy = True

    def dgconv_layers(self):
        """All DGConv layers, in network order.

        Returns:
            list[DGConv2d]: The layers.
        """
        return [m for m in self.modules() if isinstance(m, DGConv2d)]
