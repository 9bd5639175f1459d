from .dg_conv2d import DGConv2d, binarize_gates, kronecker_relationship

__all__ = ['DGConv2d', 'binarize_gates', 'kronecker_relationship']
