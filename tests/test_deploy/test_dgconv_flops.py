"""DGConv's FLOP count (the converter's report): a trained layer counts the
multiply-adds of its learned grouping, nnz(U) of the dense C_in x C_out."""
import torch
import torch.nn as nn

from mmdgconv.deploy.dgconv_static import dgconv_aware_flops
from mmdgconv.models import DGConv2d


def test_a_known_grouping_counts_its_nnz_multiply_adds():
    layer = DGConv2d(16, 32, 3, stride=2, padding=1)
    with torch.no_grad():
        # four gates (min of log2 16, log2 32); two split: G = 4
        layer.gate.copy_(torch.tensor([-1., 1., -1., 1.]))
    assert layer.num_groups == 4 and layer.nnz == 16 * 32 // 4
    model = nn.Sequential(nn.Conv2d(3, 16, 1, bias=False), layer)
    flops = dgconv_aware_flops(model, torch.rand(1, 3, 20, 20))
    # 10 x 10 output pixels, each: 32 outputs x 16/4 inputs x 3 x 3 taps
    assert flops['1'] == 10 * 10 * 32 * (16 // 4) * 9
    assert flops['0'] == 20 * 20 * 16 * 3  # the plain conv, uncorrected
    assert flops[''] == flops['0'] + flops['1']

    # Deployed, mmengine counts the grouped conv itself: the same figure.
    layer.switch_to_deploy()
    from mmengine.analysis import FlopAnalyzer
    analyzer = FlopAnalyzer(model, torch.rand(1, 3, 20, 20))
    analyzer.unsupported_ops_warnings(False)
    assert analyzer.by_module()['1'] == flops['1']
