"""Resampling of images and label maps with nnU-Net v2's semantics, and its spacing rules.

``resample`` equals nnU-Net's ``resample_data_or_seg`` for images (``skimage.transform.resize`` with
``mode="edge", anti_aliasing=False``, clipped to the input range); label maps are in
:mod:`fastpanc.ops.resample_labels`. The compiled backends compute in float32. Order 3 runs one pass per
axis that changes size (B-spline prefilter and 1D interpolation of tiles of lines, the same operator as the
3D tensor-product spline), in the axis order that moves the fewest voxels; on the CPU orders 0 and 1 run as
one fused pass without intermediate volumes.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Sequence

import numpy as np
import torch

from fastpanc.ops import _backend as B
from fastpanc.ops import _resample_ref as R

log = logging.getLogger("fastpanc.ops")

IMAGE_DTYPES = B.IMAGE_DTYPES
OUT_DTYPES = (torch.float32, torch.float16, torch.bfloat16)
_ORDERS = (0, 1, 3)


def compute_new_shape(
    shape: Sequence[int], spacing: Sequence[float], new_spacing: Sequence[float]
) -> tuple[int, ...]:
    """nnU-Net's ``compute_new_shape``: ``round(spacing / new_spacing * shape)`` per axis."""
    if not len(shape) == len(spacing) == len(new_spacing):
        raise ValueError(
            f"compute_new_shape: shape {tuple(shape)}, spacing {tuple(spacing)} and new_spacing "
            f"{tuple(new_spacing)} must have the same length"
        )
    for s in (*spacing, *new_spacing):
        if not s > 0:
            raise ValueError(
                f"compute_new_shape: spacings must be positive, got {tuple(spacing)} -> {tuple(new_spacing)}"
            )
    return tuple(int(round(float(i) / float(j) * int(k))) for i, j, k in zip(spacing, new_spacing, shape))


def _lowres_axes(spacing: Sequence[float]) -> list[int]:
    sp = np.asarray(spacing, dtype=np.float64)
    return [int(a) for a in np.where(max(sp) / sp == 1)[0]]


def separate_z_axis(
    current_spacing: Sequence[float],
    new_spacing: Sequence[float],
    anisotropy_threshold: float = 3.0,
    force: bool | None = None,
) -> int | None:
    """nnU-Net v2's ``determine_do_sep_z_and_axis``: the anisotropic axis (0, 1, 2 of z, y, x) or None.

    With ``force=None`` (nnU-Net's ``force_separate_z``), resampling is separate along the axis of the
    largest spacing when ``max / min`` of the current (else of the new) spacing exceeds the threshold;
    never when two or three axes share the largest spacing.
    """
    for sp in (current_spacing, new_spacing):
        if len(sp) != 3 or not all(float(s) > 0 for s in sp):
            raise ValueError(
                f"separate_z_axis: spacings must be 3 positive numbers (z, y, x), got {tuple(sp)}"
            )
    cur = np.asarray(current_spacing, dtype=np.float64)
    new = np.asarray(new_spacing, dtype=np.float64)
    if force is not None:
        axes = _lowres_axes(cur) if force else None
    elif np.max(cur) / np.min(cur) > anisotropy_threshold:
        axes = _lowres_axes(cur)
    elif np.max(new) / np.min(new) > anisotropy_threshold:
        axes = _lowres_axes(new)
    else:
        axes = None
    if axes is None or len(axes) != 1:
        return None
    return axes[0]


def check_common(name: str, x: torch.Tensor, out_shape, separate_z, order_z) -> tuple[int, int, int]:
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name}: expected a torch.Tensor, got {type(x).__name__}")
    shape = tuple(int(s) for s in out_shape)
    if len(shape) != 3 or any(s < 1 for s in shape):
        raise ValueError(f"{name}: out_shape must be 3 positive sizes (Z, Y, X), got {tuple(out_shape)}")
    if separate_z is not None and separate_z not in (0, 1, 2):
        raise ValueError(
            f"{name}: separate_z must be None or the axis 0, 1 or 2 (z, y, x), got {separate_z!r}"
        )
    if order_z not in (0, 1):
        raise ValueError(f"{name}: order_z must be 0 (nearest) or 1 (linear), got {order_z!r}")
    if x.numel() == 0:
        raise ValueError(f"{name}: cannot resample an empty tensor of shape {tuple(x.shape)}")
    return shape


