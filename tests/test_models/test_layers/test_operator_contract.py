"""What every operator owes a user as a drop-in for nn.Conv2d: empty
batches, and errors that name the layer and what it expected."""
import pytest
import torch
import torch.nn as nn

from operator_cases import OPERATORS

from mmdgconv.models import GResNeXt
from mmdgconv.models.layers import (CoCConv2d, DGConv2d, P4ConvP4, P4ConvZ2,
                                    P4MConvZ2, PEDConv2d)


@pytest.mark.parametrize('name', sorted(OPERATORS))
@pytest.mark.parametrize('training', [True, False])
def test_an_empty_batch_gives_an_empty_output(name, training):
    make, channels = OPERATORS[name]
    torch.manual_seed(0)
    layer = make().train(training)
    full = layer(torch.rand(2, *channels, 8, 8))
    x = torch.rand(0, *channels, 8, 8, requires_grad=training)
    out = layer(x)
    # The shape a batch of two has, with no sample: as nn.Conv2d does.
    assert out.shape == (0, ) + full.shape[1:]
    assert out.dtype == full.dtype
    if training:
        out.sum().backward()
        assert x.grad.shape == x.shape


@pytest.mark.parametrize('name', sorted(OPERATORS))
def test_wrong_channels_name_the_layer_and_the_expected_shape(name):
    make, channels = OPERATORS[name]
    layer = make()
    wrong = (channels[0] + 1, ) + channels[1:]
    with pytest.raises(ValueError) as error:
        layer(torch.rand(1, *wrong, 8, 8))
    message = str(error.value)
    cls = type(layer).__name__
    assert message.startswith(f'{cls}(in_channels={channels[0]}, ')
    expected = ', '.join(str(c) for c in channels)
    assert f'expects input of shape (N, {expected}, H, W)' in message
    assert f'got {(1, ) + wrong + (8, 8)}' in message


@pytest.mark.parametrize('make', [
    lambda **kw: DGConv2d(16, 16, **kw),
    lambda **kw: CoCConv2d(16, 16, **kw),
    lambda **kw: PEDConv2d(16, 16, **kw),
    lambda **kw: P4ConvP4(8, 8, **kw),
    lambda **kw: P4MConvZ2(8, 8, **kw),
])
@pytest.mark.parametrize('bad, word', [
    (dict(kernel_size=0), 'kernel_size'),
    (dict(kernel_size=3, stride=0), 'stride'),
    (dict(kernel_size=3, dilation=0), 'dilation'),
    (dict(kernel_size=3, padding=-1), 'padding'),
])
def test_impossible_geometry_is_refused_at_construction(make, bad, word):
    with pytest.raises(ValueError, match=word):
        make(**bad)


def test_nonpositive_channels_are_refused():
    for make in (lambda: PEDConv2d(0, 16, 3), lambda: P4ConvZ2(8, 0, 3),
                 lambda: CoCConv2d(16, 0, 3)):
        with pytest.raises(ValueError, match='must be a positive integer'):
            make()
    # ... where nn.Conv2d itself builds them and fails only in a forward.
    nn.Conv2d(8, 8, 0)


@pytest.mark.parametrize('kwargs, named', [
    (dict(groups=3), 'groups=3 and base_width=4 give 3x3 widths '
     '[12, 24, 48, 96]'),
    (dict(groups=4, base_width=6), 'groups=4 and base_width=6'),
    (dict(groups=0), 'groups must be a positive integer'),
])
def test_g_resnext_names_groups_not_a_deep_layer(kwargs, named):
    with pytest.raises(ValueError) as error:
        GResNeXt(depth=50, **kwargs)
    assert str(error.value).startswith('GResNeXt: ' + named.split(' give')[0])
    assert named in str(error.value)
    assert 'DGConv2d(' not in str(error.value)
    # Stages without DGConv take any ResNeXt widths.
    GResNeXt(depth=50, groups=3, stage_with_dgconv=(False, ) * 4,
             base_channels=16)


def _dgconv_pair(gates):
    torch.manual_seed(0)
    grouped = DGConv2d(16, 16, 3, padding=1, impl='grouped')
    with torch.no_grad():
        grouped.gate.copy_(torch.tensor(gates))
    dense = DGConv2d(16, 16, 3, padding=1, impl='dense')
    dense.load_state_dict(grouped.state_dict())
    return grouped.eval(), dense.eval()


@pytest.mark.parametrize('bad', [float('inf'), float('nan')])
def test_dense_and_grouped_differ_only_where_a_masked_zero_meets_a_non_finite_input(  # noqa: E501
        bad):
    """README's statement, exactly: dense multiplies the masked (zero)
    weights too, and 0 * inf is NaN, so a non-finite input reaches every
    output channel of its 3x3 neighbourhood; grouped, like the deployed
    grouped conv, confines it to its own group's output channels."""
    grouped, dense = _dgconv_pair([1., 1., -1., -1.])
    assert grouped.num_groups == 4
    x = torch.rand(1, 16, 9, 9)
    with torch.no_grad():
        torch.testing.assert_close(grouped(x), dense(x), rtol=1e-5,
                                   atol=1e-5)  # finite: the same
        x[0, 5, 4, 4] = bad
        a, b = grouped(x), dense(x)
    out_groups, in_groups = grouped.channel_groups
    same_group = out_groups == in_groups[5]
    near = torch.zeros(9, 9, dtype=torch.bool)
    near[3:6, 3:6] = True
    # Away from the bad pixel both are finite and agree.
    torch.testing.assert_close(a[..., ~near], b[..., ~near], rtol=1e-5,
                               atol=1e-5)
    # Next to it: grouped is non-finite in the pixel's group only ...
    assert (~torch.isfinite(a[0][:, near])).all(1).tolist() == \
        same_group.tolist()
    assert torch.isfinite(a[0][~same_group][:, near]).all()
    # ... dense in every output channel.
    assert not torch.isfinite(b[0][:, near]).any()
