"""Benchmarks compare fastpanc with nnU-Net v2 in the same run and print the ratio."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

# fastpanc's kernels and torch (hence nnU-Net) share one OpenMP runtime; both get passive waiting,
# as the fastpanc CLI sets it (see fastpanc/cli.py). Set before torch is imported.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

REPO = Path(__file__).resolve().parents[1]


def shared_data_dir() -> Path | None:
    env = os.environ.get("FASTPANC_SHARED_DATA")
    for c in ([Path(env)] if env else []) + [REPO.parent / "shared" / "data"]:
        if (c / "real").is_dir():
            return c
    return None


@pytest.fixture(scope="session")
def shared_data() -> Path:
    d = shared_data_dir()
    if d is None:
        pytest.skip("real CT data not found: expected ../shared/data next to the repository")
    return d
