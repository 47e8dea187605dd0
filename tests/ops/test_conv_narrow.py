"""conv3d_narrow: the C++ direct kernel against F.conv3d, its layout, and when auto takes it."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from fastpanc.ops import BackendUnavailableError, conv3d_narrow, conv3d_narrow_reference
from fastpanc.ops.conv_narrow import MAX_CHANNELS


def _inputs(b, c, co, spatial, kernel, seed, bias=True):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(b, c, *spatial, generator=g)
    w = torch.randn(co, c, *kernel, generator=g) / (c * kernel[0] * kernel[1] * kernel[2]) ** 0.5
    bb = torch.randn(co, generator=g) if bias else None
    return x, w, bb


def _close(got, want):
    # the same products summed in another order: a few float32 roundings of the output's scale
    scale = want.abs().max().item() + 1e-6
    torch.testing.assert_close(got, want, rtol=0, atol=2e-6 * scale)


@pytest.mark.parametrize(
    "b,c,co,spatial,kernel",
    [
        (1, 1, 32, (9, 13, 17), (3, 3, 3)),  # the ResEnc stem: 1 -> 32, odd sizes (x not a multiple of 4)
        (2, 3, 40, (4, 8, 12), (3, 3, 3)),  # a second, partly filled block of 16 output channels
        (1, 2, 5, (6, 5, 7), (1, 3, 3)),  # in-plane kernel, fewer outputs than one block
        (1, 1, 16, (5, 6, 7), (5, 3, 1)),  # other odd kernels
        (1, 1, 3, (1, 1, 1), (3, 3, 3)),  # one voxel: every tap but the centre reads the padding
    ],
)
def test_matches_conv3d(b, c, co, spatial, kernel):
    x, w, bias = _inputs(b, c, co, spatial, kernel, seed=b * 100 + c + co)
    got = conv3d_narrow(x, w, bias, backend="cpu")
    want = conv3d_narrow_reference(x, w, bias)
    assert got.shape == want.shape and got.dtype == torch.float32
    assert got.is_contiguous(memory_format=torch.channels_last_3d)
    _close(got, want)


@settings(max_examples=30, deadline=None, derandomize=True)
@given(
    b=st.integers(1, 2),
    c=st.integers(1, 6),
    co=st.integers(1, 40),
    spatial=st.lists(st.integers(1, 11), min_size=3, max_size=3),
    kernel=st.sampled_from([(3, 3, 3), (1, 3, 3), (3, 1, 3), (1, 1, 1)]),
    bias=st.booleans(),
    layout=st.sampled_from(["contiguous", "channels_last", "strided"]),
    seed=st.integers(0, 10_000),
)
def test_random_shapes_and_layouts(b, c, co, spatial, kernel, bias, layout, seed):
    x, w, bb = _inputs(b, c, co, spatial, kernel, seed, bias)
    if layout == "channels_last":
        x = x.contiguous(memory_format=torch.channels_last_3d)
    elif layout == "strided":  # a view with gaps: every other voxel along x of a wider volume
        x = torch.repeat_interleave(x, 2, dim=-1)[..., ::2]
        assert not x.is_contiguous()
    _close(conv3d_narrow(x, w, bb, backend="cpu"), conv3d_narrow_reference(x, w, bb))


def test_auto_takes_the_kernel_for_few_channels_only():
    x, w, bias = _inputs(1, 1, 32, (4, 6, 8), (3, 3, 3), seed=0)
    with torch.no_grad():
        got = conv3d_narrow(x, w, bias)
    assert got.is_contiguous(memory_format=torch.channels_last_3d)  # the C++ kernel's layout
    _close(got, conv3d_narrow_reference(x, w, bias))
    wide = _inputs(1, MAX_CHANNELS + 1, 8, (4, 6, 8), (3, 3, 3), seed=1)
    with torch.no_grad():
        out = conv3d_narrow(*wide)
    assert out.is_contiguous()  # F.conv3d's: oneDNN is the fast path for wider inputs
    torch.testing.assert_close(out, conv3d_narrow_reference(*wide), rtol=0, atol=0)


def test_auto_under_autocast_or_autograd_is_torch():
    x, w, bias = _inputs(1, 1, 8, (3, 4, 5), (3, 3, 3), seed=2)
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        out = conv3d_narrow(x, w, bias)
    assert out.dtype == torch.bfloat16
    w.requires_grad_(True)
    out = conv3d_narrow(x, w, bias)
    out.sum().backward()
    assert w.grad is not None and w.grad.abs().sum() > 0


@pytest.mark.parametrize(
    "make, match",
    [
        (lambda x, w, b: (x.double(), w.double(), None), "float32"),
        (lambda x, w, b: (x, w.requires_grad_(True), b), "no backward"),
    ],
)
def test_explicit_cpu_refuses_what_it_cannot_run(make, match):
    x, w, bias = _inputs(1, 1, 8, (3, 4, 5), (3, 3, 3), seed=3)
    with pytest.raises(BackendUnavailableError, match=match):
        conv3d_narrow(*make(x, w, bias), backend="cpu")
    x, w, bias = _inputs(1, 1, 8, (3, 4, 5), (3, 3, 3), seed=3)
    with (
        pytest.raises(BackendUnavailableError, match="autocast"),
        torch.autocast("cpu", dtype=torch.bfloat16),
    ):
        conv3d_narrow(x, w, bias, backend="cpu")


def test_bad_arguments():
    x, w, bias = _inputs(1, 2, 8, (3, 4, 5), (3, 3, 3), seed=4)
    with pytest.raises(ValueError, match="same C"):
        conv3d_narrow(x, w[:, :1], bias)
    with pytest.raises(ValueError, match="odd kernel"):
        conv3d_narrow(x, w[..., :2], bias)
    with pytest.raises(ValueError, match="bias must have shape"):
        conv3d_narrow(x, w, bias[:3])
    with pytest.raises(TypeError):
        conv3d_narrow(x.numpy(), w, bias)
