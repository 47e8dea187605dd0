from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

import fastpanc.ops.winograd as W
from fastpanc.ops import BackendUnavailableError, conv3d_same, conv3d_same_reference
from fastpanc.ops.winograd import MIN_CHANNELS, MIN_TILES, TILE, winograd_weight


def _inputs(b, c, co, spatial, kz, seed, bias=True):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(b, c, *spatial, generator=g).contiguous(memory_format=torch.channels_last_3d)
    w = torch.randn(co, c, kz, 3, 3, generator=g) / (c * kz * 9) ** 0.5
    bb = torch.randn(co, generator=g) if bias else None
    return x, w, bb


def _close(got, want, tile=2):
    # the transforms add and subtract inputs before the products: float32 rounding in another order, and F(4, 3)'s
    # coefficients (up to 8 / 3 in G, 1.25 in B^T) enlarge it
    scale = want.abs().max().item() + 1e-6
    torch.testing.assert_close(got, want, rtol=0, atol=(2e-5 if tile == 2 else 2e-4) * scale)


@pytest.mark.parametrize("tile", [2, 4])
@pytest.mark.parametrize("kz", [3, 1])
@pytest.mark.parametrize(
    "b,c,co,spatial",
    [
        (1, 32, 32, (8, 12, 10)),  # even sizes: whole tiles
        (2, 17, 40, (5, 7, 9)),  # odd sizes: tiles cut by the volume's end
        (1, 70, 65, (3, 4, 6)),  # more channels than one 64-channel block
        (1, 3, 2, (1, 1, 1)),  # one voxel
    ],
)
def test_matches_conv3d(tile, kz, b, c, co, spatial):
    x, w, bias = _inputs(b, c, co, spatial, kz, seed=b * 100 + c)
    got = conv3d_same(x, w, bias, backend="cpu", tile=tile)
    want = conv3d_same_reference(x, w, bias)
    assert got.shape == want.shape and got.is_contiguous(memory_format=torch.channels_last_3d)
    _close(got, want, tile)


@settings(max_examples=30, deadline=None, derandomize=True)
@given(
    b=st.integers(1, 2),
    c=st.integers(1, 70),
    co=st.integers(1, 70),
    spatial=st.lists(st.integers(1, 9), min_size=3, max_size=3),
    kz=st.sampled_from([1, 3]),
    bias=st.booleans(),
    chunk=st.integers(1, 40),
    contiguous=st.booleans(),
    tile=st.sampled_from([2, 4]),
    seed=st.integers(0, 10_000),
)
def test_random_shapes_chunks_and_layouts(b, c, co, spatial, kz, bias, chunk, contiguous, tile, seed):
    x, w, bb = _inputs(b, c, co, spatial, kz, seed, bias)
    if contiguous:  # not channels-last: converted first, same result
        x = x.contiguous()
    got = conv3d_same(x, w, bb, backend="cpu", chunk_tiles=chunk, tile=tile)
    _close(got, conv3d_same_reference(x, w, bb), tile)


def test_weight_transform_of_a_centre_tap_is_its_value_at_every_point():
    # a kernel that is 1 at its centre: G g G^T along an axis is (0, 0.5, -0.5, 0) x (0, 0.5, -0.5, 0) ...
    w = torch.zeros(1, 1, 3, 3, 3)
    w[0, 0, 1, 1, 1] = 1.0
    u = winograd_weight(w).view(4, 4, 4)
    g = torch.tensor([0.0, 0.5, -0.5, 0.0])
    torch.testing.assert_close(u, torch.einsum("a,b,c->abc", g, g, g))
    # F(4, 3): G's middle column (0, 2/3, -2/3, -4/3, 4/3, 0)
    u4 = winograd_weight(w, tile=4).view(6, 6, 6)
    g4 = torch.tensor([0.0, 2 / 3, -2 / 3, -4 / 3, 4 / 3, 0.0])
    torch.testing.assert_close(u4, torch.einsum("a,b,c->abc", g4, g4, g4))


