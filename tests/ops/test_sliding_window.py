from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.ndimage import gaussian_filter

from fastpanc.ops import gaussian_map, sliding_window_starts, window_slices


def test_starts_known_example():
    # the example in nnU-Net's source: size 110, patch 64, step 0.5 -> starts 0, 23, 46
    assert sliding_window_starts((110, 64, 64), (64, 64, 64), 0.5) == [[0, 23, 46], [0], [0]]
    assert sliding_window_starts((128,), (64,), 0.5) == [[0, 32, 64]]
    assert sliding_window_starts((65,), (64,), 1.0) == [[0, 1]]


@pytest.mark.nnunet
@settings(max_examples=200, deadline=None, derandomize=True)
@given(
    patch=st.lists(st.integers(1, 200), min_size=3, max_size=3),
    extra=st.lists(st.integers(0, 500), min_size=3, max_size=3),
    step=st.sampled_from([0.5, 1.0, 0.25, 0.33, 0.7, 0.1]),
)
def test_starts_equal_nnunet(patch, extra, step):
    from nnunetv2.inference.sliding_window_prediction import compute_steps_for_sliding_window

    shape = [p + e for p, e in zip(patch, extra)]
    assert sliding_window_starts(shape, patch, step) == compute_steps_for_sliding_window(shape, patch, step)


def test_window_slices_order_and_coverage():
    shape, patch = (70, 90, 100), (32, 48, 64)
    starts = sliding_window_starts(shape, patch, 0.5)
    slices = window_slices(shape, patch, 0.5)
    assert len(slices) == len(starts[0]) * len(starts[1]) * len(starts[2])
    # nnU-Net's loop order: first axis outermost, last axis fastest
    expected = [(a, b, c) for a in starts[0] for b in starts[1] for c in starts[2]]
    assert [tuple(s.start for s in sl) for sl in slices] == expected
    covered = torch.zeros(shape, dtype=torch.int32)
    for sl in slices:
        assert all(s.stop - s.start == p for s, p in zip(sl, patch))
        covered[sl] += 1
    assert int(covered.min()) >= 1


def test_starts_errors():
    with pytest.raises(ValueError, match="smaller than the patch"):
        sliding_window_starts((10, 64, 64), (64, 64, 64))
    with pytest.raises(ValueError, match="step"):
        sliding_window_starts((64, 64, 64), (64, 64, 64), 0.0)
    with pytest.raises(ValueError, match="same"):
        sliding_window_starts((64, 64), (64, 64, 64))


@pytest.mark.parametrize("patch", [(5, 7, 9), (16, 24, 40), (1, 3, 4), (33, 17, 2)])
def test_gaussian_is_scipy_filtered_impulse(patch):
    delta = np.zeros(patch)
    delta[tuple(p // 2 for p in patch)] = 1
    g = gaussian_filter(delta, [p / 8 for p in patch], 0, mode="constant", cval=0)
    g /= g.max() / 10
    g = torch.from_numpy(g).float()
    g[g == 0] = g[g != 0].min()
    got = gaussian_map(patch)
    assert got.dtype == torch.float32 and got.shape == patch
    torch.testing.assert_close(got, g, rtol=0, atol=0)
    assert float(got.max()) == pytest.approx(10.0)


@pytest.mark.nnunet
@pytest.mark.parametrize("patch", [(64, 128, 192), (5, 7, 9), (28, 256, 224), (3, 4, 1)])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
def test_gaussian_equals_nnunet(patch, dtype):
    from nnunetv2.inference.sliding_window_prediction import compute_gaussian

    want = compute_gaussian(
        patch, sigma_scale=1.0 / 8, value_scaling_factor=10, dtype=dtype, device=torch.device("cpu")
    )
    got = gaussian_map(patch, dtype=dtype)
    torch.testing.assert_close(got, want, rtol=0, atol=0)


def test_gaussian_float16_has_no_zeros():
    g = gaussian_map((64, 128, 192), dtype=torch.float16)
    assert bool((g > 0).all())
    assert float(g.max()) == 10.0


def test_gaussian_errors():
    with pytest.raises(ValueError, match="patch"):
        gaussian_map((0, 4, 4))
    with pytest.raises(ValueError, match="floating"):
        gaussian_map((4, 4, 4), dtype=torch.int16)
