"""Bounding boxes, crop with constant padding (fused with a dtype cast) and its inverse, paste.

Boxes are half-open ``((zlo, zhi), (ylo, yhi), (xlo, xhi))`` over the three spatial axes, as in
nnU-Net v2 and acvl_utils. Volumes are ``(Z, Y, X)`` or ``(C, Z, Y, X)``; the channel axis is never
cropped.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable, Sequence

import torch

from fastpanc.ops import _backend as B

Box = tuple[tuple[int, int], tuple[int, int], tuple[int, int]]

_DTYPES = tuple(B.DTYPE_CODES)


def _check_volume(op: str, x: torch.Tensor) -> None:
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{op}: expected a torch.Tensor, got {type(x).__name__}")
    if x.dim() not in (3, 4):
        raise ValueError(
            f"{op}: expected a (Z, Y, X) mask or a (C, Z, Y, X) image, got shape {tuple(x.shape)}"
        )
    if x.dtype != torch.bool and x.dtype not in _DTYPES:
        raise ValueError(f"{op}: dtype {x.dtype} is not supported; expected bool or one of {_DTYPES}")


def _kernel_view(x: torch.Tensor) -> torch.Tensor:
    """bool tensors are passed to the kernels as uint8 (same bytes, values 0/1)."""
    return x.view(torch.uint8) if x.dtype == torch.bool else x


def _as_box(op: str, box: Sequence[Sequence[int]]) -> Box:
    try:
        pairs = [tuple(p) for p in box]
    except TypeError:
        pairs = []
    if len(pairs) != 3 or any(len(p) != 2 for p in pairs):
        raise ValueError(f"{op}: box must be three (lo, hi) pairs for the (z, y, x) axes, got {box!r}")
    out = []
    for lo, hi in pairs:
        if int(lo) != lo or int(hi) != hi:
            raise ValueError(f"{op}: box bounds must be integers, got {box!r}")
        if hi < lo:
            raise ValueError(f"{op}: box {box!r} has hi < lo; boxes are half-open [lo, hi)")
        out.append((int(lo), int(hi)))
    return (out[0], out[1], out[2])


def _box_from_flat(flat: Sequence[int]) -> Box:
    return ((int(flat[0]), int(flat[1])), (int(flat[2]), int(flat[3])), (int(flat[4]), int(flat[5])))


# --------------------------------------------------------------------------------------------- bbox


def _selection(x: torch.Tensor, threshold: float | None) -> torch.Tensor:
    """(Z, Y, X) bool: x != 0 (or x > threshold) in any channel."""
    sel = x != 0 if threshold is None else x.to(torch.float64) > threshold
    return sel.any(dim=0) if x.dim() == 4 else sel


def bounding_box_reference(x: torch.Tensor, threshold: float | None = None) -> Box | None:
    """The definition: the half-open box of the voxels where ``x != 0`` (or ``x > threshold``, compared
    in float64) in any channel; ``None`` when no voxel is selected."""
    sel = _selection(x, threshold)
    if not bool(sel.any()):
        return None
    box = []
    for axis in range(3):
        other = tuple(a for a in range(3) if a != axis)
        hits = torch.nonzero(sel.any(dim=other)).flatten()
        box.append((int(hits[0]), int(hits[-1]) + 1))
    return (box[0], box[1], box[2])


def bounding_box(x: torch.Tensor, threshold: float | None = None, backend: str = "auto") -> Box | None:
    """Bounding box of a mask's nonzero voxels, or of the voxels above ``threshold``.

    Args:
        x: ``(Z, Y, X)`` mask or ``(C, Z, Y, X)`` image (a voxel counts when any channel is selected),
            any strides, bool or any numeric dtype. NaN counts as nonzero and is never above a threshold.
        threshold: ``None`` selects ``x != 0``; a number selects ``x > threshold``.
        backend: ``auto``, ``reference``, ``cpu`` (C++/OpenMP) or ``cuda``.

    Returns:
        ``((zlo, zhi), (ylo, yhi), (xlo, xhi))`` half-open, or ``None`` when nothing is selected.
    """
    _check_volume("bounding_box", x)
    if threshold is not None and (not isinstance(threshold, numbers.Real) or math.isnan(threshold)):
        raise ValueError(f"bounding_box: threshold must be None or a number, got {threshold!r}")
    name = B.choose(
        "bounding_box",
        backend,
        {"reference": lambda: None, "cpu": lambda: B.cpu_reason(x), "cuda": lambda: B.cuda_reason(x)},
        B.auto_order(x.device, cpu=["cpu"], cuda=["cuda"]),
    )
    if name == "reference":
        return bounding_box_reference(x, threshold)
    if x.numel() == 0:
        return None
    xv = _kernel_view(x)
    use_thr = threshold is not None
    thr = float(threshold) if use_thr else 0.0
    ext = B.extension()
    if name == "cpu":
        flat = ext.bounding_box_cpu(*B.view_args(xv), use_thr, thr)
        return _box_from_flat(flat) if flat else None
    big = torch.iinfo(torch.int32).max
    result = torch.tensor([big, big, big, -1, -1, -1], dtype=torch.int32, device=x.device)
    ext.bounding_box_cuda(*B.view_args(xv), use_thr, thr, result.data_ptr(), B.cuda_stream(x))
    zlo, ylo, xlo, zhi, yhi, xhi = result.tolist()  # synchronises with the stream
    if zhi < 0:
        return None
    return ((zlo, zhi + 1), (ylo, yhi + 1), (xlo, xhi + 1))


def nonzero_bounding_box(image: torch.Tensor, backend: str = "auto") -> Box:
    """The box nnU-Net v2 crops every case to: ``get_bbox_from_mask(create_nonzero_mask(data))``.

    ``image`` is ``(C, Z, Y, X)`` (or ``(Z, Y, X)``); a voxel is inside when any channel is nonzero.
    Filling holes, as nnU-Net does, cannot change the box. An all-zero image gives the full extent,
    as nnU-Net's ``get_bbox_from_mask`` does.
    """
    box = bounding_box(image, None, backend=backend)
    if box is None:
        z, y, x = image.shape[-3:]
        return ((0, z), (0, y), (0, x))
    return box


# ------------------------------------------------------------------------------------- crop / paste


def _check_fill(op: str, value: float, dtype: torch.dtype) -> float:
    """The pad/fill value must be representable in the output dtype (no silent truncation)."""
    if not isinstance(value, numbers.Real) or isinstance(value, bool):
        raise ValueError(f"{op}: the pad/fill value must be a number, got {value!r}")
    if dtype.is_floating_point:
        big = torch.finfo(dtype).max
        if math.isfinite(value) and abs(value) > big:  # inf and NaN are values of every float dtype
            raise ValueError(
                f"{op}: pad/fill value {value!r} overflows {dtype} (largest finite value {big}); "
                "pick a smaller value, inf, or a wider float dtype"
            )
        return float(value)
    info = torch.iinfo(dtype)
    if value != value or int(value) != value or not info.min <= value <= info.max:
        raise ValueError(
            f"{op}: pad/fill value {value!r} is not representable in {dtype} "
            f"(expected an integer in [{info.min}, {info.max}]); pick another value or a float dtype"
        )
    return float(value)


def _out_shape(x: torch.Tensor, box: Box) -> tuple[int, ...]:
    spatial = tuple(hi - lo for lo, hi in box)
    return (x.shape[0], *spatial) if x.dim() == 4 else spatial


def crop_pad_reference(
    x: torch.Tensor, box: Box, pad_value: float = 0, out_dtype: torch.dtype | None = None
) -> torch.Tensor:
    """The definition: ``out[..., i, j, k] = x[..., zlo + i, ylo + j, xlo + k].to(out_dtype)`` where that
    voxel exists, else ``pad_value``."""
    out_dtype = x.dtype if out_dtype is None else out_dtype
    out = torch.full(_out_shape(x, box), pad_value, dtype=out_dtype, device=x.device)
    src, dst = [], []
    for (lo, hi), size in zip(box, x.shape[-3:]):
        a, b = max(lo, 0), min(hi, size)
        if a >= b:
            return out
        src.append(slice(a, b))
        dst.append(slice(a - lo, b - lo))
    out[(..., *dst)] = x[(..., *src)].to(out_dtype)
    return out


def crop_pad(
    x: torch.Tensor,
    box: Sequence[Sequence[int]],
    pad_value: float = 0,
    out_dtype: torch.dtype | None = None,
    backend: str = "auto",
) -> torch.Tensor:
    """Crop ``box`` out of ``x``, padding whatever lies outside the volume with ``pad_value``, and cast.

    Args:
        x: ``(Z, Y, X)`` or ``(C, Z, Y, X)``, any strides, any fastpanc dtype (bool is not supported
            here; convert masks to uint8 first).
        box: half-open ``((zlo, zhi), (ylo, yhi), (xlo, xhi))``; may reach outside the volume.
        pad_value: the value of voxels outside the volume; must be representable in ``out_dtype``.
        out_dtype: the output dtype (default: ``x.dtype``); the cast is torch's ``.to``.
        backend: ``auto``, ``reference``, ``cpu`` (C++/OpenMP) or ``cuda``.

    Returns:
        A contiguous ``(Z', Y', X')`` or ``(C, Z', Y', X')`` tensor with ``Z' = zhi - zlo`` etc.
    """
    _check_volume("crop_pad", x)
    if x.dtype == torch.bool:
        raise ValueError("crop_pad: bool input is not supported; pass mask.to(torch.uint8)")
    box = _as_box("crop_pad", box)
    out_dtype = x.dtype if out_dtype is None else out_dtype
    if out_dtype not in _DTYPES:
        raise ValueError(f"crop_pad: out_dtype must be one of {_DTYPES}, got {out_dtype}")
    pad = _check_fill("crop_pad", pad_value, out_dtype)
    return _crop_pad(
        x, box, pad, out_dtype, backend, "crop_pad", lambda: crop_pad_reference(x, box, pad, out_dtype)
    )


def _crop_pad(
    x: torch.Tensor,
    box: Box,
    pad: float,
    out_dtype: torch.dtype,
    backend: str,
    op: str,
    reference: Callable[[], torch.Tensor],
) -> torch.Tensor:
    """Run the crop kernel of the chosen backend; ``reference`` computes the op's own definition."""
    name = B.choose(
        op,
        backend,
        {"reference": lambda: None, "cpu": lambda: B.cpu_reason(x), "cuda": lambda: B.cuda_reason(x)},
        B.auto_order(x.device, cpu=["cpu"], cuda=["cuda"]),
    )
    if name == "reference":
        return reference()
    out = torch.empty(_out_shape(x, box), dtype=out_dtype, device=x.device)
    if out.numel() == 0:
        return out
    spatial = [hi - lo for lo, hi in box]
    lo = [lo for lo, _ in box]
    args = (*B.view_args(x), out.data_ptr(), B.DTYPE_CODES[out_dtype], spatial, lo, pad)
    ext = B.extension()
    if name == "cpu":
        ext.crop_pad_cpu(*args)
    else:
        ext.crop_pad_cuda(*args, B.cuda_stream(x))
    return out


