"""Sliding-window geometry and the Gaussian importance map, as nnU-Net v2 defines them.

``sliding_window_starts`` equals ``nnunetv2.inference.sliding_window_prediction
.compute_steps_for_sliding_window`` and ``gaussian_map`` equals its ``compute_gaussian`` (to float32
rounding). The fused aggregation of window predictions lives in :mod:`fastpanc.ops.aggregate`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch


def _check_sizes(
    op: str, shape: Sequence[int], patch: Sequence[int]
) -> tuple[tuple[int, ...], tuple[int, ...]]:
    shape_t, patch_t = tuple(int(s) for s in shape), tuple(int(p) for p in patch)
    if len(shape_t) != len(patch_t) or not shape_t:
        raise ValueError(f"{op}: shape {shape_t} and patch {patch_t} must have the same, nonzero length")
    if any(p < 1 for p in patch_t):
        raise ValueError(f"{op}: patch sizes must be >= 1, got {patch_t}")
    if any(s < p for s, p in zip(shape_t, patch_t)):
        raise ValueError(
            f"{op}: the volume {shape_t} is smaller than the patch {patch_t} along some axis; "
            "pad the volume to at least the patch size first (nnU-Net pads with zeros)"
        )
    return shape_t, patch_t


def sliding_window_starts(shape: Sequence[int], patch: Sequence[int], step: float = 0.5) -> list[list[int]]:
    """Window start positions per axis, exactly nnU-Net's ``compute_steps_for_sliding_window``.

    Along each axis the number of windows is ``ceil((size - patch) / (patch * step)) + 1`` and the
    starts are spread evenly from 0 to ``size - patch`` (rounded half to even, as ``np.round``).

    Args:
        shape: volume size per axis, each >= the patch size.
        patch: window size per axis.
        step: window step as a fraction of the patch, in (0, 1].
    """
    shape_t, patch_t = _check_sizes("sliding_window_starts", shape, patch)
    if not 0 < step <= 1:
        raise ValueError(f"sliding_window_starts: step must be in (0, 1], got {step}")
    steps = []
    for size, p in zip(shape_t, patch_t):
        n = int(math.ceil((size - p) / (p * step))) + 1
        actual = (size - p) / (n - 1) if n > 1 else 0.0
        steps.append([int(round(actual * i)) for i in range(n)])  # round() is half-to-even, as np.round
    return steps


def window_slices(shape: Sequence[int], patch: Sequence[int], step: float = 0.5) -> list[tuple[slice, ...]]:
    """Every window as a tuple of spatial slices, in nnU-Net's order (last axis fastest)."""
    starts = sliding_window_starts(shape, patch, step)
    patch_t = tuple(int(p) for p in patch)
    grids = np.stack(np.meshgrid(*[np.asarray(s) for s in starts], indexing="ij"), -1).reshape(
        -1, len(starts)
    )
    return [tuple(slice(int(s), int(s) + p) for s, p in zip(row, patch_t)) for row in grids]


def _gaussian_kernel_1d(size: int, sigma: float, truncate: float = 4.0) -> np.ndarray:
    """scipy.ndimage's Gaussian weights (radius ``int(truncate * sigma + 0.5)``, summing to 1), laid
    out over ``size`` voxels centred on ``size // 2``; zero beyond the radius."""
    radius = int(truncate * sigma + 0.5)
    taps = np.arange(-radius, radius + 1)
    phi = np.exp(-0.5 / (sigma * sigma) * taps**2)
    phi = phi / phi.sum()
    offsets = np.arange(size) - size // 2
    inside = np.abs(offsets) <= radius
    out = np.zeros(size, dtype=np.float64)
    out[inside] = phi[offsets[inside] + radius]
    return out


def gaussian_map(
    patch: Sequence[int],
    sigma_scale: float = 1.0 / 8,
    value_scale: float = 10.0,
    dtype: torch.dtype = torch.float32,
    device: torch.device | str = "cpu",
) -> torch.Tensor:
    """The importance map that weights each window's prediction, equal to nnU-Net's ``compute_gaussian``.

    nnU-Net filters a unit impulse at ``patch // 2`` with ``scipy.ndimage.gaussian_filter`` (sigma
    ``patch * sigma_scale``, zero outside), divides by ``max / value_scale`` and replaces zeros (after the
    cast) with the smallest nonzero value. The filtered impulse is the outer product of the 1D kernels,
    which is what is computed here, in float64, before the cast.

    Returns:
        ``patch``-shaped tensor of ``dtype`` on ``device``, maximum ``value_scale``, no zeros.
    """
    patch_t = tuple(int(p) for p in patch)
    if not patch_t or any(p < 1 for p in patch_t):
        raise ValueError(f"gaussian_map: patch sizes must be >= 1, got {patch_t}")
    if not sigma_scale > 0 or not value_scale > 0:
        raise ValueError(
            f"gaussian_map: sigma_scale and value_scale must be > 0, got {sigma_scale}, {value_scale}"
        )
    if not dtype.is_floating_point:
        raise ValueError(f"gaussian_map: dtype must be a floating-point dtype, got {dtype}")
    g = np.ones((), dtype=np.float64)
    for p in patch_t:
        g = np.multiply.outer(g, _gaussian_kernel_1d(p, p * sigma_scale))
    g /= g.max() / value_scale
    out = torch.from_numpy(g).to(device=device, dtype=dtype)
    zero = out == 0
    if bool(zero.any()):
        out[zero] = out[~zero].min()
    return out
