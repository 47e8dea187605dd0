"""Geometric primitives of the synthetic CT generator: a voxel grid in mm, smooth curves, tubes,
ellipsoids and smooth random fields. Everything is vectorised numpy on sub-boxes of the grid.

Coordinates are patient LPS in mm, stored ``(z, y, x)`` like the arrays: +x patient left, +y posterior,
+z superior. Arrays are ``(Z, Y, X)``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage
from scipy.interpolate import CubicSpline


@dataclass(frozen=True)
class Grid:
    """An axis-aligned voxel grid: voxel ``(k, j, i)`` sits at ``origin + (k, j, i) * spacing`` (z, y, x) mm."""

    shape: tuple[int, int, int]
    spacing: tuple[float, float, float]
    origin: tuple[float, float, float]

    def axis(self, a: int) -> np.ndarray:
        """Voxel centre coordinates (mm) along axis ``a`` (0 z, 1 y, 2 x), float32 ``(shape[a],)``."""
        return (self.origin[a] + np.arange(self.shape[a]) * self.spacing[a]).astype(np.float32)

    def box(self, lo: np.ndarray, hi: np.ndarray) -> tuple[slice, slice, slice] | None:
        """Index slices of the voxels whose centres lie in ``[lo, hi]`` (mm, z y x), None when empty."""
        out = []
        for a in range(3):
            start = int(np.ceil((lo[a] - self.origin[a]) / self.spacing[a]))
            stop = int(np.floor((hi[a] - self.origin[a]) / self.spacing[a])) + 1
            start, stop = max(start, 0), min(stop, self.shape[a])
            if stop <= start:
                return None
            out.append(slice(start, stop))
        return tuple(out)  # type: ignore[return-value]

    def coords(self, box: tuple[slice, slice, slice]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Broadcastable ``(z[:, None, None], y[None, :, None], x[None, None, :])`` mm coordinates of ``box``."""
        z, y, x = (self.axis(a)[box[a]] for a in range(3))
        return z[:, None, None], y[None, :, None], x[None, None, :]


def rotation(angles: tuple[float, float, float]) -> np.ndarray:
    """``(3, 3)`` rotation acting on ``(z, y, x)`` vectors: about z, then y, then x (radians)."""
    az, ay, ax = angles
    cz, sz, cy, sy, cx, sx = np.cos(az), np.sin(az), np.cos(ay), np.sin(ay), np.cos(ax), np.sin(ax)
    rot_z = np.array([[1, 0, 0], [0, cz, -sz], [0, sz, cz]])  # rotates the (y, x) plane
    rot_y = np.array([[cy, 0, -sy], [0, 1, 0], [sy, 0, cy]])  # rotates the (z, x) plane
    rot_x = np.array([[cx, -sx, 0], [sx, cx, 0], [0, 0, 1]])  # rotates the (z, y) plane
    return rot_x @ rot_y @ rot_z


def curve(control: np.ndarray, step_mm: float) -> tuple[np.ndarray, np.ndarray]:
    """A smooth curve through ``control`` ``(M, 3)`` points, resampled every ~``step_mm`` of arc length.

    Returns:
        ``(points (K, 3), s (K,))`` with ``s`` the normalised arc length in [0, 1].
    """
    chord = np.r_[0.0, np.cumsum(np.linalg.norm(np.diff(control, axis=0), axis=1))]
    spline = CubicSpline(chord, control, bc_type="natural")
    fine = spline(np.linspace(0.0, chord[-1], max(64, int(chord[-1] / 0.25))))
    arc = np.r_[0.0, np.cumsum(np.linalg.norm(np.diff(fine, axis=0), axis=1))]
    k = max(2, int(np.ceil(arc[-1] / step_mm)) + 1)
    s = np.linspace(0.0, arc[-1], k)
    points = np.stack([np.interp(s, arc, fine[:, a]) for a in range(3)], axis=1)
    return points, s / arc[-1]


