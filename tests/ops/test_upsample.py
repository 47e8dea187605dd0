from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from fastpanc.ops import (
    BackendUnavailableError,
    depth_to_space_cat,
    depth_to_space_cat_reference,
    transposed_conv_as_1x1_weight,
)

CASES = [  # (ci, co, spatial, stride)
    (6, 4, (3, 5, 7), (1, 2, 2)),
    (5, 3, (2, 3, 4), (2, 2, 2)),
    (4, 3, (5, 6), (2, 3)),
    (3, 2, (4, 4, 4), (1, 1, 1)),
]


def _tconv_and_1x1(ci, co, spatial, stride, seed=0):
    torch.manual_seed(seed)
    tc = (torch.nn.ConvTranspose3d if len(stride) == 3 else torch.nn.ConvTranspose2d)(ci, co, stride, stride)
    x = torch.randn(2, ci, *spatial)
    conv = F.conv3d if len(stride) == 3 else F.conv2d
    with torch.no_grad():
        y = conv(x, transposed_conv_as_1x1_weight(tc.weight))
    return tc, x, y


@pytest.mark.parametrize(("ci", "co", "spatial", "stride"), CASES)
def test_reference_equals_transposed_conv_and_cat(ci, co, spatial, stride):
    tc, x, y = _tconv_and_1x1(ci, co, spatial, stride)
    skip = torch.randn(2, 5, *(a * s for a, s in zip(spatial, stride)))
    with torch.no_grad():
        want = torch.cat((tc(x), skip), 1)
    got = depth_to_space_cat_reference(y, stride, tc.bias, skip)
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize(("ci", "co", "spatial", "stride"), CASES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
@pytest.mark.parametrize("with_skip", [True, False])
@pytest.mark.parametrize("with_bias", [True, False])
def test_cpu_matches_reference(ci, co, spatial, stride, dtype, with_skip, with_bias):
    tc, _, y = _tconv_and_1x1(ci, co, spatial, stride)
    y = y.to(dtype)
    skip = torch.randn(2, 3, *(a * s for a, s in zip(spatial, stride))).to(dtype) if with_skip else None
    bias = tc.bias.detach() if with_bias else None
    want = depth_to_space_cat_reference(y, stride, bias, skip)
    got = depth_to_space_cat(y, stride, bias, skip, backend="cpu")
    assert got.dtype == dtype and got.is_contiguous()
    assert torch.equal(got, want)  # the same float32 add and one rounding: bit for bit


@settings(max_examples=25, deadline=None)
@given(
    spatial=st.lists(st.integers(1, 6), min_size=3, max_size=3),
    stride=st.lists(st.integers(1, 3), min_size=3, max_size=3),
    seed=st.integers(0, 1000),
)
def test_random_shapes_non_contiguous(spatial, stride, seed):
    g = torch.Generator().manual_seed(seed)
    s = stride[0] * stride[1] * stride[2]
    y = torch.randn(1, *spatial, 2 * s, generator=g).movedim(-1, 1)  # strided (B, Co*s, *S)
    skip = torch.randn(1, *(a * b for a, b in zip(spatial, stride)), 3, generator=g).movedim(-1, 1)
    bias = torch.randn(2, generator=g)
    want = depth_to_space_cat_reference(y, stride, bias, skip)
    assert torch.equal(depth_to_space_cat(y, stride, bias, skip, backend="cpu"), want)


def test_errors():
    y = torch.randn(1, 8, 2, 3, 4)
    with pytest.raises(ValueError, match="not a multiple of prod"):
        depth_to_space_cat(y, (1, 3, 3))
    with pytest.raises(ValueError, match="bias must have shape \\(2,\\)"):
        depth_to_space_cat(y, (1, 2, 2), bias=torch.zeros(3))
    with pytest.raises(ValueError, match="skip must be"):
        depth_to_space_cat(y, (1, 2, 2), skip=torch.zeros(1, 2, 2, 3, 4))
    with pytest.raises(ValueError, match="one stride"):
        depth_to_space_cat(y, (2, 2))
    with pytest.raises(BackendUnavailableError, match="skip in y's dtype"):
        depth_to_space_cat(y, (1, 2, 2), skip=torch.zeros(1, 2, 2, 6, 8, dtype=torch.bfloat16), backend="cpu")
    with pytest.raises(BackendUnavailableError, match="no backward"):
        depth_to_space_cat(y.requires_grad_(), (1, 2, 2), backend="cpu")
