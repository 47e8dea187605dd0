"""Back to the original geometry: resample the prediction to the crop's original size and paste it into
the full volume (zeros outside the nonzero crop), so the mask has exactly the input's grid.

``resample_logits`` (exact, nnU-Net's ``convert_predicted_logits_to_segmentation_with_correct_shape``):
logits resampled with the plans' probability kwargs (order 1, order 0 along an anisotropic axis) into the
logits' dtype (nnU-Net: float16), then argmax. ``argmax_nearest`` (fast): argmax at the network's spacing,
then a nearest-neighbour resize. Both run on the logits' device (``fastpanc.ops``).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from fastpanc.inference.prepare import Prepared
from fastpanc.ops import argmax_labels, paste, resample, resample_labels, separate_z_axis

_RESAMPLE_DTYPES = (torch.float32, torch.float16, torch.bfloat16)


def _resample_logits(logits: torch.Tensor, prep: Prepared, cfg: dict[str, Any]) -> torch.Tensor:
    kw = cfg.get("resampling_fn_probabilities_kwargs", {"order": 1, "order_z": 0, "force_separate_z": None})
    sep = separate_z_axis(prep.target_spacing, prep.spacing, force=kw.get("force_separate_z"))
    out_dtype = logits.dtype if logits.dtype in _RESAMPLE_DTYPES else torch.float32
    return resample(
        logits,
        prep.cropped_shape,
        order=int(kw.get("order", 1)),
        separate_z=sep,
        order_z=int(kw.get("order_z", 0)),
        out_dtype=out_dtype,
    )


def export_prediction(
    logits: torch.Tensor, prep: Prepared, cfg: dict[str, Any], method: str, probabilities: bool = False
) -> tuple[np.ndarray, np.ndarray | None]:
    """Labels ``(Z, Y, X)`` uint8 on the original grid, and softmax probabilities ``(K, Z, Y, X)`` float32
    when asked (background 1 outside the crop).

    Args:
        logits: ``(K, z, y, x)`` at the plans' spacing (any device).
        prep: the :class:`Prepared` case the logits come from.
        cfg: the plans' configuration (resampling kwargs).
        method: ``"resample_logits"`` or ``"argmax_nearest"``.
    """
    if method not in ("resample_logits", "argmax_nearest"):
        raise ValueError(f"export method must be 'resample_logits' or 'argmax_nearest', got {method!r}")
    probs_full = None
    resampled = None
    if method == "resample_logits" or probabilities:
        resampled = _resample_logits(logits, prep, cfg)  # (K, *cropped_shape) in the logits' dtype
        if probabilities:
            probs = torch.softmax(resampled.float(), 0)
            background = torch.zeros((probs.shape[0], 1, 1, 1), dtype=probs.dtype, device=probs.device)
            background[0] = 1.0
            full = background.expand(-1, *prep.shape).clone()
            full[(slice(None), *(slice(a, b) for a, b in prep.bbox))] = probs
            probs_full = full.cpu().numpy()
    if method == "argmax_nearest":
        return export_labels(argmax_labels(logits), prep), probs_full
    labels = argmax_labels(resampled)
    return paste(labels, prep.shape, prep.bbox, fill=0).cpu().numpy(), probs_full


def export_labels(labels: torch.Tensor, prep: Prepared) -> np.ndarray:
    """Labels ``(z, y, x)`` uint8 at the plans' spacing -> ``(Z, Y, X)`` uint8 on the original grid (nearest
    neighbour, then pasted into the uncropped volume)."""
    labels = resample_labels(labels, prep.cropped_shape, mode="nearest")
    return paste(labels, prep.shape, prep.bbox, fill=0).cpu().numpy()
