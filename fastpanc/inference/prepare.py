"""Preprocessing for prediction: ``fastpanc.data.preprocess_case.preprocess_case`` (nnU-Net v2's
``DefaultPreprocessor``: crop to the nonzero region, normalise, resample to the plans' spacing), on the
prediction device, plus what the export needs to map predictions back."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from fastpanc.data.io import Geometry
from fastpanc.data.preprocess_case import preprocess_case


@dataclass
class Prepared:
    """A case ready for the network.

    ``data``: ``(C, z, y, x)`` float32 at the plans' spacing, on the prediction device. ``bbox``:
    ``((z0, z1), (y0, y1), (x0, x1))`` of the nonzero crop in the original array ``shape`` ``(Z, Y, X)``;
    ``cropped_shape`` is the crop's size before resampling; ``spacing`` the original ``(z, y, x)`` spacing.
    """

    data: torch.Tensor
    shape: tuple[int, ...]
    bbox: tuple[tuple[int, int], ...]
    cropped_shape: tuple[int, ...]
    spacing: tuple[float, ...]
    target_spacing: tuple[float, ...]


def prepare(
    image: np.ndarray | torch.Tensor,
    spacing: Sequence[float],
    plans: dict[str, Any],
    configuration: str = "3d_fullres",
    device: torch.device | str = "cpu",
) -> Prepared:
    """Crop, normalise and resample ``image`` ``(C, Z, Y, X)`` with original ``spacing`` ``(z, y, x)``."""
    if list(plans.get("transpose_forward", [0, 1, 2])) != [0, 1, 2]:
        raise ValueError(
            f"plans transpose_forward {plans['transpose_forward']} is not supported by the "
            "predictor; expected [0, 1, 2] (the CT plans nnU-Net and fastpanc write)"
        )
    x = torch.as_tensor(image)
    if not bool((x != 0).any()):
        raise ValueError("the image is zero everywhere; expected a CT volume with nonzero intensities")
    x = x.to(device)
    data, _, props = preprocess_case(
        x,
        Geometry.identity(spacing),
        plans["configurations"][configuration],
        plans["foreground_intensity_properties_per_channel"],
    )
    return Prepared(
        data=data,
        shape=tuple(int(s) for s in props["shape_before_cropping"]),
        bbox=tuple((int(a), int(b)) for a, b in props["bbox_used_for_cropping"]),
        cropped_shape=tuple(int(s) for s in props["shape_after_cropping_and_before_resampling"]),
        spacing=tuple(float(s) for s in spacing),
        target_spacing=tuple(float(s) for s in props["spacing_after_resampling"]),
    )