def resample_reference(
    x: torch.Tensor,
    out_shape: Sequence[int],
    order: int = 3,
    separate_z: int | None = None,
    order_z: int = 0,
    out_dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """The definition of :func:`resample` in float64 torch (slow); returns ``out_dtype``."""
    shape = check_common("resample", x, out_shape, separate_z, order_z)
    if x.dim() != 4:
        raise ValueError(f"resample: expected x of shape (C, Z, Y, X), got {tuple(x.shape)}")
    return R.resample_image_reference(x, shape, order, separate_z, order_z).to(out_dtype)


def _axis_order(in_shape: Sequence[int], sizes: dict[int, int], channels: int) -> list[int]:
    """The order of the per-axis passes (dims 1..3) that reads and writes the fewest voxels."""
    best, best_cost = [], None
    for perm in itertools.permutations(sorted(sizes)):
        cur = [channels, *in_shape]
        cost = 0
        for d in perm:
            before = int(np.prod(cur))
            cur[d] = sizes[d]
            cost += before + int(np.prod(cur))
        if best_cost is None or cost < best_cost:
            best, best_cost = list(perm), cost
    return best


def _plan(x: torch.Tensor, shape, order, separate_z, order_z):
    """[(dim, n_out, order, clip)] passes; clip is None, "channel" or the dim clipped per slice."""
    in_shape = tuple(x.shape[1:])
    if separate_z is None:
        sizes = {d + 1: shape[d] for d in range(3) if in_shape[d] != shape[d]}
        dims = _axis_order(in_shape, sizes, x.shape[0])
        passes = [[d, sizes[d], order, None] for d in dims]
        if order == 3 and passes:
            passes[-1][3] = "channel"
        return passes
    zd = separate_z + 1
    sizes = {d + 1: shape[d] for d in range(3) if d + 1 != zd and in_shape[d] != shape[d]}
    passes = [[d, sizes[d], order, None] for d in _axis_order(in_shape, sizes, x.shape[0])]
    if order == 3 and passes:
        passes[-1][3] = zd
    if in_shape[separate_z] != shape[separate_z]:
        passes.append([zd, shape[separate_z], order_z, None])
    return passes


def _empty(shape: Sequence[int], dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """An uninitialised contiguous tensor. Large CPU buffers come from numpy, which asks Linux for
    transparent huge pages (torch does not): first-touch page faults otherwise cost more than a pass."""
    if device.type != "cpu":
        return torch.empty(tuple(shape), dtype=dtype, device=device)
    np_dtype = {torch.float32: np.float32, torch.float16: np.float16, torch.bfloat16: np.int16}[dtype]
    return torch.from_numpy(np.empty(tuple(shape), dtype=np_dtype)).view(dtype)


def _clip_bounds(x: torch.Tensor, dim: int, backend: str) -> tuple[torch.Tensor, torch.Tensor]:
    """float32 minimum and maximum of ``x`` per channel (``dim`` 0, shape ``(C,)``) or per slice along ``dim``
    (1..3, shape ``(C, x.shape[dim])``), the ranges skimage clips to."""
    size = x.shape[0] * (x.shape[dim] if dim else 1)
    if backend == "cpu":
        lo = torch.empty(size, dtype=torch.float32)
        hi = torch.empty(size, dtype=torch.float32)
        B.extension().resample_minmax_cpu(*B.view_args(x), lo.data_ptr(), hi.data_ptr(), dim)
        return lo, hi
    src = x.reshape(x.shape[0], -1) if dim == 0 else x.movedim(dim, 1).reshape(x.shape[0], x.shape[dim], -1)
    return src.amin(dim=-1).float().reshape(-1).contiguous(), src.amax(dim=-1).float().reshape(
        -1
    ).contiguous()


def _run_passes(x: torch.Tensor, passes, out_dtype: torch.dtype, backend: str) -> torch.Tensor:
    """Run the passes of :func:`_plan`. Each intermediate is released after the pass that reads it, so at
    most two volumes (the pass's input and output) are alive besides ``x``."""
    ext = B.extension()
    bounds = {}
    for _, _, _, clip in passes:
        if clip is not None:
            clip_dim = 0 if clip == "channel" else clip
            bounds[clip] = (1 if clip_dim == 0 else 2, clip_dim, *_clip_bounds(x, clip_dim, backend))
    cur = x
    for i, (dim, n_out, order, clip) in enumerate(passes):
        shape = list(cur.shape)
        shape[dim] = n_out
        out = _empty(shape, out_dtype if i == len(passes) - 1 else torch.float32, x.device)
        clip_mode, clip_dim, lo, hi = bounds.get(clip, (0, 0, None, None))
        if backend == "cpu" and order <= 1 and clip_mode == 0:
            # the one-pass kernel with every other axis unchanged: rows are copied or blended directly
            orders = [order if d + 1 == dim else 0 for d in range(3)]
            ext.resample_lowres_cpu(
                *B.view_args(cur), out.data_ptr(), B.DTYPE_CODES[out.dtype], list(out.shape[1:]), orders
            )
            cur = out
            continue
        args = (
            *B.view_args(cur),
            out.data_ptr(),
            B.DTYPE_CODES[out.dtype],
            dim,
            n_out,
            order,
            clip_mode,
            clip_dim,
            lo.data_ptr() if lo is not None else 0,
            hi.data_ptr() if hi is not None else 0,
        )
        if backend == "cpu":
            ext.resample_axis_cpu(*args)
        else:
            scratch = None
            if order == 3:
                lines = cur.numel() // cur.shape[dim]
                scratch = torch.empty(
                    (cur.shape[dim] + 2 * R.NPAD) * lines, dtype=torch.float32, device=x.device
                )
            ext.resample_axis_cuda(*args, scratch.data_ptr() if scratch is not None else 0, B.cuda_stream(x))
        cur = out
    return cur


def resample(
    x: torch.Tensor,
    out_shape: Sequence[int],
    order: int = 3,
    separate_z: int | None = None,
    order_z: int = 0,
    backend: str = "auto",
    out_dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """Resample an image as nnU-Net v2 does (``resample_data_or_seg`` with ``is_seg=False``).

    Args:
        x: ``(C, Z, Y, X)``, any strides; float32/16, bfloat16, float64, int16/32, uint8 or int8.
        out_shape: ``(Z', Y', X')``.
        order: 0 (nearest), 1 (linear) or 3 (cubic B-spline with its prefilter).
        separate_z: None, or the anisotropic axis (0, 1, 2 of z, y, x; see :func:`separate_z_axis`):
            in-plane ``order`` slice by slice, then ``order_z`` (0 nearest or 1 linear) along that axis.
        backend: ``auto``, ``reference``, ``cpu`` (C++/OpenMP) or ``cuda``.
        out_dtype: float32, float16 or bfloat16.

    Returns:
        ``(C, Z', Y', X')`` contiguous tensor of ``out_dtype`` on ``x``'s device; with order 3 clipped to
        the input's range (per channel, or per slice with ``separate_z``), as skimage does.
    """
    shape = check_common("resample", x, out_shape, separate_z, order_z)
    if x.dim() != 4:
        raise ValueError(
            f"resample: expected x of shape (C, Z, Y, X), got {tuple(x.shape)}; "
            "add a channel axis with x[None] for a single volume"
        )
    if order not in _ORDERS:
        raise ValueError(f"resample: order must be 0, 1 or 3, got {order!r}")
    if x.dtype not in IMAGE_DTYPES:
        raise ValueError(f"resample: input dtype {x.dtype} is not supported; expected one of {IMAGE_DTYPES}")
    if out_dtype not in OUT_DTYPES:
        raise ValueError(f"resample: out_dtype must be one of {OUT_DTYPES}, got {out_dtype}")
    name = B.choose(
        "resample",
        backend,
        {
            "reference": lambda: None,
            "cpu": lambda: B.cpu_reason(x, dtypes=IMAGE_DTYPES),
            "cuda": lambda: B.cuda_reason(x, dtypes=IMAGE_DTYPES),
        },
        B.auto_order(x.device, cpu=["cpu"], cuda=["cuda"]),
    )
    if name == "reference":
        return resample_reference(x, shape, order, separate_z, order_z, out_dtype)
    passes = _plan(x, shape, order, separate_z, order_z)
    log.debug(
        "resample %s -> %s on %s: passes (dim, size, order, clip) %s", tuple(x.shape), shape, name, passes
    )
    if not passes:
        return x.to(out_dtype, memory_format=torch.contiguous_format, copy=True)
    if name == "cpu" and order <= 1:
        # orders 0/1 never need clipping: the whole plan is one tensor-product pass
        orders = [order] * 3
        if separate_z is not None:
            orders[separate_z] = order_z
        out = _empty((x.shape[0], *shape), out_dtype, x.device)
        B.extension().resample_lowres_cpu(
            *B.view_args(x), out.data_ptr(), B.DTYPE_CODES[out_dtype], list(shape), orders
        )
        return out
    return _run_passes(x, passes, out_dtype, name)
