"""Find the cases to predict: a folder of ``{CASE}_{XXXX}.{ext}`` files, a list of files, or a glob; shard them."""

from __future__ import annotations

import glob
import logging
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

EXTENSIONS = (".nii.gz", ".nii", ".mha", ".mhd", ".nrrd", ".nhdr")
log = logging.getLogger("fastpanc.inference")
_CHANNEL = re.compile(r"^(?P<case>.+)_(?P<channel>\d{4})$")


@dataclass(frozen=True)
class Case:
    """One case: its name, its channel files (sorted by channel) and the extension of its outputs."""

    name: str
    files: tuple[Path, ...]
    ext: str

    @property
    def output_name(self) -> str:
        return f"{self.name}{self.ext}"


def split_name(path: Path) -> tuple[str, str]:
    """``quiz_037_0000.nii.gz`` -> (``quiz_037_0000``, ``.nii.gz``); raises for unknown extensions."""
    name = path.name
    for ext in EXTENSIONS:
        if name.lower().endswith(ext):
            return name[: -len(ext)], ext
    raise ValueError(f"{path}: unsupported image extension; expected one of {', '.join(EXTENSIONS)}")


def _group(files: Sequence[Path]) -> list[Case]:
    groups: dict[str, list[tuple[int, Path, str]]] = {}
    for f in files:
        stem, ext = split_name(f)
        m = _CHANNEL.match(stem)
        case, channel = (m.group("case"), int(m.group("channel"))) if m else (stem, 0)
        groups.setdefault(case, []).append((channel, f, ext))
    cases = []
    for name, items in sorted(groups.items()):
        items.sort()
        channels = [c for c, _, _ in items]
        if channels != list(range(len(items))):
            raise ValueError(
                f"case {name!r}: channel files {[str(f) for _, f, _ in items]} do not number "
                "0000, 0001, ... without gaps; expected {CASE}_0000{ext}, {CASE}_0001{ext}, ..."
            )
        cases.append(Case(name, tuple(f for _, f, _ in items), items[0][2]))
    return cases


def find_cases(inputs: Sequence[str | Path], num_channels: int | None = None) -> list[Case]:
    """Cases from one folder, a list of files, or glob patterns (sorted by name).

    Raises:
        FileNotFoundError: a path or pattern matches nothing, or a folder holds no image.
        ValueError: a case has the wrong number of channels for the model.
    """
    if not inputs:
        raise ValueError("no input given; expected a folder, files or a glob pattern")
    files: list[Path] = []
    for item in map(str, inputs):
        p = Path(item)
        if p.is_dir():
            found = [f for f in sorted(p.iterdir()) if f.is_file() and f.name.lower().endswith(EXTENSIONS)]
            ignored = [f.name for f in sorted(p.iterdir()) if f.is_file() and f not in found]
            if ignored:
                log.warning(
                    "input folder %s: ignoring %d file(s) without an image ending (%s): %s",
                    p,
                    len(ignored),
                    ", ".join(EXTENSIONS),
                    ", ".join(ignored),
                )
            if not found:
                raise FileNotFoundError(f"input folder {p} holds no image ({', '.join(EXTENSIONS)})")
            files.extend(found)
        elif p.is_file():
            files.append(p)
        elif glob.has_magic(item):
            matched = sorted(Path(m) for m in glob.glob(item) if Path(m).is_file())
            if not matched:
                raise FileNotFoundError(f"input pattern {item!r} matches no file")
            files.extend(matched)
        else:
            raise FileNotFoundError(
                f"input {item} does not exist; expected a folder, a file or a glob pattern"
            )
    cases = _group(list(dict.fromkeys(files)))
    if num_channels is not None:
        for c in cases:
            check_channels(c, num_channels)
    return cases


def check_channels(case: Case, num_channels: int) -> None:
    """Raise ValueError when ``case`` does not have ``num_channels`` channel files."""
    if len(case.files) != num_channels:
        raise ValueError(
            f"case {case.name!r} has {len(case.files)} channel file(s) but the model expects "
            f"{num_channels}; name them {case.name}_0000{case.ext} ... "
            f"{case.name}_{num_channels - 1:04d}{case.ext}"
        )


def resolve_shard(num_parts: int, part: int) -> tuple[int, int]:
    """(num_parts, part): the explicit values, or ``torchrun``'s WORLD_SIZE/RANK when none were given."""
    if num_parts == 1 and part == 0 and int(os.environ.get("WORLD_SIZE", "1")) > 1:
        num_parts, part = int(os.environ["WORLD_SIZE"]), int(os.environ.get("RANK", "0"))
    if num_parts < 1 or not 0 <= part < num_parts:
        raise ValueError(
            f"--part must be in [0, --num-parts) and --num-parts >= 1, got part={part}, num_parts={num_parts}"
        )
    return num_parts, part


def shard(cases: Sequence[Case], num_parts: int, part: int) -> list[Case]:
    """Every ``num_parts``-th case starting at ``part`` (disjoint parts that together cover all cases)."""
    return list(cases[part::num_parts])
