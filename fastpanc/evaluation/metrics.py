"""Per-case segmentation metrics: Dice, normalised surface Dice, HD95 and volumes of two regions.

Regions of a label map (0 background, 1 pancreas, 2 lesion):

- ``whole``: the whole pancreas, label > 0;
- ``lesion``: label == 2.

Edge cases (a region absent from the prediction, the reference or both):

============================  ======  ======  ==============================
case                          Dice    NSD     HD95
============================  ======  ======  ==============================
both empty                    1.0     1.0     0.0
exactly one empty             0.0     0.0     NaN (null in JSON, empty in CSV)
============================  ======  ======  ==============================

Surfaces and distances follow DeepMind's ``surface-distance`` package (``fastpanc.evaluation.surface``).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np

from fastpanc.evaluation.surface import robust_hausdorff, surface_dice, surface_distances

REGIONS: dict[str, tuple[str, int]] = {"whole": (">", 0), "lesion": ("==", 2)}


@dataclass(frozen=True)
class RegionMetrics:
    """Metrics of one region of one case. Volumes in ml, HD95 in mm (NaN when undefined)."""

    dice: float
    nsd: float
    hd95: float
    volume_pred_ml: float
    volume_gt_ml: float

    def as_dict(self) -> dict[str, float | None]:
        """Plain values for JSON: NaN becomes None so the file stays valid JSON."""
        return {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in asdict(self).items()}


def dice(gt: np.ndarray, pred: np.ndarray) -> float:
    """Dice of two boolean masks of one shape; 1.0 when both are empty."""
    if gt.shape != pred.shape:
        raise ValueError(f"masks must have one shape, got {gt.shape} and {pred.shape}")
    gt = np.asarray(gt, dtype=bool)
    pred = np.asarray(pred, dtype=bool)
    total = int(gt.sum()) + int(pred.sum())
    if total == 0:
        return 1.0
    return 2.0 * int(np.logical_and(gt, pred).sum()) / total


def volume_ml(mask: np.ndarray, spacing: tuple[float, float, float]) -> float:
    """Volume of a boolean mask in millilitres (1 ml = 1000 mm^3)."""
    return float(np.count_nonzero(mask)) * float(np.prod(spacing)) / 1000.0


def region_mask(labels: np.ndarray, region: str) -> np.ndarray:
    """Boolean mask ``(Z, Y, X)`` of a named region (see ``REGIONS``) of a label map ``(Z, Y, X)``."""
    if region not in REGIONS:
        raise ValueError(f"unknown region {region!r}; expected one of {sorted(REGIONS)}")
    op, value = REGIONS[region]
    return labels > value if op == ">" else labels == value


def region_metrics(
    gt: np.ndarray, pred: np.ndarray, spacing: tuple[float, float, float], tolerance_mm: float = 2.0
) -> RegionMetrics:
    """Dice, NSD at ``tolerance_mm``, HD95 and volumes of two boolean masks ``(Z, Y, X)``, spacing ``(z, y, x)``."""
    sd = surface_distances(gt, pred, spacing)
    return RegionMetrics(
        dice=dice(gt, pred),
        nsd=surface_dice(sd, tolerance_mm),
        hd95=robust_hausdorff(sd, 95.0),
        volume_pred_ml=volume_ml(pred, spacing),
        volume_gt_ml=volume_ml(gt, spacing),
    )


def case_metrics(
    gt_labels: np.ndarray,
    pred_labels: np.ndarray,
    spacing: tuple[float, float, float],
    tolerance_mm: float = 2.0,
) -> dict[str, RegionMetrics]:
    """Metrics of every region (``whole``, ``lesion``) of one case; label maps ``(Z, Y, X)``."""
    if gt_labels.shape != pred_labels.shape:
        raise ValueError(
            f"prediction shape {pred_labels.shape} differs from the reference shape {gt_labels.shape}; "
            "predictions must be written in the reference's geometry"
        )
    return {
        name: region_metrics(
            region_mask(gt_labels, name), region_mask(pred_labels, name), spacing, tolerance_mm
        )
        for name in REGIONS
    }
