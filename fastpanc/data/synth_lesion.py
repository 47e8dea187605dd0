"""Synthetic pancreatic lesions: per-subtype size, shape, position, attenuation and texture.

What comes from the real data (``synth_stats.json``, written by ``scripts/derive_synth_stats.py``):
lesion volume (log-normal per subtype), elongation (log-normal), position along the gland head -> tail
(beta fitted to mean and spread), the chance of a second component, and the attenuation of subtype 2
(59 labelled cases: lesion minus pancreas -6.8 +- 19.5 HU) and subtype 0 (one raw case: -1.6 HU).

What is a documented design choice (no real per-subtype data exists for it):

- subtype 1 attenuation: no labelled images; centred at -14 HU relative to the pancreas, with the
  real subtype-2 spread, so that mean HU alone separates the subtypes poorly, as it does in reality;
- texture and margin, which make the subtypes learnable but not trivially (all zero-mean, so they do
  not move the lesion's mean HU); margin amplitudes are set so that every subtype's sphericity matches
  the real masks (median ~0.69 for all three):
  0: solid and fine-grained (8 HU, 1.5 mm), finely irregular margin;
  1: multilocular: 2-8 small fluid-like locules (-45 HU), broadly lobulated margin;
  2: coarse heterogeneous (18 HU, 3.5 mm) with an enhancing rim (+16 HU), moderately irregular margin.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from fastpanc.data.synth_anatomy import principal_extent
from fastpanc.data.synth_shapes import Grid, ellipsoid_field, rotation, smooth_field


@dataclass(frozen=True)
class LesionDesign:
    """The designed (not measured) part of a subtype: attenuation offset, texture and margin."""

    delta_hu: float  # mean lesion HU minus pancreas HU
    delta_hu_std: float
    texture: str  # "fine", "locules" or "coarse_rim"
    roughness: float  # amplitude of the margin perturbation (fraction of the radius)
    margin_corr: float  # correlation length of the margin perturbation (fraction of the smallest semi-axis)


DESIGNS: dict[int, LesionDesign] = {
    0: LesionDesign(delta_hu=-1.6, delta_hu_std=19.5, texture="fine", roughness=0.12, margin_corr=0.3),
    1: LesionDesign(delta_hu=-14.0, delta_hu_std=19.5, texture="locules", roughness=0.3, margin_corr=0.8),
    2: LesionDesign(delta_hu=-6.8, delta_hu_std=19.5, texture="coarse_rim", roughness=0.2, margin_corr=0.5),
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

    The ellipsoids' margins are perturbed by a smooth field (the subtype's roughness); the texture is
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
        inside = rho < 1.0 + design.roughness * smooth_field(rho.shape, grid.spacing, corr, rng)
        parts, n = ndimage.label(inside)
        if n > 1:  # one connected lesion per blob: drop fragments the margin field cut off
            inside = parts == 1 + int(np.argmax(np.bincount(parts.ravel())[1:]))
        mask[box] |= inside
        values[box] = np.where(inside, _texture(design, grid, rho, blob_semi, rng), values[box])
    if mask.any():
        values[mask] += np.float32(pancreas_hu + params.delta_hu) - values[mask].mean()
    return mask, values


def _texture(
    design: LesionDesign, grid: Grid, rho: np.ndarray, semi: np.ndarray, rng: np.random.Generator
) -> np.ndarray:
    """Zero-based texture pattern (HU) of the box ``rho`` lies on; the caller re-centres its mean."""
    if design.texture == "fine":
        return 8.0 * smooth_field(rho.shape, grid.spacing, 1.5, rng)
    if design.texture == "coarse_rim":
        rim = np.clip((rho - 0.65) / 0.35, 0.0, 1.0)
        return 18.0 * smooth_field(rho.shape, grid.spacing, 3.5, rng) + 16.0 * rim
    pattern = 4.0 * smooth_field(rho.shape, grid.spacing, 1.5, rng)
    # locules: small fluid-like spheres inside the lesion
    inner = np.argwhere(rho < 0.7)
    if len(inner):
        step = np.asarray(grid.spacing, dtype=np.float32)
        axes = [np.arange(n, dtype=np.float32) * step[a] for a, n in enumerate(rho.shape)]
        locules = np.zeros(rho.shape, bool)
        for _ in range(int(rng.integers(2, 9))):
            centre = inner[rng.integers(len(inner))] * step
            radius = rng.uniform(1.5, max(1.6, 0.45 * float(semi[2]) + 1.5))
            d2 = (
                np.square(axes[0] - centre[0])[:, None, None]
                + np.square(axes[1] - centre[1])[None, :, None]
                + np.square(axes[2] - centre[2])[None, None, :]
            )
            locules |= d2 < radius**2
        pattern[locules] -= 45.0
    return pattern
