"""The training cases of an nnU-Net v2 raw dataset folder (``imagesTr/``, ``labelsTr/``, ``dataset.json``)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fastpanc.data.io import find_cases


@dataclass(frozen=True)
class RawCase:
    """One training case: its channel files in channel order and its label file (None for test images)."""

    name: str
    images: tuple[Path, ...]
    label: Path | None


def load_json_file(path: Path, what: str) -> Any:
    """Parse a JSON file; missing or broken files raise errors that name the file."""
    if not path.is_file():
        raise FileNotFoundError(f"{what} not found: {path}")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise ValueError(f"{what} {path} is not valid JSON ({exc}); regenerate it") from exc


def load_dataset_json(dataset: Path) -> dict[str, Any]:
    """``dataset.json`` of a raw dataset, checked for the keys fastpanc reads."""
    dj = load_json_file(Path(dataset) / "dataset.json", "dataset.json")
    missing = [k for k in ("file_ending", "labels") if k not in dj]
    if "channel_names" not in dj and "modality" not in dj:
        missing.append("channel_names")
    if missing:
        raise ValueError(
            f"{Path(dataset) / 'dataset.json'} lacks {missing}; expected nnU-Net v2's dataset.json "
            "(write it with `fastpanc convert`)"
        )
    return dj


def channel_names(dataset_json: dict[str, Any]) -> dict[str, str]:
    return dict(dataset_json.get("channel_names", dataset_json.get("modality", {})))


def label_values(dataset_json: dict[str, Any]) -> list[int]:
    """The integer label values of ``dataset.json`` (regions are not supported)."""
    values = []
    for name, v in dataset_json["labels"].items():
        if isinstance(v, (list, tuple)):
            raise ValueError(
                f"dataset.json label {name!r} is a region {v}; fastpanc supports plain integer labels"
            )
        values.append(int(v))
    return sorted(values)


def training_cases(
    dataset: Path, dataset_json: dict[str, Any] | None = None, require_labels: bool = True
) -> list[RawCase]:
    """The cases of ``imagesTr/`` sorted by name, each with ``labelsTr/{CASE}{file_ending}``.

    Args:
        require_labels: a missing label file raises (True) or gives ``label=None`` (False: the caller
            reports that case and goes on with the others).

    Raises:
        FileNotFoundError: no ``imagesTr/`` or (``require_labels``) a label file is missing (all are named).
        ValueError: no cases, or a case lacks channels.
    """
    dataset = Path(dataset)
    dj = dataset_json if dataset_json is not None else load_dataset_json(dataset)
    ending = dj["file_ending"]
    cases = find_cases(
        dataset / "imagesTr", ending, num_channels=len(channel_names(dj)) or None, strict=False
    )
    if not cases:
        raise ValueError(f"{dataset / 'imagesTr'}: no {{CASE}}_0000{ending} images found")
    out, missing = [], []
    for name, files in cases.items():
        label = dataset / "labelsTr" / f"{name}{ending}"
        if not label.is_file():
            missing.append(label.name)
        out.append(RawCase(name, tuple(files), label if label.is_file() or require_labels else None))
    if missing and require_labels:
        raise FileNotFoundError(
            f"{dataset / 'labelsTr'}: label files missing for {len(missing)} case(s): "
            f"{', '.join(missing[:10])}{' ...' if len(missing) > 10 else ''}"
        )
    return out
