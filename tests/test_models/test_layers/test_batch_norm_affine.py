"""The eval-mode BatchNorm as a per-channel affine map, and its cache: the
map is BatchNorm's own output, and the cache never serves a stale one."""
import copy
import pickle

import pytest
import torch
from torch import nn

from mmdgconv.models.layers.batch_norm_affine import (BatchNormAffineCache,
                                                      batch_norm_affine)


def _trained_norm(channels=6, affine=True, seed=0):
    """A BatchNorm with running statistics and affine away from 0/1."""
    torch.manual_seed(seed)
    norm = nn.BatchNorm2d(channels, eps=1e-3, affine=affine)
    with torch.no_grad():
        norm.running_mean.normal_()
        norm.running_var.uniform_(0.2, 3)
        if affine:
            norm.weight.normal_()
            norm.bias.normal_()
    return norm.eval()


def _apply(affine, y):
    scale, shift = affine
    return y * scale[:, None, None] + shift[:, None, None]


@pytest.mark.parametrize('affine', [True, False])
def test_the_map_is_the_norm(affine):
    norm = _trained_norm(affine=affine)
    y = torch.randn(2, 6, 3, 4)
    torch.testing.assert_close(_apply(batch_norm_affine(norm), y), norm(y),
                               rtol=1e-5, atol=1e-5)
    # and a float64 check of the formula itself
    scale = norm.running_var.double().add(1e-3).rsqrt()
    if affine:
        scale = scale * norm.weight.double()
    torch.testing.assert_close(batch_norm_affine(norm)[0].double(), scale)


def test_no_map_where_the_norm_uses_batch_statistics():
    assert batch_norm_affine(_trained_norm().train()) is None
    assert batch_norm_affine(
        nn.BatchNorm2d(4, track_running_stats=False).eval()) is None
    assert batch_norm_affine(nn.GroupNorm(2, 4).eval()) is None
    assert BatchNormAffineCache()(nn.GroupNorm(2, 4).eval()) is None


def test_cache_serves_the_same_map_until_the_norm_changes():
    norm = _trained_norm()
    cache = BatchNormAffineCache()
    y = torch.randn(1, 6, 2, 2)
    with torch.no_grad():
        first = cache(norm)
        assert cache(norm) is first
        # an optimizer step on the weight
        optimizer = torch.optim.SGD(norm.parameters(), lr=0.5)
        norm.weight.grad = torch.ones(6)
        norm.bias.grad = torch.ones(6)
        optimizer.step()
        stepped = cache(norm)
        assert stepped is not first
        torch.testing.assert_close(_apply(stepped, y), norm(y))
        # load_state_dict of other statistics
        norm.load_state_dict(_trained_norm(seed=1).state_dict())
        torch.testing.assert_close(_apply(cache(norm), y), norm(y))
        # eps
        norm.eps = 0.5
        torch.testing.assert_close(_apply(cache(norm), y), norm(y))
    # a training forward updates the running statistics
    norm.train()(torch.randn(4, 6, 3, 3) * 3 + 1)
    norm.eval()
    with torch.no_grad():
        torch.testing.assert_close(_apply(cache(norm), y), norm(y))
        # .double(): new storage, another dtype
        norm.double()
        scale, shift = cache(norm)
        assert scale.dtype == shift.dtype == torch.float64
        torch.testing.assert_close(_apply((scale, shift), y.double()),
                                   norm(y.double()))


def test_cache_keeps_norms_apart_and_copies_start_empty():
    norms = [_trained_norm(seed=s) for s in range(2)]
    cache = BatchNormAffineCache()
    y = torch.randn(1, 6, 2, 2)
    with torch.no_grad():
        for _ in range(2):
            for norm in norms:
                torch.testing.assert_close(_apply(cache(norm), y), norm(y))
    assert len(cache._entries) == 2
    assert copy.deepcopy(cache)._entries == {}
    assert pickle.loads(pickle.dumps(cache))._entries == {}


def test_with_autograd_or_inference_tensors_nothing_is_kept():
    norm = _trained_norm()
    cache = BatchNormAffineCache()
    scale, _ = cache(norm)  # grad enabled: computed in the graph
    assert scale.requires_grad and cache._entries == {}
    with torch.inference_mode():
        made_here = _trained_norm()
        y = torch.randn(1, 6, 2, 2)
        torch.testing.assert_close(_apply(cache(made_here), y),
                                   made_here(y))
        made_here.running_mean.add_(1)  # no version counter to see this
        torch.testing.assert_close(_apply(cache(made_here), y),
                                   made_here(y))
    assert cache._entries == {}
