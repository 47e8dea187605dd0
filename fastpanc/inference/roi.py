"""Coarse-to-fine region of interest: a half-resolution pass of the first fold (no TTA, step 1, minimal
padding) finds the foreground; the full-resolution pass then runs only on windows covering its bounding box
grown by ``roi_margin_mm``. When the coarse pass finds nothing the whole volume is predicted (logged).
"""

from __future__ import annotations

import logging
import math
from typing import TYPE_CHECKING

import torch

from fastpanc.inference.sliding_window import predict_logits
from fastpanc.ops import argmax_labels

if TYPE_CHECKING:
    from fastpanc.inference.predictor import Predictor

log = logging.getLogger("fastpanc.inference")

COARSE_SCALE = 0.5


def find_roi(predictor: Predictor, data: torch.Tensor, timings: dict[str, float]) -> tuple[slice, ...] | None:
    """Slices of ``data`` ``(C, z, y, x)`` around the coarse foreground, or None (predict everything)."""
    shape = data.shape[1:]
    coarse_shape = [max(1, int(round(s * COARSE_SCALE))) for s in shape]
    coarse = torch.nn.functional.interpolate(
        data[None].float(), size=coarse_shape, mode="trilinear", align_corners=False
    )[0]
    out = predict_logits(
        predictor.networks[0],
        coarse,
        predictor.model.patch_size,
        1.0,
        None,
        1,
        device=predictor.device,
        autocast=predictor.autocast,
        padding="minimal",
        divisor=predictor.divisor,
        timings=timings,
    )
    fg = argmax_labels(out.logits) > 0
    if not fg.any():
        log.info("ROI: the coarse pass found no foreground; predicting the whole volume")
        return None
    spacing = predictor.model.spacing
    region = []
    for axis in range(3):
        other = tuple(a for a in range(3) if a != axis)
        idx = torch.nonzero(fg.any(dim=other)).flatten()
        scale = shape[axis] / coarse_shape[axis]
        margin = int(math.ceil(predictor.config.roi_margin_mm / spacing[axis]))
        lo = max(0, int(math.floor(int(idx[0]) * scale)) - margin)
        hi = min(shape[axis], int(math.ceil((int(idx[-1]) + 1) * scale)) + margin)
        region.append(slice(lo, hi))
    log.info("ROI: %s of %s voxels", [f"{r.start}:{r.stop}" for r in region], tuple(shape))
    return tuple(region)
