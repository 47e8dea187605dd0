"""Atomic checkpoint files and the random-number-generator states a resume restores."""

from __future__ import annotations

import os
import pickle
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch


def atomic_save(obj: dict[str, Any], path: Path) -> None:
    """``torch.save`` to a temporary file in the same folder, then ``os.replace``: a reader (or a crash) never
    sees a half-written checkpoint."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        torch.save(obj, tmp)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def load_checkpoint(path: Path) -> dict[str, Any]:
    """Read a checkpoint with ``weights_only=True`` (plain data only)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} does not exist; train without --resume first")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        raise ValueError(
            f"refusing to load {path}: it needs arbitrary unpickling (it names Python objects that could run "
            "code), and fastpanc checkpoints hold plain data only; it was not written by fastpanc train: "
            f"{' '.join(str(exc).split())[:300]}"
        ) from exc
    except (RuntimeError, EOFError, OSError) as exc:
        raise ValueError(
            f"{path} cannot be read as a checkpoint (truncated, or not written by torch.save): {exc}"
        ) from exc


def rng_states() -> dict[str, Any]:
    """Python, numpy and torch (CPU and CUDA) global RNG states as plain data."""
    kind, keys, pos, has_gauss, cached = np.random.get_state()  # noqa: NPY002 (the global state is saved)
    out: dict[str, Any] = {
        "python": _to_lists(random.getstate()),
        "numpy": {
            "kind": str(kind),
            "keys": [int(k) for k in keys],
            "pos": int(pos),
            "has_gauss": int(has_gauss),
            "cached_gaussian": float(cached),
        },
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        out["cuda"] = torch.cuda.get_rng_state_all()
    return out


def set_rng_states(states: dict[str, Any]) -> None:
    """Restore what :func:`rng_states` captured."""
    version, internal, gauss = states["python"]
    random.setstate((version, tuple(internal), gauss))
    n = states["numpy"]
    np.random.set_state(  # noqa: NPY002
        (n["kind"], np.asarray(n["keys"], dtype=np.uint32), n["pos"], n["has_gauss"], n["cached_gaussian"])
    )
    torch.set_rng_state(states["torch"])
    if "cuda" in states and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])


def _to_lists(x: Any) -> Any:
    return [_to_lists(v) for v in x] if isinstance(x, tuple) else x


def to_plain(x: Any) -> Any:
    """numpy scalars/arrays and tuples -> python numbers and lists, recursively (for ``weights_only`` loads)."""
    if isinstance(x, dict):
        return {str(k): to_plain(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [to_plain(v) for v in x]
    if isinstance(x, np.ndarray):
        return x.tolist()
    if isinstance(x, np.generic):
        return x.item()
    return x
