"""What the 'same'-padded stride-1 convolution ops share: the definition, the argument checks, the choice of backend."""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

from fastpanc.ops import _backend as B


def same_conv_reference(
    x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None
) -> torch.Tensor:
    """The definition: ``F.conv3d`` with stride 1 and 'same' padding (``kernel // 2`` on each side)."""
    return F.conv3d(x, weight, bias, padding=tuple(k // 2 for k in weight.shape[2:]))


def check_same_conv(op: str, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> None:
    """``x`` ``(B, C, Z, Y, X)``, ``weight`` ``(Co, C, kz, ky, kx)`` with odd sizes, ``bias`` ``(Co,)`` or None."""
    if not isinstance(x, torch.Tensor) or not isinstance(weight, torch.Tensor):
        raise TypeError(f"{op}: x and weight must be torch.Tensors")
    if x.dim() != 5 or weight.dim() != 5 or weight.shape[1] != x.shape[1]:
        raise ValueError(
            f"{op}: expected x (B, C, Z, Y, X) and weight (Co, C, kz, ky, kx) with the same C, got "
            f"{tuple(x.shape)} and {tuple(weight.shape)}"
        )
    if any(k % 2 == 0 for k in weight.shape[2:]):
        raise ValueError(f"{op}: 'same' padding needs odd kernel sizes, got {tuple(weight.shape[2:])}")
    if bias is not None and tuple(bias.shape) != (weight.shape[0],):
        raise ValueError(f"{op}: bias must have shape ({weight.shape[0]},), got {tuple(bias.shape)}")


def float32_cpu_reason(
    kernel: str, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None
) -> str | None:
    """Why a float32 C++ inference kernel (``kernel`` names it) cannot take this call, or None: CPU tensors,
    no autograd, no CPU autocast (the convolution then belongs to torch in the autocast dtype), float32."""
    why = B.cpu_inference_reason(x, weight, bias)
    if why is not None:
        return why
    if torch.is_autocast_enabled("cpu"):
        return "CPU autocast is on: the convolution runs in its autocast dtype (F.conv3d)"
    for t in (x, weight, bias):
        if t is not None and t.dtype != torch.float32:
            return f"the {kernel} kernel takes float32 tensors, got {t.dtype}"
    return None


def choose_same_conv(
    op: str, backend: str, auto_takes_cpu: Callable[[], bool], cpu_reason: Callable[[], str | None]
) -> str:
    """``cpu`` or ``reference``. ``auto`` takes the C++ kernel only where ``auto_takes_cpu()`` says it is the faster
    one; elsewhere ``F.conv3d`` (oneDNN, cuDNN) is the fast path, so that is no slow path to report. An explicit
    backend that cannot run raises (``cpu_reason`` says why)."""
    if backend == "auto":
        return "cpu" if auto_takes_cpu() else "reference"
    return B.choose(op, backend, {"reference": lambda: None, "cpu": cpu_reason}, ["cpu", "reference"])
