"""Preprocessing for prediction, as nnU-Net v2's ``DefaultPreprocessor.run_case_npy``: crop to the nonzero
region, normalise each channel (CT: clip to the foreground percentiles then z-score), resample to the plans'
spacing (order 3 in-plane, order 0 along an anisotropic axis).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from fastpanc.inference.resampling import compute_new_shape, resample_to_shape
from fastpanc.ops import ct_normalize


@dataclass
class Prepared:
    """A case ready for the network.

    ``data``: ``(C, z, y, x)`` float32 (CPU) at the plans' spacing. ``bbox``: ``((z0, z1), (y0, y1), (x0, x1))``
    of the nonzero crop in the original array ``shape`` ``(Z, Y, X)``; ``cropped_shape`` is the crop's size
    before resampling; ``spacing`` the original ``(z, y, x)`` spacing.
    """

    data: torch.Tensor
    shape: tuple[int, ...]
    bbox: tuple[tuple[int, int], ...]
    cropped_shape: tuple[int, ...]
    spacing: tuple[float, ...]
    target_spacing: tuple[float, ...]


def nonzero_bbox(image: np.ndarray) -> tuple[tuple[int, int], ...]:
    """Bounding box ``((lo, hi), ...)`` (hi exclusive) of voxels nonzero in any channel of ``(C, Z, Y, X)``."""
    mask = np.any(image != 0, axis=0)
    if not mask.any():
        raise ValueError("the image is zero everywhere; expected a CT volume with nonzero intensities")
    box = []
    for axis in range(mask.ndim):
        other = tuple(a for a in range(mask.ndim) if a != axis)
        idx = np.where(mask.any(axis=other))[0]
        box.append((int(idx[0]), int(idx[-1]) + 1))
    return tuple(box)


def normalize(image: np.ndarray, plans: dict[str, Any], configuration: str) -> np.ndarray:
    """Normalise ``(C, Z, Y, X)`` float32 per channel with the plans' schemes (CT or z-score)."""
    cfg = plans["configurations"][configuration]
    schemes = cfg["normalization_schemes"]
    if len(schemes) != image.shape[0]:
        raise ValueError(f"the plans normalise {len(schemes)} channel(s) but the image has {image.shape[0]}")
    out = np.empty_like(image, dtype=np.float32)
    for c, scheme in enumerate(schemes):
        if cfg.get("use_mask_for_norm", [False] * len(schemes))[c]:
            raise ValueError(f"channel {c}: use_mask_for_norm=True is not supported (CT plans never use it)")
        if scheme == "CTNormalization":
            p = plans["foreground_intensity_properties_per_channel"][str(c)]
            out[c] = ct_normalize(
                torch.from_numpy(np.ascontiguousarray(image[c])),
                float(p["percentile_00_5"]),
                float(p["percentile_99_5"]),
                float(p["mean"]),
                max(float(p["std"]), 1e-8),
            ).numpy()
        elif scheme == "ZScoreNormalization":
            x = image[c].astype(np.float32)
            out[c] = (x - x.mean()) / max(float(x.std()), 1e-8)
        else:
            raise ValueError(
                f"channel {c}: normalisation scheme {scheme!r} is not supported; expected "
                "CTNormalization or ZScoreNormalization"
            )
    return out


def prepare(
    image: np.ndarray, spacing: Sequence[float], plans: dict[str, Any], configuration: str = "3d_fullres"
) -> Prepared:
    """Crop, normalise and resample ``image`` ``(C, Z, Y, X)`` with original ``spacing`` ``(z, y, x)``."""
    if image.ndim != 4:
        raise ValueError(f"expected an image (C, Z, Y, X), got shape {image.shape}")
    if list(plans.get("transpose_forward", [0, 1, 2])) != [0, 1, 2]:
        raise ValueError(
            f"plans transpose_forward {plans['transpose_forward']} is not supported; expected [0, 1, 2]"
        )
    cfg = plans["configurations"][configuration]
    image = image.astype(np.float32, copy=False)
    bbox = nonzero_bbox(image)
    cropped = image[(slice(None), *(slice(a, b) for a, b in bbox))]
    normed = normalize(cropped, plans, configuration)
    target = tuple(float(s) for s in cfg["spacing"])
    new_shape = compute_new_shape(cropped.shape[1:], spacing, target)
    kw = cfg.get("resampling_fn_data_kwargs", {"order": 3, "order_z": 0, "force_separate_z": None})
    data = resample_to_shape(
        normed,
        new_shape,
        spacing,
        target,
        order=kw.get("order", 3),
        order_z=kw.get("order_z", 0),
        force_separate_z=kw.get("force_separate_z"),
    )
    return Prepared(
        torch.from_numpy(np.ascontiguousarray(data)),
        tuple(image.shape[1:]),
        bbox,
        tuple(cropped.shape[1:]),
        tuple(float(s) for s in spacing),
        target,
    )
