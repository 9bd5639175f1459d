from .coc_conv2d import CoCConv2d, super_kernel_geometry
from .dg_conv2d import DGConv2d, binarize_gates, kronecker_relationship
from .dg_conv2d_grouped import GroupLayout, grouped_dgconv
from .dgconv_early_gather import enable_early_block_gather
from .p4_conv2d import (GroupConv2d, GroupPool, GroupSpatialPool, P4ConvP4,
                        P4ConvZ2, P4MConvP4, P4MConvP4M, P4MConvZ2)
from .ped_conv2d import PEDConv2d

__all__ = [
    'CoCConv2d', 'DGConv2d', 'GroupConv2d', 'GroupLayout', 'GroupPool',
    'GroupSpatialPool', 'P4ConvP4', 'P4ConvZ2', 'P4MConvP4', 'P4MConvP4M',
    'P4MConvZ2', 'PEDConv2d', 'binarize_gates', 'enable_early_block_gather',
    'grouped_dgconv',
    'kronecker_relationship', 'super_kernel_geometry'
]
