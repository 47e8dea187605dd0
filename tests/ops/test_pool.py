from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from fastpanc.ops import BackendUnavailableError, avg_pool_down, avg_pool_down_reference


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
@pytest.mark.parametrize(
    "shape,stride",
    [
        ((2, 3, 9, 17, 21), (1, 2, 2)),
        ((1, 4, 8, 8, 8), (2, 2, 2)),
        ((2, 3, 11, 13), (2, 3)),
        ((1, 2, 5, 6, 7), (1, 1, 1)),
    ],
)
def test_cpu_matches_reference(dtype, shape, stride):
    x = (torch.randn(shape, generator=torch.Generator().manual_seed(0)) * 4).to(dtype)
    want = avg_pool_down_reference(x, stride)
    got = avg_pool_down(x, stride, backend="cpu")
    assert got.shape == want.shape and got.dtype == dtype
    # sums in float32, one rounding to the dtype at the end, as the reference
    tol = {"rtol": 1e-6, "atol": 1e-6} if dtype == torch.float32 else {"rtol": 0, "atol": 0}
    torch.testing.assert_close(got, want, **tol)


def test_matches_torch_pool_module():
    x = torch.randn(2, 3, 8, 12, 10)
    got = avg_pool_down(x, (2, 2, 2), backend="cpu")
    torch.testing.assert_close(got, torch.nn.AvgPool3d(2, 2)(x), rtol=1e-6, atol=1e-6)


@settings(max_examples=25, deadline=None)
@given(
    spatial=st.lists(st.integers(1, 12), min_size=3, max_size=3),
    stride=st.lists(st.integers(1, 3), min_size=3, max_size=3),
    seed=st.integers(0, 1000),
)
def test_random_shapes_non_contiguous(spatial, stride, seed):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(2, *spatial, 3, generator=g).movedim(
        -1, 1
    )  # (B, C, z, y, x), channels innermost in memory
    if any(n < s for n, s in zip(spatial, stride)):
        assert avg_pool_down(x, stride, backend="cpu").numel() == 0
        return
    torch.testing.assert_close(
        avg_pool_down(x, stride, backend="cpu"), avg_pool_down_reference(x, stride), rtol=1e-5, atol=1e-5
    )


def test_errors():
    x = torch.randn(1, 2, 4, 4, 4)
    with pytest.raises(ValueError, match="one stride per spatial axis"):
        avg_pool_down(x, (2, 2))
    with pytest.raises(ValueError, match=">= 1"):
        avg_pool_down(x, (0, 2, 2))
    with pytest.raises(ValueError, match="not supported"):
        avg_pool_down(x.to(torch.int32), (2, 2, 2))
    with pytest.raises(BackendUnavailableError, match="no backward"):
        avg_pool_down(x.requires_grad_(), (2, 2, 2), backend="cpu")
