"""``fastpanc synth``: a synthetic abdominal CT cohort in the challenge layout, deterministic by seed.

One case is a crop around a curved pancreas (bounding box plus real-like margins) of a synthetic
abdomen (:mod:`fastpanc.data.synth_anatomy`) with one lesion of its subtype
(:mod:`fastpanc.data.synth_lesion`). Sizes, positions, spacings and margins follow the statistics of
the real masks (``synth_stats.json``). Intensities:

- pancreas HU per case ~ N(80, 22) clipped to [35, 140]: the 59 real labelled cases give 74 +- 23
  (window-clipped), the raw case 109; the other tissues enhance in proportion (same contrast phase);
- partial volume: the HU map, sampled at voxel centres, is blurred by the scanner's point spread
  (0.5 mm in-plane, 0.42 voxel along z); labels stay the hard masks at voxel centres;
- noise: Gaussian, correlated in-plane (0.8 voxel), 9-16 HU at 2 mm slices, growing as
  1/sqrt(slice thickness).

``size_scale`` multiplies the number of voxels per axis by about that factor by coarsening the
spacing (the anatomy keeps its real size in mm): small values make tiny, fast volumes for tests.
"""

from __future__ import annotations

import argparse
import functools
import importlib.resources
import json
import logging
import os
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy import ndimage
from tqdm import tqdm

from fastpanc.data.io import Geometry, write_image
from fastpanc.data.synth_anatomy import TISSUE_ID, TISSUES, sample_anatomy
from fastpanc.data.synth_lesion import DESIGNS, place_lesion, render_lesion, sample_lesion
from fastpanc.data.synth_paint import paint_anatomy
from fastpanc.data.synth_shapes import Grid, smooth_field

log = logging.getLogger(__name__)

REAL_SUBTYPE_COUNTS = (62, 106, 84)
SLICE_RANGE_MM = (0.6, 4.0)
INPLANE_RANGE_MM = (0.6, 1.0)


@dataclass(frozen=True)
class SynthCase:
    """One generated case.

    Attributes:
        image: ``(Z, Y, X)`` float32 HU.
        labels: ``(Z, Y, X)`` uint8: 0 background, 1 pancreas, 2 lesion.
        spacing: ``(z, y, x)`` mm.
        origin: position (mm) of voxel (0, 0, 0) in SimpleITK order ``(x, y, z)``.
        subtype: the lesion subtype (0, 1, 2).
    """

    image: np.ndarray
    labels: np.ndarray
    spacing: tuple[float, float, float]
    origin: tuple[float, float, float] = (0.0, 0.0, 0.0)
    subtype: int = 0

    @property
    def geometry(self) -> Geometry:
        return Geometry(self.spacing, self.origin, (1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0))


@functools.lru_cache(maxsize=1)
def load_stats() -> dict:
    """The per-subtype statistics of the real masks shipped with the package (``synth_stats.json``)."""
    return json.loads(importlib.resources.files("fastpanc.data").joinpath("synth_stats.json").read_text())


def _lognormal(rng: np.random.Generator, s: dict, lo: float, hi: float) -> float:
    return float(np.clip(np.exp(rng.normal(s["log_mean"], s["log_std"])), lo, hi))


def _spacing(rng: np.random.Generator, stats: dict, size_scale: float) -> tuple[float, float, float]:
    counts = {
        float(k): v
        for k, v in stats["spacing_z_counts"].items()
        if SLICE_RANGE_MM[0] <= float(k) <= SLICE_RANGE_MM[1]
    }
    values = np.array(sorted(counts))
    z = float(rng.choice(values, p=np.array([counts[v] for v in values]) / sum(counts.values())))
    xy = float(np.clip(rng.normal(0.735, 0.072), *INPLANE_RANGE_MM))
    return z / size_scale, xy / size_scale, xy / size_scale


