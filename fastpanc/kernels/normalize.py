"""Triton fused CT normalisation: clip, subtract, divide and cast in one pass over a strided 4D view."""

from __future__ import annotations

import torch
import triton
import triton.language as tl


@triton.jit
def _ct_normalize_kernel(
    x_ptr, out_ptr, n, Z, Y, X, s0, s1, s2, s3, lo, hi, mean, inv_std, BLOCK: tl.constexpr
):
    pid = tl.program_id(0)
    offs = pid.to(tl.int64) * BLOCK + tl.arange(0, BLOCK).to(tl.int64)
    mask = offs < n
    # (C, Z, Y, X) index of each output element, to read any strided input
    xi = offs % X
    r = offs // X
    yi = r % Y
    r = r // Y
    zi = r % Z
    ci = r // Z
    src = ci * s0 + zi * s1 + yi * s2 + xi * s3
    v = tl.load(x_ptr + src, mask=mask, other=0).to(tl.float32)
    clipped = tl.minimum(tl.maximum(v, lo), hi)
    clipped = tl.where(v != v, v, clipped)  # NaN propagates as in torch.clamp
    y = (clipped - mean) * inv_std
    tl.store(out_ptr + offs, y.to(out_ptr.dtype.element_ty), mask=mask)


def ct_normalize_triton(
    x: torch.Tensor,
    lo: float,
    hi: float,
    mean: float,
    std: float,
    out_dtype: torch.dtype,
    block: int = 1024,
    out: torch.Tensor | None = None,
) -> torch.Tensor:
    """x: (C, Z, Y, X) or fewer dims, any strides; returns ``out`` (contiguous, ``out_dtype``, checked by
    the caller; may be ``x`` itself) or a new contiguous tensor of ``out_dtype``."""
    shape4 = (1,) * (4 - x.dim()) + tuple(x.shape)
    strides4 = (0,) * (4 - x.dim()) + tuple(x.stride())
    if out is None:
        out = torch.empty(x.shape, dtype=out_dtype, device=x.device)
    n = out.numel()
    if n == 0:
        return out
    grid = (triton.cdiv(n, block),)
    _ct_normalize_kernel[grid](
        x,
        out,
        n,
        shape4[1],
        shape4[2],
        shape4[3],
        *strides4,
        float(lo),
        float(hi),
        float(mean),
        1.0 / float(std),
        BLOCK=block,
    )
    return out
