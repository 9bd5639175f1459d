import pytest
import torch
from mmdet.models.backbones import ResNet
from mmdet.registry import MODELS as MMDET_MODELS
from mmengine.registry import DefaultScope

from mmdgconv.models import PEDConv2d, PEDResNet


def test_error_paths():
    with pytest.raises(KeyError, match='invalid depth 152'):
        PEDResNet(depth=152)
    with pytest.raises(ValueError, match='ped_stages has 3 entries'):
        PEDResNet(depth=18, ped_stages=(True, True, True))
    with pytest.raises(ValueError, match="type='PEDConv'"):
        PEDResNet(depth=18, ped_cfg=dict(type='CoC'))
    with pytest.raises(ValueError, match='reduction=128'):
        PEDResNet(depth=18, ped_cfg=dict(reduction=128))


@pytest.mark.parametrize('depth,num_ped', [(18, 16), (34, 32), (50, 48),
                                           (101, 99)])
def test_placement_and_shapes(depth, num_ped):
    model = PEDResNet(depth=depth, ped_cfg=dict(reduction=4),
                      base_channels=16).eval()
    layers = model.ped_layers()
    assert len(layers) == num_ped
    assert type(model.conv1) is torch.nn.Conv2d  # static stem
    downsample = model.layer2[0].downsample[0]
    assert type(downsample) is torch.nn.Conv2d  # static downsample
    expansion = 1 if depth < 50 else 4
    outs = model(torch.rand(2, 3, 64, 64))
    assert [tuple(o.shape) for o in outs] == [
        (2, 16 * expansion * 2**i, 16 // 2**i, 16 // 2**i) for i in range(4)
    ]


def test_ped_stages_and_base_resnet_shapes():
    model = PEDResNet(depth=50, ped_stages=(False, True, True, False))
    assert type(model.layer1[0].conv2) is torch.nn.Conv2d
    assert isinstance(model.layer2[0].conv1, PEDConv2d)
    assert type(model.layer4[0].conv3) is torch.nn.Conv2d
    ours = PEDResNet(depth=50).state_dict()
    theirs = ResNet(depth=50).state_dict()
    assert set(theirs) <= set(ours)
    assert all(ours[k].shape == v.shape for k, v in theirs.items())
    extra = {k.split('.')[-2] for k in set(ours) - set(theirs)}
    assert extra == {'squeeze', 'heads'}


def test_initialisation_and_pretrained_norms(tmp_path):
    model = PEDResNet(depth=18)
    model.init_weights()
    assert torch.all(model.layer1[0].bn1.weight == 0.5)
    assert torch.all(model.bn1.weight == 1.0)  # the stem's norm
    layer = model.layer1[0].conv1
    assert layer.squeeze.weight.std() < 0.02 and torch.all(
        layer.squeeze.bias == 0)
    with torch.no_grad():
        model.layer1[0].bn1.weight.fill_(0.7)
    checkpoint = str(tmp_path / 'ped.pth')
    torch.save({'state_dict': {f'backbone.{k}': v
                               for k, v in model.state_dict().items()}},
               checkpoint)
    loaded = PEDResNet(depth=18, init_cfg=dict(
        type='Pretrained', prefix='backbone.', checkpoint=checkpoint))
    loaded.init_weights()
    assert torch.all(loaded.layer1[0].bn1.weight == 0.7)


def test_frozen_stages_norm_eval_and_scope():
    model = PEDResNet(depth=18, frozen_stages=1, norm_eval=True).train()
    assert not model.norm1.training
    assert not any(p.requires_grad for p in model.layer1.parameters())
    assert all(p.requires_grad for p in model.layer2.parameters())
    with DefaultScope.overwrite_default_scope('mmdet'):
        built = MMDET_MODELS.build(dict(type='mmdgconv.PEDResNet', depth=18,
                                        with_cp=True))
    assert isinstance(built, PEDResNet) and built.with_cp