def paste_reference(patch: torch.Tensor, out_shape: Sequence[int], box: Box, fill: float = 0) -> torch.Tensor:
    """The definition: a volume of ``out_shape`` filled with ``fill``, with ``patch`` written at ``box``
    (the parts of ``patch`` that fall outside the volume are dropped)."""
    out = torch.full(tuple(out_shape), fill, dtype=patch.dtype, device=patch.device)
    src, dst = [], []
    for (lo, hi), size in zip(box, tuple(out_shape)[-3:]):
        a, b = max(lo, 0), min(hi, size)
        if a >= b:
            return out
        dst.append(slice(a, b))
        src.append(slice(a - lo, b - lo))
    out[(..., *dst)] = patch[(..., *src)]
    return out


def paste(
    patch: torch.Tensor,
    out_shape: Sequence[int],
    box: Sequence[Sequence[int]],
    fill: float = 0,
    backend: str = "auto",
) -> torch.Tensor:
    """The inverse of :func:`crop_pad`: write ``patch`` back at ``box`` into a volume filled with ``fill``.

    Args:
        patch: ``(Z', Y', X')`` or ``(C, Z', Y', X')`` with ``Z' = zhi - zlo`` etc., any strides.
        out_shape: the full volume's shape, ``(Z, Y, X)`` or ``(C, Z, Y, X)`` (same rank and channels as
            ``patch``).
        box: where ``patch`` sits in the volume, half-open; may reach outside (those parts are dropped).
        fill: the value everywhere else; must be representable in ``patch.dtype``.
        backend: ``auto``, ``reference``, ``cpu`` or ``cuda``.

    Returns:
        A contiguous tensor of ``out_shape`` and ``patch.dtype``.
    """
    _check_volume("paste", patch)
    if patch.dtype == torch.bool:
        raise ValueError("paste: bool input is not supported; pass patch.to(torch.uint8)")
    box = _as_box("paste", box)
    out_shape = tuple(int(s) for s in out_shape)
    if len(out_shape) != patch.dim() or any(s < 0 for s in out_shape):
        raise ValueError(
            f"paste: out_shape {out_shape} must be a valid shape with patch's rank {patch.dim()}"
        )
    if patch.dim() == 4 and out_shape[0] != patch.shape[0]:
        raise ValueError(f"paste: out_shape has {out_shape[0]} channels but patch has {patch.shape[0]}")
    sizes = tuple(hi - lo for lo, hi in box)
    if sizes != tuple(patch.shape[-3:]):
        raise ValueError(f"paste: box {box} spans {sizes} but patch is {tuple(patch.shape[-3:])} spatially")
    fill_v = _check_fill("paste", fill, patch.dtype)
    # Pasting is cropping the patch with the box of the volume in the patch's coordinates: voxel v of
    # the volume reads patch[v - lo] when that exists, else fill.
    inverse = tuple((-lo, s - lo) for (lo, _), s in zip(box, out_shape[-3:]))
    return _crop_pad(
        patch,
        inverse,
        fill_v,
        patch.dtype,
        backend,
        "paste",
        lambda: paste_reference(patch, out_shape, box, fill_v),
    )
