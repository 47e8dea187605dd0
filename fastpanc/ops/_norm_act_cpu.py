"""The C++ CPU kernels of :func:`fastpanc.ops.instance_norm_act`: the forward call for both layouts and the
channels-last inference pass."""

from __future__ import annotations

import torch

from fastpanc.ops import _backend as B


def instance_norm_act_cl(
    x: torch.Tensor,
    weight: torch.Tensor | None,
    bias: torch.Tensor | None,
    eps: float,
    negative_slope: float | None,
    residual: torch.Tensor | None,
    out_dtype: torch.dtype,
    inplace: bool,
    fmt: torch.memory_format,
) -> torch.Tensor:
    """``instance_norm_act`` of a channels-last ``x`` (``fmt``, checked by the caller), arguments checked there.

    Returns a channels-last tensor of ``out_dtype`` (``x`` itself when written in place)."""
    if residual is not None:
        residual = residual.contiguous(memory_format=fmt)
    if inplace and out_dtype == x.dtype and (residual is None or not B.overlaps(x, residual)):
        out = x
    else:
        out = torch.empty_like(x, dtype=out_dtype, memory_format=fmt)
    if x.numel() == 0:
        return out
    w = None if weight is None else weight.detach().float().contiguous()
    b = None if bias is None else bias.detach().float().contiguous()
    cpu_forward(x, w, b, eps, negative_slope, residual, out, channels_last=True)
    return out


def cpu_forward(
    x: torch.Tensor,
    w: torch.Tensor | None,
    b: torch.Tensor | None,
    eps: float,
    negative_slope: float | None,
    residual: torch.Tensor | None,
    out: torch.Tensor,
    mean: torch.Tensor | None = None,
    rstd: torch.Tensor | None = None,
    channels_last: bool = False,
) -> None:
    """One C++ forward over ``x`` into ``out`` (both dense: contiguous, or channels-last with ``channels_last``;
    ``w``/``b`` float32 and contiguous), optionally writing each ``(b, c)``'s float32 mean and rstd."""
    ext = B.extension()
    kernel = ext.instance_norm_act_cl_cpu if channels_last else ext.instance_norm_act_cpu
    kernel(
        x.data_ptr(),
        B.DTYPE_CODES[x.dtype],
        0 if residual is None else residual.data_ptr(),
        B.DTYPE_CODES[x.dtype if residual is None else residual.dtype],
        out.data_ptr(),
        B.DTYPE_CODES[out.dtype],
        x.shape[0] if channels_last else x.shape[0] * x.shape[1],  # samples, or (b, c) planes
        x.shape[1],
        x[0, 0].numel(),  # voxels per (b, c)
        0 if w is None else w.data_ptr(),
        0 if b is None else b.data_ptr(),
        float(eps),
        negative_slope is not None,
        float(negative_slope or 0.0),
        0 if mean is None else mean.data_ptr(),
        0 if rstd is None else rstd.data_ptr(),
    )
