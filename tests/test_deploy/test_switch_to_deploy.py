"""The deploy protocol: every module with a training form has an idempotent
``switch_to_deploy``; one model-level call applies them; the deployed
structure builds again from its constructor with the converted shapes."""
import copy

import pytest
import torch
from mmengine.config import Config

from mmdgconv.deploy import build_model, switch_to_deploy
from mmdgconv.models import DGConv2d, GResNeXt
from mmdgconv.models.backbones.g_resnext import GBottleneck
from mmdgconv.models.layers import CoCConv2d

SMALL = dict(depth=50, groups=4, base_width=4, base_channels=16)


def _randomised(model, seed=0):
    """Random gate patterns (interleaved groups included) and norm
    statistics away from the identity, so folding is visible."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, DGConv2d) and module.has_gates:
                module.gate.copy_(
                    torch.rand(module.gate.shape, generator=generator) - 0.5)
            if isinstance(module, torch.nn.BatchNorm2d):
                module.running_mean.uniform_(-0.5, 0.5, generator=generator)
                module.running_var.uniform_(0.5, 2, generator=generator)
                module.weight.uniform_(0.5, 1.5, generator=generator)
                module.bias.uniform_(-0.5, 0.5, generator=generator)
    return model.eval()


def test_bottleneck_folds_its_permutation_and_is_idempotent():
    torch.manual_seed(0)
    model = _randomised(GResNeXt(**SMALL))
    # A block whose random gates interleave the groups (a permutation to
    # fold), whatever the seed gives.
    block = next(b for b in model.modules() if isinstance(b, GBottleneck)
                 and not b.conv2.group_layout().identity)
    x = torch.rand(1, block.conv1.in_channels, 8, 8)
    with torch.no_grad():
        expected = block(x)
    layout = block.conv2.group_layout()
    block.switch_to_deploy()
    conv2 = block.conv2
    assert type(conv2) is torch.nn.Conv2d and conv2.groups == layout.groups
    assert block.deployed_form() == (layout.groups, False)
    state = copy.deepcopy(block.state_dict())
    block.switch_to_deploy()  # a second call changes nothing
    assert block.conv2 is conv2
    for key, value in block.state_dict().items():
        assert torch.equal(value, state[key]), key
    with torch.no_grad():
        torch.testing.assert_close(block(x), expected, rtol=1e-5, atol=1e-5)


def test_backbone_records_a_structure_its_constructor_builds_exactly():
    """deploy=True builds every deployed shape, so the converted state loads
    strictly with no resizing; a GroupNorm block keeps its permutation."""
    torch.manual_seed(0)
    model = GResNeXt(**SMALL)
    model.layer2[1].bn2 = torch.nn.GroupNorm(4, 32)  # cannot fold into it
    _randomised(model, seed=3)
    x = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        expected = model(x)
    model.switch_to_deploy()
    assert model.deploy
    assert len(model.deploy_groups) == 16 == len(model.deploy_permuted)
    assert model.deploy_permuted.count(True) == 1
    assert model.deploy_permuted[4]  # layer2[1]: 3 blocks of layer1 first
    learned = [block.conv2.groups if type(block.conv2) is torch.nn.Conv2d
               else block.conv2.num_groups for block in model.modules()
               if isinstance(block, GBottleneck)]
    assert model.deploy_groups == learned
    state = model.state_dict()

    deployed = GResNeXt(**SMALL, deploy=True,
                        deploy_groups=model.deploy_groups,
                        deploy_permuted=model.deploy_permuted)
    deployed.layer2[1].bn2 = torch.nn.GroupNorm(4, 32)
    # Built with exactly the converted shapes, before any loading.
    built = deployed.state_dict()
    assert set(built) == set(state)
    for key, value in state.items():
        assert built[key].shape == value.shape, key
    deployed.load_state_dict(state, strict=True)
    deployed.eval()
    with torch.no_grad():
        for a, b in zip(deployed(x), expected):
            torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize('kwargs, message', [
    (dict(deploy=True), 'deploy=True needs deploy_groups'),
    (dict(deploy_groups=[0] * 16), 'reconvert the training checkpoint'),
    (dict(deploy_groups=[4] * 16, deploy_permuted=[False] * 3),
     'deploy_permuted has 3 entries'),
    (dict(deploy_groups=[4] * 15), 'fewer entries'),
    (dict(deploy_groups=[4] * 17), 'more than the backbone has'),
])
def test_deploy_arguments_are_checked(kwargs, message):
    with pytest.raises(ValueError, match=message):
        GResNeXt(**SMALL, **kwargs)


def test_dgconv_deploy_constructor_takes_its_groups():
    layer = DGConv2d(32, 64, 3, padding=1, deploy=True, deployed_groups=8)
    assert layer.weight.shape == (64, 4, 3, 3) and layer.num_groups == 8
    with pytest.raises(ValueError, match='deployed_groups=6 must divide'):
        DGConv2d(32, 64, 3, deploy=True, deployed_groups=6)


def _tiny_g_resnext_classifier():
    cfg = Config.fromfile('configs/g_resnext/g-resnext50-32x4d_8xb32_in1k.py')
    cfg.model.backbone.update(groups=4, base_width=4, base_channels=16,
                              init_cfg=None)
    cfg.model.head.in_channels = 512
    return build_model(cfg)


class _StrayLayers(torch.nn.Module):
    """A DGConv and a CoC layer on the last feature map, before the neck:
    layers no backbone owns."""

    def __init__(self, neck):
        super().__init__()
        self.dgconv = DGConv2d(512, 512, 1, bias=False)
        self.coc = CoCConv2d(512, 512, 3, padding=1)
        self.neck = neck

    def forward(self, feats):
        last = self.coc(self.dgconv(feats[-1]))
        return self.neck(tuple(feats[:-1]) + (last, ))


def test_model_level_switch_reaches_every_training_form():
    """A classifier with a G-ResNeXt backbone and a stray DGConv and CoC
    layer in its head: the backbone switches its own blocks, the stray
    layers switch on their own, outputs stay, and a second call is a no-op.
    """
    torch.manual_seed(0)
    model = _tiny_g_resnext_classifier()
    model.neck = _StrayLayers(model.neck)
    _randomised(model, seed=1)
    x = torch.rand(2, 3, 64, 64)
    with torch.no_grad():
        expected = model(x, mode='tensor')
    names = switch_to_deploy(model)
    assert names == ['backbone', 'neck.dgconv', 'neck.coc']
    assert not any(isinstance(m, DGConv2d) and m.has_gates
                   for m in model.modules())
    assert all(m.deploy for m in model.modules()
               if isinstance(m, CoCConv2d))
    with torch.no_grad():
        torch.testing.assert_close(model(x, mode='tensor'), expected,
                                   rtol=1e-4, atol=1e-4)
    state = copy.deepcopy(model.state_dict())
    switch_to_deploy(model)
    for key, value in model.state_dict().items():
        assert torch.equal(value, state[key]), key
