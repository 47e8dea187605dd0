"""nnU-Net v2's intensity normalisation schemes, one channel at a time, in torch (CT through ``ct_normalize``)."""

from __future__ import annotations

from typing import Any

import torch

from fastpanc.ops import ct_normalize

SCHEMES = (
    "CTNormalization",
    "ZScoreNormalization",
    "NoNormalization",
    "RescaleTo01Normalization",
    "RGBTo01Normalization",
)
EPS = 1e-8


def normalize_channel(
    x: torch.Tensor, scheme: str, props: dict[str, Any] | None, use_mask: bool, nonzero: torch.Tensor | None
) -> torch.Tensor:
    """Normalise one channel as nnU-Net's ``<scheme>.run`` does.

    Args:
        x: ``(Z, Y, X)`` any numeric dtype.
        scheme: one of :data:`SCHEMES` (the plan's ``normalization_schemes`` entry).
        props: the channel's ``foreground_intensity_properties_per_channel`` entry (CT needs mean, std and
            the 0.5 / 99.5 percentiles).
        use_mask: the plan's ``use_mask_for_norm`` entry (only ZScore uses it).
        nonzero: ``(Z, Y, X)`` bool, the nonzero region (``seg >= 0``); needed when ZScore uses the mask.

    Returns:
        float32 ``(Z, Y, X)``.
    """
    if scheme == "CTNormalization":
        if props is None:
            raise ValueError("CTNormalization needs the channel's intensity properties from the plans")
        std = max(float(props["std"]), EPS)
        return ct_normalize(
            x, float(props["percentile_00_5"]), float(props["percentile_99_5"]), float(props["mean"]), std
        )
    y = x.to(torch.float32)
    if scheme == "ZScoreNormalization":
        if use_mask:
            if nonzero is None:
                raise ValueError("ZScoreNormalization with use_mask_for_norm needs the nonzero mask")
            vals = y[nonzero]
            mean, std = vals.mean(), vals.std(unbiased=False)
            y = y.clone()
            y[nonzero] = (vals - mean) / max(float(std), EPS)
            return y
        return (y - y.mean()) / max(float(y.std(unbiased=False)), EPS)
    if scheme == "NoNormalization":
        return y.clone() if y is x else y
    if scheme == "RescaleTo01Normalization":
        y = y - y.min()
        return y / max(float(y.max()), EPS)
    if scheme == "RGBTo01Normalization":
        if float(y.min()) < 0 or float(y.max()) > 255:
            raise ValueError(
                f"RGBTo01Normalization expects values in [0, 255], got [{float(y.min())}, {float(y.max())}]"
            )
        return y / 255.0
    raise ValueError(f"unknown normalization scheme {scheme!r}; expected one of {SCHEMES}")
