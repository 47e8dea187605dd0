"""Back to the original geometry: resample the prediction to the crop's original size and paste it into
the full volume (zeros outside the nonzero crop), so the mask has exactly the input's grid.

``resample_logits`` (exact, nnU-Net's ``convert_predicted_logits_to_segmentation_with_correct_shape``):
logits resampled with the plans' probability kwargs (order 1, order 0 along an anisotropic axis), then
argmax. ``argmax_nearest`` (fast): argmax at the network's spacing, then a nearest-neighbour resize.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from fastpanc.inference.prepare import Prepared
from fastpanc.inference.resampling import resample_to_shape, resize_labels_nearest


def _resample_logits(logits: np.ndarray, prep: Prepared, cfg: dict[str, Any]) -> np.ndarray:
    kw = cfg.get("resampling_fn_probabilities_kwargs", {"order": 1, "order_z": 0, "force_separate_z": None})
    return resample_to_shape(
        logits,
        prep.cropped_shape,
        prep.target_spacing,
        prep.spacing,
        order=kw.get("order", 1),
        order_z=kw.get("order_z", 0),
        force_separate_z=kw.get("force_separate_z"),
    )


def _paste(
    full_shape: tuple[int, ...], crop: np.ndarray, bbox: tuple[tuple[int, int], ...], fill: float | int = 0
) -> np.ndarray:
    out = np.full((*crop.shape[: crop.ndim - 3], *full_shape), fill, dtype=crop.dtype)
    out[(..., *(slice(a, b) for a, b in bbox))] = crop
    return out


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
    if method == "resample_logits" or probabilities:
        resampled = _resample_logits(logits.float().cpu().numpy(), prep, cfg)  # (K, *cropped_shape)
        # back to the logits' dtype: nnU-Net resamples float16 logits into float16, and its ties decide labels
        resampled = resampled.astype(torch.empty(0, dtype=logits.dtype).numpy().dtype, copy=False)
        if probabilities:
            probs = torch.softmax(torch.from_numpy(resampled).float(), 0).numpy()
            probs_full = _paste(prep.shape, probs, prep.bbox, 0.0)
            outside = np.ones(prep.shape, dtype=bool)
            outside[tuple(slice(a, b) for a, b in prep.bbox)] = False
            probs_full[0][outside] = 1.0
    if method == "resample_logits":
        labels = resampled.argmax(0).astype(np.uint8)
    elif method == "argmax_nearest":
        small = logits.argmax(0).to(torch.uint8).cpu().numpy()
        labels = resize_labels_nearest(small, prep.cropped_shape)
    return _paste(prep.shape, labels, prep.bbox, 0), probs_full
