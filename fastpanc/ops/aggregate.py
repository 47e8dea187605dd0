"""Fused aggregation of sliding-window predictions: Gaussian-weighted accumulate, then finalize.

nnU-Net v2's predictor does, per window, ``predicted_logits[sl] += prediction * gaussian`` and
``n_predictions[sl[1:]] += gaussian``, then divides and takes the argmax. Here the accumulation is one
kernel per batch of windows (in float32) and the division, argmax and optional softmax one pass.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from fastpanc.ops import _backend as B

_LOGIT_DTYPES = (torch.float32, torch.float16, torch.bfloat16)


def _starts_list(starts: torch.Tensor | Sequence[Sequence[int]]) -> list[list[int]]:
    rows = starts.tolist() if isinstance(starts, torch.Tensor) else [list(r) for r in starts]
    if any(len(r) != 3 for r in rows):
        raise ValueError(f"accumulate: starts must be (B, 3) (z, y, x) per window, got {rows!r}")
    if any(int(v) != v for r in rows for v in r):
        raise ValueError(f"accumulate: starts must be integers, got {rows!r}")
    return [[int(v) for v in r] for r in rows]


def _check_accumulate(
    acc: torch.Tensor,
    weight: torch.Tensor,
    logits: torch.Tensor,
    starts: list[list[int]],
    gaussian: torch.Tensor,
) -> None:
    if acc.dim() != 4 or acc.dtype != torch.float32:
        raise ValueError(f"accumulate: acc must be (K, Z, Y, X) float32, got {tuple(acc.shape)} {acc.dtype}")
    if weight.dtype != torch.float32 or tuple(weight.shape) != tuple(acc.shape[1:]):
        raise ValueError(
            f"accumulate: weight must be float32 of shape {tuple(acc.shape[1:])}, got {tuple(weight.shape)} "
            f"{weight.dtype}"
        )
    if logits.dim() != 5 or logits.dtype not in _LOGIT_DTYPES:
        raise ValueError(
            f"accumulate: logits must be (B, K, pz, py, px) of {_LOGIT_DTYPES}, got {tuple(logits.shape)} "
            f"{logits.dtype}"
        )
    if logits.shape[1] != acc.shape[0]:
        raise ValueError(f"accumulate: logits have {logits.shape[1]} classes but acc has {acc.shape[0]}")
    if len(starts) != logits.shape[0]:
        raise ValueError(f"accumulate: {len(starts)} window starts for a batch of {logits.shape[0]} windows")
    patch = tuple(logits.shape[2:])
    if gaussian.dtype != torch.float32 or tuple(gaussian.shape) != patch:
        raise ValueError(
            f"accumulate: gaussian must be float32 of the patch shape {patch}, got {tuple(gaussian.shape)} "
            f"{gaussian.dtype} (gaussian_map(patch) makes one)"
        )
    vol = tuple(acc.shape[1:])
    for s in starts:
        if any(v < 0 or v + p > n for v, p, n in zip(s, patch, vol)):
            raise ValueError(f"accumulate: window at {s} of size {patch} does not fit in the volume {vol}")
    for name, t in (("acc", acc), ("weight", weight)):
        if any(st == 0 and n > 1 for st, n in zip(t.stride(), t.shape)):
            raise ValueError(f"accumulate: {name} has a zero stride (an expanded view); pass a real tensor")
    devices = {t.device for t in (acc, weight, logits, gaussian)}
    if len(devices) != 1:
        raise ValueError(f"accumulate: all tensors must be on one device, got {sorted(map(str, devices))}")


def accumulate_reference(
    acc: torch.Tensor,
    weight: torch.Tensor,
    logits: torch.Tensor,
    starts: Sequence[Sequence[int]],
    gaussian: torch.Tensor,
) -> None:
    """The definition, window by window in order: ``acc[:, w] += logits[b].float() * gaussian`` and
    ``weight[w] += gaussian``, all in float32, in place."""
    patch = gaussian.shape
    for b, (z, y, x) in enumerate(starts):
        sl = (slice(z, z + patch[0]), slice(y, y + patch[1]), slice(x, x + patch[2]))
        acc[(slice(None), *sl)] += logits[b].to(torch.float32) * gaussian
        weight[sl] += gaussian


def accumulate(
    acc: torch.Tensor,
    weight: torch.Tensor,
    logits: torch.Tensor,
    starts: torch.Tensor | Sequence[Sequence[int]],
    gaussian: torch.Tensor,
    backend: str = "auto",
) -> None:
    """Add a batch of Gaussian-weighted window predictions into the accumulators, in place.

    Args:
        acc: ``(K, Z, Y, X)`` float32 accumulator, any strides.
        weight: ``(Z, Y, X)`` float32 sum of Gaussian weights, any strides.
        logits: ``(B, K, pz, py, px)`` float32, float16 or bfloat16 window predictions, any strides.
        starts: ``(B, 3)`` integer (z, y, x) start of each window; windows must lie inside the volume and
            may overlap each other (they are added in batch order).
        gaussian: ``(pz, py, px)`` float32 importance map (:func:`fastpanc.ops.gaussian_map`).
        backend: ``auto``, ``reference``, ``cpu`` (C++/OpenMP, rows of a window in parallel) or ``cuda``
            (one launch per window on the current stream: deterministic and without atomics).
    """
    rows = _starts_list(starts)
    _check_accumulate(acc, weight, logits, rows, gaussian)
    name = B.choose(
        "accumulate",
        backend,
        {
            "reference": lambda: None,
            "cpu": lambda: B.cpu_reason(acc, weight, logits, gaussian),
            "cuda": lambda: B.cuda_reason(acc, weight, logits, gaussian),
        },
        B.auto_order(acc.device, cpu=["cpu"], cuda=["cuda"]),
    )
    if name == "reference":
        accumulate_reference(acc, weight, logits, rows, gaussian)
        return
    if not rows or gaussian.numel() == 0:
        return
    g = gaussian.contiguous()
    flat = [v for r in rows for v in r]
    args = (*B.view_args(acc), *B.view_args(weight), *B.view_args(logits), flat, g.data_ptr())
    ext = B.extension()
    if name == "cpu":
        ext.accumulate_cpu(*args)
    else:
        ext.accumulate_cuda(*args, B.cuda_stream(acc))


def finalize_reference(
    acc: torch.Tensor, weight: torch.Tensor, softmax: bool = False
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The definition: ``logits = acc / weight``; labels ``argmax`` over classes as uint8 (first maximum
    wins); probabilities ``softmax`` over classes in float32, stored as float16."""
    logits = acc / weight
    labels = torch.argmax(logits, dim=0).to(torch.uint8)
    probs = torch.softmax(logits, dim=0).to(torch.float16) if softmax else None
    return labels, probs


