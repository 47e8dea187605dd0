"""``fastpanc convert``: the challenge layout (or an nnU-Net raw dataset plus subtypes) -> nnU-Net v2 raw dataset.

Challenge layout::

    SRC/train/subtype{0,1,2}/quiz_K_NNN.nii.gz        (mask)  + quiz_K_NNN_0000.nii.gz (image)
    SRC/validation/subtype{0,1,2}/...                  likewise
    SRC/test/quiz_NNN_0000.nii.gz                      (images only)

Output (``DST``): ``imagesTr/``, ``labelsTr/`` (uint8, rounded), ``imagesTs/``, ``dataset.json``,
``subtype_mapping.json`` and ``splits_final.json`` (``[{"train": [...], "val": [...]}]``).

Every case is checked (image and mask exist and read, same geometry, labels within {0, 1, 2}, a lesion
present). The dataset is assembled in a temporary folder beside ``DST`` and moved into place only when
it is complete, so a failed conversion leaves nothing behind.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import tempfile
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from tqdm import tqdm

from fastpanc.data.convert_sources import CaseSource, challenge_cases, is_challenge_layout, nnunet_cases
from fastpanc.data.io import read_case, read_labels, write_image

log = logging.getLogger(__name__)

LABELS = {"background": 0, "pancreas": 1, "lesion": 2}


@dataclass
class ConvertReport:
    """What a conversion did: the cases written per split and the problems of the cases left out."""

    dst: Path
    train: list[str] = field(default_factory=list)
    val: list[str] = field(default_factory=list)
    test: list[str] = field(default_factory=list)
    problems: dict[str, list[str]] = field(default_factory=dict)


def check_case(case: CaseSource) -> list[str]:
    """The problems of one case (empty when it is fine): missing/unreadable files, geometry, labels, lesion."""
    problems: list[str] = list(case.problems)
    missing = [p.name for p in [*case.images, *([case.label] if case.label else [])] if not p.is_file()]
    if missing:
        return [*problems, f"missing file(s): {', '.join(missing)}"]
    try:
        image, geometry = read_case(case.images)
    except ValueError as exc:
        return [*problems, str(exc)]
    if case.label is None:
        return problems
    try:
        labels, label_geometry = read_labels(case.label, allowed=tuple(LABELS.values()))
    except ValueError as exc:
        return [*problems, str(exc)]
    if labels.shape != image.shape[1:]:
        problems.append(
            f"image {case.images[0].name} has (Z, Y, X) {image.shape[1:]}, "
            f"mask {case.label.name} has {labels.shape}"
        )
    else:
        why = geometry.mismatch(label_geometry)
        if why is not None:
            problems.append(f"image {case.images[0].name} and mask {case.label.name} differ in {why}")
    if not (labels == LABELS["lesion"]).any():
        problems.append(
            f"mask {case.label.name} contains no lesion (label 2); every labeled case must have one"
        )
    return problems


def _copy_atomic(src: Path, dst: Path) -> None:
    tmp = dst.with_name(f".{dst.name}.tmp")
    shutil.copyfile(src, tmp)
    os.replace(tmp, dst)


def _write_case(case: CaseSource, root: Path, ending: str) -> None:
    images_dir = root / ("imagesTs" if case.split == "test" else "imagesTr")
    for c, path in enumerate(case.images):
        _copy_atomic(path, images_dir / f"{case.name}_{c:04d}{ending}")
    if case.label is not None:
        labels, geometry = read_labels(case.label, allowed=tuple(LABELS.values()))
        write_image(root / "labelsTr" / f"{case.name}{ending}", labels, geometry)


def _problem_text(problems: dict[str, list[str]], limit: int = 10) -> str:
    items = sorted(problems.items())
    text = "; ".join(f"{case}: {' | '.join(p)}" for case, p in items[:limit])
    return text + (
        f"; ... and {len(items) - limit} more case(s) (see the warnings above)" if len(items) > limit else ""
    )


def convert(
    src: str | os.PathLike[str],
    dst: str | os.PathLike[str],
    subtypes: str | os.PathLike[str] | None = None,
    allow_broken: bool = False,
) -> ConvertReport:
    """Convert ``src`` into the nnU-Net v2 raw dataset ``dst`` (which must not exist or be empty).

    Args:
        src: challenge layout, or an nnU-Net raw dataset (``imagesTr/``, ``labelsTr/``, ``dataset.json``).
        dst: the output folder.
        subtypes: case -> subtype mapping (JSON object or CSV ``case,subtype``) for an nnU-Net raw ``src``;
            defaults to ``src/subtype_mapping.json``.
        allow_broken: leave cases that fail the checks out instead of refusing to write.

    Returns:
        A :class:`ConvertReport`.

    Raises:
        FileNotFoundError: ``src`` is missing; ValueError: unknown layout, ``dst`` not empty, or (without
        ``allow_broken``) cases that fail the checks, each named with its problems.
    """
    src, dst = Path(src), Path(dst)
    if not src.is_dir():
        raise FileNotFoundError(f"{src}: source folder not found")
    if dst.exists() and (not dst.is_dir() or any(dst.iterdir())):
        raise ValueError(f"{dst}: output exists and is not an empty folder; choose a new folder or delete it")
    if is_challenge_layout(src):
        if subtypes is not None:
            raise ValueError(
                f"--subtypes is only for an nnU-Net raw dataset; {src} is in the challenge layout, "
                "whose subtypes come from its subtype{0,1,2} folders"
            )
        cases, ending, channels = challenge_cases(src)
    elif (src / "imagesTr").is_dir():
        cases, ending, channels = nnunet_cases(src, subtypes)
    else:
        raise ValueError(
            f"{src}: neither the challenge layout (train/subtype{{0,1,2}}/, validation/, test/) nor "
            "an nnU-Net raw dataset (imagesTr/, labelsTr/, dataset.json)"
        )
    report = ConvertReport(dst)
    seen = Counter(c.name for c in cases)
    for name in sorted(n for n, count in seen.items() if count > 1):
        report.problems[name] = [f"the case appears {seen[name]} times in the source"]
    for case in tqdm(cases, desc="checking", unit="case", disable=None):
        problems = check_case(case)
        if problems:
            report.problems.setdefault(case.name, []).extend(problems)
    good = [c for c in cases if c.name not in report.problems]
    if report.problems:
        for name, problems in sorted(report.problems.items()):
            for p in problems:
                log.warning("case %s: %s", name, p)
        if not allow_broken:
            raise ValueError(
                f"{len(report.problems)} of {len(cases)} case(s) failed the checks, nothing written: "
                f"{_problem_text(report.problems)}. Fix them, or pass --allow-broken to leave them out"
            )
    if not [c for c in good if c.split != "test"]:
        raise ValueError(f"{src}: no labeled case passed the checks; nothing to write")

    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{dst.name}.", suffix=".tmp", dir=dst.parent))
    try:
        for sub in ("imagesTr", "labelsTr", "imagesTs"):
            (tmp / sub).mkdir()
        for case in tqdm(good, desc="writing", unit="case", disable=None):
            _write_case(case, tmp, ending)
            {"train": report.train, "val": report.val, "test": report.test}[case.split].append(case.name)
        _write_metadata(tmp, dst.name, good, report, ending, channels, src)
        if dst.exists():
            dst.rmdir()
        os.replace(tmp, dst)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    log.info(
        "wrote %s: %d train, %d validation, %d test case(s)%s",
        dst,
        len(report.train),
        len(report.val),
        len(report.test),
        f", {len(report.problems)} left out" if report.problems else "",
    )
    return report


def _write_metadata(
    root: Path,
    name: str,
    good: list[CaseSource],
    report: ConvertReport,
    ending: str,
    channels: dict[str, str],
    src: Path,
) -> None:
    dataset_json = {
        "name": name,
        "description": f"converted by fastpanc convert from {src.name}",
        "channel_names": channels,
        "labels": LABELS,
        "numTraining": len(report.train) + len(report.val),
        "file_ending": ending,
    }
    mapping = {c.name: c.subtype for c in sorted(good, key=lambda c: c.name) if c.split != "test"}
    (root / "dataset.json").write_text(json.dumps(dataset_json, indent=2) + "\n")
    (root / "subtype_mapping.json").write_text(json.dumps(mapping, indent=2) + "\n")
    (root / "splits_final.json").write_text(
        json.dumps([{"train": sorted(report.train), "val": sorted(report.val)}], indent=2) + "\n"
    )
    if report.problems:
        (root / "conversion_problems.json").write_text(json.dumps(report.problems, indent=2) + "\n")


def convert_command(args: argparse.Namespace) -> int:
    """``fastpanc convert SRC DST [--subtypes FILE] [--allow-broken]``."""
    report = convert(args.src, args.dst, subtypes=args.subtypes, allow_broken=args.allow_broken)
    print(
        f"{report.dst}: {len(report.train)} train, {len(report.val)} validation, {len(report.test)} test case(s)"
    )
    if report.problems:
        print(
            f"left out {len(report.problems)} case(s) that failed the checks "
            f"(listed in {report.dst / 'conversion_problems.json'}): {', '.join(sorted(report.problems))}"
        )
    return 0