def generate_case(
    subtype: int, rng_or_seed: np.random.Generator | int | np.random.SeedSequence, size_scale: float = 1.0
) -> SynthCase:
    """Generate one labelled case of ``subtype`` (0, 1 or 2).

    Args:
        rng_or_seed: a numpy Generator (consumed) or a seed; the same seed gives the same case.
        size_scale: voxels per axis relative to real-like crops (coarser spacing, same anatomy in mm).

    Returns:
        A :class:`SynthCase` whose lesion (label 2) lies inside the pancreas (label 1).
    """
    if subtype not in (0, 1, 2):
        raise ValueError(f"generate_case: subtype must be 0, 1 or 2, got {subtype!r}")
    if not 0.05 <= size_scale <= 4.0:
        raise ValueError(f"generate_case: size_scale must be in [0.05, 4], got {size_scale}")
    rng = rng_or_seed if isinstance(rng_or_seed, np.random.Generator) else np.random.default_rng(rng_or_seed)
    stats = load_stats()
    m = stats["masks"][str(subtype)]
    spacing = _spacing(rng, stats, size_scale)
    length = float(
        np.clip(
            rng.normal(m["pancreas_length_mm"]["mean"], m["pancreas_length_mm"]["std"]),
            m["pancreas_length_mm"]["q05"],
            m["pancreas_length_mm"]["q95"],
        )
    )
    pancreas_ml = _lognormal(rng, m["pancreas_ml"], m["pancreas_ml"]["q05"], m["pancreas_ml"]["q95"])
    lesion = sample_lesion(subtype, stats, rng, pancreas_ml)
    anatomy = sample_anatomy(rng, length, pancreas_ml)

    placement = place_lesion(anatomy.pancreas_points, anatomy.pancreas_radii, lesion, 1.5 * max(spacing), rng)
    lo, hi = anatomy.pancreas_bounds()
    lesion_lo, lesion_hi = placement.bounds(DESIGNS[subtype].roughness)
    lo, hi = np.minimum(lo, lesion_lo), np.maximum(hi, lesion_hi)
    margin_z = _lognormal(rng, stats["all_masks"]["margin_z_mm"], 5.0, 40.0)
    margin_xy = float(np.clip(rng.normal(7.3, 0.8), 5.5, 10.0))
    margin = np.array([margin_z, margin_xy, margin_xy])
    lo, hi = lo - margin - 2.0 * np.asarray(spacing), hi + margin + 2.0 * np.asarray(spacing)
    shape = tuple(int(np.ceil((h - lo_) / s)) + 1 for lo_, h, s in zip(lo, hi, spacing))
    grid = Grid(shape, spacing, tuple(float(v) for v in lo))

    tid, pancreas = paint_anatomy(grid, anatomy, rng)
    pancreas_hu = float(np.clip(rng.normal(80.0, 22.0), 35.0, 140.0))
    lesion_mask, lesion_hu = render_lesion(grid, placement, lesion, pancreas_hu, rng)
    labels = pancreas.astype(np.uint8)
    labels[lesion_mask] = 2
    image = _intensities(grid, tid, lesion_mask, lesion_hu, pancreas_hu, rng)
    # crop as the challenge did: the bounding box of the labels plus the margin
    fg = np.argwhere(labels > 0)
    pad = np.round(margin / np.asarray(spacing)).astype(int)
    start = np.maximum(fg.min(0) - pad, 0)
    stop = np.minimum(fg.max(0) + 1 + pad, grid.shape)
    box = tuple(slice(int(a), int(b)) for a, b in zip(start, stop))
    image, labels = np.ascontiguousarray(image[box]), np.ascontiguousarray(labels[box])
    lo = lo + start * np.asarray(spacing)
    origin_xyz = (float(lo[2]), float(lo[1]), float(lo[0]))
    return SynthCase(image, labels, tuple(float(s) for s in spacing), origin_xyz, subtype)


