"""Triton instance norm + residual + LeakyReLU (``fastpanc.ops.instance_norm_act`` on GPUs).

A plane (one ``(b, c)``) of a 3D network's top level holds millions of voxels, and a batch has only
``B * C`` planes, so one program per plane would leave most of a GPU idle. Each plane is cut into chunks:

1. ``_chunk_stats``: one program per (plane, chunk) writes the chunk's sum and its sum of squared
   deviations from the chunk mean (two passes over the chunk, the second from cache);
2. ``_apply``: one program per (plane, chunk) combines its plane's chunk statistics (Chan et al.'s
   pairwise formula: no E[x^2] - E[x]^2 cancellation), then normalises, applies the affine map, adds the
   residual, the LeakyReLU and writes its chunk in the output dtype.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

_MAX_CHUNKS = 256


@triton.jit
def _chunk_stats(x_ptr, sum_ptr, m2_ptr, n, n_chunks, CHUNK: tl.constexpr, BLOCK: tl.constexpr):
    plane = tl.program_id(0).to(tl.int64)
    chunk = tl.program_id(1).to(tl.int64)
    start = chunk * CHUNK
    base = x_ptr + plane * n
    count = tl.minimum(n - start, CHUNK).to(tl.float32)
    acc = tl.zeros([BLOCK], dtype=tl.float32)
    for k in range(0, CHUNK, BLOCK):
        offs = start + k + tl.arange(0, BLOCK)
        acc += tl.load(base + offs, mask=offs < n, other=0).to(tl.float32)
    s = tl.sum(acc, axis=0)
    mean = s / count
    acc2 = tl.zeros([BLOCK], dtype=tl.float32)
    for k in range(0, CHUNK, BLOCK):
        offs = start + k + tl.arange(0, BLOCK)
        m = offs < n
        d = tl.where(m, tl.load(base + offs, mask=m, other=0).to(tl.float32) - mean, 0.0)
        acc2 += d * d
    tl.store(sum_ptr + plane * n_chunks + chunk, s)
    tl.store(m2_ptr + plane * n_chunks + chunk, tl.sum(acc2, axis=0))


@triton.jit
def _apply(
    x_ptr,
    res_ptr,
    out_ptr,
    w_ptr,
    b_ptr,
    sum_ptr,
    m2_ptr,
    n,
    n_chunks,
    channels,
    eps,
    slope,
    HAS_RES: tl.constexpr,
    HAS_W: tl.constexpr,
    HAS_B: tl.constexpr,
    ACT: tl.constexpr,
    CHUNK: tl.constexpr,
    BLOCK: tl.constexpr,
    CHUNKS_P2: tl.constexpr,
):
    plane = tl.program_id(0).to(tl.int64)
    chunk = tl.program_id(1).to(tl.int64)
    # the plane's statistics from its chunks' (sum, M2)
    ci = tl.arange(0, CHUNKS_P2)
    cm = ci < n_chunks
    sums = tl.load(sum_ptr + plane * n_chunks + ci, mask=cm, other=0.0)
    m2s = tl.load(m2_ptr + plane * n_chunks + ci, mask=cm, other=0.0)
    counts = tl.where(cm, tl.minimum(n - ci.to(tl.int64) * CHUNK, CHUNK).to(tl.float32), 1.0)
    total = n.to(tl.float32)
    mean = tl.sum(sums, axis=0) / total
    dev = tl.where(cm, sums / counts - mean, 0.0)
    var = (tl.sum(m2s, axis=0) + tl.sum(counts * dev * dev, axis=0)) / total
    scale = 1.0 / tl.sqrt(var + eps)
    c = plane % channels
    if HAS_W:
        scale = scale * tl.load(w_ptr + c)
    shift = 0.0
    if HAS_B:
        shift = tl.load(b_ptr + c)
    start = chunk * CHUNK
    for k in range(0, CHUNK, BLOCK):
        offs = start + k + tl.arange(0, BLOCK)
        m = offs < n
        v = (tl.load(x_ptr + plane * n + offs, mask=m, other=0).to(tl.float32) - mean) * scale + shift
        if HAS_RES:
            v += tl.load(res_ptr + plane * n + offs, mask=m, other=0).to(tl.float32)
        if ACT:
            v = tl.where(v > 0, v, v * slope)
        tl.store(out_ptr + plane * n + offs, v.to(out_ptr.dtype.element_ty), mask=m)


def instance_norm_act_triton(
    x: torch.Tensor,
    weight: torch.Tensor | None,
    bias: torch.Tensor | None,
    eps: float,
    negative_slope: float | None,
    residual: torch.Tensor | None,
    out: torch.Tensor,
    block: int = 1024,
) -> torch.Tensor:
    """``x``, ``residual`` and ``out`` contiguous ``(B, C, *S)``, ``weight`` and ``bias`` contiguous float32 ``(C,)``
    or None (all prepared by ``fastpanc.ops.instance_norm_act``); ``out`` may be ``x``."""
    planes, channels = x.shape[0] * x.shape[1], x.shape[1]
    n = x[0, 0].numel()
    if planes == 0 or n == 0:
        return out
    chunk = block
    while triton.cdiv(n, chunk) > _MAX_CHUNKS:
        chunk *= 2
    n_chunks = triton.cdiv(n, chunk)
    sums = torch.empty((planes, n_chunks), dtype=torch.float32, device=x.device)
    m2s = torch.empty_like(sums)
    grid = (planes, n_chunks)
    _chunk_stats[grid](x, sums, m2s, n, n_chunks, CHUNK=chunk, BLOCK=block)
    _apply[grid](
        x,
        x if residual is None else residual,
        out,
        sums if weight is None else weight,  # a float32 stand-in pointer when absent
        sums if bias is None else bias,
        sums,
        m2s,
        n,
        n_chunks,
        channels,
        float(eps),
        float(negative_slope or 0.0),
        HAS_RES=residual is not None,
        HAS_W=weight is not None,
        HAS_B=bias is not None,
        ACT=negative_slope is not None,
        CHUNK=chunk,
        BLOCK=block,
        CHUNKS_P2=triton.next_power_of_2(n_chunks),
    )
    return out
