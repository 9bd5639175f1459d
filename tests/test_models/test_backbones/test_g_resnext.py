import copy

import pytest
import torch
from mmdet.models.backbones import ResNeXt
from mmdet.registry import MODELS as MMDET_MODELS
from mmengine.registry import DefaultScope
from torch.nn.modules.batchnorm import _BatchNorm

from mmdgconv.models import DGConv2d, GResNeXt

TINY = dict(groups=4, base_width=4, base_channels=16)


def test_error_paths():
    with pytest.raises(KeyError, match='invalid depth 18'):
        GResNeXt(depth=18)
    with pytest.raises(ValueError, match='stage_with_dgconv has 3 entries'):
        GResNeXt(depth=50, stage_with_dgconv=(True, True, True), **TINY)
    with pytest.raises(ValueError, match='stage_with_dgconv has 4 entries'):
        GResNeXt(depth=50, num_stages=3, out_indices=(0, 1, 2), **TINY)
    # Widths that are not powers of two cannot carry Kronecker gates.
    with pytest.raises(ValueError, match='groups=3 and base_width=4 give 3x3 widths'):
        GResNeXt(depth=50, groups=3, base_width=4, base_channels=16)
    with pytest.raises(TypeError, match='depthh'):
        GResNeXt(depth=50, depthh=50)


@pytest.mark.parametrize('depth,num_blocks', [(50, 16), (101, 33), (152, 50)])
def test_output_shapes_every_depth(depth, num_blocks):
    model = GResNeXt(depth=depth, **TINY)
    layers = model.dgconv_layers()
    assert len(layers) == num_blocks
    assert [layer.in_channels for layer in layers[:1]] == [16]
    outs = model(torch.rand(1, 3, 64, 64))
    assert [tuple(o.shape) for o in outs] == [(1, 64, 16, 16),
                                              (1, 128, 8, 8),
                                              (1, 256, 4, 4),
                                              (1, 512, 2, 2)]


def test_only_3x3_convs_are_dgconv_and_shapes_match_resnext():
    model = GResNeXt(depth=50, **TINY)
    stock = ResNeXt(depth=50, **TINY)
    for name, module in model.named_modules():
        if isinstance(module, DGConv2d):
            assert name.endswith('conv2') and module.kernel_size == (3, 3)
    ours = {k: v.shape for k, v in model.state_dict().items()}
    theirs = {k: v.shape for k, v in stock.state_dict().items()}
    gates = {k for k in ours if k.endswith('.gate')}
    assert set(ours) - gates == set(theirs)
    for key, shape in theirs.items():
        if key.endswith('conv2.weight'):
            # Stored dense; the stock grouped weight is C_in / groups wide.
            assert ours[key][1] == shape[1] * TINY['groups']
        else:
            assert ours[key] == shape, key


def test_effective_params_at_32_groups_equal_resnext50_32x4d():
    model = GResNeXt(depth=50, groups=32, base_width=4)
    stock = ResNeXt(depth=50, groups=32, base_width=4)
    for layer in model.dgconv_layers():
        with torch.no_grad():
            layer.gate.copy_(torch.tensor([-1.] * 5 + [1.] *
                                          (layer.num_gates - 5)))
        assert layer.num_groups == 32
    effective = 0
    for name, param in model.named_parameters():
        if name.endswith('.gate'):
            continue
        module = model.get_submodule(name.rpartition('.')[0])
        if isinstance(module, DGConv2d) and name.endswith('weight'):
            effective += module.nnz * module.kernel_size[0] ** 2
        else:
            effective += param.numel()
    assert effective == sum(p.numel() for p in stock.parameters())


def test_stage_with_dgconv_selects_stages():
    model = GResNeXt(
        depth=50, stage_with_dgconv=(False, True, False, True), **TINY)
    assert not isinstance(model.layer1[0].conv2, DGConv2d)
    assert model.layer1[0].conv2.groups == TINY['groups']
    assert isinstance(model.layer2[0].conv2, DGConv2d)
    assert not isinstance(model.layer3[0].conv2, DGConv2d)
    assert isinstance(model.layer4[2].conv2, DGConv2d)


