"""Average pooling with kernel == stride (the ResNet-D skip path of a strided ResEnc block), in the input's dtype.

torch's CPU ``avg_pool3d`` has no bfloat16 kernel, so under bf16 autocast it widens the whole block input to
float32 first; ``avg_pool_down`` reads bfloat16 (or float16 / float32) directly and sums in float32.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

from fastpanc.ops import _backend as B
from fastpanc.ops._layout import channels_last_format

_DTYPES = (torch.float32, torch.float16, torch.bfloat16)


def avg_pool_down_reference(x: torch.Tensor, stride: Sequence[int]) -> torch.Tensor:
    """The definition: ``avg_pool{2,3}d(x, stride, stride)`` computed in float32, cast back to ``x.dtype``."""
    pool = F.avg_pool3d if len(stride) == 3 else F.avg_pool2d
    return pool(x.float(), tuple(stride), tuple(stride)).to(x.dtype)


def avg_pool_down(x: torch.Tensor, stride: Sequence[int], backend: str = "auto") -> torch.Tensor:
    """Mean over non-overlapping ``stride``-sized windows (trailing voxels that fill no window are dropped).

    Args:
        x: ``(B, C, z, y, x)`` or ``(B, C, y, x)``, float32, float16 or bfloat16.
        stride: one positive int per spatial axis (also the window size).
        backend: ``auto``, ``reference`` or ``cpu`` (C++/OpenMP, inference only: no backward). On CUDA
            tensors ``auto`` takes the reference.

    Returns:
        A ``(B, C, *(S // stride))`` tensor of ``x``'s dtype: channels-last when ``x`` is channels-last
        (``torch.channels_last_3d`` / ``channels_last`` strides; the ``cpu`` backend reads that layout
        directly), else contiguous.
    """
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"avg_pool_down: expected a torch.Tensor, got {type(x).__name__}")
    stride = tuple(int(s) for s in stride)
    if x.dim() not in (4, 5) or len(stride) != x.dim() - 2:
        raise ValueError(
            f"avg_pool_down: expected (B, C, *spatial) with one stride per spatial axis, got shape "
            f"{tuple(x.shape)} and stride {stride}"
        )
    if any(s < 1 for s in stride):
        raise ValueError(f"avg_pool_down: strides must be >= 1, got {stride}")
    if x.dtype not in _DTYPES:
        raise ValueError(f"avg_pool_down: dtype {x.dtype} is not supported; expected one of {_DTYPES}")
    name = B.choose(
        "avg_pool_down",
        backend,
        {"reference": lambda: None, "cpu": lambda: B.cpu_inference_reason(x)},
        B.auto_order(x.device, cpu=["cpu"], cuda=["reference"]),
    )
    if name == "reference":
        return avg_pool_down_reference(x, stride)
    shape = (*x.shape[:2], *(n // s for n, s in zip(x.shape[2:], stride)))
    fmt = channels_last_format(x)
    if fmt is not None:  # (B, *S, C) in memory: the channels-last kernel, a channels-last result
        out = torch.empty(shape, dtype=x.dtype, memory_format=fmt)
        if out.numel():
            B.extension().avg_pool_down_cl_cpu(
                x.data_ptr(),
                out.data_ptr(),
                B.DTYPE_CODES[x.dtype],
                x.shape[0],
                x.shape[1],
                *B.as_zyx(x.shape[2:]),
                *B.as_zyx(stride),
            )
        return out
    x = x.contiguous()
    out = torch.empty(shape, dtype=x.dtype)
    if out.numel() == 0:
        return out
    B.extension().avg_pool_down_cpu(
        x.data_ptr(),
        out.data_ptr(),
        B.DTYPE_CODES[x.dtype],
        x.shape[0] * x.shape[1],
        *B.as_zyx(x.shape[2:]),
        *B.as_zyx(stride),
    )
    return out
