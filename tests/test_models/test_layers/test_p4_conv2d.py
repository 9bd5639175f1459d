"""Exact equivariance of the p4/p4m convolutions (Cohen and Welling,
ICML 2016)."""
import pytest
import torch
import torch.nn.functional as F

from mmdgconv.models.layers import (GroupPool, GroupSpatialPool, P4ConvP4,
                                    P4ConvZ2, P4MConvP4, P4MConvZ2)
from mmdgconv.models.layers.p4_conv2d import (group_elements,
                                              inverse_permutation)


def transform_plane(x, group, element):
    """Apply element R^s M^m to the last two (spatial) dimensions."""
    s, m = element % 4, element // 4
    if m:
        x = torch.flip(x, (-1, ))
    return torch.rot90(x, s, (-2, -1))


def transform_group_map(y, group, element):
    """The action on a group feature map: rotate the maps, permute the axis.
    """
    perm = inverse_permutation(group, element)
    return transform_plane(y, group, element)[:, :, perm]


def per_element_loop(layer, x):
    """Reference: one conv2d per output element, filters transformed with
    torch.rot90/flip and the group axis permuted explicitly."""
    elements = group_elements(layer.group)
    outs = []
    for a, g in enumerate(elements):
        weight = layer.weight  # (Co, Ci, Hi, k, k)
        if not layer.lifting:
            # psi_g(h) = psi(g^-1 h): reorder the input-element axis.
            order = [inverse_permutation(layer.group, a)[b]
                     for b in range(len(elements))]
            weight = weight[:, :, order]
        weight = transform_plane(weight, layer.group, a)
        weight = weight.reshape(weight.shape[0], -1, *weight.shape[-2:])
        inputs = x if layer.lifting else x.reshape(x.shape[0], -1,
                                                   *x.shape[-2:])
        outs.append(F.conv2d(inputs, weight, layer.bias, layer.stride,
                             layer.padding, layer.dilation))
    return torch.stack(outs, 2)


LAYERS = [
    (P4ConvZ2, 'p4', True),
    (P4ConvP4, 'p4', False),
    (P4MConvZ2, 'p4m', True),
    (P4MConvP4, 'p4m', False),
]


def _input(lifting, group, channels=3, size=9, batch=2):
    shape = (batch, channels, size, size) if lifting else (
        batch, channels, len(group_elements(group)), size, size)
    return torch.randn(shape, dtype=torch.float64)


@pytest.mark.parametrize('cls,group,lifting', LAYERS)
@pytest.mark.parametrize('conv', [dict(kernel_size=3, padding=1),
                                  dict(kernel_size=5, padding=2, stride=2),
                                  dict(kernel_size=1)])
def test_equivariance_of_each_layer(cls, group, lifting, conv):
    torch.manual_seed(0)
    layer = cls(3, 4, **conv).double()
    x = _input(lifting, group)
    y = layer(x)
    for element in range(len(group_elements(group))):
        transformed = transform_plane(x, group, element) if lifting else \
            transform_group_map(x, group, element)
        torch.testing.assert_close(
            layer(transformed), transform_group_map(y, group, element))


@pytest.mark.parametrize('cls,group,lifting', LAYERS)
def test_matches_a_per_element_loop(cls, group, lifting):
    torch.manual_seed(1)
    layer = cls(3, 5, kernel_size=3, padding=1, stride=2).double()
    x = _input(lifting, group)
    torch.testing.assert_close(layer(x), per_element_loop(layer, x))


@pytest.mark.parametrize('group', ['p4', 'p4m'])
def test_stack_and_gradients_are_equivariant(group):
    torch.manual_seed(2)
    lift = (P4ConvZ2 if group == 'p4' else P4MConvZ2)(3, 4, 3, padding=1)
    conv = (P4ConvP4 if group == 'p4' else P4MConvP4)(4, 4, 3, padding=1)
    pool = GroupSpatialPool(3, 2, padding=1)
    layers = [lift.double(), conv.double()]

    def network(x):
        return pool(F.relu(layers[1](F.relu(layers[0](x)))))

    x = _input(True, group).requires_grad_()
    y = network(x)
    weights = torch.randn_like(y)
    (y * weights).sum().backward()
    grad_x = x.grad.clone()
    grads_w = [layer.weight.grad.clone() for layer in layers]
    for element in range(1, len(group_elements(group))):
        for layer in layers:
            layer.weight.grad = None
        xt = transform_plane(x.detach(), group, element).requires_grad_()
        yt = network(xt)
        torch.testing.assert_close(yt, transform_group_map(y, group, element))
        # The same loss on transformed data: the input gradient transforms
        # like the input (eq. 3), the weight gradients are unchanged (eq. 6).
        (yt * transform_group_map(weights, group, element)).sum().backward()
        torch.testing.assert_close(
            xt.grad, transform_plane(grad_x, group, element))
        for layer, grad in zip(layers, grads_w):
            torch.testing.assert_close(layer.weight.grad, grad)


