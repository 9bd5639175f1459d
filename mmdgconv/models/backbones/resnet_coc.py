"""ResNet-CoC: ResNet whose stem and 3x3 convs are convolutions of
convolutions.

Paper: Zhao, Li and Wu, "Convolution of Convolution: Let Kernels Spatially
Collaborate", CVPR 2022.
https://openaccess.thecvf.com/content/CVPR2022/html/Zhao_Convolution_of_Convolution_Let_Kernels_Spatially_Collaborate_CVPR_2022_paper.html
"""
import copy

from mmdet.models.backbones import ResNet

from mmdgconv.models.layers import CoCConv2d
from mmdgconv.registry import MODELS
from .backbone_mixin import BackboneMixin

#: The released code's ResNet setting (its ``resnet*_coc`` configs): a
#: weight-standardised super conv followed by LayerNorm, LayerNorm on the
#: final kernels, plain 1x1 convs.
DEFAULT_COC_CFG = dict(
    type='CoC',
    sa=2,
    sk_plus=2,
    skip=True,
    dilat=True,
    wsc=True,
    share='ci',
    ws='LN',
    both=True,
    sbn='LN',
    c1x1=False)


@MODELS.register_module()
class ResNetCoC(BackboneMixin, ResNet):
    """ResNet with CoC in the 7x7 stem and every 3x3 conv.

    The convs are built through mmdet's stock blocks with
    ``conv_cfg=coc_cfg``; because ``c1x1=False`` keeps 1x1 convs plain, this
    is exactly the official placement. ``deploy=True`` builds every CoC layer
    in its re-parameterised form, a plain conv, so a one-line deploy config
    loads a checkpoint converted by ``tools/model_converters/
    coc_to_static.py`` with ``strict=True``.

    Args:
        depth (int): Depth, from {18, 34, 50, 101, 152}.
        coc_cfg (dict, optional): Overrides of :data:`DEFAULT_COC_CFG`, the
            options of :class:`~mmdgconv.models.layers.CoCConv2d`.
        coc_stages (Sequence[bool]): Which stages use CoC. Default: all.
        coc_stem (bool): Whether the stem uses CoC. Default: True.
        deploy (bool): Build the deployed (plain conv) form. Default: False.
        return_tuple (bool, optional): False returns a tensor for a single
            output index (mmaction2's TSN). Default: None, False when built
            in mmaction2's scope and True elsewhere.
        **kwargs: The mmdet ResNet interface (``out_indices, frozen_stages,
            norm_cfg, norm_eval, with_cp, style, dcn, plugins, init_cfg``,
            ...). ``conv_cfg`` still applies to the stages and the stem that
            do not use CoC.

    Example:
        >>> import torch
        >>> from mmdgconv.models import ResNetCoC
        >>> model = ResNetCoC(depth=18).eval()
        >>> outs = model(torch.rand(1, 3, 64, 64))
        >>> [tuple(o.shape) for o in outs]
        [(1, 64, 16, 16), (1, 128, 8, 8), (1, 256, 4, 4), (1, 512, 2, 2)]
    """

    def __init__(self,
                 depth,
                 coc_cfg=None,
                 coc_stages=(True, True, True, True),
                 coc_stem=True,
                 deploy=False,
                 **kwargs):
        num_stages = kwargs.get('num_stages', 4)
        if len(coc_stages) != num_stages:
            raise ValueError(
                f'coc_stages has {len(coc_stages)} entries, but the backbone '
                f'has num_stages={num_stages}')
        cfg = copy.deepcopy(DEFAULT_COC_CFG)
        cfg.update(copy.deepcopy(coc_cfg or {}))
        if cfg.get('type') != 'CoC':
            raise ValueError(f"coc_cfg must build type='CoC', got "
                             f"{cfg.get('type')!r}")
        cfg['deploy'] = deploy
        # Read by _make_stem_layer and make_res_layer, which the parent's
        # __init__ calls.
        self.coc_cfg = cfg
        self.coc_stages = tuple(coc_stages)
        self.coc_stem = coc_stem
        self.deploy = deploy
        super().__init__(depth=depth, **kwargs)

    def _make_stem_layer(self, in_channels, stem_channels):
        conv_cfg = self.conv_cfg
        if self.coc_stem:  # the parent builds the stem from self.conv_cfg
            self.conv_cfg = self.coc_cfg
        try:
            super()._make_stem_layer(in_channels, stem_channels)
        finally:
            self.conv_cfg = conv_cfg

    def make_res_layer(self, **kwargs):
        """Pack a stage's blocks into a ``ResLayer``."""
        if self.coc_stages[len(self.res_layers)]:  # the stage being built
            kwargs['conv_cfg'] = self.coc_cfg
        return super().make_res_layer(**kwargs)

    def coc_layers(self):
        """The layers that apply CoC (not the plain 1x1 ones).

        Returns:
            list[CoCConv2d]: In network order.
        """
        return [
            m for m in self.modules()
            if isinstance(m, CoCConv2d) and m.with_coc
        ]

    def switch_to_deploy(self):
        """Re-parameterise every CoC layer (and weight-standardised 1x1,
        ``c1x1_ws``) into a plain conv."""
        for layer in self.modules():
            if isinstance(layer, CoCConv2d):
                layer.switch_to_deploy()
        self.deploy = True
