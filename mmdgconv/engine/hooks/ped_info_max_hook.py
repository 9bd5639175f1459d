"""The information-maximisation loss of PEDConv (the paper's eqs. 5-6).

Paper: Hou and Kung, "Parameter Efficient Dynamic Convolution via Tensor
Decomposition", BMVC 2021.
"""
from mmdgconv.models.layers import PEDConv2d
from mmdgconv.registry import HOOKS
from .loss_term_hook import LossTermHook


@HOOKS.register_module()
class PEDInfoMaxHook(LossTermHook):
    """Add ``loss_infomax = sum_l w_l * MSE_l`` to the training loss.

    Every PEDConv layer built with ``info_max=True`` reconstructs its pooled
    input from the sampled factors; ``MSE_l`` is that reconstruction error
    and ``w_l`` the layer's ``info_max_weight`` (0.001 by default). Like the
    DGConv constraint, it works for any mmdet, mmaction2 or mmpretrain model
    with one config line::

        custom_hooks = [dict(type='mmdgconv.PEDInfoMaxHook')]
    """

    def __init__(self) -> None:
        super().__init__()
        self._layers = []

    def setup(self, model, runner) -> None:
        self._layers = [
            m for m in model.modules()
            if isinstance(m, PEDConv2d) and m.info_max
        ]
        if not self._layers:
            raise RuntimeError(
                f'PEDInfoMaxHook: {type(model).__name__} has no PEDConv layer '
                "with info_max=True; set ped_cfg=dict(info_max=True) in the "
                'backbone or remove the hook.')
        runner.logger.info(
            f'PEDInfoMaxHook: {len(self._layers)} PEDConv decoders')

    def add_terms(self, losses: dict) -> None:
        terms = []
        for layer in self._layers:
            if layer.info_max_loss is not None:
                terms.append(layer.info_max_weight * layer.info_max_loss)
                layer.info_max_loss = None  # consumed: never counted twice
        if terms:
            losses['loss_infomax'] = sum(terms)