@pytest.mark.parametrize('mode', ['max', 'mean'])
def test_group_pool_is_invariant(mode):
    torch.manual_seed(3)
    layer = P4ConvZ2(3, 4, 3, padding=1).double()
    x = _input(True, 'p4')
    pooled = GroupPool(mode)(layer(x))
    assert pooled.shape == (2, 4, 9, 9)
    for element in range(4):
        torch.testing.assert_close(
            GroupPool(mode)(layer(transform_plane(x, 'p4', element))),
            transform_plane(pooled, 'p4', element))


def test_shapes_weights_and_errors():
    layer = P4ConvP4(8, 16, 3, padding=1)
    assert layer.weight.shape == (16, 8, 4, 3, 3)
    assert P4MConvZ2(3, 16, 3).weight.shape == (16, 3, 1, 3, 3)
    assert layer(torch.rand(2, 8, 4, 10, 10)).shape == (2, 16, 4, 10, 10)
    with pytest.raises(ValueError, match='p4m needs an odd kernel'):
        P4MConvP4(8, 8, 4)
    with pytest.raises(ValueError, match=r'\(N, 8, 4, H, W\)'):
        layer(torch.rand(2, 8, 10, 10))
    with pytest.raises(ValueError, match="'p4' or 'p4m'"):
        group_elements('p6')
    assert P4ConvZ2(3, 4, 2)(torch.rand(1, 3, 6, 6)).shape == (1, 4, 4, 5, 5)


def test_inference_filter_cache_follows_weight_updates():
    layer = P4ConvP4(4, 4, 3, padding=1).eval()
    x = torch.randn(1, 4, 4, 7, 7)
    with torch.no_grad():
        first = layer(x)
        cached = layer.__dict__['_filter_cache'][1]
        assert layer(x) is not first and \
            layer.__dict__['_filter_cache'][1] is cached  # reused
        layer.weight.mul_(2)  # an optimiser step or a checkpoint load
        torch.testing.assert_close(layer(x), 2 * first)
    torch.testing.assert_close(layer(x), 2 * first)  # with gradients


@pytest.mark.parametrize('lifting', [True, False])
def test_equals_e2cnn_regular_representation_r2conv(lifting):
    """e2cnn's R2Conv between regular (or, lifting, trivial) fields of C4 is
    a p4 G-conv with a steerable filter basis: with the g = e slice of its
    expanded filter as our weight, both layers agree exactly. (e2cnn 0.2.3's
    flip groups call numpy's removed ``tostring`` under numpy 2, so p4m is
    checked against the per-element loop above instead.)"""
    import warnings
    e2cnn = pytest.importorskip('e2cnn')
    from e2cnn import gspaces
    from e2cnn import nn as enn
    del e2cnn
    torch.manual_seed(4)
    space = gspaces.Rot2dOnR2(N=4)
    cin, cout, k = 2, 3, 5
    fields_in = [space.trivial_repr if lifting else space.regular_repr] * cin
    in_type = enn.FieldType(space, fields_in)
    out_type = enn.FieldType(space, [space.regular_repr] * cout)
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')
        theirs = enn.R2Conv(in_type, out_type, k, padding=k // 2, bias=False)
    with torch.no_grad():
        theirs.weights.normal_()
    theirs.eval()
    expanded = theirs.expand_parameters()[0].detach()
    group_in = 1 if lifting else 4
    ours = (P4ConvZ2 if lifting else P4ConvP4)(cin, cout, k, padding=k // 2,
                                               bias=False)
    with torch.no_grad():
        ours.weight.copy_(
            expanded.reshape(cout, 4, cin, group_in, k, k)[:, 0])
    x = torch.randn(2, cin * group_in, 11, 11)
    expected = theirs(enn.GeometricTensor(x, in_type)).tensor
    actual = ours(x if lifting else x.reshape(2, cin, 4, 11, 11))
    torch.testing.assert_close(actual.reshape(2, cout * 4, 11, 11), expected,
                               rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize('name,cls,group_size,lifting', [
    ('P4ConvZ2', P4ConvZ2, 4, True),
    ('P4ConvP4', P4ConvP4, 4, False),
    ('P4MConvZ2', P4MConvZ2, 8, True),
    ('P4MConvP4M', P4MConvP4, 8, False),
    ('P4MConvP4', P4MConvP4, 8, False),
])
def test_built_from_the_registry(name, cls, group_size, lifting):
    """Configs name the layers (and the pools) in the mmdgconv scope."""
    from mmdgconv.registry import MODELS
    layer = MODELS.build(dict(type=name, in_channels=3, out_channels=5,
                              kernel_size=3, padding=1))
    assert type(layer) is cls
    x = torch.randn(2, 3, 6, 6) if lifting else torch.randn(
        2, 3, group_size, 6, 6)
    out = layer(x)
    assert out.shape == (2, 5, group_size, 6, 6)
    pooled = MODELS.build(dict(type='mmdgconv.GroupPool', mode='max'))(out)
    torch.testing.assert_close(pooled, out.amax(2))
    spatial = MODELS.build(dict(type='GroupSpatialPool', kernel_size=2))
    assert spatial(out).shape == (2, 5, group_size, 3, 3)
