"""Surface distances between two binary masks, as DeepMind's ``surface-distance`` package defines them.

The surface of a mask lives on the grid of voxel corners: every 2x2x2 neighbourhood whose 8 voxels
are neither all inside nor all outside holds a surface element ("surfel") whose area comes from the
marching-cubes triangles of that neighbourhood (``_surfel_table``), scaled by the spacing. The
distance from a surfel of one mask to the other surface is read from a Euclidean distance transform
of the other surface's surfel grid that honours the (anisotropic) spacing. Surface Dice and HD95
weight every surfel by its area.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from scipy import ndimage

from fastpanc.evaluation._surfel_table import ENCODE_KERNEL, NEIGHBOUR_CODE_TO_NORMALS

_ALL_INSIDE = 0b11111111


@dataclass(frozen=True)
class SurfaceDistances:
    """Distances (mm) from each surfel of one mask to the other surface, with the surfel areas (mm^2).

    Each array is 1-D, sorted by distance. Empty arrays mean the mask has no surface (it is empty).
    """

    gt_to_pred: np.ndarray
    pred_to_gt: np.ndarray
    areas_gt: np.ndarray
    areas_pred: np.ndarray


def _check_spacing(
    spacing: tuple[float, float, float] | list[float] | np.ndarray,
) -> tuple[float, float, float]:
    sp = tuple(float(s) for s in spacing)
    if len(sp) != 3 or not all(math.isfinite(s) and s > 0 for s in sp):
        raise ValueError(f"spacing must be three positive (z, y, x) values in mm, got {spacing!r}")
    return sp  # type: ignore[return-value]


@lru_cache(maxsize=64)
def surfel_area_table(spacing: tuple[float, float, float]) -> np.ndarray:
    """Area in mm^2 of the surface inside a 2x2x2 neighbourhood, for each of the 256 codes: ``(256,)``."""
    sz, sy, sx = spacing
    scale = np.array([sy * sx, sz * sx, sz * sy])  # a normal's components scale with the face areas
    table = np.zeros(256, dtype=np.float64)
    for code, normals in enumerate(NEIGHBOUR_CODE_TO_NORMALS):
        table[code] = float(np.linalg.norm(np.asarray(normals) * scale, axis=1).sum())
    return table


def _surfels(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Neighbourhood codes ``(Z+1, Y+1, X+1)`` of a padded mask and the boolean map of surfels."""
    codes = ndimage.correlate(mask.astype(np.uint8), ENCODE_KERNEL, mode="constant", cval=0)
    return codes, (codes != 0) & (codes != _ALL_INSIDE)


def _sorted(distances: np.ndarray, areas: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    order = np.lexsort((areas, distances))
    return distances[order], areas[order]


def surface_distances(
    gt: np.ndarray, pred: np.ndarray, spacing: tuple[float, float, float] | list[float] | np.ndarray
) -> SurfaceDistances:
    """Surfel-to-surface distances between two boolean masks ``(Z, Y, X)`` with spacing ``(z, y, x)`` mm."""
    if gt.shape != pred.shape or gt.ndim != 3:
        raise ValueError(f"masks must be 3-D and of one shape, got {gt.shape} and {pred.shape}")
    sp = _check_spacing(spacing)
    gt = np.asarray(gt, dtype=bool)
    pred = np.asarray(pred, dtype=bool)
    union = gt | pred
    empty = np.zeros(0, dtype=np.float64)
    if not union.any():
        return SurfaceDistances(empty, empty, empty, empty)
    # Crop to the union's bounding box and pad one voxel on every side so each corner is seen.
    lo = [int(np.flatnonzero(union.any(axis=tuple(a for a in range(3) if a != ax))).min()) for ax in range(3)]
    hi = [
        int(np.flatnonzero(union.any(axis=tuple(a for a in range(3) if a != ax))).max()) + 1
        for ax in range(3)
    ]
    box = tuple(slice(a, b) for a, b in zip(lo, hi))
    codes_gt, border_gt = _surfels(np.pad(gt[box], 1))
    codes_pred, border_pred = _surfels(np.pad(pred[box], 1))
    table = surfel_area_table(sp)

    def dist_to(border: np.ndarray) -> np.ndarray:
        if not border.any():
            return np.full(border.shape, np.inf)
        return ndimage.distance_transform_edt(~border, sampling=sp)

    d_gt_to_pred, a_gt = _sorted(dist_to(border_pred)[border_gt], table[codes_gt[border_gt]])
    d_pred_to_gt, a_pred = _sorted(dist_to(border_gt)[border_pred], table[codes_pred[border_pred]])
    return SurfaceDistances(d_gt_to_pred, d_pred_to_gt, a_gt, a_pred)


def surface_dice(sd: SurfaceDistances, tolerance_mm: float) -> float:
    """Normalised surface Dice: the area of both surfaces within ``tolerance_mm`` of the other, in [0, 1].

    Both surfaces empty gives 1.0 (nothing to find, nothing found); exactly one empty gives 0.0.
    """
    if not tolerance_mm >= 0:
        raise ValueError(f"tolerance_mm must be >= 0, got {tolerance_mm}")
    total = sd.areas_gt.sum() + sd.areas_pred.sum()
    if sd.areas_gt.size == 0 and sd.areas_pred.size == 0:
        return 1.0
    if sd.areas_gt.size == 0 or sd.areas_pred.size == 0:
        return 0.0
    overlap = (
        sd.areas_gt[sd.gt_to_pred <= tolerance_mm].sum() + sd.areas_pred[sd.pred_to_gt <= tolerance_mm].sum()
    )
    return float(overlap / total)


def _percentile(distances: np.ndarray, areas: np.ndarray, percent: float) -> float:
    cumulative = np.cumsum(areas) / areas.sum()
    idx = int(np.searchsorted(cumulative, percent / 100.0))
    return float(distances[min(idx, distances.size - 1)])


def robust_hausdorff(sd: SurfaceDistances, percent: float = 95.0) -> float:
    """Area-weighted ``percent`` percentile Hausdorff distance in mm (HD95 by default).

    The larger of the two directed percentiles. Both surfaces empty gives 0.0; exactly one empty has
    no defined distance and gives NaN (written as null in JSON and as an empty cell in CSV).
    """
    if not 0 <= percent <= 100:
        raise ValueError(f"percent must be in [0, 100], got {percent}")
    if sd.areas_gt.size == 0 and sd.areas_pred.size == 0:
        return 0.0
    if sd.areas_gt.size == 0 or sd.areas_pred.size == 0:
        return float("nan")
    return max(
        _percentile(sd.gt_to_pred, sd.areas_gt, percent), _percentile(sd.pred_to_gt, sd.areas_pred, percent)
    )
