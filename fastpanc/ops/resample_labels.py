"""Resampling of label maps with nnU-Net v2's semantics (``resample_data_or_seg`` with ``is_seg=True``)."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from fastpanc.ops import _backend as B
from fastpanc.ops import _resample_ref as R
from fastpanc.ops.resample import check_common

LABEL_DTYPES = (torch.uint8, torch.int8, torch.int16, torch.int32, torch.int64)
_LABEL_KIND = {"nearest": 0, "linear": 1, "threshold": 2}


def _check_labels(labels: torch.Tensor, out_shape, mode: str, separate_z, order_z) -> tuple[int, int, int]:
    shape = check_common("resample_labels", labels, out_shape, separate_z, order_z)
    if mode not in ("linear", "nearest"):
        raise ValueError(f"resample_labels: mode must be 'linear' or 'nearest', got {mode!r}")
    if labels.dtype not in LABEL_DTYPES:
        raise ValueError(
            f"resample_labels: labels must have an integer dtype {LABEL_DTYPES}, got {labels.dtype}; "
            "round float masks first, e.g. labels.round().to(torch.uint8)"
        )
    return shape


def _labels_4d(name: str, labels: torch.Tensor) -> torch.Tensor:
    if labels.dim() == 3:
        return labels[None]
    if labels.dim() == 4:
        return labels
    raise ValueError(f"{name}: expected labels of shape (Z, Y, X) or (C, Z, Y, X), got {tuple(labels.shape)}")


def _label_stages(in_shape, shape, mode, separate_z, order_z) -> list[tuple[str, tuple[int, int, int], int]]:
    """[(kind, out_shape, axis)] stages as nnU-Net runs them."""
    if separate_z is None:
        return [(mode, shape, 0)]
    mid = list(shape)
    mid[separate_z] = in_shape[separate_z]
    stages = [(mode, tuple(mid), 0)]
    if mid[separate_z] != shape[separate_z]:
        stages.append(("nearest" if order_z == 0 else "threshold", shape, separate_z))
    return stages


def resample_labels_reference(
    labels: torch.Tensor,
    out_shape: Sequence[int],
    mode: str = "linear",
    separate_z: int | None = None,
    order_z: int = 0,
) -> torch.Tensor:
    """The definition of :func:`resample_labels` in torch (float64 scores, slow)."""
    shape = _check_labels(labels, out_shape, mode, separate_z, order_z)
    lab4 = _labels_4d("resample_labels", labels)
    outs = []
    for ch in lab4:
        cur = ch
        for kind, sh, axis in _label_stages(tuple(ch.shape), shape, mode, separate_z, order_z):
            if kind == "linear":
                cur = R.resample_labels_linear_reference(cur, sh)
            elif kind == "nearest":
                cur = R.resample_labels_nearest_reference(cur, sh)
            else:
                cur = R.resample_labels_zlinear_reference(cur, sh, axis)
        outs.append(cur)
    out = torch.stack(outs, 0)
    return out if labels.dim() == 4 else out[0]


def resample_labels(
    labels: torch.Tensor,
    out_shape: Sequence[int],
    mode: str = "linear",
    separate_z: int | None = None,
    order_z: int = 0,
    backend: str = "auto",
) -> torch.Tensor:
    """Resample a label map as nnU-Net v2 does (``resample_data_or_seg`` with ``is_seg=True``).

    ``mode="linear"``: each label's indicator is interpolated linearly and the top-scoring label wins
    (batchgenerators' ``resize_segmentation`` order 1: for two labels this is the 0.5 threshold; exact ties
    go to the nearest-neighbour label). ``mode="nearest"``: order 0. With ``separate_z`` the in-plane
    resampling runs slice by slice, then along that axis ``order_z`` 0 (nearest) or 1 (per-label linear,
    the largest label above 0.5 wins, 0 where none is).

    Args:
        labels: ``(Z, Y, X)`` or ``(C, Z, Y, X)`` integer tensor (uint8, int8, int16, int32, int64), any strides.
        out_shape: ``(Z', Y', X')``.

    Returns:
        Labels of ``labels``' dtype, shape ``(Z', Y', X')`` or ``(C, Z', Y', X')``, on its device.
    """
    shape = _check_labels(labels, out_shape, mode, separate_z, order_z)
    lab4 = _labels_4d("resample_labels", labels)
    name = B.choose(
        "resample_labels",
        backend,
        {
            "reference": lambda: None,
            "cpu": lambda: B.cpu_reason(labels, dtypes=LABEL_DTYPES),
            "cuda": lambda: B.cuda_reason(labels, dtypes=LABEL_DTYPES),
        },
        B.auto_order(labels.device, cpu=["cpu"], cuda=["cuda"]),
    )
    if name == "reference":
        return resample_labels_reference(labels, shape, mode, separate_z, order_z)
    ext = B.extension()
    cur = lab4
    for kind, sh, axis in _label_stages(tuple(lab4.shape[1:]), shape, mode, separate_z, order_z):
        if tuple(sh) == tuple(cur.shape[1:]):
            continue  # every kind leaves an unchanged grid alone
        out = torch.empty((lab4.shape[0], *sh), dtype=labels.dtype, device=labels.device)
        args = (*B.view_args(cur), out.data_ptr(), list(sh), _LABEL_KIND[kind], axis)
        if name == "cpu":
            ext.resample_labels_cpu(*args)
        else:
            ext.resample_labels_cuda(*args, B.cuda_stream(labels))
        cur = out
    if cur is lab4:
        cur = lab4.clone(memory_format=torch.contiguous_format)
    return cur if labels.dim() == 4 else cur[0]
