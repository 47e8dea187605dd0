"""Direct 'same'-padded, stride-1 convolution for inputs with few channels: a network's stem, channels-last out.

A ResEnc U-Net's first convolution reads one CT channel and writes 32 at full resolution. At batch 1 torch runs it
through its native kernel, which is far from the CPU's arithmetic rate and
writes a contiguous output that a channels-last network then copies once more (benchmarks/RESULTS.md). The C++
kernel (:func:`fastpanc._C.conv3d_direct_cl_cpu`) keeps 16 output channels of 4 neighbouring voxels in registers,
adds the taps in the order (dz, dy, dx, c) and writes the channels-last result directly. Same float32 arithmetic
as any direct convolution, in another order: within a few float32 roundings of ``F.conv3d``.

``backend="auto"`` takes the C++ kernel for float32 CPU tensors without autograd or autocast and with at most
:data:`MAX_CHANNELS` input channels; ``F.conv3d`` (the ``reference``, oneDNN's kernels) otherwise. An explicit
``cpu`` runs any channel count.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from fastpanc.ops import _backend as B
from fastpanc.ops._conv import check_same_conv, choose_same_conv, float32_cpu_reason, same_conv_reference

# auto takes the direct kernel up to this many input channels: 1 -> 32 channels at 64 x 128 x 192 took 0.098 s against
# 0.123 s for oneDNN on channels-last input (0.203 s for torch's native kernel and the layout copy); from 2 input
# channels on oneDNN was the faster (0.072 s against 0.136 s; 2-core AVX-512 CPU)
MAX_CHANNELS = 1
# output channels per register block of the C++ kernel (the weight is zero-padded to a multiple)
LANES = 16


conv3d_narrow_reference = same_conv_reference  # the definition: F.conv3d with padding kernel // 2


def _cpu_reason(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> str | None:
    return float32_cpu_reason("direct", x, weight, bias)


def conv3d_narrow(
    x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None, backend: str = "auto"
) -> torch.Tensor:
    """A stride-1 convolution with 'same' zero padding, as ``nn.Conv3d(C, Co, kernel, padding=kernel // 2)``.

    Args:
        x: ``(B, C, Z, Y, X)``, any layout.
        weight: ``(Co, C, kz, ky, kx)``, odd kernel sizes.
        bias: ``(Co,)`` or None.
        backend: ``auto``, ``reference`` (``F.conv3d``) or ``cpu`` (the C++ direct kernel; float32, inference only).

    Returns:
        ``(B, Co, Z, Y, X)``: channels-last (``torch.channels_last_3d``) from the ``cpu`` backend, as ``F.conv3d``
        returns it otherwise.
    """
    check_same_conv("conv3d_narrow", x, weight, bias)
    name = choose_same_conv(
        "conv3d_narrow",
        backend,
        lambda: x.shape[1] <= MAX_CHANNELS and _cpu_reason(x, weight, bias) is None,
        lambda: _cpu_reason(x, weight, bias),
    )
    if name == "reference":
        return conv3d_narrow_reference(x, weight, bias)
    return _direct(x, weight, bias)


def _direct(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    b, c, z, y, xs = x.shape
    co, kz, ky, kx = weight.shape[0], *weight.shape[2:]
    out = torch.empty((b, co, z, y, xs), dtype=torch.float32, memory_format=torch.channels_last_3d)
    if out.numel() == 0:
        return out
    # (B, C, Z + kz - 1, Y + ky - 1, X + kx - 1) contiguous: the kernel reads it without bounds checks
    xp = F.pad(x.contiguous(), (kx // 2, kx // 2, ky // 2, ky // 2, kz // 2, kz // 2))
    cop = -(-co // LANES) * LANES
    w = F.pad(weight.detach().permute(2, 3, 4, 1, 0), (0, cop - co)).contiguous()  # (kz, ky, kx, C, Cop)
    bs = torch.zeros(cop, dtype=torch.float32)
    if bias is not None:
        bs[:co] = bias.detach()
    B.extension().conv3d_direct_cl_cpu(
        xp.data_ptr(), w.data_ptr(), bs.data_ptr(), out.data_ptr(), b, c, z, y, xs, co, cop, kz, ky, kx
    )
    return out
