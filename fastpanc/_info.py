"""What this installation of fastpanc was built with and can use right now."""

from __future__ import annotations

import importlib
import logging
from typing import Any

log = logging.getLogger(__name__)


def load_extension():
    """Import and return ``fastpanc._C``, or raise an ImportError that says how to build it."""
    try:
        return importlib.import_module("fastpanc._C")
    except ImportError as exc:  # pragma: no cover - exercised only on broken installs
        raise ImportError(
            "fastpanc's compiled extension fastpanc._C is missing or failed to load "
            f"({exc}). Build it with `pip install .` from the repository root "
            "(a C++17 compiler and CMake are needed; nvcc is optional)."
        ) from exc


def triton_version() -> str | None:
    try:
        import triton
    except Exception:  # triton is optional: absent on CPU-only torch builds
        return None
    return str(getattr(triton, "__version__", "unknown"))


def build_info() -> dict[str, Any]:
    """A JSON-able summary: versions, how ``fastpanc._C`` was built, and what is usable now."""
    import torch

    from fastpanc import __version__

    info: dict[str, Any] = {
        "version": __version__,
        "torch": torch.__version__,
        "python": __import__("platform").python_version(),
    }
    try:
        ext = load_extension()
    except ImportError as exc:
        info.update(
            extension=False,
            extension_error=str(exc),
            openmp=False,
            threads=1,
            cuda_compiled=False,
            cuda_archs=[],
            ops=[],
        )
    else:
        info.update(
            extension=True,
            openmp=bool(ext.openmp),
            threads=int(ext.max_threads()),
            cuda_compiled=bool(ext.cuda_compiled),
            cuda_archs=list(ext.cuda_archs),
            ops=list(ext.registered_ops),
        )
    gpu_seen = bool(torch.cuda.is_available())
    info["cuda_available"] = bool(info["cuda_compiled"] and gpu_seen)
    info["torch_cuda_available"] = gpu_seen
    if gpu_seen:
        info["gpu"] = torch.cuda.get_device_name(0)
    info["triton"] = triton_version()
    from fastpanc.ops._backend import slow_paths_taken

    info["slow_paths"] = slow_paths_taken()
    return info
