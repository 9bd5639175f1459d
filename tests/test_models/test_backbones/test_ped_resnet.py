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


def _with_trained_norms_and_generators(model, seed=0):
    """Running statistics, norm affines and generators away from their
    initial values, so that folding a norm into a conv has to be exact."""
    torch.manual_seed(seed)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.running_mean.normal_(0, 0.5)
                module.running_var.uniform_(0.5, 2)
                module.weight.normal_(1, 0.3)
                module.bias.normal_(0, 0.3)
            elif isinstance(module, torch.nn.Linear):
                module.weight.normal_(0, 0.3)
                module.bias.normal_(0, 0.3)
    return model.eval()


@pytest.mark.parametrize('depth', [18, 50])
@pytest.mark.parametrize('batch', [1, 2])
def test_inference_folds_the_norms_and_matches_mmdet_blocks(
        depth, batch, monkeypatch):
    """Without autograd each PEDConv applies its eval-mode BatchNorm itself;
    the backbone's output is what mmdet's block forward computes, and no
    block norm runs."""
    from mmdet.models.backbones.resnet import BasicBlock, Bottleneck
    model = _with_trained_norms_and_generators(
        PEDResNet(depth=depth, base_channels=16, ped_cfg=dict(reduction=4)))
    x = torch.rand(batch, 3, 64, 64)
    with torch.no_grad():
        fused = model(x)
    block_kind = BasicBlock if depth == 18 else Bottleneck
    with monkeypatch.context() as patch:  # the unfused reference
        patch.setattr(type(model.layer1[0]), 'forward', block_kind.forward)
        with torch.no_grad():
            reference = model(x)
    for actual, expected in zip(fused, reference):
        torch.testing.assert_close(actual, expected, rtol=1e-4, atol=1e-4)

    calls = []
    norm_forward = torch.nn.BatchNorm2d.forward
    with monkeypatch.context() as patch:
        patch.setattr(torch.nn.BatchNorm2d, 'forward',
                      lambda self, y: calls.append(1) or norm_forward(self, y))
        with torch.no_grad():
            model(x)
        # only the static convs' norms run (the stem's, the downsamples');
        # the block norms are folded into the PEDConvs
        static_norms = [
            name for name, m in model.named_modules()
            if isinstance(m, torch.nn.BatchNorm2d) and (
                '.' not in name or 'downsample' in name)
        ]
        assert len(calls) == len(static_norms) == (4 if depth == 18 else 5)
        model(x)  # with autograd every norm runs
        assert len(calls) == len(static_norms) + len(
            [m for m in model.modules()
             if isinstance(m, torch.nn.BatchNorm2d)])

    # Forward hooks keep the two modules apart, so that they run.
    hooked = []
    model.layer2[1].norm2.register_forward_hook(
        lambda *args: hooked.append('norm'))
    model.layer2[1].conv2.register_forward_hook(
        lambda *args: hooked.append('conv'))
    with torch.no_grad():
        torch.testing.assert_close(model(x)[-1], fused[-1], rtol=1e-4,
                                   atol=1e-4)
    assert hooked == ['conv', 'norm']

    # The activation is applied in place without its module call, except
    # where that module has hooks or is not an in-place ReLU.
    relu_calls = []
    handle = model.layer1[0].relu.register_forward_hook(
        lambda *args: relu_calls.append(1))
    with torch.no_grad():
        model(x)
    handle.remove()
    assert len(relu_calls) == (2 if depth == 18 else 3)
    model.layer1[0].relu = torch.nn.Hardtanh(0, 1e9)  # ReLU by another name
    with torch.no_grad():
        torch.testing.assert_close(model(x)[-1], fused[-1], rtol=1e-4,
                                   atol=1e-4)
    model.layer1[0].relu = torch.nn.Tanh()  # a different block
    with torch.no_grad():
        assert not torch.allclose(model(x)[-1], fused[-1], atol=1e-2)


def test_folded_norms_follow_weight_changes_and_train_mode():
    """The kept norm maps are refreshed after an optimizer step, a training
    forward (running statistics) and load_state_dict."""
    from mmdet.models.backbones.resnet import Bottleneck
    model = _with_trained_norms_and_generators(
        PEDResNet(depth=50, base_channels=16, ped_cfg=dict(reduction=4),
                  out_indices=(3, )))
    x = torch.rand(1, 3, 32, 32)

    def check():
        model.eval()
        with torch.no_grad():
            fused = model(x)[0]
            saved = Bottleneck.forward
            blocks = [m for m in model.modules() if isinstance(m, Bottleneck)]
            for block in blocks:
                block.forward = saved.__get__(block)
            reference = model(x)[0]
            for block in blocks:
                del block.forward
        torch.testing.assert_close(fused, reference, rtol=1e-5, atol=1e-5)

    check()
    block = model.layer1[0]
    assert len(block._norm_affines._entries) == 3  # kept ...
    model.eval()
    assert len(block._norm_affines._entries) == 3  # ... across eval()
    model.train()
    assert block._norm_affines._entries == {}  # training moves them
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    model.train()
    model(torch.rand(2, 3, 32, 32))[0].square().mean().backward()
    optimizer.step()
    check()
    model.load_state_dict(_with_trained_norms_and_generators(
        PEDResNet(depth=50, base_channels=16, ped_cfg=dict(reduction=4),
                  out_indices=(3, )), seed=1).state_dict())
    check()
    # a norm trained on its own, without the block's train()
    norm = model.layer1[0].norm1
    norm.momentum = 1.0  # the statistics jump to this batch's
    norm.train()(torch.rand(2, norm.num_features, 4, 4) * 20 + 5)
    check()


def test_traced_for_export_the_norms_stay_batch_norms():
    """onnxruntime runs a BatchNormalization node faster than the folded
    arithmetic, so a traced model keeps every norm."""
    model = PEDResNet(depth=18, base_channels=16,
                      ped_cfg=dict(reduction=4)).eval()
    with torch.no_grad():
        graph = torch.jit.trace(model, torch.rand(1, 3, 32, 32),
                                check_trace=False).inlined_graph
    norms = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert str(graph).count('aten::batch_norm(') == len(norms) == 20
