"""Group the ``{CASE}_{XXXX}{ending}`` files of a folder (nnU-Net's channel naming) by case."""

from __future__ import annotations

import logging
import os
import re
from pathlib import Path

log = logging.getLogger(__name__)

_CHANNEL_RE = re.compile(r"^(?P<case>.+)_(?P<channel>\d{4})$")


def find_cases(
    folder: str | os.PathLike[str],
    file_ending: str = ".nii.gz",
    num_channels: int | None = None,
    strict: bool = True,
) -> dict[str, list[Path]]:
    """Group ``{CASE}_{XXXX}{file_ending}`` files of a folder by case.

    Args:
        folder: the folder (not searched recursively; sub-folders and hidden files are ignored).
        file_ending: ending of the image files, e.g. ``.nii.gz``.
        num_channels: expected channels per case; None: the largest count found, required of every case.
        strict: other files raise ValueError (True) or are skipped with a warning (False).

    Returns:
        ``{case: [channel 0 path, channel 1 path, ...]}`` sorted by case.

    Raises:
        FileNotFoundError: ``folder`` does not exist.
        ValueError: a case misses channels, or (strict) files that are not ``{CASE}_{XXXX}{file_ending}``.
    """
    root = Path(folder)
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: folder not found" + (" (it is a file)" if root.exists() else ""))
    if num_channels is not None and num_channels < 1:
        raise ValueError(f"find_cases: num_channels must be >= 1, got {num_channels}")
    channels: dict[str, dict[int, Path]] = {}
    others: list[str] = []
    for f in sorted(root.iterdir()):
        if f.name.startswith(".") or f.is_dir():
            continue
        if file_ending == ".mhd" and f.suffix in (".raw", ".zraw") and f.with_suffix(".mhd").is_file():
            continue  # the voxel data of an .mhd header
        m = _CHANNEL_RE.match(f.name[: -len(file_ending)]) if f.name.endswith(file_ending) else None
        if m is None:
            others.append(f.name)
            continue
        channels.setdefault(m["case"], {})[int(m["channel"])] = f
    if others:
        msg = (
            f"{root}: {len(others)} file(s) are not {{CASE}}_{{XXXX}}{file_ending} images: "
            f"{', '.join(others[:10])}{' ...' if len(others) > 10 else ''}"
        )
        if strict:
            raise ValueError(msg + "; move them elsewhere (or pass strict=False to skip them)")
        log.warning("%s; skipped", msg)
    expected = (
        num_channels if num_channels is not None else max((max(c) + 1 for c in channels.values()), default=0)
    )
    problems = []
    for case, chans in sorted(channels.items()):
        missing = [i for i in range(expected) if i not in chans]
        extra = sorted(i for i in chans if i >= expected)
        if missing or extra:
            problems.append(
                f"{case}: "
                + (f"missing channel(s) {[f'{i:04d}' for i in missing]}" if missing else "")
                + (f" unexpected channel(s) {[f'{i:04d}' for i in extra]}" if extra else "")
            )
    if problems:
        raise ValueError(
            f"{root}: expected {expected} channel(s) per case (_0000 to _{expected - 1:04d}"
            f"{file_ending}); " + "; ".join(problems)
        )
    return {case: [chans[i] for i in range(expected)] for case, chans in sorted(channels.items())}