def test_frozen_stages_and_norm_eval():
    model = GResNeXt(depth=50, frozen_stages=1, norm_eval=True, **TINY)
    model.train()
    assert not model.norm1.training
    for param in model.layer1.parameters():
        assert not param.requires_grad
    for module in model.modules():
        if isinstance(module, _BatchNorm):
            assert not module.training
    for param in model.layer2.parameters():
        assert param.requires_grad


def test_freeze_groups_keeps_gates_fixed():
    model = GResNeXt(depth=50, freeze_groups=True, **TINY)
    gates_before = [m.gate.clone() for m in model.dgconv_layers()]
    assert all(not m.gate.requires_grad for m in model.dgconv_layers())
    optimizer = torch.optim.SGD(
        [p for p in model.parameters() if p.requires_grad], lr=10.)
    model.train()
    sum(o.sum() for o in model(torch.rand(2, 3, 32, 32))).backward()
    optimizer.step()
    for before, layer in zip(gates_before, model.dgconv_layers()):
        torch.testing.assert_close(layer.gate, before)


def test_gates_learn_without_freezing():
    model = GResNeXt(depth=50, **TINY)
    model.train()
    sum(o.sum() for o in model(torch.rand(2, 3, 32, 32))).backward()
    for layer in model.dgconv_layers():
        assert layer.gate.grad is not None


def test_with_cp_and_syncbn_build():
    model = GResNeXt(
        depth=50, with_cp=True, norm_cfg=dict(type='SyncBN'), **TINY)
    assert type(model.layer1[0].bn2).__name__ == 'SyncBatchNorm'
    model = GResNeXt(depth=50, with_cp=True, **TINY)
    model.train()
    x = torch.rand(1, 3, 32, 32, requires_grad=True)
    sum(o.sum() for o in model(x)).backward()
    assert x.grad is not None


def test_plugins_are_built_at_block_width():
    plugin = dict(
        cfg=dict(type='ContextBlock', ratio=1. / 4),
        stages=(False, True, False, False),
        position='after_conv3')
    with DefaultScope.overwrite_default_scope('mmdet'):
        model = GResNeXt(depth=50, plugins=[plugin], **TINY)
    block = model.layer2[0]
    assert block.after_conv3_plugin_names
    assert not model.layer1[0].after_conv3_plugin_names
    outs = model.eval()(torch.rand(1, 3, 32, 32))
    assert outs[1].shape == (1, 128, 4, 4)


def test_built_from_mmdet_scope_by_scoped_name():
    with DefaultScope.overwrite_default_scope('mmdet'):
        model = MMDET_MODELS.build(
            dict(type='mmdgconv.GResNeXt', depth=50, **TINY))
    assert isinstance(model, GResNeXt)


def test_dgconv_via_conv_cfg_in_stock_mmdet_resnext():
    with DefaultScope.overwrite_default_scope('mmdet'):
        model = MMDET_MODELS.build(
            dict(type='ResNeXt', depth=50, conv_cfg=dict(type='DGConv'),
                 **TINY))
    block = model.layer1[0]
    assert isinstance(block.conv2, DGConv2d)
    # The stock block passes groups=4, which sets the initial grouping.
    assert block.conv2.num_groups == TINY['groups']
    assert isinstance(block.conv1, DGConv2d)  # conv_cfg covers every conv
    assert not model.conv1.has_gates  # the RGB stem stays dense
    outs = model(torch.rand(2, 3, 64, 64))
    assert outs[-1].shape == (2, 512, 2, 2)


def test_init_cfg_pretrained_loads_a_classifier_checkpoint(tmp_path):
    source = GResNeXt(depth=50, **TINY)
    checkpoint = str(tmp_path / 'classifier.pth')
    torch.save(
        dict(state_dict={f'backbone.{k}': v
                         for k, v in source.state_dict().items()},
             meta=dict(epoch=1)), checkpoint)
    target = GResNeXt(
        depth=50,
        init_cfg=dict(type='Pretrained', prefix='backbone.',
                      checkpoint=checkpoint),
        **TINY)
    target.init_weights()
    for key, value in source.state_dict().items():
        torch.testing.assert_close(target.state_dict()[key], value)