def test_weight_cache_follows_in_place_updates_and_tiles():
    x, w, bias = _inputs(1, 16, 8, (4, 6, 6), 3, seed=3)
    first = conv3d_same(x, w, bias, backend="cpu", tile=2)
    _close(first, conv3d_same_reference(x, w, bias))
    _close(
        conv3d_same(x, w, bias, backend="cpu", tile=4), conv3d_same_reference(x, w, bias), 4
    )  # its own transform
    _close(conv3d_same(x, w, bias, backend="cpu", tile=2), first)
    with torch.no_grad():
        w.mul_(-2.0)  # the cached transform must not be reused
    _close(conv3d_same(x, w, bias, backend="cpu", tile=2), conv3d_same_reference(x, w, bias))
    _close(conv3d_same(x, w, bias, backend="cpu", tile=4), conv3d_same_reference(x, w, bias), 4)


def test_auto_choice(monkeypatch):
    calls = []
    real = W._winograd
    monkeypatch.setattr(W, "_winograd", lambda *a: calls.append(a[4]) or real(*a))
    # MIN_TILES tiles of TILE^3 outputs
    x, w, bias = _inputs(1, MIN_CHANNELS, 8, (TILE, TILE, TILE * MIN_TILES), 3, seed=4)
    got = conv3d_same(x, w, bias)
    assert calls == [TILE] and got.is_contiguous(memory_format=torch.channels_last_3d)
    _close(got, conv3d_same_reference(x, w, bias), TILE)
    # one tile fewer: the transformed weight costs more than the tiles save
    few = x[..., : TILE * (MIN_TILES - 1)].contiguous(memory_format=torch.channels_last_3d)
    torch.testing.assert_close(conv3d_same(few, w, bias), conv3d_same_reference(few, w, bias))
    assert calls == [TILE]
    # bfloat16, few channels, autograd and other kernels go to F.conv3d
    xb, wb = x.bfloat16(), w.bfloat16()
    torch.testing.assert_close(conv3d_same(xb, wb), conv3d_same_reference(xb, wb))
    small, ws, _ = _inputs(1, MIN_CHANNELS - 1, 8, (TILE, TILE, TILE * MIN_TILES), 3, seed=5)
    torch.testing.assert_close(conv3d_same(small, ws), conv3d_same_reference(small, ws))
    wg = w.clone().requires_grad_(True)
    y = conv3d_same(x, wg, bias)
    y.sum().backward()
    assert wg.grad is not None and wg.grad.abs().sum() > 0
    w5 = torch.randn(8, MIN_CHANNELS, 5, 5, 5) * 0.01
    torch.testing.assert_close(conv3d_same(x, w5), conv3d_same_reference(x, w5))
    with torch.autocast("cpu", dtype=torch.bfloat16):  # autocast: its bfloat16 convolution
        torch.testing.assert_close(conv3d_same(x, w, bias), F.conv3d(x, w, bias, padding=1))
    assert calls == [TILE]


def test_explicit_backend_refuses_what_it_cannot_run():
    x, w, bias = _inputs(1, 16, 8, (4, 6, 6), 3, seed=6)
    with pytest.raises(BackendUnavailableError, match="float32"):
        conv3d_same(x.bfloat16(), w.bfloat16(), backend="cpu")
    with pytest.raises(BackendUnavailableError, match="no backward"):
        conv3d_same(x, w.clone().requires_grad_(True), backend="cpu")
    with pytest.raises(BackendUnavailableError, match="weights"):
        conv3d_same(x, torch.randn(8, 16, 5, 5, 5), backend="cpu")
    with pytest.raises(ValueError, match="same C"):
        conv3d_same(x, torch.randn(8, 4, 3, 3, 3))
    with pytest.raises(ValueError, match="odd"):
        conv3d_same(x, torch.randn(8, 16, 2, 3, 3))
    with pytest.raises(ValueError, match="bias"):
        conv3d_same(x, w, torch.zeros(3))
    with pytest.raises(ValueError, match="tile must be 2 or 4"):
        conv3d_same(x, w, backend="cpu", tile=3)
    with (
        pytest.raises(BackendUnavailableError, match="autocast"),
        torch.autocast("cpu", dtype=torch.bfloat16),
    ):
        conv3d_same(x, w, backend="cpu")
