"""PED-ResNet: ResNet whose block convs are PEDConv dynamic convolutions.

Paper: Hou and Kung, "Parameter Efficient Dynamic Convolution via Tensor
Decomposition", BMVC 2021.
"""
import copy

import torch
from mmdet.models.backbones.resnet import BasicBlock, Bottleneck, ResNet
from mmdet.models.layers import ResLayer
from torch import Tensor, nn
from torch.nn.modules.batchnorm import _BatchNorm

from mmdgconv.models.layers import PEDConv2d
from mmdgconv.models.layers.batch_norm_affine import BatchNormAffineCache
from mmdgconv.registry import MODELS
from .backbone_mixin import BackboneMixin

#: The released layer's setting: rank 1, a C_in/16 generator, multiplicative
#: modulation, logit noise 0.1 in training. The released training always adds
#: the info-max term (0.001 * sum of the layers' MSE); the PED configs turn it
#: on with ``info_max=True`` and ``PEDInfoMaxHook``. It is off here because a
#: decoder without the hook would get no gradient.
DEFAULT_PED_CFG = dict(
    type='PEDConv',
    rank=1,
    reduction=16,
    mode='multiplicative',
    noise_std=0.1,
    info_max=False,
    info_max_weight=0.001)


def _has_hooks(module: nn.Module) -> bool:
    return bool(module._forward_hooks or module._forward_pre_hooks
                or nn.modules.module._global_forward_hooks
                or nn.modules.module._global_forward_pre_hooks)


def relu_of(block: nn.Module):
    """The block's activation as a function: ``Tensor.relu_`` where it is a
    hook-free in-place ``nn.ReLU`` (mmdet's blocks build one), sparing a
    module call per use at inference; the module itself otherwise."""
    relu = block.relu
    if type(relu) is nn.ReLU and relu.inplace and not _has_hooks(relu):
        return Tensor.relu_
    return relu


def conv_norm(conv: nn.Module, norm: nn.Module, x: Tensor,
              affines: BatchNormAffineCache) -> Tensor:
    """``norm(conv(x))``. At inference a PEDConv followed by an eval-mode
    BatchNorm applies the norm along with its own output scaling: one pass
    fewer over the activations, none at all where its factors fold into the
    kernel (see
    :meth:`~mmdgconv.models.layers.PEDConv2d.forward_with_affine`). Not
    where either module has forward hooks, which would then not run, nor
    when traced for ONNX: onnxruntime runs a BatchNormalization node faster
    than the folded arithmetic (``bench_pedconv.py``'s onnxruntime rows)."""
    if (isinstance(conv, PEDConv2d) and not torch.is_grad_enabled()
            and not torch.jit.is_tracing() and not _has_hooks(conv)
            and not _has_hooks(norm)):
        affine = affines(norm)
        if affine is not None:
            return conv.forward_with_affine(x, *affine)
    return norm(conv(x))


class _PEDBlockMixin:
    """What both PED blocks add to mmdet's: ``ped_cfg`` builds the convs,
    and the eval norms' maps (:func:`conv_norm`) are kept per block."""

    def __init__(self, *args, ped_cfg=None, **kwargs):
        if ped_cfg is not None:
            kwargs['conv_cfg'] = ped_cfg
        super().__init__(*args, **kwargs)
        self._norm_affines = BatchNormAffineCache()

    def train(self, mode: bool = True):
        if mode:  # training moves the running statistics
            self._norm_affines.clear()
        return super().train(mode)


class PEDBasicBlock(_PEDBlockMixin, BasicBlock):
    """Basic block whose two 3x3 convs are PEDConv (``ped_cfg`` given).

    The downsample is built by ``ResLayer`` with the stage's ``conv_cfg``,
    so it stays static. At inference (no autograd) each conv applies the
    eval-mode norm after it itself (:func:`conv_norm`); the result is
    mmdet's ``BasicBlock.forward``, up to rounding.
    """

    def forward(self, x: Tensor) -> Tensor:
        if torch.is_grad_enabled():
            return super().forward(x)
        affines, relu = self._norm_affines, relu_of(self)
        out = relu(conv_norm(self.conv1, self.norm1, x, affines))
        out = conv_norm(self.conv2, self.norm2, out, affines)
        identity = x if self.downsample is None else self.downsample(x)
        return relu(out.add_(identity))