def finalize(
    acc: torch.Tensor, weight: torch.Tensor, softmax: bool = False, backend: str = "auto"
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Divide the accumulated logits by the weights, take the argmax and optionally the softmax, in one pass.

    Args:
        acc: ``(K, Z, Y, X)`` float32, 1 <= K <= 256, any strides.
        weight: ``(Z, Y, X)`` float32, any strides. Where it is 0 (no window covered the voxel) the
            logits are NaN or +-inf and the labels follow ``torch.argmax`` (the first NaN wins).
        softmax: also return the class probabilities.
        backend: ``auto``, ``reference``, ``cpu`` or ``cuda``.

    Returns:
        ``labels`` ``(Z, Y, X)`` uint8 and ``probs`` ``(K, Z, Y, X)`` float16 (``None`` unless
        ``softmax``), both contiguous, on ``acc``'s device.
    """
    if acc.dim() != 4 or acc.dtype != torch.float32:
        raise ValueError(f"finalize: acc must be (K, Z, Y, X) float32, got {tuple(acc.shape)} {acc.dtype}")
    if not 1 <= acc.shape[0] <= 256:
        raise ValueError(f"finalize: labels are uint8, so 1 to 256 classes are supported; got {acc.shape[0]}")
    if weight.dtype != torch.float32 or tuple(weight.shape) != tuple(acc.shape[1:]):
        raise ValueError(
            f"finalize: weight must be float32 of shape {tuple(acc.shape[1:])}, got {tuple(weight.shape)} "
            f"{weight.dtype}"
        )
    if weight.device != acc.device:
        raise ValueError(f"finalize: acc is on {acc.device} but weight on {weight.device}")
    name = B.choose(
        "finalize",
        backend,
        {
            "reference": lambda: None,
            "cpu": lambda: B.cpu_reason(acc, weight),
            "cuda": lambda: B.cuda_reason(acc, weight),
        },
        B.auto_order(acc.device, cpu=["cpu"], cuda=["cuda"]),
    )
    if name == "reference":
        return finalize_reference(acc, weight, softmax)
    labels = torch.empty(acc.shape[1:], dtype=torch.uint8, device=acc.device)
    probs = torch.empty(acc.shape, dtype=torch.float16, device=acc.device) if softmax else None
    if labels.numel() == 0:
        return labels, probs
    args = (*B.view_args(acc), *B.view_args(weight), labels.data_ptr(), probs.data_ptr() if softmax else 0)
    ext = B.extension()
    if name == "cpu":
        ext.finalize_cpu(*args)
    else:
        ext.finalize_cuda(*args, B.cuda_stream(acc))
    return labels, probs


def argmax_labels_reference(logits: torch.Tensor) -> torch.Tensor:
    """The definition: ``torch.argmax(logits, dim=0)`` as uint8 (first maximum wins)."""
    return torch.argmax(logits, dim=0).to(torch.uint8)


def argmax_labels(logits: torch.Tensor, backend: str = "auto") -> torch.Tensor:
    """Labels ``(Z, Y, X)`` uint8: the argmax over the classes of ``(K, Z, Y, X)`` float32 logits, in one pass.

    torch's ``argmax`` over the outer dimension took 0.6-0.8 s for three classes of a 3.3-million-voxel CT on two
    CPU cores and writes int64; this is :func:`finalize`'s kernel with a weight of one everywhere (a stride-0 view:
    dividing by 1 is exact), 6 ms for the same. Float16 / bfloat16 logits are widened first. Backends as
    :func:`finalize`; NaN follows ``torch.argmax`` (the first NaN wins).
    """
    if logits.dim() != 4:
        raise ValueError(f"argmax_labels: logits must be (K, Z, Y, X), got {tuple(logits.shape)}")
    if logits.dtype not in _LOGIT_DTYPES:
        raise ValueError(f"argmax_labels: logits must be one of {_LOGIT_DTYPES}, got {logits.dtype}")
    if backend == "reference":
        return argmax_labels_reference(logits)
    ones = torch.ones((), dtype=torch.float32, device=logits.device).expand(logits.shape[1:])
    return finalize(logits.float(), ones, backend=backend)[0]
