"""Synthetic pancreatic lesions: per-subtype size, shape, position, attenuation and internal pattern.

What comes from the real data (``synth_stats.json``, written by ``scripts/derive_synth_stats.py``):
lesion volume (log-normal per subtype), elongation (log-normal), position along the gland head -> tail
(beta fitted to mean and spread), the chance of a second component, and the attenuation of subtype 2
(59 labelled cases: lesion minus pancreas -6.8 +- 19.5 HU) and subtype 0 (one raw case: -1.6 HU).

What is a documented design choice (no real per-subtype data exists for it):

- subtype 1 attenuation: no labelled images; centred at -14 HU relative to the pancreas, with the
  real subtype-2 spread, so that mean HU alone separates the subtypes poorly, as it does in reality;
- the internal pattern, which makes the subtypes learnable but not from volume and mean HU: the
  pattern is re-centred, so the lesion's mean HU is the drawn one. Its bands are mostly 2.5 mm thick or
  more and its compartments several mm across, with amplitudes of 50-100 HU, so that they survive the
  coarse training grid (about 1.8 mm in-plane, 5 mm slices: ``size_scale`` 0.4) and mark the lesion's
  boundary against the pancreas. Band depths are distances (mm) to the lesion's surface:
  0: solid and homogeneous (3 HU, 6 mm) inside a hypodense capsule (-55 HU, 2.5-4 mm thick), smooth
  broadly lobulated margin (in small lesions the capsule is most of the volume, so after re-centring
  the interior is brighter than the lesion's mean);
  1: multilocular cyst: 2-6 fluid locules of about 2-4 ml each (Voronoi cells, +-6 HU from locule to
  locule) divided by enhancing septa about 3 mm thick and lined by a thinner (~2 mm) enhancing wall
  (both +100 HU over the fluid), lobulated margin;
  2: necrotic: a thick (4.5-9 mm) enhancing rim, brightest at the margin (+60 HU), around a hypodense
  core (-60 HU) with an irregular inner wall, coarse heterogeneity (10 HU, 4 mm), finely irregular margin.
  Margin amplitudes and correlation lengths are set so that every subtype's sphericity matches the real
  masks (median ~0.69 for all three; 0.70, 0.70, 0.69 measured at full resolution); the margin
  perturbation is scaled so that it keeps the drawn volume on average.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from fastpanc.data.synth_anatomy import principal_extent
from fastpanc.data.synth_shapes import Grid, ellipsoid_field, rotation, smooth_field


@dataclass(frozen=True)
class LesionDesign:
    """The designed (not measured) part of a subtype: attenuation offset, internal pattern and margin."""

    delta_hu: float  # mean lesion HU minus pancreas HU
    delta_hu_std: float
    pattern: str  # "solid", "locules" or "necrotic"
    roughness: float  # amplitude of the margin perturbation (fraction of the radius)
    margin_corr: float  # correlation length of the margin perturbation (fraction of the smallest semi-axis)


DESIGNS: dict[int, LesionDesign] = {
    0: LesionDesign(delta_hu=-1.6, delta_hu_std=19.5, pattern="solid", roughness=0.44, margin_corr=1.0),
    1: LesionDesign(delta_hu=-14.0, delta_hu_std=19.5, pattern="locules", roughness=0.35, margin_corr=0.8),
    2: LesionDesign(delta_hu=-6.8, delta_hu_std=19.5, pattern="necrotic", roughness=0.17, margin_corr=0.35),
}


@dataclass(frozen=True)
class LesionParams:
    """One lesion drawn for a case."""

    subtype: int
    volume_ml: float
    elongation: float
    position: float  # 0 head .. 1 tail, along the gland's principal axis
    satellite: bool
    delta_hu: float


def _beta_from_moments(mean: float, std: float) -> tuple[float, float]:
    var = min(std**2, mean * (1 - mean) * 0.9)
    common = mean * (1 - mean) / var - 1.0
    return mean * common, (1.0 - mean) * common


def sample_lesion(subtype: int, stats: dict, rng: np.random.Generator, pancreas_ml: float) -> LesionParams:
    """Draw size, elongation, position and attenuation offset of a subtype's lesion from ``stats``."""
    m = stats["masks"][str(subtype)]
    design = DESIGNS[subtype]
    vol = m["lesion_ml"]
    volume = float(np.exp(rng.normal(vol["log_mean"], vol["log_std"])))
    volume = float(np.clip(volume, vol["min"], min(vol["q95"] * 1.5, 0.6 * pancreas_ml)))
    el = m["lesion_elongation"]
    elongation = float(np.clip(np.exp(rng.normal(el["log_mean"], el["log_std"])), 1.0, el["q95"] * 1.2))
    a, b = _beta_from_moments(m["lesion_position"]["mean"], m["lesion_position"]["std"])
    satellite = bool(rng.random() < float(np.clip(m["lesion_components"]["mean"] - 1.0, 0.0, 0.5)))
    delta = float(rng.normal(design.delta_hu, design.delta_hu_std))
    return LesionParams(subtype, volume, elongation, float(rng.beta(a, b)), satellite, delta)


