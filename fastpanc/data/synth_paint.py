"""Paint a synthetic anatomy onto a voxel grid: tissue ids ``(Z, Y, X)`` uint8 and the pancreas mask."""

from __future__ import annotations

import numpy as np

from fastpanc.data.synth_anatomy import PANCREAS_AP_STRETCH, TISSUE_ID, Anatomy, Shape
from fastpanc.data.synth_shapes import Grid, ellipsoid_field, smooth_field, tube_field


def _paint_shape(grid: Grid, tid: np.ndarray, shape: Shape, rng: np.random.Generator) -> None:
    if shape.kind == "tube":
        got = tube_field(grid, shape.points, shape.radii, shape.metric)
        scale = float(shape.radii.mean())
    else:
        got = ellipsoid_field(grid, shape.centre, shape.semi, shape.rot)
        scale = float(shape.semi.min())
    if got is None:
        return
    box, u = got
    view = tid[box]
    view[u < 1.0] = TISSUE_ID[shape.tissue]
    if shape.wall_mm <= 0:
        return
    lumen = u < max(0.2, 1.0 - shape.wall_mm / scale)
    view[lumen] = TISSUE_ID[shape.lumen]
    if shape.gas_fraction > 0 and lumen.any():
        y = grid.coords(box)[1]
        # supine: gas rises anteriorly (small y); a random field breaks it into bubbles
        score = (
            np.broadcast_to(-y, lumen.shape)[lumen]
            + 6.0 * smooth_field(lumen.shape, grid.spacing, 6.0, rng)[lumen]
        )
        thr = np.quantile(score, 1.0 - shape.gas_fraction)
        gas = np.zeros_like(lumen)
        gas[lumen] = score > thr
        view[gas] = TISSUE_ID["gas"]


def paint_anatomy(grid: Grid, anatomy: Anatomy, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Tissue ids ``(Z, Y, X)`` uint8 and the pancreas mask ``(Z, Y, X)`` bool on ``grid``."""
    tid = np.full(grid.shape, TISSUE_ID["fat"], np.uint8)
    _, y, x = grid.coords(tuple(slice(0, n) for n in grid.shape))
    (ax, ay), (cx, cy) = anatomy.body_semi_xy, anatomy.body_centre_xy
    r2 = np.square((x - cx) / ax) + np.square((y - cy) / ay)  # (1, Y, X)
    wall = 25.0 / min(ax, ay)
    tid[:, (r2[0] < 1.0) & (r2[0] > (1 - wall) ** 2)] = TISSUE_ID["muscle"]
    tid[:, (r2[0] < 1.0) & (r2[0] > (1 - wall * 0.55) ** 2)] = TISSUE_ID["fat"]
    tid[:, r2[0] >= 1.0] = TISSUE_ID["air"]
    for shape in anatomy.shapes:
        _paint_shape(grid, tid, shape, rng)
    pancreas = np.zeros(grid.shape, bool)
    got = tube_field(grid, anatomy.pancreas_points, anatomy.pancreas_radii, (1.0, PANCREAS_AP_STRETCH, 1.0))
    if got is not None:
        box, u = got
        lobules = u < 1.0 + 0.12 * smooth_field(u.shape, grid.spacing, 4.0, rng)
        pancreas[box] = lobules
        tid[box][lobules] = TISSUE_ID["pancreas"]
    return tid, pancreas
