"""What the heads pool: checked on the vector that enters the MLP (the MLP replaced by Identity)."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from fastpanc.model.heads import (
    N_INTENSITY_STATS,
    HeadConfig,
    LesionAttentionHead,
    PoolHead,
    lesion_intensity_stats,
)


def _lesion_logits(shape: tuple[int, ...], box: tuple[slice, ...]) -> torch.Tensor:
    """Seg logits (1, 3, *shape): lesion (channel 2) certain inside ``box``, background elsewhere."""
    logits = torch.zeros(1, 3, *shape)
    logits[:, 0] = 50.0
    logits[(slice(None), 2, *box)] = 100.0
    return logits


def test_attention_head_pools_features_inside_the_lesion() -> None:
    torch.manual_seed(0)
    head = LesionAttentionHead(
        HeadConfig(kind="attention", n_scales=2, intensity_stats=False),
        encoder_channels=[4, 6],
        decoder_channels=[5, 3],
        num_subtypes=3,
    )
    head.mlp = nn.Identity()
    full = (8, 8, 8)
    box = (slice(2, 6), slice(0, 4), slice(4, 8))  # aligned with 2x2x2 blocks, so the half scale is exact
    dec = [torch.randn(1, 5, 4, 4, 4), torch.randn(1, 3, *full)]  # lowest resolution first
    bottleneck = torch.randn(1, 6, 2, 2, 2)
    vec = head([torch.randn(1, 4, *full), bottleneck], dec, _lesion_logits(full, box))[0]
    half_box = tuple(slice(s.start // 2, s.stop // 2) for s in box)
    expect = torch.cat(
        [
            dec[0][(0, slice(None), *half_box)].mean(dim=(1, 2, 3)),  # half-resolution features in the lesion
            dec[1][(0, slice(None), *box)].mean(dim=(1, 2, 3)),  # full-resolution features in the lesion
            bottleneck[0].mean(dim=(1, 2, 3)),  # global context
            torch.tensor([math.log(64 / 512 + 1e-6) / math.log(1e6)]),  # log lesion fraction
        ]
    )
    torch.testing.assert_close(vec, expect, atol=1e-5, rtol=1e-4)


def test_attention_head_detach_and_channel_check() -> None:
    head = LesionAttentionHead(
        HeadConfig(kind="attention", n_scales=1, intensity_stats=False), [4, 6], [5, 3], 3
    )
    logits = torch.randn(1, 3, 4, 4, 4, requires_grad=True)
    head(
        [torch.randn(1, 4, 4, 4, 4), torch.randn(1, 6, 2, 2, 2)],
        [torch.randn(1, 5, 2, 2, 2), torch.randn(1, 3, 4, 4, 4)],
        logits,
    ).sum().backward()
    assert logits.grad is None  # attention map detached by default
    attached = LesionAttentionHead(
        HeadConfig(kind="attention", n_scales=1, detach_attention=False, intensity_stats=False),
        [4, 6],
        [5, 3],
        3,
    )
    attached(
        [torch.randn(1, 4, 4, 4, 4), torch.randn(1, 6, 2, 2, 2)],
        [torch.randn(1, 5, 2, 2, 2), torch.randn(1, 3, 4, 4, 4)],
        logits,
    ).sum().backward()
    assert logits.grad is not None and logits.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="lesion_channel"):
        head(
            [torch.randn(1, 4, 4, 4, 4), torch.randn(1, 6, 2, 2, 2)],
            [torch.randn(1, 3, 4, 4, 4)],
            torch.randn(1, 2, 4, 4, 4),
        )


def test_pool_head_concatenates_avg_and_max() -> None:
    head = PoolHead(HeadConfig(kind="pool", n_scales=2), encoder_channels=[2, 4, 6], num_subtypes=3)
    head.mlp = nn.Identity()
    skips = [torch.randn(2, 2, 8, 8, 8), torch.randn(2, 4, 4, 4, 4), torch.randn(2, 6, 2, 2, 2)]
    vec = head(skips, [], torch.zeros(2, 3, 8, 8, 8))
    expect = torch.cat(
        [
            skips[1].mean((2, 3, 4)),
            skips[1].amax((2, 3, 4)),
            skips[2].mean((2, 3, 4)),
            skips[2].amax((2, 3, 4)),
        ],
        1,
    )
    torch.testing.assert_close(vec, expect)


@pytest.mark.parametrize(
    ("field", "value"), [("hidden", 0), ("dropout", 1.0), ("n_scales", 0), ("lesion_channel", 0)]
)
def test_head_config_validation(field: str, value: float) -> None:
    with pytest.raises(ValueError, match=field.split("_")[0]):
        HeadConfig(**{field: value})


def _rim_lesion() -> tuple[torch.Tensor, torch.Tensor, tuple[slice, ...]]:
    """Image (1, 1, 6, 16, 16): an 8 x 8 in-plane lesion on slices 2-3 with a bright 2-voxel shell (3), a dark
    core (-2) and a ring of 1 around it; and the lesion mask."""
    image = torch.zeros(1, 1, 6, 16, 16)
    image[0, 0, 2:4, 2:14, 2:14] = 1.0  # ring (in-plane dilation by 2)
    image[0, 0, 2:4, 4:12, 4:12] = 3.0  # shell
    image[0, 0, 2:4, 6:10, 6:10] = -2.0  # core (in-plane erosion by 2)
    box = (slice(2, 4), slice(4, 12), slice(4, 12))
    mask = torch.zeros(1, 1, 6, 16, 16)
    mask[(0, 0, *box)] = 1.0
    return image, mask, box


def test_lesion_intensity_stats_measure_rim_core_and_surroundings() -> None:
    image, mask, _ = _rim_lesion()
    got = lesion_intensity_stats(image, mask)[0]
    # lesion mean (48 x 3 + 16 x -2) / 64 = 1.75; its std sqrt((48 x 1.25^2 + 16 x 3.75^2) / 64)
    expect = torch.tensor([1.75 - 1.0, math.sqrt(300 / 64), 3.0 - -2.0, 0.0, 3.0 - 1.0, -2.0 - 1.0])
    torch.testing.assert_close(got, expect, atol=1e-4, rtol=1e-4)
    assert got.shape == (N_INTENSITY_STATS,)
    assert torch.equal(
        lesion_intensity_stats(image, torch.zeros_like(mask)), torch.zeros(1, N_INTENSITY_STATS)
    )


def test_attention_head_reads_intensities_from_the_prediction_or_the_labels() -> None:
    torch.manual_seed(0)
    head = LesionAttentionHead(HeadConfig(kind="attention", n_scales=1), [4, 6], [3], 3)
    head.mlp = nn.Identity()
    image, mask, box = _rim_lesion()
    skips = [torch.randn(1, 4, 6, 16, 16), torch.randn(1, 6, 3, 8, 8)]
    dec = [torch.randn(1, 3, 6, 16, 16)]
    predicted = head(skips, dec, _lesion_logits((6, 16, 16), box), image)
    labelled = head(skips, dec, torch.randn(1, 3, 6, 16, 16), image, attention=mask)
    torch.testing.assert_close(predicted, labelled, atol=1e-5, rtol=1e-4)  # a certain prediction = the labels
    torch.testing.assert_close(predicted[0, -N_INTENSITY_STATS:], lesion_intensity_stats(image, mask)[0])
    with pytest.raises(ValueError, match="pass the network input"):
        head(skips, dec, _lesion_logits((6, 16, 16), box))
    with pytest.raises(ValueError, match="attention must be"):
        head(skips, dec, _lesion_logits((6, 16, 16), box), image, attention=mask[:, :, :3])


@pytest.mark.parametrize("shape", [(2, 1, 5, 9, 11), (3, 1, 7, 8)])
@pytest.mark.parametrize("r", [1, 2, 3])
def test_inplane_max_filter_equals_max_pooling(shape, r):
    """The separable filter behind the lesion's erosion and dilation equals torch's max pooling (stride 1,
    padding r, in-plane kernel) and r repeated 3x3 poolings."""
    import torch.nn.functional as F

    from fastpanc.model.heads import _inplane_max_filter

    w = torch.rand(shape, generator=torch.Generator().manual_seed(r))
    k = 2 * r + 1
    if len(shape) == 5:
        want = F.max_pool3d(w, (1, k, k), 1, (0, r, r))
        rep = w
        for _ in range(r):
            rep = F.max_pool3d(rep, (1, 3, 3), 1, (0, 1, 1))
    else:
        want = F.max_pool2d(w, k, 1, r)
        rep = w
        for _ in range(r):
            rep = F.max_pool2d(rep, 3, 1, 1)
    got = _inplane_max_filter(w, r)
    assert torch.equal(got, want) and torch.equal(got, rep)
    assert torch.equal(
        -_inplane_max_filter(-w, r),
        -F.max_pool3d(-w, (1, k, k), 1, (0, r, r)) if len(shape) == 5 else -F.max_pool2d(-w, k, 1, r),
    )