class PEDBottleneck(_PEDBlockMixin, Bottleneck):
    """Bottleneck whose three convs are PEDConv (``ped_cfg`` given).

    At inference (no autograd, no plugins) each conv applies the eval-mode
    norm after it itself (:func:`conv_norm`); the result is mmdet's
    ``Bottleneck.forward``, up to rounding.
    """

    def forward(self, x: Tensor) -> Tensor:
        if torch.is_grad_enabled() or self.with_plugins:
            return super().forward(x)
        affines, relu = self._norm_affines, relu_of(self)
        out = relu(conv_norm(self.conv1, self.norm1, x, affines))
        out = relu(conv_norm(self.conv2, self.norm2, out, affines))
        out = conv_norm(self.conv3, self.norm3, out, affines)
        identity = x if self.downsample is None else self.downsample(x)
        return relu(out.add_(identity))


@MODELS.register_module()
class PEDResNet(BackboneMixin, ResNet):
    """ResNet with parameter-efficient dynamic convolutions (PEDConv).

    Placement as the paper: all three bottleneck convs in ResNet-50/101,
    both 3x3 convs of the basic blocks in ResNet-18/34; the stem and the
    downsample stay static. Norm weights inside the blocks start at 0.5 (the
    official initialisation) unless weights are loaded from a checkpoint.

    Args:
        depth (int): Depth, from {18, 34, 50, 101}.
        ped_cfg (dict, optional): Overrides of :data:`DEFAULT_PED_CFG`, the
            options of :class:`~mmdgconv.models.layers.PEDConv2d`.
        ped_stages (Sequence[bool]): Which stages use PEDConv. Default: all.
        return_tuple (bool, optional): False returns a tensor for a single
            output index (mmaction2's TSN). Default: None, False when built
            in mmaction2's scope and True elsewhere.
        **kwargs: The mmdet ResNet interface (``out_indices, frozen_stages,
            norm_cfg, norm_eval, with_cp, style, plugins, init_cfg``, ...).

    Example:
        >>> import torch
        >>> from mmdgconv.models import PEDResNet
        >>> model = PEDResNet(depth=18).eval()
        >>> outs = model(torch.rand(2, 3, 64, 64))
        >>> [tuple(o.shape) for o in outs]
        [(2, 64, 16, 16), (2, 128, 8, 8), (2, 256, 4, 4), (2, 512, 2, 2)]
    """

    arch_settings = {
        18: (PEDBasicBlock, (2, 2, 2, 2)),
        34: (PEDBasicBlock, (3, 4, 6, 3)),
        50: (PEDBottleneck, (3, 4, 6, 3)),
        101: (PEDBottleneck, (3, 4, 23, 3)),
    }
    block_norm_init = 0.5

    def __init__(self,
                 depth,
                 ped_cfg=None,
                 ped_stages=(True, True, True, True),
                 **kwargs):
        if depth not in self.arch_settings:
            raise KeyError(f'invalid depth {depth} for PEDResNet, expected '
                           f'one of {sorted(self.arch_settings)}')
        num_stages = kwargs.get('num_stages', 4)
        if len(ped_stages) != num_stages:
            raise ValueError(
                f'ped_stages has {len(ped_stages)} entries, but the backbone '
                f'has num_stages={num_stages}')
        cfg = copy.deepcopy(DEFAULT_PED_CFG)
        cfg.update(copy.deepcopy(ped_cfg or {}))
        if cfg.get('type') != 'PEDConv':
            raise ValueError(f"ped_cfg must build type='PEDConv', got "
                             f"{cfg.get('type')!r}")
        # Read by make_res_layer, which the parent's __init__ calls.
        self.ped_cfg = cfg
        self.ped_stages = tuple(ped_stages)
        super().__init__(depth=depth, **kwargs)

    def make_res_layer(self, **kwargs):
        """Pack a stage's blocks into a ``ResLayer``."""
        stage = len(self.res_layers)  # the stage being built
        return ResLayer(
            ped_cfg=self.ped_cfg if self.ped_stages[stage] else None,
            **kwargs)

    def init_weights(self):
        super().init_weights()
        init_cfg = self.init_cfg if isinstance(self.init_cfg, dict) else {}
        if init_cfg.get('type') == 'Pretrained':
            return  # the checkpoint's norms are the ones to keep
        for name in self.res_layers:
            for module in getattr(self, name).modules():
                if isinstance(module, _BatchNorm) and module.affine:
                    module.weight.data.fill_(self.block_norm_init)
        for layer in self.ped_layers():  # Kaiming init must not touch these
            layer.reset_generator()

    def ped_layers(self):
        """All PEDConv layers, in network order.

        Returns:
            list[PEDConv2d]: The layers.
        """
        return [m for m in self.modules() if isinstance(m, PEDConv2d)]