def _intensities(
    grid: Grid,
    tid: np.ndarray,
    lesion: np.ndarray,
    lesion_hu: np.ndarray,
    pancreas_hu: float,
    rng: np.random.Generator,
) -> np.ndarray:
    """HU image ``(Z, Y, X)`` float32: tissue lookup + texture, lesion, partial volume blur, noise."""
    enhancement = float(np.clip((pancreas_hu - 40.0) / 60.0, 0.0, 1.6))
    table = np.array([base + gain * enhancement for base, gain, _ in TISSUES.values()], np.float32)
    table[TISSUE_ID["pancreas"]] = pancreas_hu
    table[TISSUE_ID["fat"]] += rng.normal(0.0, 8.0)
    amplitude = np.array([amp for _, _, amp in TISSUES.values()], np.float32)
    hu = amplitude[tid]
    hu *= smooth_field(grid.shape, grid.spacing, 2.0, rng)  # parenchymal texture, shared by all tissues
    hu += table[tid]
    hu[lesion] = lesion_hu[lesion]
    sz, sy, sx = grid.spacing
    hu = ndimage.gaussian_filter(hu, sigma=(0.42, 0.5 / sy, 0.5 / sx), mode="nearest", truncate=3.0)
    noise = rng.standard_normal(grid.shape, dtype=np.float32)
    noise = ndimage.gaussian_filter(noise, sigma=(0.0, 0.8, 0.8), mode="wrap", truncate=3.0)
    sigma = float(np.clip(rng.uniform(9.0, 16.0) * np.sqrt(2.0 / sz), 5.0, 30.0))
    noise *= np.float32(sigma / max(float(noise[:: max(1, grid.shape[0] // 6)].std()), 1e-6))
    hu += noise
    np.clip(hu, -1024.0, 3071.0, out=hu)
    return hu


def subtype_counts(n: int) -> tuple[int, int, int]:
    """Split ``n`` cases over the subtypes in the real 62/106/84 proportions, each at least one."""
    if n < 3:
        raise ValueError(f"a cohort needs at least 3 cases (one per subtype), got {n}")
    total = sum(REAL_SUBTYPE_COUNTS)
    exact = [n * c / total for c in REAL_SUBTYPE_COUNTS]
    counts = [max(1, int(e)) for e in exact]
    while sum(counts) < n:  # largest remainder first
        counts[int(np.argmax([e - c for e, c in zip(exact, counts)]))] += 1
    while sum(counts) > n:
        counts[int(np.argmax(counts))] -= 1
    return counts[0], counts[1], counts[2]


@dataclass(frozen=True)
class _Job:
    name: str
    subtype: int
    split: str  # "train", "validation" or "test"
    seed: np.random.SeedSequence
    out: Path
    size_scale: float


def _run_job(job: _Job) -> tuple[str, tuple[int, int, int], tuple[float, float, float]]:
    case = generate_case(job.subtype, np.random.default_rng(job.seed), job.size_scale)
    geo = case.geometry
    if job.split == "test":
        write_image(job.out / "test" / f"{job.name}_0000.nii.gz", case.image, geo)
        write_image(job.out / "test_reference" / f"{job.name}.nii.gz", case.labels, geo)
    else:
        folder = job.out / job.split / f"subtype{job.subtype}"
        write_image(folder / f"{job.name}_0000.nii.gz", case.image, geo)
        write_image(folder / f"{job.name}.nii.gz", case.labels, geo)
    return job.name, case.image.shape, case.spacing


def write_cohort(
    out: str | os.PathLike[str],
    cases: int,
    seed: int,
    test_cases: int = 0,
    val_fraction: float = 0.2,
    size_scale: float = 1.0,
    workers: int = 1,
) -> dict:
    """Write a synthetic cohort in the challenge layout (``fastpanc convert`` turns it into nnU-Net's).

    Layout: ``train/subtype{k}/quiz_{k}_{NNN}{,_0000}.nii.gz``, ``validation/...`` likewise,
    ``test/quiz_{NNN}_0000.nii.gz``, plus ``test_reference/quiz_{NNN}.nii.gz`` (the test masks) and
    ``cohort.json`` (parameters, every case's subtype and split). Each case has its own seed spawned
    from ``seed``, so the cohort is the same for any number of ``workers``.

    Args:
        cases: labelled cases (>= 3), split over subtypes as 62/106/84, each at least one.
        val_fraction: share of each subtype in ``validation/`` (at least one per subtype when > 0 and
            the subtype has two cases or more; at least one always stays in ``train/``).

    Returns:
        The content of ``cohort.json``.
    """
    out = Path(out)
    if not 0.0 <= val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction}")
    if test_cases < 0 or workers < 1:
        raise ValueError(f"test_cases must be >= 0 and workers >= 1, got {test_cases} and {workers}")
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise ValueError(f"{out}: exists and is not an empty folder; choose a new folder or delete it")
    counts = subtype_counts(cases)
    root = np.random.SeedSequence(seed)
    assign_seed, *case_seeds = root.spawn(1 + cases + test_cases)
    rng = np.random.default_rng(assign_seed)
    subtypes = rng.permutation(np.repeat([0, 1, 2], counts))
    splits = np.array(["train"] * cases, dtype=object)
    for k in range(3):
        members = np.flatnonzero(subtypes == k)
        n_val = int(round(val_fraction * len(members)))
        if val_fraction > 0 and len(members) >= 2:
            n_val = max(n_val, 1)
        n_val = min(n_val, len(members) - 1)
        splits[rng.permutation(members)[:n_val]] = "validation"
    jobs = [
        _Job(f"quiz_{int(k)}_{i:03d}", int(k), str(sp), case_seeds[i], out, size_scale)
        for i, (k, sp) in enumerate(zip(subtypes, splits))
    ]
    test_subtypes = rng.choice(3, size=test_cases, p=np.array(REAL_SUBTYPE_COUNTS) / sum(REAL_SUBTYPE_COUNTS))
    jobs += [
        _Job(f"quiz_{cases + j:03d}", int(k), "test", case_seeds[cases + j], out, size_scale)
        for j, k in enumerate(test_subtypes)
    ]
    out.mkdir(parents=True, exist_ok=True)
    shapes = {}
    bar = tqdm(total=len(jobs), desc="synth", unit="case", disable=None)
    if workers == 1:
        for job in jobs:
            name, shape, spacing = _run_job(job)
            shapes[name] = {"shape": list(shape), "spacing": list(spacing)}
            bar.update()
    else:
        with ProcessPoolExecutor(max_workers=workers) as pool:
            for name, shape, spacing in pool.map(_run_job, jobs):
                shapes[name] = {"shape": list(shape), "spacing": list(spacing)}
                bar.update()
    bar.close()
    cohort = {
        "generator": "fastpanc synth",
        "seed": seed,
        "size_scale": size_scale,
        "val_fraction": val_fraction,
        "cases": {j.name: {"subtype": j.subtype, "split": j.split, **shapes[j.name]} for j in jobs},
    }
    (out / "cohort.json").write_text(json.dumps(cohort, indent=1) + "\n")
    log.info("wrote %d labelled and %d test case(s) to %s", cases, test_cases, out)
    return cohort


def synth_command(args: argparse.Namespace) -> int:
    """``fastpanc synth OUT --cases N --seed S [--test-cases T] [--val-fraction F] [--size-scale X] [-j W]``."""
    cohort = write_cohort(
        args.out,
        args.cases,
        args.seed,
        test_cases=args.test_cases,
        val_fraction=args.val_fraction,
        size_scale=args.size_scale,
        workers=args.workers,
    )
    per = {
        s: sum(1 for c in cohort["cases"].values() if c["split"] == s)
        for s in ("train", "validation", "test")
    }
    print(
        f"{args.out}: {per['train']} train, {per['validation']} validation, {per['test']} test case(s) "
        f"(seed {args.seed}); `fastpanc convert {args.out} DST` makes an nnU-Net dataset of it"
    )
    return 0
