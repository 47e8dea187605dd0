"""Derive the per-subtype statistics behind ``fastpanc synth`` from the real challenge data.

Reads (never copies) ``../shared/data/real``:

- ``masks/quiz_<subtype>_*.nii.gz`` (245 original-geometry masks): pancreas and lesion volume, their
  ratio, lesion position along the pancreas axis (0 head .. 1 tail), lesion elongation and
  sphericity, number of lesion components, bounding sizes, spacing and crop size.
- ``labeled/`` (59 subtype-2 cases, HU clipped to [-56, 180]) and ``raw_pair/`` (one subtype-0 case):
  pancreas and lesion attenuation (mean and standard deviation of HU inside each label).

Writes ``fastpanc/data/synth_stats.json``. Run from the repository root:

    python scripts/derive_synth_stats.py [--data ../shared/data] [--out fastpanc/data/synth_stats.json]
"""

from __future__ import annotations

import argparse
import json
import logging
import re
from pathlib import Path

import numpy as np
from scipy import ndimage
from skimage.measure import marching_cubes, mesh_surface_area
from tqdm import tqdm

from fastpanc.data.io import Geometry, read_image, read_labels

log = logging.getLogger("derive_synth_stats")
HU_WINDOW = (-56.0, 180.0)  # the clipping of the labeled images (nnU-Net's CT window for this dataset)


def physical_points(mask: np.ndarray, geo: Geometry) -> np.ndarray:
    """``(N, 3)`` LPS coordinates in mm (x, y, z) of the voxels of ``mask`` ``(Z, Y, X)``."""
    zyx = np.argwhere(mask).astype(np.float64)  # (N, 3) as (z, y, x)
    xyz_mm = zyx[:, ::-1] * np.asarray(geo.spacing[::-1])  # (N, 3) as (x, y, z) scaled
    return xyz_mm @ np.asarray(geo.direction).reshape(3, 3).T + np.asarray(geo.origin)


