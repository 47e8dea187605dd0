"""One case through nnU-Net v2's ``DefaultPreprocessor``: transpose, crop to nonzero, normalise, resample.

The same function serves training (with labels: the segmentation and the foreground locations) and
inference (without labels: the data and the properties needed to map predictions back).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from fastpanc.data.class_locations import sample_foreground_locations
from fastpanc.data.cropping import filled_nonzero_mask
from fastpanc.data.io import Geometry
from fastpanc.data.normalization import normalize_channel
from fastpanc.ops import compute_new_shape, nonzero_bounding_box, resample, resample_labels, separate_z_axis

log = logging.getLogger(__name__)


def preprocess_case(
    image: np.ndarray | torch.Tensor,
    geometry: Geometry,
    plans_config: dict[str, Any],
    intensity_props: dict[str, dict[str, float]],
    labels: np.ndarray | torch.Tensor | None = None,
    transpose_forward: Sequence[int] = (0, 1, 2),
    foreground_labels: Sequence[int] = (1, 2),
) -> tuple[torch.Tensor, torch.Tensor | None, dict[str, Any]]:
    """Preprocess one case as nnU-Net v2's ``DefaultPreprocessor.run_case_npy``.

    Args:
        image: ``(C, Z, Y, X)`` numpy array or tensor (any device, any numeric dtype), as read from disk.
        geometry: the image's geometry; its spacing ``(z, y, x)`` is the current spacing.
        plans_config: one configuration of plans.json (``plans["configurations"]["3d_fullres"]``).
        intensity_props: ``plans["foreground_intensity_properties_per_channel"]``.
        labels: ``(Z, Y, X)`` or ``(1, Z, Y, X)`` integer labels, or None (inference).
        transpose_forward: ``plans["transpose_forward"]``.
        foreground_labels: the labels whose locations are sampled.

    Returns:
        ``(data, seg, properties)``: ``data`` float32 ``(C, z, y, x)`` on the image's device, at the plan's
        spacing; ``seg`` int8 ``(1, z, y, x)`` on the CPU, -1 outside the nonzero region (None without
        labels); ``properties`` holds the original spacing/origin/direction, ``shape_before_cropping``,
        ``bbox_used_for_cropping``, ``shape_after_cropping_and_before_resampling``,
        ``spacing_after_resampling``, ``shape_after_resampling`` and, with labels, ``class_locations``
        ``{label: (N, 4) int64 (c, z, y, x)}``.
    """
    x = torch.as_tensor(image)
    if x.dim() != 4:
        raise ValueError(f"preprocess_case: expected image (C, Z, Y, X), got shape {tuple(x.shape)}")
    tf = [int(t) for t in transpose_forward]
    if sorted(tf) != [0, 1, 2]:
        raise ValueError(f"transpose_forward must be a permutation of (0, 1, 2), got {tf}")
    schemes = plans_config["normalization_schemes"]
    if len(schemes) != x.shape[0]:
        raise ValueError(f"the plans normalise {len(schemes)} channel(s), the image has {x.shape[0]}")
    x = x.permute(0, *[t + 1 for t in tf])
    spacing = [geometry.spacing[t] for t in tf]
    lab = None
    if labels is not None:
        lab = torch.as_tensor(labels).cpu()
        lab = lab[None] if lab.dim() == 3 else lab
        if tuple(lab.shape[1:]) != tuple(torch.as_tensor(image).shape[1:]) or lab.shape[0] != 1:
            raise ValueError(
                f"labels {tuple(lab.shape)} do not match the image grid "
                f"{tuple(torch.as_tensor(image).shape[1:])}"
            )
        lab = lab.permute(0, *[t + 1 for t in tf])

    props: dict[str, Any] = {
        "spacing": list(geometry.spacing),
        "origin": list(geometry.origin),
        "direction": list(geometry.direction),
        "transpose_forward": tf,
        "shape_before_cropping": [int(s) for s in x.shape[1:]],
    }
    box = nonzero_bounding_box(x)
    slicer = (slice(None), *(slice(int(a), int(b)) for a, b in box))
    crop = x[slicer]
    props["bbox_used_for_cropping"] = [[int(a), int(b)] for a, b in box]
    props["shape_after_cropping_and_before_resampling"] = [int(s) for s in crop.shape[1:]]

    use_mask = [bool(u) for u in plans_config["use_mask_for_norm"]]
    mask = filled_nonzero_mask(crop) if (lab is not None or any(use_mask)) else None
    seg = None
    if lab is not None:
        seg_np = lab[slicer].numpy().astype(np.int16 if int(lab.max()) > 127 else np.int8)
        seg_np[(seg_np == 0) & ~mask[None]] = -1
        seg = torch.from_numpy(seg_np)

    target = [float(s) for s in plans_config["spacing"]]
    if len(target) < 3:  # 2d: the slice axis keeps its spacing
        target = [spacing[0], *target]
    new_shape = compute_new_shape(crop.shape[1:], spacing, target)

    # the region ZScore may normalise within: nnU-Net's ``seg >= 0`` (the nonzero mask, plus labels outside it)
    norm_region = (seg_np[0] >= 0) if lab is not None else mask
    mask_t = torch.from_numpy(norm_region).to(x.device) if norm_region is not None else None
    data = torch.stack(
        [
            normalize_channel(crop[c], schemes[c], intensity_props.get(str(c)), use_mask[c], mask_t)
            for c in range(crop.shape[0])
        ]
    )

    dkw = plans_config["resampling_fn_data_kwargs"]
    sep = separate_z_axis(spacing, target, force=dkw.get("force_separate_z"))
    data = resample(data, new_shape, order=int(dkw["order"]), separate_z=sep, order_z=int(dkw["order_z"]))
    data = data.to(torch.float32)
    props["spacing_after_resampling"] = target
    props["shape_after_resampling"] = [int(s) for s in data.shape[1:]]
    if seg is not None:
        skw = plans_config["resampling_fn_seg_kwargs"]
        sep_s = separate_z_axis(spacing, target, force=skw.get("force_separate_z"))
        mode = {0: "nearest", 1: "linear"}.get(int(skw["order"]))
        if mode is None:
            raise ValueError(
                f"segmentation resampling order {skw['order']} is not supported; expected 0 or 1"
            )
        seg = resample_labels(seg[0], new_shape, mode=mode, separate_z=sep_s, order_z=int(skw["order_z"]))[
            None
        ]
        seg = seg.cpu()
        locs = sample_foreground_locations(seg.numpy(), foreground_labels)
        props["class_locations"] = locs
        seg = seg.to(torch.int16 if int(seg.max()) > 127 else torch.int8)
    return data, seg, props