def _place(
    points: np.ndarray, radii: np.ndarray, position: float, rng: np.random.Generator
) -> tuple[int, np.ndarray]:
    """Index of the centre-line point at ``position`` (0 head .. 1 tail along the gland's principal axis,
    measured as the real statistics are), and a lesion centre near it inside the gland."""
    centre, axis, lo, hi = principal_extent(points, radii)
    t = ((points - centre) @ axis - lo) / max(hi - lo, 1e-6)
    distance = np.abs(t - position)
    candidates = np.flatnonzero(distance <= max(0.03, distance.min() + 1e-9))
    k = int(rng.choice(candidates))
    tangent = points[min(k + 1, len(points) - 1)] - points[max(k - 1, 0)]
    tangent /= np.linalg.norm(tangent)
    off = rng.normal(size=3)
    off -= off.dot(tangent) * tangent
    off /= max(np.linalg.norm(off), 1e-9)
    return k, points[k] + off * radii[k] * rng.uniform(0.0, 0.5)


def _axes(tangent: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """``(3, 3)`` rotation whose first column is ``tangent`` tilted by a few degrees."""
    t = tangent @ rotation(tuple(rng.normal(0.0, 0.25, 3))).T
    t /= np.linalg.norm(t)
    other = np.cross(t, rng.normal(size=3))
    other /= np.linalg.norm(other)
    return np.stack([t, other, np.cross(t, other)], axis=1)


@dataclass(frozen=True)
class LesionPlacement:
    """Where a lesion lies: ellipsoid blobs ``(centre zyx mm, semi-axes mm)`` sharing one orientation."""

    blobs: tuple[tuple[np.ndarray, np.ndarray], ...]
    rot: np.ndarray  # (3, 3), columns: long axis (along the gland) and the two others

    def bounds(self, roughness: float) -> tuple[np.ndarray, np.ndarray]:
        """Axis-aligned bounds (zyx mm) that contain every blob, margin perturbation included."""
        lo = np.min([c - s.max() * (1 + 1.5 * roughness) for c, s in self.blobs], axis=0)
        hi = np.max([c + s.max() * (1 + 1.5 * roughness) for c, s in self.blobs], axis=0)
        return lo, hi


def place_lesion(
    points: np.ndarray, radii: np.ndarray, params: LesionParams, min_semi_mm: float, rng: np.random.Generator
) -> LesionPlacement:
    """An ellipsoid of the drawn volume and elongation, centred inside the gland at the drawn position,
    long axis along the gland; semi-axes at least ``min_semi_mm`` so the lesion never vanishes."""
    k, centre = _place(points, radii, params.position, rng)
    tangent = points[min(k + 1, len(points) - 1)] - points[max(k - 1, 0)]
    rot = _axes(tangent / np.linalg.norm(tangent), rng)
    e = params.elongation
    c = (3.0 * params.volume_ml * 1000.0 / (4.0 * np.pi * e**1.5)) ** (1.0 / 3.0)
    semi = np.maximum(np.array([e * c, np.sqrt(e) * c, c]), min_semi_mm)
    blobs = [(centre, semi)]
    if params.satellite:
        blobs.append((centre + rot[:, 0] * semi[0] * rng.uniform(1.3, 1.8), semi * rng.uniform(0.35, 0.55)))
    return LesionPlacement(tuple(blobs), rot)


def render_lesion(
    grid: Grid, placement: LesionPlacement, params: LesionParams, pancreas_hu: float, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """The lesion mask ``(Z, Y, X)`` bool and its HU values ``(Z, Y, X)`` float32 (meaningful inside the mask).

    The ellipsoids' margins are perturbed by a smooth field (the subtype's roughness); the pattern is
    re-centred so that the lesion's mean is ``pancreas_hu + params.delta_hu``.
    """
    design = DESIGNS[params.subtype]
    mask = np.zeros(grid.shape, bool)
    values = np.zeros(grid.shape, np.float32)
    for blob_centre, blob_semi in placement.blobs:
        got = ellipsoid_field(grid, blob_centre, blob_semi, placement.rot, pad=1.0 + 1.5 * design.roughness)
        if got is None:
            continue
        box, rho = got
        corr = max(1.5, design.margin_corr * float(blob_semi.min()))
        # clipped so that the margin stays inside the box (and the bounds) padded by 1.5 x roughness
        margin = 1.0 + design.roughness * np.clip(smooth_field(rho.shape, grid.spacing, corr, rng), -1.4, 1.4)
        # the lesion is rho < margin / scale, scaled so that on average it keeps the drawn volume
        scale = np.float32(np.cbrt(np.mean(np.power(margin, 3, dtype=np.float64))))
        level = scale * rho - margin + 1.0
        inside = level < 1.0
        parts, n = ndimage.label(inside)
        if n > 1:  # one connected lesion per blob: drop fragments the margin field cut off
            inside = parts == 1 + int(np.argmax(np.bincount(parts.ravel())[1:]))
        depth = _depth_mm(level, grid.spacing)
        pattern = _pattern(design, grid, box, inside, depth, blob_semi, rng)
        mask[box] |= inside
        values[box] = np.where(inside, pattern, values[box])
    if mask.any():
        values[mask] += np.float32(pancreas_hu + params.delta_hu) - values[mask].mean()
    return mask, values


def _depth_mm(level: np.ndarray, spacing: tuple[float, float, float]) -> np.ndarray:
    """Distance (mm) inside the surface ``level == 1`` to first order, ``(1 - level) / |grad level|``."""
    grad2 = np.zeros_like(level)
    for a in range(3):
        if level.shape[a] > 1:
            grad2 += np.square(np.gradient(level, spacing[a], axis=a))
    return (1.0 - level) / np.sqrt(np.maximum(grad2, np.float32(1e-6)))


def _band(depth: np.ndarray, thickness_mm: float) -> np.ndarray:
    """1 within ``thickness_mm`` of the surface, 0 deeper, with a 1.5 mm linear ramp in between."""
    return np.clip((thickness_mm - depth) / 1.5 + 0.5, 0.0, 1.0)


def _pattern(
    design: LesionDesign,
    grid: Grid,
    box: tuple[slice, slice, slice],
    inside: np.ndarray,
    depth: np.ndarray,
    semi: np.ndarray,
    rng: np.random.Generator,
) -> np.ndarray:
    """HU pattern of the lesion on ``box`` (any offset; the caller re-centres its mean inside the lesion).

    ``depth`` is the distance (mm) to the lesion's surface, ``semi`` the blob's semi-axes (mm).
    """
    shape, spacing, short = inside.shape, grid.spacing, float(semi.min())
    if design.pattern == "solid":
        capsule = _band(depth, float(np.clip(0.2 * short, 2.5, 4.0)))
        return 3.0 * smooth_field(shape, spacing, 6.0, rng) - 55.0 * capsule
    if design.pattern == "necrotic":
        rim_mm = float(np.clip(0.45 * short, 4.5, 9.0))
        wobble = np.clip(1.0 + 0.3 * smooth_field(shape, spacing, 5.0, rng), 0.5, 1.5)
        edge = rim_mm * wobble  # depth of the rim's irregular inner wall
        core = np.clip((depth - edge) / 2.0 + 0.5, 0.0, 1.0)
        periphery = np.clip(1.0 - depth / edge, 0.0, 1.0)  # enhancement strongest at the margin
        return 60.0 * periphery - 60.0 * core + 10.0 * smooth_field(shape, spacing, 4.0, rng)
    if design.pattern == "locules":
        return _locules(grid, box, inside, depth, semi, rng)
    raise ValueError(f"unknown lesion pattern {design.pattern!r}")


def _locules(
    grid: Grid,
    box: tuple[slice, slice, slice],
    inside: np.ndarray,
    depth: np.ndarray,
    semi: np.ndarray,
    rng: np.random.Generator,
) -> np.ndarray:
    """Multilocular cyst: fluid locules (the Voronoi cells of a few seeds) with enhancing septa and wall."""
    z, y, x = grid.coords(box)
    volume_ml = float(inside.sum() * np.prod(grid.spacing)) / 1000.0
    wanted = int(np.clip(round(volume_ml / rng.uniform(2.0, 4.0)), 2, 6))
    candidates = np.argwhere(inside & (depth > 0.3 * float(semi.min())))
    if len(candidates) == 0:
        candidates = np.argwhere(inside)
    picks = candidates[rng.permutation(len(candidates))[:200]]
    mm = np.stack([z.ravel()[picks[:, 0]], y.ravel()[picks[:, 1]], x.ravel()[picks[:, 2]]], axis=1)
    seeds = [mm[0]]
    for p in mm[1:]:  # greedy, keeping locules at least 0.8 short semi-axes apart
        if len(seeds) == wanted:
            break
        if min(np.linalg.norm(p - s) for s in seeds) >= 0.8 * float(semi.min()):
            seeds.append(p)
    fluid = rng.normal(0.0, 6.0, len(seeds))  # per-locule fluid attenuation
    pattern = np.full(inside.shape, fluid[0], np.float32)
    septa = np.zeros(inside.shape, np.float32)
    if len(seeds) > 1:
        pts = np.asarray(seeds)
        d2 = np.stack([np.square(z - p[0]) + np.square(y - p[1]) + np.square(x - p[2]) for p in pts])
        order = np.argsort(d2, axis=0)
        near, second = order[0], order[1]
        gap = np.take_along_axis(d2, order[1:2], 0)[0] - np.take_along_axis(d2, order[:1], 0)[0]
        apart = np.linalg.norm(pts[:, None] - pts[None], axis=2)
        to_septum = gap / (2.0 * apart[near, second])  # distance to the plane between the two nearest seeds
        septa = _band(to_septum, 1.5)
        pattern = fluid[near].astype(np.float32)
    enhancing = np.maximum(septa, _band(depth, 1.5))  # septa and the wall
    return pattern + 100.0 * enhancing + 3.0 * smooth_field(inside.shape, grid.spacing, 4.0, rng)
