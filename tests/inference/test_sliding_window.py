"""Window placement, Gaussian map, padding and subtype aggregation."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from fastpanc.inference.sliding_window import aggregate_subtype, padded_shape, predict_logits
from fastpanc.ops import gaussian_map, sliding_window_starts


@pytest.mark.nnunet
@pytest.mark.parametrize("size", [(64, 128, 192), (65, 200, 130), (100, 128, 193)])
@pytest.mark.parametrize("step", [0.5, 0.75, 1.0])
def test_window_starts_match_nnunet(size, step):
    from nnunetv2.inference.sliding_window_prediction import compute_steps_for_sliding_window

    patch = (64, 128, 192)
    size = tuple(max(s, p) for s, p in zip(size, patch))
    assert sliding_window_starts(size, patch, step) == compute_steps_for_sliding_window(size, patch, step)


@pytest.mark.nnunet
@pytest.mark.parametrize("dtype", [torch.float16, torch.float32])
def test_gaussian_matches_nnunet(dtype):
    from nnunetv2.inference.sliding_window_prediction import compute_gaussian

    ref = compute_gaussian(
        (16, 32, 24), sigma_scale=1 / 8, value_scaling_factor=10, dtype=dtype, device="cpu"
    )
    torch.testing.assert_close(gaussian_map((16, 32, 24), dtype=dtype), ref, rtol=0, atol=0)


def test_minimal_padding_rounds_up_to_the_divisor():
    full, window = padded_shape((20, 50, 70), (64, 128, 192), "minimal", (16, 32, 32))
    assert window == (32, 64, 96)
    assert full == window
    full, window = padded_shape((20, 50, 300), (64, 128, 192), "minimal", (16, 32, 32))
    assert window == (32, 64, 192) and full == (32, 64, 300)
    assert padded_shape((20, 50, 70), (64, 128, 192), "patch", None) == ((64, 128, 192), (64, 128, 192))


def test_cover_padding_grows_one_window_over_axes_up_to_one_and_a_half_patches():
    # z 70 -> 80 <= 96: one window of 80; y 50 -> 64 (smaller than the patch, as minimal); x 300 > 288: patch
    full, window = padded_shape((70, 50, 300), (64, 128, 192), "cover", (16, 32, 32))
    assert window == (80, 64, 192) and full == (80, 64, 300)
    assert padded_shape((70, 50, 300), (64, 128, 192), "minimal", (16, 32, 32))[1] == (64, 64, 192)
    # 1.5 patches along an axis still fits one window, one divisor more does not
    assert padded_shape((96, 60, 60), (64, 128, 192), "cover", (16, 32, 32))[1] == (96, 64, 64)
    assert padded_shape((97, 60, 60), (64, 128, 192), "cover", (16, 32, 32))[1] == (64, 64, 64)
    # at most 2 patches' voxels: (96, 192, 288) would hold 3.4; the most grown axis goes back first (ties: z first)
    assert padded_shape((96, 192, 288), (64, 128, 192), "cover", (16, 32, 32))[1] == (64, 128, 288)
    assert padded_shape((80, 160, 288), (64, 128, 192), "cover", (16, 32, 32))[1] == (80, 160, 192)
    # the real test image quiz_351 at the ResEnc M spacing: four windows in fast mode before, one now
    full, window = padded_shape((86, 152, 181), (64, 128, 192), "cover", (16, 32, 32))
    assert window == full == (96, 160, 192)
    assert len(sliding_window_starts(full, window, 0.75)) == 3
    assert all(len(s) == 1 for s in sliding_window_starts(full, window, 0.75))
    with pytest.raises(ValueError, match="needs the network's divisor"):
        padded_shape((70, 50, 300), (64, 128, 192), "cover", None)


def test_aggregate_subtype_weights_lesion_then_pancreas_then_uniform():
    probs = torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]])
    p, how = aggregate_subtype(probs, torch.tensor([0, 30, 10]), torch.tensor([5, 5, 5]))
    assert how == "lesion"
    torch.testing.assert_close(p, torch.tensor([0.0, 0.75, 0.25]))
    p, how = aggregate_subtype(probs, torch.zeros(3), torch.tensor([2, 0, 2]))
    assert how == "pancreas"
    torch.testing.assert_close(p, torch.tensor([0.5, 0.0, 0.5]))
    p, how = aggregate_subtype(probs, torch.zeros(3), torch.zeros(3))
    assert how == "uniform"
    torch.testing.assert_close(p, torch.full((3,), 1 / 3))


class _Identityish(torch.nn.Module):
    """Logits that depend only on the voxel value: any window placement must give the same result."""

    def forward(self, x):
        return torch.cat([-x, x, 0 * x], dim=1)


@pytest.mark.parametrize(
    "padding,shape,one_window",
    [
        ("patch", (19, 37, 29), False),
        ("minimal", (19, 37, 29), False),
        ("cover", (19, 37, 29), False),
        # (12, 16, 16) covers the image in one window; the patch would need two along z
        ("cover", (11, 14, 14), True),
    ],
)
def test_pointwise_network_is_reproduced_exactly_under_any_tiling(padding, shape, one_window):
    torch.manual_seed(0)
    data = torch.randn(1, *shape)
    out = predict_logits(
        _Identityish(),
        data,
        (8, 16, 16),
        step=0.5,
        mirror_axes=(0, 1, 2),
        batch_size=3,
        padding=padding,
        divisor=(4, 8, 8),
    )
    expected = torch.cat([-data, data, 0 * data])
    torch.testing.assert_close(out.logits, expected, rtol=1e-5, atol=1e-5)
    assert out.subtype_probs is None
    full, window = padded_shape(shape, (8, 16, 16), padding, (4, 8, 8))
    assert out.num_windows == int(np.prod([len(s) for s in sliding_window_starts(full, window, 0.5)]))
    assert (out.num_windows == 1) == one_window


def test_step_outside_range_is_refused():
    with pytest.raises(ValueError, match="step must be in"):
        sliding_window_starts((10, 10, 10), (4, 4, 4), 0.0)


def test_lesion_window_start_centres_on_the_largest_lesion():
    from fastpanc.inference.sliding_window import lesion_window_start

    lesion = torch.zeros(20, 30, 40, dtype=torch.bool)
    lesion[2:4, 2:4, 2:4] = True  # a small satellite
    lesion[10:14, 20:26, 30:36] = True  # the largest component: centre (11, 22, 32)
    # offset 1 into a padded grid of (22, 32, 42), window (8, 8, 8): start = centre + offset - 4
    assert lesion_window_start(lesion, (8, 8, 8), (22, 32, 42), (1, 1, 1)) == (8, 19, 29)
    # clipped so that the window stays inside the padded grid
    assert lesion_window_start(lesion, (16, 32, 16), (22, 32, 42), (1, 1, 1)) == (4, 0, 25)
    assert (
        lesion_window_start(torch.zeros(4, 4, 4, dtype=torch.bool), (2, 2, 2), (4, 4, 4), (0, 0, 0)) is None
    )


class _LesionNet(torch.nn.Module):
    """Lesion (channel 2) where the input exceeds 0.5, else background; the subtype logits record where the
    window saw the lesion: [fraction of lesion voxels, 0, 0] * 50."""

    def forward(self, x: torch.Tensor):
        from fastpanc.model.network import NetOutput

        lesion = (x[:, :1] > 0.5).float()
        seg = torch.cat([1 - lesion, torch.zeros_like(lesion), lesion], dim=1) * 10
        frac = lesion.flatten(1).mean(1, keepdim=True)
        cls = torch.cat([frac, torch.zeros_like(frac), torch.zeros_like(frac)], dim=1) * 50
        return NetOutput(seg=[seg], cls=cls)


@pytest.mark.parametrize("output", ["logits", "labels"])
def test_subtype_from_the_lesion_centred_window(output):
    data = torch.zeros(1, 24, 24, 24)
    data[:, 14:18, 14:18, 14:18] = 1.0  # a 4^3 lesion; 8^3 windows, step 1: no window holds all of it
    kw = dict(patch_size=(8, 8, 8), step=1.0, use_gaussian=False, output=output)
    centred = predict_logits(_LesionNet(), data, subtype_from="lesion_window", **kw)
    windows = predict_logits(_LesionNet(), data, subtype_from="windows", **kw)
    assert centred.subtype_weighting == "lesion_window" and windows.subtype_weighting == "lesion"
    # the centred window holds the whole lesion (64 of 512 voxels); the tiled ones only parts of it
    want = torch.softmax(torch.tensor([64 / 512 * 50, 0.0, 0.0]), 0)
    torch.testing.assert_close(centred.subtype_probs, want)
    assert windows.subtype_probs[0] < centred.subtype_probs[0]
    # a window grown to cover the image (12 x 8 x 8 here) still takes the subtype from a patch-sized lesion window
    small = data[:, 6:18, 10:18, 10:18]
    cover = predict_logits(
        _LesionNet(), small, subtype_from="lesion_window", padding="cover", divisor=(4, 4, 4), **kw
    )
    assert cover.num_windows == 1 and cover.subtype_weighting == "lesion_window"
    torch.testing.assert_close(cover.subtype_probs, want)  # 64 of 8^3 voxels, not of 12 x 8 x 8
    empty = predict_logits(_LesionNet(), torch.zeros(1, 16, 16, 16), subtype_from="lesion_window", **kw)
    assert empty.subtype_weighting == "uniform"
    with pytest.raises(ValueError, match="subtype_from"):
        predict_logits(_LesionNet(), data, subtype_from="centre", **kw)
