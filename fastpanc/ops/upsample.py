"""A U-Net decoder's upsampling step: transposed convolution (kernel == stride) and concatenation with the skip.

A transposed convolution whose kernel equals its stride maps each input voxel to its own ``stride`` block of
output voxels: it is a 1x1 convolution to ``Co * prod(stride)`` channels followed by a depth-to-space
rearrangement. On CPUs torch's ``ConvTranspose3d`` takes a slow path for it (three times the time of the
1x1 convolution, measured in benchmarks/RESULTS.md); the 1x1 convolution runs as an ordinary oneDNN
convolution, and :func:`depth_to_space_cat` rearranges its output, adds the bias and writes the skip beside it
in one pass, replacing ``torch.cat``'s copy as well.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

from fastpanc.ops import _backend as B
from fastpanc.ops._layout import channels_last_format

_DTYPES = (torch.float32, torch.float16, torch.bfloat16)


def transposed_conv_as_1x1_weight(weight: torch.Tensor) -> torch.Tensor:
    """``ConvTranspose`` weight ``(Ci, Co, *stride)`` -> 1x1 convolution weight ``(Co * prod(stride), Ci, 1, ...)``,
    output channel ``co * prod(stride) + flat index within the stride block``."""
    ci, co = weight.shape[:2]
    dims = weight.dim() - 2
    return weight.flatten(2).permute(1, 2, 0).reshape(-1, ci, *([1] * dims))


def depth_to_space_cat_reference(
    y: torch.Tensor, stride: Sequence[int], bias: torch.Tensor | None = None, skip: torch.Tensor | None = None
) -> torch.Tensor:
    """The definition: rearrange ``y`` ``(B, Co * s, *S)`` to ``(B, Co, *(S * stride))``, add ``bias`` (in
    float32), cast back to ``y.dtype`` and concatenate ``skip`` along the channels."""
    stride = tuple(int(s) for s in stride)
    b, cs = y.shape[:2]
    spatial = tuple(y.shape[2:])
    n = len(stride)
    co = cs // math.prod(stride)
    v = y.reshape(b, co, *stride, *spatial)
    # (B, Co, s_1..s_n, S_1..S_n) -> (B, Co, S_1, s_1, ..., S_n, s_n)
    order = [0, 1] + [i for k in range(n) for i in (2 + n + k, 2 + k)]
    up = v.permute(order).reshape(b, co, *(a * s for a, s in zip(spatial, stride)))
    if bias is not None:
        up = (up.float() + bias.float().view(1, -1, *([1] * n))).to(y.dtype)
    return up if skip is None else torch.cat((up, skip), 1)


def depth_to_space_cat(
    y: torch.Tensor,
    stride: Sequence[int],
    bias: torch.Tensor | None = None,
    skip: torch.Tensor | None = None,
    backend: str = "auto",
) -> torch.Tensor:
    """Finish a kernel == stride transposed convolution from its 1x1-convolution form and concatenate ``skip``.

    Args:
        y: ``(B, Co * prod(stride), *S)``, 2 or 3 spatial axes, float32, float16 or bfloat16: the output of a
            1x1 convolution with :func:`transposed_conv_as_1x1_weight` and no bias.
        stride: the transposed convolution's stride (= kernel), one int per spatial axis.
        bias: ``(Co,)`` or None.
        skip: ``(B, Cs, *(S * stride))`` of ``y``'s dtype, or None.
        backend: ``auto``, ``reference`` or ``cpu`` (C++/OpenMP, inference only). On CUDA tensors ``auto``
            takes the reference.

    Returns:
        ``(B, Co + Cs, *(S * stride))`` of ``y``'s dtype: channels-last when ``y`` or ``skip`` is channels-last
        (``torch.channels_last_3d`` / ``channels_last`` strides; the ``cpu`` backend then reads and writes that
        layout directly), else contiguous.
    """
    if not isinstance(y, torch.Tensor):
        raise TypeError(f"depth_to_space_cat: expected a torch.Tensor, got {type(y).__name__}")
    stride = tuple(int(s) for s in stride)
    if y.dim() not in (4, 5) or len(stride) != y.dim() - 2 or any(s < 1 for s in stride):
        raise ValueError(
            f"depth_to_space_cat: expected y (B, C, *spatial) with one stride >= 1 per spatial axis, got shape "
            f"{tuple(y.shape)} and stride {stride}"
        )
    if y.dtype not in _DTYPES:
        raise ValueError(f"depth_to_space_cat: dtype {y.dtype} is not supported; expected one of {_DTYPES}")
    s = math.prod(stride)
    if y.shape[1] % s:
        raise ValueError(
            f"depth_to_space_cat: y has {y.shape[1]} channels, not a multiple of prod(stride) = {s}"
        )
    co = y.shape[1] // s
    up_shape = tuple(a * b for a, b in zip(y.shape[2:], stride))
    if bias is not None and tuple(bias.shape) != (co,):
        raise ValueError(f"depth_to_space_cat: bias must have shape ({co},), got {tuple(bias.shape)}")
    if skip is not None and (
        skip.dim() != y.dim() or skip.shape[0] != y.shape[0] or tuple(skip.shape[2:]) != up_shape
    ):
        raise ValueError(
            f"depth_to_space_cat: skip must be ({y.shape[0]}, Cs, {', '.join(map(str, up_shape))}), "
            f"got {tuple(skip.shape)}"
        )

    def cpu_reason() -> str | None:
        why = B.cpu_inference_reason(y, bias, skip)
        if why is None and skip is not None and skip.dtype != y.dtype:
            why = f"the C++ kernel needs skip in y's dtype {y.dtype}, got {skip.dtype}"
        return why

    name = B.choose(
        "depth_to_space_cat",
        backend,
        {"reference": lambda: None, "cpu": cpu_reason},
        B.auto_order(y.device, cpu=["cpu"], cuda=["reference"]),
    )
    if name == "reference":
        return depth_to_space_cat_reference(y, stride, bias, skip)
    # channels-last when y (the 1x1 convolution's output) or the skip is: the whole pass in (B, *S, C) memory
    fmt = channels_last_format(y) or (None if skip is None else channels_last_format(skip))
    y = y.contiguous() if fmt is None else y.contiguous(memory_format=fmt)
    skip = None if skip is None else skip.contiguous() if fmt is None else skip.contiguous(memory_format=fmt)
    cs = 0 if skip is None else skip.shape[1]
    out = torch.empty(
        (y.shape[0], co + cs, *up_shape), dtype=y.dtype, memory_format=fmt or torch.contiguous_format
    )
    if out.numel() == 0:
        return out
    b = None if bias is None else bias.detach().float().contiguous()
    kernel = B.extension().depth_to_space_cat_cpu if fmt is None else B.extension().depth_to_space_cat_cl_cpu
    kernel(
        y.data_ptr(),
        0 if skip is None else skip.data_ptr(),
        out.data_ptr(),
        B.DTYPE_CODES[y.dtype],
        y.shape[0],
        co,
        cs,
        *B.as_zyx(y.shape[2:]),
        *B.as_zyx(stride),
        0 if b is None else b.data_ptr(),
    )
    return out