def tube_field(
    grid: Grid, points: np.ndarray, radii: np.ndarray, metric: tuple[float, float, float] = (1.0, 1.0, 1.0)
):
    """Normalised distance to a tube: ``min_k |p - points_k|_metric / radii_k`` on the tube's bounding box.

    Args:
        points: ``(K, 3)`` centre line (z, y, x mm), sampled densely (step well below the radii).
        radii: ``(K,)`` radius at each point (mm).
        metric: per-axis stretch (>1 makes the tube thinner along that axis).

    Returns:
        ``(box, u)``: ``u`` float32 of the box's shape, < 1 inside the tube (``inf`` far away); or
        ``None`` when the tube misses the grid.
    """
    reach = radii[:, None] / np.asarray(metric)[None, :]  # (K, 3) half extents in mm
    box = grid.box((points - reach).min(0), (points + reach).max(0))
    if box is None:
        return None
    shape = tuple(s.stop - s.start for s in box)
    u = np.full(shape, np.inf, np.float32)
    axes = [grid.axis(a)[box[a]] for a in range(3)]
    for p, r, e in zip(points, radii, reach):
        sub = grid.box(p - e, p + e)
        if sub is None:
            continue
        local = tuple(slice(sub[a].start - box[a].start, sub[a].stop - box[a].start) for a in range(3))
        dz, dy, dx = ((axes[a][local[a]] - p[a]) * (metric[a] / r) for a in range(3))
        d2 = np.square(dz)[:, None, None] + np.square(dy)[None, :, None] + np.square(dx)[None, None, :]
        view = u[local]
        np.minimum(view, d2, out=view)
    np.sqrt(u, out=u)
    return box, u


def ellipsoid_field(grid: Grid, centre: np.ndarray, semi: np.ndarray, rot: np.ndarray, pad: float = 1.0):
    """Normalised ellipsoid radius ``|R^T (p - c) / semi|`` on the ellipsoid's bounding box (scaled by ``pad``).

    Args:
        centre: ``(3,)`` z, y, x mm; semi: ``(3,)`` semi-axes (mm) along the columns of ``rot``.
        rot: ``(3, 3)`` rotation whose columns are the ellipsoid axes (z, y, x components).

    Returns:
        ``(box, rho)`` with ``rho`` float32 (< 1 inside), or None when it misses the grid.
    """
    half = np.sqrt(np.square(rot * semi[None, :]).sum(1)) * pad  # (3,) axis-aligned half extents
    box = grid.box(centre - half, centre + half)
    if box is None:
        return None
    z, y, x = grid.coords(box)
    dz, dy, dx = z - np.float32(centre[0]), y - np.float32(centre[1]), x - np.float32(centre[2])
    q = rot.T / semi[:, None]  # (3, 3): row i projects onto axis i, scaled
    rho2 = np.zeros(tuple(s.stop - s.start for s in box), np.float32)
    for i in range(3):
        rho2 += np.square(np.float32(q[i, 0]) * dz + np.float32(q[i, 1]) * dy + np.float32(q[i, 2]) * dx)
    return box, np.sqrt(rho2)


def _lerp_axis(a: np.ndarray, n: int, axis: int) -> np.ndarray:
    """Linearly interpolate the ``c`` nodes of ``a`` along ``axis`` onto ``n`` evenly spread points."""
    c = a.shape[axis]
    pos = np.linspace(0.0, c - 1.0, n)
    i0 = np.minimum(pos.astype(np.int64), c - 2)
    shape = [1] * a.ndim
    shape[axis] = n
    w = (pos - i0).astype(np.float32).reshape(shape)
    lo = np.take(a, i0, axis=axis)
    hi = np.take(a, i0 + 1, axis=axis)
    hi -= lo
    hi *= w
    hi += lo
    return hi


def smooth_field(
    shape: tuple[int, int, int], spacing: tuple[float, float, float], corr_mm: float, rng: np.random.Generator
) -> np.ndarray:
    """Zero-mean, unit-std smooth random field ``(Z, Y, X)`` float32 with correlation length ~``corr_mm``.

    Drawn on a coarse grid (one node per ``corr_mm``), smoothed, and interpolated linearly axis by
    axis (the smallest axis last is not needed: cost is a few passes over the output).
    """
    coarse = tuple(max(2, int(np.ceil(n * s / corr_mm)) + 1) for n, s in zip(shape, spacing))
    noise = ndimage.gaussian_filter(rng.standard_normal(coarse).astype(np.float32), 0.7, mode="wrap")
    noise /= max(float(noise.std()), 1e-6)
    a = _lerp_axis(noise, shape[2], 2)  # (cz, cy, X)
    a = _lerp_axis(a, shape[1], 1)  # (cz, Y, X)
    a = _lerp_axis(a, shape[0], 0)  # (Z, Y, X)
    a *= np.float32(1.0 / max(float(a[:: max(1, shape[0] // 8)].std()), 1e-6))
    return a
