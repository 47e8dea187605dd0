"""Resampling as nnU-Net v2's ``resample_data_or_seg_to_shape`` does it, on numpy arrays.

nnU-Net resizes with ``skimage.transform.resize(order, mode="edge", anti_aliasing=False)``, which is
``scipy.ndimage.zoom(grid_mode=True, mode="nearest")`` followed by clipping to the input's range. When the
spacing is anisotropic (max/min > 3) it resizes each slice in 2D and picks slices along the low-resolution
axis with order ``order_z`` (0: nearest). Both are reproduced here without the per-call overheads.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy import ndimage as ndi

ANISO_THRESHOLD = 3.0


def separate_z_axis(
    current_spacing: Sequence[float],
    new_spacing: Sequence[float],
    force_separate_z: bool | None = None,
    threshold: float = ANISO_THRESHOLD,
) -> int | None:
    """The axis nnU-Net resamples separately (order_z), or None for a plain 3D resize."""

    def lowres(sp: Sequence[float]) -> list[int]:
        sp = np.asarray(sp, dtype=float)
        return [int(i) for i in np.where(sp.max() / sp == 1)[0]]

    if force_separate_z is not None:
        axes = lowres(current_spacing) if force_separate_z else []
    elif max(current_spacing) / min(current_spacing) > threshold:
        axes = lowres(current_spacing)
    elif max(new_spacing) / min(new_spacing) > threshold:
        axes = lowres(new_spacing)
    else:
        axes = []
    return axes[0] if len(axes) == 1 else None


def compute_new_shape(
    shape: Sequence[int], spacing: Sequence[float], new_spacing: Sequence[float]
) -> tuple[int, ...]:
    """nnU-Net's ``compute_new_shape``: ``round(old_spacing / new_spacing * old_shape)`` per axis."""
    return tuple(int(round(s / n * k)) for s, n, k in zip(spacing, new_spacing, shape))


def _resize(img: np.ndarray, shape: Sequence[int], order: int) -> np.ndarray:
    """``skimage.transform.resize(img, shape, order, mode="edge", anti_aliasing=False)`` (clip=True)."""
    zoom = [o / i for o, i in zip(shape, img.shape)]
    out = ndi.zoom(img, zoom, order=order, mode="nearest", grid_mode=True, output=img.dtype)
    if order > 0:
        np.clip(out, img.min(), img.max(), out=out)
    return out


def _nearest_indices(n_in: int, n_out: int) -> np.ndarray:
    """Source indices of nnU-Net's order-0 ``map_coordinates`` along one axis (same rounding)."""
    coords = n_in / n_out * (np.arange(n_out, dtype=float) + 0.5) - 0.5
    return ndi.map_coordinates(np.arange(n_in, dtype=float), coords[None], order=0, mode="nearest").astype(
        np.int64
    )


def resample_to_shape(
    data: np.ndarray,
    new_shape: Sequence[int],
    current_spacing: Sequence[float],
    new_spacing: Sequence[float],
    order: int = 3,
    order_z: int = 0,
    force_separate_z: bool | None = None,
    dtype: np.dtype | type = np.float32,
) -> np.ndarray:
    """Resample ``data`` ``(C, Z, Y, X)`` to ``(C, *new_shape)`` like nnU-Net's data/probability resampling.

    Computed in ``dtype`` (float32 by default; nnU-Net uses float64: differences are ~1e-6 relative).
    """
    if data.ndim != 4:
        raise ValueError(f"expected data of shape (C, Z, Y, X), got {data.shape}")
    new_shape = tuple(int(s) for s in new_shape)
    if tuple(data.shape[1:]) == new_shape:
        return data
    if order_z != 0:
        raise ValueError(f"order_z={order_z} is not supported; nnU-Net's plans use order_z=0")
    data = data.astype(dtype, copy=False)
    axis = separate_z_axis(current_spacing, new_spacing, force_separate_z)
    out = np.empty((data.shape[0], *new_shape), dtype=dtype)
    for c in range(data.shape[0]):
        if axis is None:
            out[c] = _resize(data[c], new_shape, order)
            continue
        inplane = [s for i, s in enumerate(new_shape) if i != axis]
        src = np.moveaxis(data[c], axis, 0)
        slices = np.stack([_resize(np.ascontiguousarray(s), inplane, order) for s in src])
        if src.shape[0] != new_shape[axis]:
            slices = slices[_nearest_indices(src.shape[0], new_shape[axis])]
        out[c] = np.moveaxis(slices, 0, axis)
    return out


def resize_labels_nearest(labels: np.ndarray, new_shape: Sequence[int]) -> np.ndarray:
    """Nearest-neighbour resize of a ``(Z, Y, X)`` label map (pixel centres aligned, as ``grid_mode``)."""
    out = labels
    for axis, n_out in enumerate(new_shape):
        n_in = out.shape[axis]
        if n_in != n_out:
            idx = np.minimum(((np.arange(n_out) + 0.5) * (n_in / n_out)).astype(np.int64), n_in - 1)
            out = np.take(out, idx, axis=axis)
    return np.ascontiguousarray(out)
