"""Backend selection shared by every op.

Each op lists its backends in order of preference for a device and a function that says why a
backend cannot take a given input (``None`` when it can). ``backend="auto"`` takes the first that
can; an explicit backend that cannot run raises :class:`BackendUnavailableError` with the reason.
When ``auto`` has to skip a faster backend, the slow path is logged once and recorded so that
``fastpanc info`` shows it. Nothing falls back silently.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence

import torch

log = logging.getLogger("fastpanc.ops")

BACKENDS = ("reference", "cpu", "cuda", "triton")

# dtype codes understood by fastpanc._C (csrc/common.h, enum DType)
DTYPE_CODES: dict[torch.dtype, int] = {
    torch.float32: 0,
    torch.float16: 1,
    torch.int16: 2,
    torch.uint8: 3,
    torch.float64: 4,
    torch.int32: 5,
    torch.bfloat16: 6,
    torch.int64: 7,
    torch.int8: 8,
}

# image dtypes every fastpanc image kernel reads (normalisation, resampling)
IMAGE_DTYPES: tuple[torch.dtype, ...] = (
    torch.float32,
    torch.float16,
    torch.bfloat16,
    torch.float64,
    torch.int16,
    torch.int32,
    torch.uint8,
    torch.int8,
)

_slow_paths: dict[str, str] = {}


class BackendUnavailableError(RuntimeError):
    """An explicitly requested backend cannot run this input; the message says why."""


def slow_paths_taken() -> dict[str, str]:
    """Ops for which ``auto`` could not use the fastest backend, with the reason."""
    return dict(_slow_paths)


def extension():
    """``fastpanc._C`` or ``None`` when it cannot be imported."""
    from fastpanc._info import load_extension

    try:
        return load_extension()
    except ImportError:
        return None


def cpu_reason(*tensors: torch.Tensor, dtypes: Sequence[torch.dtype] | None = None) -> str | None:
    """Why the C++ CPU kernels cannot take these tensors, or None."""
    ext = extension()
    if ext is None:
        return "fastpanc._C is not built (pip install . builds it)"
    for t in tensors:
        if t.device.type != "cpu":
            return f"the C++ CPU kernel needs CPU tensors, got a tensor on {t.device}"
        if dtypes is not None and t.dtype not in dtypes:
            return f"the C++ CPU kernel does not support dtype {t.dtype} (supported: {', '.join(map(str, dtypes))})"
    return None


def records_grad(*tensors: torch.Tensor | None) -> bool:
    """Whether autograd records a call on these tensors (grad enabled and one of them requires grad);
    ``None`` entries are skipped."""
    return torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in tensors)


def _no_backward_reason(kernel: str, tensors: Sequence[torch.Tensor]) -> str | None:
    if records_grad(*tensors):
        return (
            f"the {kernel} kernel has no backward; it is for inference (use torch.inference_mode or no_grad)"
        )
    return None


def cpu_inference_reason(*tensors: torch.Tensor | None) -> str | None:
    """:func:`cpu_reason` for kernels without a backward (inference only): also refuses tensors that
    require grad while grad is enabled. ``None`` entries (absent optional inputs) are skipped."""
    present = [t for t in tensors if t is not None]
    return cpu_reason(*present) or _no_backward_reason("C++", present)


def triton_inference_reason(*tensors: torch.Tensor | None) -> str | None:
    """:func:`triton_reason` for Triton kernels without a backward, as :func:`cpu_inference_reason`."""
    present = [t for t in tensors if t is not None]
    return triton_reason(*present) or _no_backward_reason("Triton", present)


def overlaps(a: torch.Tensor, b: torch.Tensor) -> bool:
    """Whether the memory spans of two (possibly strided) tensors intersect."""
    if a.numel() == 0 or b.numel() == 0:
        return False

    def span(t: torch.Tensor) -> tuple[int, int]:
        last = sum((n - 1) * abs(s) for n, s in zip(t.shape, t.stride()))
        return t.data_ptr(), t.data_ptr() + t.element_size() * (1 + last)

    (a_lo, a_hi), (b_lo, b_hi) = span(a), span(b)
    return a_lo < b_hi and b_lo < a_hi


def cuda_reason(*tensors: torch.Tensor, dtypes: Sequence[torch.dtype] | None = None) -> str | None:
    """Why the CUDA kernels cannot take these tensors, or None."""
    ext = extension()
    if ext is None:
        return "fastpanc._C is not built (pip install . builds it)"
    if not ext.cuda_compiled:
        return "fastpanc._C was built without CUDA (no nvcc at build time, or FASTPANC_CUDA=OFF)"
    if not torch.cuda.is_available():
        return "no CUDA GPU is available"
    for t in tensors:
        if t.device.type != "cuda":
            return f"the CUDA kernel needs CUDA tensors, got a tensor on {t.device}"
        if dtypes is not None and t.dtype not in dtypes:
            return (
                f"the CUDA kernel does not support dtype {t.dtype} (supported: {', '.join(map(str, dtypes))})"
            )
    return None


def triton_reason(*tensors: torch.Tensor) -> str | None:
    """Why the Triton kernels cannot run, or None. Under TRITON_INTERPRET=1 they run on CPU tensors."""
    import os

    try:
        import triton  # noqa: F401
    except Exception as exc:
        return f"Triton is not installed or failed to import ({exc.__class__.__name__}: {exc})"
    interpret = os.environ.get("TRITON_INTERPRET", "0") == "1"
    for t in tensors:
        if t.device.type == "cuda":
            continue
        if not interpret:
            return f"Triton needs CUDA tensors (got {t.device}); set TRITON_INTERPRET=1 to run it on the CPU"
    return None


def choose(
    op: str,
    backend: str,
    reasons: Mapping[str, Callable[[], str | None]],
    preference: Sequence[str],
) -> str:
    """Pick the backend for one call.

    ``reasons`` maps each backend the op has to a zero-argument function returning why it cannot
    run this input (or None). ``preference`` is the fastest-first order that ``auto`` tries.
    """
    if backend != "auto":
        if backend not in BACKENDS:
            raise ValueError(f"{op}: unknown backend {backend!r}; expected 'auto' or one of {BACKENDS}")
        if backend not in reasons:
            raise BackendUnavailableError(
                f"{op}: has no {backend!r} backend; available: {', '.join(sorted(reasons))}"
            )
        why = reasons[backend]()
        if why is not None:
            raise BackendUnavailableError(f"{op}: backend {backend!r} cannot run this input: {why}")
        return backend
    skipped: list[tuple[str, str]] = []
    for name in preference:
        why = reasons[name]()
        if why is None:
            if skipped and name == "reference":
                key = f"{op}"
                msg = "; ".join(f"{b}: {w}" for b, w in skipped)
                if _slow_paths.get(key) != msg:
                    _slow_paths[key] = msg
                    log.warning("%s: using the slow pure-torch reference because %s", op, msg)
            return name
        skipped.append((name, why))
    lines = "\n".join(f"  {b}: {w}" for b, w in skipped)
    raise BackendUnavailableError(f"{op}: no backend can run this input:\n{lines}")


def auto_order(device: torch.device, cpu: Sequence[str], cuda: Sequence[str]) -> list[str]:
    """Preference for a device; the reference always comes last."""
    order = list(cuda if device.type == "cuda" else cpu)
    if "reference" not in order:
        order.append("reference")
    return order


def as_zyx(spatial: Sequence[int]) -> tuple[int, ...]:
    """A 2D ``(y, x)`` size or stride as ``(1, y, x)`` for kernels that take ``(z, y, x)``; 3D passes through."""
    return (1,) * (3 - len(spatial)) + tuple(int(v) for v in spatial)


def view_args(t: torch.Tensor) -> tuple[int, list[int], list[int], int]:
    """(pointer, shape, strides in elements, dtype code) as the C++/CUDA kernels take them."""
    if t.dtype not in DTYPE_CODES:
        raise ValueError(f"dtype {t.dtype} is not supported by fastpanc kernels")
    return t.data_ptr(), list(t.shape), list(t.stride()), DTYPE_CODES[t.dtype]


def cuda_stream(t: torch.Tensor) -> int:
    """The raw handle of the current CUDA stream of ``t``'s device."""
    return int(torch.cuda.current_stream(t.device).cuda_stream)
