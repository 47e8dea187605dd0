"""Shared fixtures. Tests run on the CPU; Triton kernels run under TRITON_INTERPRET=1 when no GPU is present."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def _gpu_present() -> bool:
    try:
        import torch

        return torch.cuda.is_available()
    except Exception:
        return False


# Triton reads TRITON_INTERPRET when a kernel is defined, so set it before fastpanc.kernels is imported.
if not _gpu_present():
    os.environ.setdefault("TRITON_INTERPRET", "1")


def shared_data_dir() -> Path | None:
    """``../shared/data`` next to the repository (or $FASTPANC_SHARED_DATA), None when absent."""
    env = os.environ.get("FASTPANC_SHARED_DATA")
    candidates = [Path(env)] if env else []
    candidates.append(REPO.parent / "shared" / "data")
    for c in candidates:
        if (c / "real").is_dir():
            return c
    return None


@pytest.fixture(scope="session")
def shared_data() -> Path:
    d = shared_data_dir()
    if d is None:
        pytest.skip(
            "real CT data not found: expected ../shared/data next to the repository "
            "(or set FASTPANC_SHARED_DATA)"
        )
    return d


@pytest.fixture(scope="session")
def cuda_ok() -> None:
    import torch

    from fastpanc.ops._backend import cuda_reason

    why = cuda_reason(torch.empty(1, device="cuda") if _gpu_present() else torch.empty(1))
    if why is not None:
        pytest.skip(f"CUDA kernels cannot run here: {why}")


def pytest_collection_modifyitems(config, items):
    gpu = _gpu_present()
    for item in items:
        if "cuda" in item.keywords and not gpu:
            item.add_marker(pytest.mark.skip(reason="no CUDA GPU on this machine"))
        if "nnunet" in item.keywords:
            try:
                import nnunetv2  # noqa: F401
            except ImportError:
                item.add_marker(pytest.mark.skip(reason="nnunetv2 is not installed (pip install '.[test]')"))
