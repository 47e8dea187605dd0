"""Finding label files and reading subtype tables for an evaluation."""

from __future__ import annotations

import csv
import json
import logging
from pathlib import Path

from fastpanc.data.io import SUPPORTED_ENDINGS

log = logging.getLogger(__name__)

_NAME_COLUMNS = ("names", "name", "case", "case_id", "identifier")
_SUBTYPE_COLUMNS = ("subtype", "label", "class")


def case_id(name: str) -> str:
    """``quiz_0_041.nii.gz`` -> ``quiz_0_041`` (any supported ending, or none)."""
    base = Path(name).name
    for ending in SUPPORTED_ENDINGS:
        if base.lower().endswith(ending):
            return base[: -len(ending)]
    return base


def label_files(folder: str | Path, what: str) -> dict[str, Path]:
    """``{case: path}`` of the label maps in ``folder`` (one file per case, any supported ending)."""
    d = Path(folder)
    if not d.is_dir():
        raise FileNotFoundError(
            f"{what} folder {d} not found (expected a folder of {{CASE}}.nii.gz label maps)"
        )
    found: dict[str, Path] = {}
    for p in sorted(d.iterdir()):
        if (
            p.is_file()
            and any(p.name.lower().endswith(e) for e in SUPPORTED_ENDINGS)
            and not p.name.startswith(".")
        ):
            cid = case_id(p.name)
            if cid in found:
                raise ValueError(
                    f"{what} folder {d} holds two files of case {cid}: {found[cid].name} and {p.name}"
                )
            found[cid] = p
    return found


def _parse_subtype(value: object, source: Path, case: str) -> int:
    try:
        f = float(str(value).strip())
    except ValueError:
        raise ValueError(
            f"{source}: subtype of case {case} is {value!r}, expected an integer 0, 1 or 2"
        ) from None
    if not f.is_integer():
        raise ValueError(f"{source}: subtype of case {case} is {value!r}, expected an integer 0, 1 or 2")
    return int(f)


def read_subtypes(path: str | Path) -> dict[str, int]:
    """``{case: subtype}`` from a JSON object or a CSV with a name column (Names/case) and a Subtype column.

    Case names lose any image file ending, so ``quiz_037.nii.gz`` and ``quiz_037`` are one case.
    """
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(
            f"subtype file {p} not found (expected subtype_mapping.json or subtype_results.csv)"
        )
    if p.suffix.lower() == ".json":
        data = json.loads(p.read_text())
        if not isinstance(data, dict):
            raise ValueError(f"{p}: expected a JSON object {{case: subtype}}, got {type(data).__name__}")
        return {case_id(k): _parse_subtype(v, p, k) for k, v in data.items()}
    with p.open(newline="") as fh:
        reader = csv.DictReader(fh)
        header = {h.strip().lower(): h for h in (reader.fieldnames or [])}
        name_col = next((header[c] for c in _NAME_COLUMNS if c in header), None)
        sub_col = next((header[c] for c in _SUBTYPE_COLUMNS if c in header), None)
        if name_col is None or sub_col is None:
            raise ValueError(
                f"{p}: CSV header {reader.fieldnames} lacks a case column ({'/'.join(_NAME_COLUMNS)}) "
                f"or a subtype column ({'/'.join(_SUBTYPE_COLUMNS)}); expected e.g. 'Names,Subtype'"
            )
        out: dict[str, int] = {}
        for row in reader:
            out[case_id(row[name_col].strip())] = _parse_subtype(row[sub_col], p, row[name_col])
    return out


def image_file(images_dir: Path, case: str) -> Path | None:
    """The first channel ``{case}_0000.<ending>`` of a case in ``images_dir``, None when absent."""
    for ending in SUPPORTED_ENDINGS:
        p = images_dir / f"{case}_0000{ending}"
        if p.is_file():
            return p
    return None
