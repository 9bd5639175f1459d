"""Behaviour shared by mmdgconv's ResNet-family backbones."""


class BackboneMixin:
    """Output format and ``train()`` for subclasses of mmdet's ResNet.

    Place it before the mmdet class in the bases (``class X(BackboneMixin,
    ResNet)``).

    Args:
        return_tuple (bool): Return a tuple of feature maps, as mmdet's
            necks expect. False returns the tensor itself when there is a
            single ``out_indices`` entry, as mmaction2's ``Recognizer2D``
            expects from a backbone outside mmcls/mmpretrain (TSN).
            Default: True.
    """

    def __init__(self, *args, return_tuple=True, **kwargs):
        self.return_tuple = return_tuple
        super().__init__(*args, **kwargs)

    def forward(self, x):
        outs = super().forward(x)
        if not self.return_tuple and len(outs) == 1:
            return outs[0]
        return outs

    def train(self, mode=True):
        """Set training mode, keeping frozen stages and ``norm_eval``."""
        super().train(mode)
        return self  # mmdet's ResNet.train returns None; nn.Module's self