def _gradients(model, x):
    model.zero_grad(set_to_none=True)
    sum(o.square().sum() for o in model(x)).backward()
    return {name: p.grad for name, p in model.named_parameters()}


@pytest.mark.parametrize('with_cp', [False, True])
def test_blocks_gathered_early_give_the_same_gradients(monkeypatch, with_cp):
    """G-ResNeXt gathers its DGConv weight blocks before the stem; the
    gradients equal those of blocks gathered next to each conv."""
    torch.manual_seed(0)
    model = GResNeXt(depth=50, with_cp=with_cp, **TINY).train()
    x = torch.rand(2, 3, 32, 32, requires_grad=with_cp)
    early = _gradients(model, x)
    monkeypatch.setattr(DGConv2d, 'gather_blocks_early', lambda self: None)
    late = _gradients(model, x)
    assert early.keys() == late.keys()
    for name, grad in late.items():
        torch.testing.assert_close(early[name], grad, rtol=1e-5, atol=1e-6,
                                   msg=lambda m: f'{name}: {m}')


def test_dense_weight_gradients_come_last():
    """The dense DGConv weight gradients are allocated after every other
    gradient of the backbone, once its activations are freed."""
    model = GResNeXt(depth=50, **TINY).train()
    for layer in model.dgconv_layers():  # any grouping but G = 1 (dense)
        with torch.no_grad():
            layer.gate[0] = -1.
    dgconv_weights = {id(layer.weight) for layer in model.dgconv_layers()}
    order = []
    for param in model.parameters():
        param.register_post_accumulate_grad_hook(
            lambda p: order.append(id(p) in dgconv_weights))
    sum(o.sum() for o in model(torch.rand(2, 3, 32, 32))).backward()
    assert len(order) == len(list(model.parameters()))
    first = order.index(True)
    assert all(order[first:]) and first == len(order) - len(dgconv_weights)


def test_no_blocks_outlive_the_forward():
    """Blocks gathered for layers a forward did not reach (here it fails
    in the middle) are dropped, so the model still deep-copies."""
    model = GResNeXt(depth=50, **TINY).train()

    def fail(*args):
        raise RuntimeError('stop')

    model.layer3.register_forward_pre_hook(fail)
    with pytest.raises(RuntimeError, match='stop'):
        model(torch.rand(1, 3, 32, 32))
    assert not any('_early_blocks' in layer.__dict__
                   for layer in model.dgconv_layers())
    copy.deepcopy(model)


def test_any_model_opts_into_early_gathering():
    """A stock mmdet ResNeXt with conv_cfg=DGConv, opted in with
    enable_early_block_gather (once, however often it is called): its dense
    DGConv weight gradients also come last, and a deep copy gathers its
    own layers' blocks, not the original's."""
    from mmdet.models.backbones import ResNeXt

    from mmdgconv.models.layers import enable_early_block_gather
    torch.manual_seed(0)
    model = ResNeXt(depth=50, groups=4, base_width=4, base_channels=16,
                    conv_cfg=dict(type='DGConv'))
    model.train()
    layers = [m for m in model.modules()
              if isinstance(m, DGConv2d) and m.has_gates]
    for layer in layers:
        with torch.no_grad():
            layer.gate[0] = -1.
    enable_early_block_gather(enable_early_block_gather(model))
    assert len(model._forward_pre_hooks) == len(model._forward_hooks) == 1
    gathered = []
    real = DGConv2d.gather_blocks_early

    def recording(self):
        gathered.append(self)
        real(self)

    weights = {id(layer.weight) for layer in layers}
    order = []
    for param in model.parameters():
        param.register_post_accumulate_grad_hook(
            lambda p: order.append(id(p) in weights))
    DGConv2d.gather_blocks_early = recording
    try:
        sum(o.sum() for o in model(torch.rand(2, 3, 32, 32))).backward()
        twin = copy.deepcopy(model)
        gathered.clear()
        twin(torch.rand(1, 3, 32, 32))
    finally:
        DGConv2d.gather_blocks_early = real
    first = order.index(True)
    assert all(order[first:]) and first == len(order) - len(weights)
    twin_layers = {id(m) for m in twin.modules() if isinstance(m, DGConv2d)}
    assert gathered and all(id(layer) in twin_layers for layer in gathered)
