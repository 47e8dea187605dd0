from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from fastpanc.model.pointwise import PointwiseConv2d, PointwiseConv3d, pointwise_conv


def _layouts(x: torch.Tensor) -> dict[str, torch.Tensor]:
    cl = torch.channels_last_3d if x.dim() == 5 else torch.channels_last
    return {
        "contiguous": x.contiguous(),
        "channels_last": x.contiguous(memory_format=cl),
        "strided": x.transpose(-1, -2).contiguous().transpose(-1, -2),
    }


@settings(max_examples=30, deadline=None, derandomize=True)
@given(
    b=st.integers(1, 3),
    c=st.integers(1, 9),
    o=st.integers(1, 9),
    spatial=st.lists(st.integers(1, 7), min_size=2, max_size=3),
    bias=st.booleans(),
    seed=st.integers(0, 1000),
)
def test_forward_and_gradients_match_the_convolution(b, c, o, spatial, bias, seed):
    g = torch.Generator().manual_seed(seed)
    x0 = torch.randn(b, c, *spatial, generator=g)
    w0 = torch.randn(o, c, *([1] * len(spatial)), generator=g)
    b0 = torch.randn(o, generator=g) if bias else None
    gy = torch.randn(b, o, *spatial, generator=g)
    conv = F.conv3d if len(spatial) == 3 else F.conv2d
    for name, x in _layouts(x0).items():
        xr, wr = x.clone().requires_grad_(), w0.clone().requires_grad_()
        br = b0.clone().requires_grad_() if bias else None
        want = conv(xr, wr, br)
        want.backward(gy)
        xf, wf = x.clone().requires_grad_(), w0.clone().requires_grad_()
        bf = b0.clone().requires_grad_() if bias else None
        got = pointwise_conv(xf, wf, bf)
        got.backward(gy)
        torch.testing.assert_close(got, want, msg=name)
        torch.testing.assert_close(xf.grad, xr.grad, msg=name)
        # weight and bias gradients are sums over every voxel of the batch, added in another order than oneDNN's:
        # float32 rounding relative to the largest entry
        for got_g, want_g in ((wf.grad, wr.grad), *(((bf.grad, br.grad),) if bias else ())):
            scale = max(1.0, float(want_g.abs().max()))
            torch.testing.assert_close(got_g, want_g, rtol=1e-5, atol=4e-6 * scale, msg=name)


def test_modules_keep_the_convolution_parameters_and_keys():
    for mine, theirs, x in (
        (PointwiseConv3d(6, 4), nn.Conv3d(6, 4, 1), torch.randn(2, 6, 3, 5, 7)),
        (PointwiseConv2d(6, 4, bias=False), nn.Conv2d(6, 4, 1, bias=False), torch.randn(2, 6, 5, 7)),
    ):
        assert isinstance(mine, type(theirs))
        assert mine.state_dict().keys() == theirs.state_dict().keys()
        theirs.load_state_dict(mine.state_dict())
        torch.testing.assert_close(mine(x), theirs(x))


def test_bf16_autocast_matches_the_convolution_under_autocast():
    x = torch.randn(2, 8, 4, 16, 16)
    m = PointwiseConv3d(8, 3)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        got = m(x)
        want = F.conv3d(x, m.weight, m.bias)
    assert got.dtype == want.dtype == torch.bfloat16
    torch.testing.assert_close(got.float(), want.float(), rtol=2e-2, atol=2e-2)


def test_a_wrong_weight_is_a_value_error():
    with pytest.raises(ValueError, match="weight"):
        pointwise_conv(torch.randn(1, 4, 3, 3, 3), torch.randn(2, 5, 1, 1, 1), None)
    with pytest.raises(ValueError, match="weight"):
        pointwise_conv(torch.randn(1, 4, 3, 3, 3), torch.randn(2, 4, 3, 1, 1), None)
