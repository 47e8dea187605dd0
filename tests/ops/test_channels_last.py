"""The channels-last (NDHWC / NHWC) kernels of the fused inference passes against their references."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from fastpanc.ops import (
    avg_pool_down,
    avg_pool_down_reference,
    depth_to_space_cat,
    depth_to_space_cat_reference,
    instance_norm_act,
    instance_norm_act_reference,
)
from fastpanc.ops._layout import channels_last_format

DTYPES = [torch.float32, torch.bfloat16, torch.float16]
NORM_TOL = {
    torch.float32: {"rtol": 1e-5, "atol": 1e-5},
    torch.float16: {"rtol": 1e-3, "atol": 2e-3},
    torch.bfloat16: {"rtol": 8e-3, "atol": 8e-3},
}


def _cl(t: torch.Tensor) -> torch.Tensor:
    return t.contiguous(memory_format=torch.channels_last_3d if t.dim() == 5 else torch.channels_last)


def _is_cl(t: torch.Tensor) -> bool:
    return t.is_contiguous(memory_format=torch.channels_last_3d if t.dim() == 5 else torch.channels_last)


def _randn(shape, dtype, g, scale=3.0, shift=2.0):
    return (torch.randn(shape, generator=g) * scale + shift).to(dtype)


def test_layout_detection():
    x = torch.randn(2, 3, 4, 5, 6)
    assert channels_last_format(x) is None
    assert channels_last_format(_cl(x)) is torch.channels_last_3d
    assert channels_last_format(_cl(torch.randn(2, 3, 5, 6))) is torch.channels_last
    assert channels_last_format(_cl(torch.randn(2, 1, 4, 5, 6))) is None  # one channel: both layouts at once
    assert channels_last_format(_cl(x)[:, :, :, 1:]) is None  # not dense


# instance_norm_act --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("res_dtype", [None, *DTYPES])
@pytest.mark.parametrize("slope", [None, 0.01])
@pytest.mark.parametrize("shape", [(2, 3, 9, 20, 33), (1, 37, 5, 11, 13), (2, 32, 3, 7, 9)])
def test_norm_matches_reference(dtype, res_dtype, slope, shape):
    # several tiles per channel (5940 voxels at 3 channels, 715 at 37) that the threads share unevenly
    g = torch.Generator().manual_seed(0)
    x = _cl(_randn(shape, dtype, g))
    w, b = _randn(shape[1:2], torch.float32, g, 1.0, 0.5), _randn(shape[1:2], torch.float32, g, 0.3, 0.0)
    r = None if res_dtype is None else _cl(_randn(shape, res_dtype, g))
    want = instance_norm_act_reference(x, w, b, 1e-5, slope, r)
    got = instance_norm_act(x, w, b, 1e-5, slope, r, backend="cpu")
    assert got.dtype == want.dtype and got.shape == x.shape and _is_cl(got)
    torch.testing.assert_close(got.float(), want.float(), **NORM_TOL[got.dtype])


@settings(max_examples=40, deadline=None, derandomize=True)
@given(
    batch=st.integers(1, 2),
    channels=st.integers(2, 41),
    spatial=st.lists(st.integers(1, 13), min_size=2, max_size=3),
    dtype=st.sampled_from([torch.float32, torch.bfloat16]),
    affine=st.sampled_from(["none", "weight", "both"]),
    residual=st.sampled_from([None, "channels_last", "contiguous"]),
    slope=st.sampled_from([None, 0.01, 0.3]),
    inplace=st.booleans(),
    seed=st.integers(0, 1000),
)
def test_norm_random_shapes(batch, channels, spatial, dtype, affine, residual, slope, inplace, seed):
    if math.prod(spatial) < 2:
        spatial = [*spatial[:-1], 2]
    g = torch.Generator().manual_seed(seed)
    shape = (batch, channels, *spatial)
    x = _cl(_randn(shape, dtype, g))
    w = None if affine == "none" else _randn((channels,), torch.float32, g, 1.0, 0.0)
    b = _randn((channels,), torch.float32, g, 1.0, 0.0) if affine == "both" else None
    r = None if residual is None else _randn(shape, dtype, g)
    if residual == "channels_last":
        r = _cl(r)
    want = instance_norm_act_reference(x, w, b, 1e-5, slope, r)
    xin = x.clone(memory_format=torch.preserve_format)
    got = instance_norm_act(xin, w, b, 1e-5, slope, r, backend="cpu", inplace=inplace)
    assert _is_cl(got) and got.dtype == dtype
    if inplace:
        assert got.data_ptr() == xin.data_ptr()
    torch.testing.assert_close(got.float(), want.float(), **NORM_TOL[dtype])


def test_norm_large_offset_and_many_channels():
    """Statistics merged across tiles and threads keep a small variance under a large mean; a channel count
    above the tile size (one voxel per tile) works too."""
    g = torch.Generator().manual_seed(1)
    x = _cl(_randn((1, 4, 16, 64, 64), torch.float32, g, scale=0.01, shift=100.0))
    got = instance_norm_act(x, None, None, 1e-12, None, backend="cpu")
    want = instance_norm_act_reference(x.double(), None, None, 1e-12, None).float()
    torch.testing.assert_close(got, want, rtol=5e-3, atol=5e-3)
    wide = _cl(_randn((1, 8200, 3, 2), torch.float32, g))
    got = instance_norm_act(wide, None, None, 1e-5, 0.01, backend="cpu")
    torch.testing.assert_close(
        got, instance_norm_act_reference(wide, None, None, 1e-5, 0.01), rtol=1e-5, atol=1e-5
    )


def test_norm_matches_contiguous_kernel():
    """The two CPU kernels agree to float32 rounding on a network-sized convolution output."""
    g = torch.Generator().manual_seed(2)
    x = _randn((1, 32, 8, 40, 48), torch.float32, g)
    r = _randn(x.shape, torch.float32, g)
    w, b = torch.rand(32, generator=g) + 0.5, torch.rand(32, generator=g) - 0.5
    a = instance_norm_act(x, w, b, 1e-5, 0.01, r, backend="cpu")
    c = instance_norm_act(_cl(x), w, b, 1e-5, 0.01, _cl(r), backend="cpu")
    assert a.is_contiguous() and _is_cl(c)
    torch.testing.assert_close(c, a, rtol=1e-5, atol=2e-6)


def test_norm_with_grad_stays_channels_last():
    """With autograd the channels-last kernels run forward and backward: output and gradient keep the layout."""
    x = _cl(torch.randn(1, 3, 4, 5, 6)).requires_grad_()
    y = instance_norm_act(x, None, None, 1e-5, 0.01, backend="cpu")
    g = torch.randn(y.shape)
    (gx,) = torch.autograd.grad(y, [x], g)
    xr = x.detach().clone().requires_grad_()
    (want,) = torch.autograd.grad(instance_norm_act_reference(xr, None, None, 1e-5, 0.01), [xr], g)
    assert _is_cl(y) and _is_cl(gx)
    torch.testing.assert_close(gx, want, rtol=1e-4, atol=1e-4)


# avg_pool_down ------------------------------------------------------------------------------------------------


@settings(max_examples=40, deadline=None, derandomize=True)
@given(
    channels=st.integers(1, 37),
    spatial=st.lists(st.integers(1, 12), min_size=3, max_size=3),
    stride=st.lists(st.integers(1, 3), min_size=3, max_size=3),
    dims=st.sampled_from([2, 3]),
    dtype=st.sampled_from(DTYPES),
    seed=st.integers(0, 1000),
)
def test_pool_random_shapes(channels, spatial, stride, dims, dtype, seed):
    g = torch.Generator().manual_seed(seed)
    spatial, stride = spatial[3 - dims :], stride[3 - dims :]
    x = _cl((torch.randn(2, channels, *spatial, generator=g) * 4).to(dtype))
    got = avg_pool_down(x, stride, backend="cpu")
    if any(n < s for n, s in zip(spatial, stride)):
        assert got.numel() == 0
        return
    want = avg_pool_down_reference(x, stride)
    assert got.shape == want.shape and got.dtype == dtype and _is_cl(got)
    tol = {"rtol": 1e-6, "atol": 1e-6} if dtype == torch.float32 else {"rtol": 0, "atol": 0}
    torch.testing.assert_close(got, want, **tol)


# depth_to_space_cat -------------------------------------------------------------------------------------------


@settings(max_examples=40, deadline=None, derandomize=True)
@given(
    co=st.integers(1, 9),
    cs=st.integers(0, 11),
    spatial=st.lists(st.integers(1, 6), min_size=3, max_size=3),
    stride=st.lists(st.integers(1, 3), min_size=3, max_size=3),
    dims=st.sampled_from([2, 3]),
    dtype=st.sampled_from(DTYPES),
    with_bias=st.booleans(),
    skip_layout=st.sampled_from(["channels_last", "contiguous"]),
    seed=st.integers(0, 1000),
)
def test_upsample_random_shapes(co, cs, spatial, stride, dims, dtype, with_bias, skip_layout, seed):
    g = torch.Generator().manual_seed(seed)
    spatial, stride = spatial[3 - dims :], stride[3 - dims :]
    s = math.prod(stride)
    y = _cl(torch.randn(2, co * s, *spatial, generator=g).to(dtype))
    up = tuple(a * b for a, b in zip(spatial, stride))
    skip = None
    if cs:
        skip = torch.randn(2, cs, *up, generator=g).to(dtype)
        skip = _cl(skip) if skip_layout == "channels_last" else skip
    bias = torch.randn(co, generator=g) if with_bias else None
    want = depth_to_space_cat_reference(y, stride, bias, skip)
    got = depth_to_space_cat(y, stride, bias, skip, backend="cpu")
    assert got.dtype == dtype and got.shape == want.shape
    if channels_last_format(y) or (skip is not None and channels_last_format(skip)):
        assert _is_cl(got)
    assert torch.equal(got, want)  # the same float32 add and one rounding: bit for bit


def test_upsample_channels_last_skip_only():
    """A contiguous ``y`` with a channels-last skip runs channels-last too (the layout the network runs)."""
    y = torch.randn(1, 8, 2, 3, 4)
    skip = _cl(torch.randn(1, 5, 2, 6, 8))
    bias = torch.randn(2)
    got = depth_to_space_cat(y, (1, 2, 2), bias, skip, backend="cpu")
    assert _is_cl(got) and not got.is_contiguous()
    assert torch.equal(got, depth_to_space_cat_reference(y, (1, 2, 2), bias, skip))