def principal_axes(points: np.ndarray, voxel_var: float = 0.0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Centroid ``(3,)``, eigenvalues ``(3,)`` descending and eigenvectors ``(3, 3)`` (columns).

    ``voxel_var`` (mm^2) is added on the diagonal: the spread of a voxel itself (spacing^2 / 12), so a
    lesion one slice thick does not get an infinite elongation.
    """
    centre = points.mean(0)
    cov = np.cov((points - centre).T) if len(points) > 1 else np.zeros((3, 3))
    cov = cov + np.eye(3) * voxel_var
    vals, vecs = np.linalg.eigh(cov)
    return centre, vals[::-1].clip(min=0), vecs[:, ::-1]


def sphericity(mask: np.ndarray, spacing: tuple[float, float, float]) -> float:
    """``pi^(1/3) (6V)^(2/3) / A`` of a binary ``(Z, Y, X)`` mask, surface by marching cubes."""
    padded = np.pad(mask.astype(np.float32), 1)
    if padded.sum() < 2:
        return float("nan")
    verts, faces, _, _ = marching_cubes(padded, 0.5, spacing=spacing)
    area = mesh_surface_area(verts, faces)
    volume = mask.sum() * float(np.prod(spacing))
    return float(np.pi ** (1 / 3) * (6 * volume) ** (2 / 3) / area)


def mask_features(path: Path) -> dict[str, float]:
    labels, geo = read_labels(path)
    voxel_ml = float(np.prod(geo.spacing)) / 1000.0
    pancreas, lesion = labels > 0, labels == 2
    if not lesion.any():
        raise ValueError(f"{path}: no lesion")
    p_pts, l_pts = physical_points(pancreas, geo), physical_points(lesion, geo)
    p_centre, p_vals, p_vecs = principal_axes(p_pts)
    axis = p_vecs[:, 0] * np.sign(p_vecs[0, 0] or 1.0)  # head (patient right, small LPS x) -> tail
    t = (p_pts - p_centre) @ axis
    t_lo, t_hi = float(t.min()), float(t.max())
    l_t = (l_pts - p_centre) @ axis
    _, l_vals, _ = principal_axes(l_pts, voxel_var=float(np.mean(np.square(geo.spacing))) / 12.0)
    comps, n_comp = ndimage.label(lesion, structure=np.ones((3, 3, 3)))
    sizes = np.bincount(comps.ravel())[1:]
    largest = comps == (int(np.argmax(sizes)) + 1)
    lesion_box = np.ptp(np.argwhere(lesion), 0) + 1
    pancreas_box = np.ptp(np.argwhere(pancreas), 0) + 1
    spacing = np.asarray(geo.spacing)
    return {
        "spacing_z": geo.spacing[0],
        "spacing_xy": float(np.mean(geo.spacing[1:])),
        "shape_z": labels.shape[0],
        "shape_y": labels.shape[1],
        "shape_x": labels.shape[2],
        "pancreas_ml": float(pancreas.sum() * voxel_ml),
        "lesion_ml": float(lesion.sum() * voxel_ml),
        "lesion_fraction": float(lesion.sum() / pancreas.sum()),
        "pancreas_length_mm": t_hi - t_lo,
        "pancreas_thickness_mm": float(4 * np.sqrt(p_vals[1:]).mean()),
        "lesion_position": float((np.mean(l_t) - t_lo) / max(t_hi - t_lo, 1e-6)),
        "lesion_elongation": float(np.sqrt(l_vals[0] / max(l_vals[2], 1e-6))),
        "lesion_sphericity": sphericity(largest, geo.spacing),
        "lesion_components": int(n_comp),
        "lesion_largest_fraction": float(sizes.max() / sizes.sum()),
        "lesion_extent_max_mm": float((lesion_box * spacing).max()),
        "lesion_extent_min_mm": float((lesion_box * spacing).min()),
        "pancreas_extent_z_mm": float(pancreas_box[0] * spacing[0]),
        "pancreas_extent_y_mm": float(pancreas_box[1] * spacing[1]),
        "pancreas_extent_x_mm": float(pancreas_box[2] * spacing[2]),
        "margin_z_mm": float((labels.shape[0] - pancreas_box[0]) * spacing[0] / 2),
        "margin_y_mm": float((labels.shape[1] - pancreas_box[1]) * spacing[1] / 2),
        "margin_x_mm": float((labels.shape[2] - pancreas_box[2]) * spacing[2] / 2),
    }


def hu_features(image_path: Path, label_path: Path) -> dict[str, float]:
    image, _ = read_image(image_path)
    labels, _ = read_labels(label_path)
    image = np.clip(image.astype(np.float64), *HU_WINDOW)
    pancreas, lesion = image[labels == 1], image[labels == 2]
    eroded = ndimage.binary_erosion(labels == 2, iterations=1)
    core = image[eroded] if eroded.any() else lesion
    return {
        "pancreas_hu_mean": float(pancreas.mean()),
        "pancreas_hu_std": float(pancreas.std()),
        "lesion_hu_mean": float(lesion.mean()),
        "lesion_hu_std": float(lesion.std()),
        "lesion_core_hu_std": float(core.std()),
        "lesion_minus_pancreas_hu": float(lesion.mean() - pancreas.mean()),
    }


def summarise(rows: list[dict[str, float]]) -> dict[str, dict[str, float]]:
    out: dict[str, dict[str, float]] = {}
    for key in rows[0]:
        v = np.asarray([r[key] for r in rows], dtype=np.float64)
        v = v[np.isfinite(v)]
        q = np.percentile(v, [5, 25, 50, 75, 95])
        s = {
            "n": int(v.size),
            "mean": float(v.mean()),
            "std": float(v.std()),
            "min": float(v.min()),
            "max": float(v.max()),
            "q05": float(q[0]),
            "q25": float(q[1]),
            "q50": float(q[2]),
            "q75": float(q[3]),
            "q95": float(q[4]),
        }
        if (v > 0).all():
            s["log_mean"], s["log_std"] = float(np.log(v).mean()), float(np.log(v).std())
        out[key] = {k: round(x, 5) if isinstance(x, float) else x for k, x in s.items()}
    return out


def _spacing_counts(values: list[float]) -> dict[str, int]:
    """How many masks have each slice spacing (rounded to 0.05 mm)."""
    rounded = np.round(np.asarray(values) / 0.05) * 0.05
    uniq, counts = np.unique(np.round(rounded, 2), return_counts=True)
    return {f"{u:.2f}": int(c) for u, c in zip(uniq, counts)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=str(Path(__file__).resolve().parents[1].parent / "shared" / "data"))
    ap.add_argument(
        "--out", default=str(Path(__file__).resolve().parents[1] / "fastpanc" / "data" / "synth_stats.json")
    )
    args = ap.parse_args()
    real = Path(args.data) / "real"
    masks = sorted((real / "masks").glob("quiz_*_*.nii.gz"))
    if not masks:
        raise FileNotFoundError(f"{real / 'masks'}: no quiz_<subtype>_*.nii.gz masks found")
    per_subtype: dict[int, list[dict[str, float]]] = {0: [], 1: [], 2: []}
    for path in tqdm(masks, desc="masks"):
        subtype = int(re.match(r"quiz_(\d)_", path.name).group(1))
        per_subtype[subtype].append(mask_features(path))
    hu: dict[int, list[dict[str, float]]] = {0: [], 2: []}
    for label_path in tqdm(
        sorted((real / "labeled" / "labelsTr").glob("quiz_2_*.nii.gz")), desc="labeled HU"
    ):
        image_path = real / "labeled" / "imagesTr" / label_path.name.replace(".nii.gz", "_0000.nii.gz")
        hu[2].append(hu_features(image_path, label_path))
    pair = real / "raw_pair"
    hu[0].append(hu_features(pair / "quiz_0_324_0000.nii.gz", pair / "quiz_0_324.nii.gz"))
    stats = {
        "source": "scripts/derive_synth_stats.py on the challenge's real masks (245) and labeled images",
        "hu_window": list(HU_WINDOW),
        "notes": [
            "masks: original geometry; lesion_position is the lesion centroid along the pancreas' principal "
            "axis, 0 at the head (patient right) and 1 at the tail",
            "attenuation 2: the 59 labelled subtype-2 images (HU clipped to hu_window); attenuation 0: the one "
            "raw subtype-0 case, clipped likewise; no labelled subtype-1 image exists",
        ],
        "real_subtype_counts": {"0": 62, "1": 106, "2": 84},
        "masks": {str(k): summarise(v) for k, v in per_subtype.items()},
        "attenuation": {str(k): summarise(v) for k, v in hu.items()},
        "all_masks": summarise([r for v in per_subtype.values() for r in v]),
        "spacing_z_counts": _spacing_counts([r["spacing_z"] for v in per_subtype.values() for r in v]),
    }
    Path(args.out).write_text(json.dumps(stats, indent=1) + "\n")
    log.warning("wrote %s", args.out)


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO)
    main()
