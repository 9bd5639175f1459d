import pytest
import torch
from mmdet.models.backbones import ResNet
from mmdet.registry import MODELS as MMDET_MODELS
from mmengine.registry import DefaultScope

from mmdgconv.models import P4ResNet


def _rotate(x, k):
    return torch.rot90(x, k, (-2, -1))


def test_error_paths():
    with pytest.raises(KeyError, match='invalid depth 34'):
        P4ResNet(depth=34)
    with pytest.raises(ValueError, match='out_indices'):
        P4ResNet(depth=18, out_indices=(4, ))
    with pytest.raises(ValueError, match="'p4' or 'p4m'"):
        P4ResNet(depth=18, group='p6')


@pytest.mark.parametrize('depth,channels', [(18, [32, 64, 128, 256]),
                                            (50, [128, 256, 512, 1024])])
def test_shapes_and_parameter_count_close_to_resnet(depth, channels):
    model = P4ResNet(depth=depth).eval()
    outs = model(torch.rand(1, 3, 65, 65))
    assert [tuple(o.shape) for o in outs] == [
        (1, c, s, s) for c, s in zip(channels, (17, 9, 5, 3))
    ]
    ours = sum(p.numel() for p in model.parameters())
    resnet = sum(p.numel() for p in ResNet(depth=depth).parameters())
    assert 0.9 < ours / resnet < 1.1


@pytest.mark.parametrize('group,elements', [('p4', 4), ('p4m', 8)])
def test_pooled_outputs_rotate_with_the_input(group, elements):
    torch.manual_seed(0)
    model = P4ResNet(depth=18, group=group, base_channels=16).double()
    model.init_weights()
    model.eval()
    x = torch.randn(2, 3, 65, 65, dtype=torch.float64)
    outs = model(x)
    for element in range(1, elements):
        s, m = element % 4, element // 4
        xt = torch.flip(x, (-1, )) if m else x
        transformed = model(_rotate(xt, s))
        for out, out_t in zip(outs, transformed):
            expected = _rotate(torch.flip(out, (-1, )) if m else out, s)
            torch.testing.assert_close(out_t, expected)


def test_frozen_stages_norm_eval_and_training_step():
    model = P4ResNet(depth=18, base_channels=16, frozen_stages=1,
                     norm_eval=True)
    model.train()
    assert not model.norm1.training and not model.layer1[0].norm1.training
    assert not any(p.requires_grad for p in model.conv1.parameters())
    assert not any(p.requires_grad for p in model.layer1.parameters())
    assert all(p.requires_grad for p in model.layer2.parameters())
    outs = model(torch.rand(2, 3, 33, 33))
    sum(o.sum() for o in outs).backward()
    assert model.layer4[0].conv1.weight.grad is not None
    assert type(model.norm1).__name__ == 'BatchNorm3d'


def test_built_from_mmdet_scope():
    with DefaultScope.overwrite_default_scope('mmdet'):
        model = MMDET_MODELS.build(dict(type='mmdgconv.P4ResNet', depth=18,
                                        group='p4m', base_channels=16))
    assert isinstance(model, P4ResNet) and model.group == 'p4m'
