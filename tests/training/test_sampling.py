"""Patch sampling: foreground oversampling, lesion-aware centring, class-balanced cases, padding, prefetching."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from fastpanc.training.loader import PrefetchLoader
from fastpanc.training.sampling import Case, PatchSampler, crop_bbox, extract, load_case, read_split


def _case(name: str, subtype: int, shape=(12, 20, 20), lesion: bool = True) -> Case:
    seg = np.zeros((1, *shape), dtype=np.int8)
    seg[0, 2:5, 3:7, 3:7] = 1  # pancreas in one corner
    locs = {1: np.argwhere(seg == 1)}
    if lesion:
        seg[0, 9:11, 15:18, 15:18] = 2  # lesion far from it
        locs[2] = np.argwhere(seg == 2)
    image = np.random.default_rng(0).normal(size=(1, *shape)).astype(np.float32)
    return Case(name, image, seg, subtype, locs)


def _sampler(cases, **kw) -> PatchSampler:
    return PatchSampler(cases, (4, 6, 6), kw.pop("batch_size", 4), **kw)


def test_load_case_and_split(tiny_preprocessed: Path) -> None:
    train, val = read_split(tiny_preprocessed, 0)
    assert len(train) == 9 and len(val) == 3
    c = load_case(tiny_preprocessed, train[0])
    assert isinstance(c.image, np.memmap) and c.image.dtype == np.float32 and c.seg.dtype == np.int8
    assert set(c.class_locations) == {1, 2} and c.class_locations[1].shape[1] == 4
    with pytest.raises(ValueError, match="fold 3 does not exist"):
        read_split(tiny_preprocessed, 3)
    with pytest.raises(FileNotFoundError, match="nope.npy"):
        load_case(tiny_preprocessed, "nope")


@pytest.mark.parametrize("batch_size", [1, 2, 5])
def test_oversampling_ratio_and_forced_foreground(batch_size: int) -> None:
    s = _sampler([_case("a", 0)], batch_size=batch_size, oversample_foreground=0.33)
    forced, n = 0, 600
    for it in range(n):
        b = s.sample(0, it)
        forced += int(b["forced"].sum())
        assert (b["seg"][b["forced"]].reshape(-1, 4 * 6 * 6) > 0).any(axis=1).all()
    assert abs(forced / (n * batch_size) - 0.33) < 0.05


def test_random_patches_are_mostly_background() -> None:
    s = _sampler([_case("a", 0)], oversample_foreground=0.0)
    hits = [(s.sample(0, it)["seg"].reshape(4, -1) > 0).any(1).mean() for it in range(100)]
    assert np.mean(hits) < 0.6  # the foreground is small: uniform patches often miss it


@pytest.mark.parametrize("lesion_fraction, expected", [(1.0, 1.0), (0.0, 0.0), (0.5, 0.5)])
def test_lesion_aware_sampling(lesion_fraction: float, expected: float) -> None:
    # lesion and pancreas are far apart, so a forced patch contains the lesion iff it was centred on it
    s = _sampler([_case("a", 0)], oversample_foreground=1.0, lesion_fraction=lesion_fraction)
    with_lesion = np.concatenate([(s.sample(0, it)["seg"].reshape(4, -1) == 2).any(1) for it in range(150)])
    assert abs(with_lesion.mean() - expected) < 0.07


def test_case_without_lesion_centres_on_pancreas() -> None:
    s = _sampler([_case("a", 0, lesion=False)], oversample_foreground=1.0, lesion_fraction=1.0)
    b = s.sample(0, 0)
    assert (b["seg"].reshape(4, -1) == 1).any(1).all()


def test_class_balanced_case_sampling() -> None:
    cases = [_case(f"c{i}", st) for i, st in enumerate([0] * 2 + [1] * 6 + [2] * 12)]
    counts = {}
    for balanced in (False, True):
        s = _sampler(cases, class_balanced=balanced, batch_size=8)
        drawn = np.concatenate([s.sample(0, it)["subtype"] for it in range(250)])
        counts[balanced] = np.bincount(drawn, minlength=3) / len(drawn)
    np.testing.assert_allclose(counts[True], [1 / 3] * 3, atol=0.04)
    np.testing.assert_allclose(counts[False], [0.1, 0.3, 0.6], atol=0.04)


def test_small_case_is_padded() -> None:
    case = _case("small", 1, shape=(3, 5, 5), lesion=False)
    case.seg[0, 0, 0, 0] = -1  # outside the nonzero region, as nnU-Net writes it
    s = PatchSampler([case], (4, 8, 8), 2, oversample_foreground=0.5)
    b = s.sample(0, 0)
    assert b["image"].shape == (2, 1, 4, 8, 8) and b["seg"].shape == (2, 1, 4, 8, 8)
    assert b["seg"].min() == 0  # padding and -1 become background
    # the whole small case fits in the patch: every voxel of it is present
    assert (b["image"] != 0).sum() == 2 * case.image.size


def test_crop_bbox_and_extract() -> None:
    rng = np.random.default_rng(0)
    lows = np.array([crop_bbox((4, 4, 4), (10, 10, 10), rng, None) for _ in range(200)])
    assert lows.min() == 0 and lows.max() == 6
    assert (crop_bbox((4, 4, 4), (10, 10, 10), rng, np.array([0, 9, 5])) == [0, 6, 3]).all()
    a = np.arange(27, dtype=np.float32).reshape(1, 3, 3, 3)
    out = extract(a, np.array([-1, 0, 1]), (3, 3, 3), -7.0)
    assert out[0, 0].min() == -7.0 and out[0, 1, :, :2].tolist() == a[0, 0, :, 1:].tolist()


def test_batches_depend_only_on_seed_epoch_iteration() -> None:
    cases = [_case("a", 0), _case("b", 2)]
    s1, s2 = _sampler(cases, seed=3), _sampler(cases, seed=3)
    np.testing.assert_array_equal(s1.sample(2, 5)["image"], s2.sample(2, 5)["image"])
    assert not np.array_equal(s1.sample(2, 5)["image"], s1.sample(2, 6)["image"])
    other_rank = _sampler(cases, seed=3, rank=1)
    assert not np.array_equal(s1.sample(2, 5)["image"], other_rank.sample(2, 5)["image"])


@pytest.mark.parametrize("workers, prefetch", [(1, 1), (2, 5)])
def test_prefetch_loader_keeps_order(workers: int, prefetch: int) -> None:
    s = _sampler([_case("a", 0), _case("b", 1)])
    with PrefetchLoader(s.sample, num_workers=workers, prefetch=prefetch) as loader:
        got = list(loader.epoch(4, 7))
        assert loader.wait_s >= 0.0
    assert len(got) == 7
    for it, b in enumerate(got):
        np.testing.assert_array_equal(b["image"].numpy(), s.sample(4, it)["image"])
