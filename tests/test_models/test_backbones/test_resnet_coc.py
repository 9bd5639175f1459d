import pytest
import torch
from mmdet.models.backbones import ResNet
from mmdet.registry import MODELS as MMDET_MODELS
from mmengine.registry import DefaultScope

from mmdgconv.models import CoCConv2d, ResNetCoC


def test_error_paths():
    with pytest.raises(KeyError, match='invalid depth 42'):
        ResNetCoC(depth=42)
    with pytest.raises(ValueError, match='coc_stages has 2 entries'):
        ResNetCoC(depth=18, coc_stages=(True, False))
    with pytest.raises(ValueError, match="type='CoC'"):
        ResNetCoC(depth=18, coc_cfg=dict(type='DGConv'))
    with pytest.raises(ValueError, match='sa must be'):
        ResNetCoC(depth=18, coc_cfg=dict(sa=0))


@pytest.mark.parametrize('depth,num_coc', [(18, 1 + 16), (34, 1 + 32),
                                           (50, 1 + 16), (101, 1 + 33),
                                           (152, 1 + 50)])
def test_official_placement_and_shapes(depth, num_coc):
    model = ResNetCoC(depth=depth, base_channels=16).eval()
    layers = model.coc_layers()
    assert len(layers) == num_coc  # the stem and every 3x3 conv
    assert layers[0] is model.conv1 and layers[0].super_size == (5, 5)
    assert all(layer.kernel_size == (3, 3) for layer in layers[1:])
    for module in model.modules():  # 1x1 convs stay plain
        if isinstance(module, CoCConv2d) and module.kernel_size == (1, 1):
            assert not module.with_coc
    expansion = 1 if depth < 50 else 4
    outs = model(torch.rand(1, 3, 64, 64))
    assert [tuple(o.shape) for o in outs] == [
        (1, 16 * expansion * 2**i, 16 // 2**i, 16 // 2**i) for i in range(4)
    ]


def test_stage_and_stem_selection():
    model = ResNetCoC(depth=18, coc_stages=(False, True, False, True),
                      coc_stem=False)
    assert type(model.conv1) is torch.nn.Conv2d
    assert type(model.layer1[0].conv1) is torch.nn.Conv2d
    assert model.layer2[0].conv1.with_coc
    assert type(model.layer3[0].conv2) is torch.nn.Conv2d
    assert model.layer4[1].conv2.with_coc


def test_same_shapes_as_resnet_apart_from_coc_parameters():
    ours = {k: v.shape for k, v in ResNetCoC(depth=50).state_dict().items()}
    theirs = {k: v.shape for k, v in ResNet(depth=50).state_dict().items()}
    extra = {k for k in ours if k not in theirs}
    assert all(k.rsplit('.', 1)[1] in (
        'super_weight', 'super_norm_weight', 'super_norm_bias',
        'final_norm_weight', 'final_norm_bias') for k in extra)
    assert any(k.endswith('final_norm_weight') for k in extra)
    assert all(ours[k] == shape for k, shape in theirs.items())


def test_frozen_stages_and_norm_eval():
    model = ResNetCoC(depth=18, frozen_stages=1, norm_eval=True).train()
    assert not model.norm1.training
    for param in list(model.conv1.parameters()) + list(
            model.layer1.parameters()):
        assert not param.requires_grad
    assert all(p.requires_grad for p in model.layer2.parameters())


def test_deploy_backbone_equivalence_and_strict_load():
    model = ResNetCoC(depth=18, base_channels=16).eval()
    x = torch.rand(2, 3, 48, 48)
    before = model(x)
    model.switch_to_deploy()
    after = model(x)
    for a, b in zip(before, after):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)
    deployed = ResNetCoC(depth=18, base_channels=16, deploy=True).eval()
    deployed.load_state_dict(model.state_dict(), strict=True)
    for a, b in zip(before, deployed(x)):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)


def test_built_from_mmdet_scope_with_with_cp_and_syncbn():
    with DefaultScope.overwrite_default_scope('mmdet'):
        model = MMDET_MODELS.build(
            dict(type='mmdgconv.ResNetCoC', depth=18, with_cp=True,
                 norm_cfg=dict(type='SyncBN')))
    assert isinstance(model, ResNetCoC)
    assert type(model.layer1[0].bn1).__name__ == 'SyncBatchNorm'
