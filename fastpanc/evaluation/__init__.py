"""Evaluation: segmentation and classification metrics, plots, the evaluate command and HTML reports."""

from __future__ import annotations

from fastpanc.evaluation.classification import ClassificationMetrics, classification_metrics
from fastpanc.evaluation.metrics import RegionMetrics, case_metrics, dice, region_metrics, volume_ml
from fastpanc.evaluation.surface import SurfaceDistances, robust_hausdorff, surface_dice, surface_distances

__all__ = [
    "ClassificationMetrics",
    "RegionMetrics",
    "SurfaceDistances",
    "case_metrics",
    "classification_metrics",
    "dice",
    "region_metrics",
    "robust_hausdorff",
    "surface_dice",
    "surface_distances",
    "volume_ml",
]
