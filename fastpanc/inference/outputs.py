"""Output files of a prediction run, each written atomically (temporary file in the same folder, then
``os.replace``): masks, probabilities (``.npz``), per-case subtype records, the two subtype CSVs and the zip.

Per-case subtype records live in ``OUT/.fastpanc/subtypes/{CASE}.json`` so that several processes
(``--num-parts``, ``torchrun``) and resumed runs (``--continue``) build the same CSVs from all cases.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import os
import tempfile
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

SUBTYPE_CSV = "subtype_results.csv"
PROBABILITY_CSV = "subtype_probabilities.csv"
RECORD_DIR = Path(".fastpanc") / "subtypes"


@contextlib.contextmanager
def atomic_path(target: Path) -> Iterator[Path]:
    """A temporary path beside ``target`` (same suffix) that replaces ``target`` when the block succeeds."""
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(fd)
    os.chmod(tmp, 0o644)  # mkstemp creates 0600; outputs are ordinary readable files
    try:
        yield Path(tmp)
        os.replace(tmp, target)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def write_text_atomic(target: Path, text: str) -> None:
    with atomic_path(target) as tmp:
        tmp.write_text(text)


def write_probabilities(target: Path, probabilities: np.ndarray) -> None:
    """``probabilities`` ``(K, Z, Y, X)`` float32 as ``np.savez_compressed(probabilities=...)``."""
    with atomic_path(target) as tmp:
        with open(tmp, "wb") as f:
            np.savez_compressed(f, probabilities=probabilities.astype(np.float32, copy=False))


def record_path(out_dir: Path, case: str) -> Path:
    return out_dir / RECORD_DIR / f"{case}.json"


def write_subtype_record(out_dir: Path, case: str, file_name: str, probs: np.ndarray, weighting: str) -> None:
    rec = {
        "name": file_name,
        "subtype": int(np.argmax(probs)),
        "probabilities": [float(p) for p in probs],
        "weighting": weighting,
    }
    write_text_atomic(record_path(out_dir, case), json.dumps(rec) + "\n")


def read_subtype_records(out_dir: Path) -> list[dict[str, Any]]:
    folder = out_dir / RECORD_DIR
    if not folder.is_dir():
        return []
    return [json.loads(p.read_text()) for p in sorted(folder.glob("*.json"))]


def _csv(rows: list[list[Any]]) -> str:
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\n").writerows(rows)
    return buf.getvalue()


def write_subtype_csvs(out_dir: Path) -> int:
    """Rebuild ``subtype_results.csv`` (``Names,Subtype``) and ``subtype_probabilities.csv`` from every
    record in ``out_dir``; returns the number of rows."""
    records = sorted(read_subtype_records(out_dir), key=lambda r: r["name"])
    n = max((len(r["probabilities"]) for r in records), default=3)
    write_text_atomic(
        out_dir / SUBTYPE_CSV, _csv([["Names", "Subtype"]] + [[r["name"], r["subtype"]] for r in records])
    )
    header = ["Names"] + [f"p{k}" for k in range(n)] + ["Subtype", "Weighting"]
    rows = [
        [r["name"], *(f"{p:.6f}" for p in r["probabilities"]), r["subtype"], r["weighting"]] for r in records
    ]
    write_text_atomic(out_dir / PROBABILITY_CSV, _csv([header] + rows))
    return len(records)


def write_zip(target: Path, files: list[Path]) -> None:
    """Pack ``files`` at the root of the zip ``target`` (atomic)."""
    with atomic_path(target) as tmp:
        with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_STORED) as z:
            for f in files:
                z.write(f, arcname=f.name)
