"""Memory layouts the CPU kernels take: contiguous ``(B, C, *S)`` or channels-last ``(B, *S, C)`` in memory."""

from __future__ import annotations

import torch

_CHANNELS_LAST = {4: torch.channels_last, 5: torch.channels_last_3d}


def channels_last_format(t: torch.Tensor) -> torch.memory_format | None:
    """``torch.channels_last_3d`` (5D) or ``torch.channels_last`` (4D) when ``t``'s strides are those of a dense
    channels-last tensor and not also those of a contiguous one (one channel or one voxel fit both; those take
    the contiguous kernels), else None."""
    fmt = _CHANNELS_LAST.get(t.dim())
    if fmt is None or t.is_contiguous() or not t.is_contiguous(memory_format=fmt):
        return None
    return fmt
