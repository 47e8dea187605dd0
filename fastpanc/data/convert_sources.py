"""Find the cases of a conversion source: the challenge layout, or an nnU-Net raw dataset plus subtypes."""

from __future__ import annotations

import csv
import json
import logging
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fastpanc.data.io import SUPPORTED_ENDINGS, find_cases
from fastpanc.data.raw_dataset import channel_names, load_dataset_json

log = logging.getLogger(__name__)

SPLIT_DIRS = {"train": "train", "validation": "val"}
SUBTYPES = (0, 1, 2)
_CHANNEL_RE = re.compile(r"^(?P<case>.+)_(?P<channel>\d{4})$")
_QUIZ_RE = re.compile(r"^quiz_(?P<subtype>\d)_")


@dataclass(frozen=True)
class CaseSource:
    """One case to convert.

    Attributes:
        name: case identifier (``quiz_0_041``).
        images: channel files in channel order (they may not exist: the checks report it).
        label: mask file, None for test images.
        subtype: 0, 1 or 2; -1 for test images.
        split: ``train``, ``val`` or ``test``.
        problems: problems found while listing the source (the checks add the rest).
    """

    name: str
    images: tuple[Path, ...]
    label: Path | None
    subtype: int
    split: str
    problems: tuple[str, ...] = ()


def is_challenge_layout(src: Path) -> bool:
    return not (src / "imagesTr").is_dir() and ((src / "train").is_dir() or (src / "validation").is_dir())


def _ending_of(folder: Path) -> str:
    endings = {e for f in folder.rglob("*") if f.is_file() for e in SUPPORTED_ENDINGS if f.name.endswith(e)}
    if len(endings) != 1:
        raise ValueError(
            f"{folder}: expected images of one file ending ({', '.join(SUPPORTED_ENDINGS)}), "
            f"found {sorted(endings) or 'none'}"
        )
    return endings.pop()


def _subtype_folder(path: Path) -> int:
    m = re.fullmatch(r"subtype(\d)", path.name)
    if m is None or int(m[1]) not in SUBTYPES:
        raise ValueError(
            f"{path}: unexpected folder; the challenge layout has subtype0, subtype1 and subtype2 here"
        )
    return int(m[1])


def challenge_cases(src: Path) -> tuple[list[CaseSource], str, dict[str, str]]:
    """Cases of ``src/train``, ``src/validation`` (``subtype{0,1,2}/``) and ``src/test``.

    Returns:
        ``(cases, file_ending, channel_names)``.
    """
    ending = _ending_of(src)
    cases: list[CaseSource] = []
    for dirname, split in SPLIT_DIRS.items():
        split_dir = src / dirname
        if not split_dir.is_dir():
            log.warning("%s: no %s/ folder; the %s split is empty", src, dirname, split)
            continue
        for sub in sorted(p for p in split_dir.iterdir() if not p.name.startswith(".")):
            if not sub.is_dir():
                raise ValueError(
                    f"{sub}: unexpected file; {split_dir} should hold subtype0/, subtype1/, subtype2/"
                )
            cases.extend(_subtype_cases(sub, _subtype_folder(sub), split, ending))
    test_dir = src / "test"
    if test_dir.is_dir():
        for name, files in find_cases(test_dir, ending, num_channels=1, strict=False).items():
            cases.append(CaseSource(name, tuple(files), None, -1, "test"))
    return cases, ending, {"0": "CT"}


def _subtype_cases(folder: Path, subtype: int, split: str, ending: str) -> list[CaseSource]:
    images: dict[str, dict[int, Path]] = {}
    masks: dict[str, Path] = {}
    for f in sorted(folder.iterdir()):
        if f.name.startswith(".") or not f.is_file():
            continue
        if not f.name.endswith(ending):
            log.warning("%s: not a %s image; skipped", f, ending)
            continue
        stem = f.name[: -len(ending)]
        m = _CHANNEL_RE.match(stem)
        if m:
            images.setdefault(m["case"], {})[int(m["channel"])] = f
        else:
            masks[stem] = f
    out = []
    for name in sorted(set(images) | set(masks)):
        problems = []
        chans = images.get(name, {})
        if sorted(chans) not in ([], [0]):
            problems.append(f"expected one CT channel {name}_0000{ending}, found channels {sorted(chans)}")
        m = _QUIZ_RE.match(name)
        if m and int(m["subtype"]) != subtype:
            problems.append(f"the name says subtype {m['subtype']} but the file lies in {folder.name}/")
        image = chans.get(0, folder / f"{name}_0000{ending}")
        label = masks.get(name, folder / f"{name}{ending}")
        out.append(CaseSource(name, (image,), label, subtype, split, tuple(problems)))
    return out


def load_subtypes(path: Path) -> dict[str, int]:
    """A case -> subtype mapping from JSON (``{"case": 0}``) or CSV (``case,subtype`` rows, header optional)."""
    if not path.is_file():
        raise FileNotFoundError(f"{path}: subtype mapping not found")
    if path.suffix.lower() == ".json":
        try:
            raw = json.loads(path.read_text())
        except json.JSONDecodeError as exc:
            raise ValueError(f'{path}: not valid JSON ({exc}); expected {{"case": subtype}}') from exc
        if not isinstance(raw, dict):
            raise ValueError(f'{path}: expected a JSON object {{"case": subtype}}, got {type(raw).__name__}')
        items = list(raw.items())
    else:
        with open(path, newline="") as f:
            rows = [r for r in csv.reader(f) if r and any(c.strip() for c in r)]
        if rows and not rows[0][-1].strip().lstrip("-").isdigit():
            rows = rows[1:]  # header
        if any(len(r) < 2 for r in rows):
            raise ValueError(f"{path}: expected CSV rows 'case,subtype'")
        items = [(r[0].strip(), r[-1].strip()) for r in rows]
    mapping: dict[str, int] = {}
    for case, value in items:
        try:
            subtype = int(value)
        except (TypeError, ValueError):
            subtype = -1
        if subtype not in SUBTYPES or str(value).strip() not in {str(s) for s in SUBTYPES}:
            raise ValueError(f"{path}: case {case!r} has subtype {value!r}; expected one of {list(SUBTYPES)}")
        mapping[str(case).removesuffix("_0000")] = subtype
    return mapping


def nnunet_cases(src: Path, subtypes: str | Path | None) -> tuple[list[CaseSource], str, dict[str, str]]:
    """Cases of an nnU-Net raw dataset with subtypes from ``subtypes`` (or ``src/subtype_mapping.json``).

    The train/validation split comes from ``src/splits_final.json`` (fold 0) when present, otherwise a
    stratified 80/20 split by subtype with a fixed seed (logged).
    """
    dj = load_dataset_json(src)
    ending, channels = dj["file_ending"], channel_names(dj)
    mapping_path = Path(subtypes) if subtypes is not None else src / "subtype_mapping.json"
    if subtypes is None and not mapping_path.is_file():
        raise ValueError(f"{src}: an nnU-Net raw dataset needs subtypes: pass --subtypes FILE (JSON or CSV)")
    mapping = load_subtypes(mapping_path)
    images = find_cases(src / "imagesTr", ending, num_channels=len(channels) or None, strict=False)
    label_dir = src / "labelsTr"
    labels = {f.name[: -len(ending)] for f in label_dir.glob(f"*{ending}")} if label_dir.is_dir() else set()
    names = sorted(set(images) | labels)
    val = _validation_cases(src, names, mapping)
    cases = []
    for name in names:
        problems = [] if name in mapping else [f"no subtype for this case in {mapping_path}"]
        files = images.get(name, [src / "imagesTr" / f"{name}_{c:04d}{ending}" for c in range(len(channels))])
        cases.append(
            CaseSource(
                name,
                tuple(files),
                label_dir / f"{name}{ending}",
                mapping.get(name, -1),
                "val" if name in val else "train",
                tuple(problems),
            )
        )
    unused = sorted(set(mapping) - set(names))
    if unused:
        log.warning(
            "%s: %d case(s) of the mapping are not in the dataset: %s", mapping_path, len(unused), unused[:10]
        )
    if (src / "imagesTs").is_dir():
        for name, files in find_cases(
            src / "imagesTs", ending, num_channels=len(channels) or None, strict=False
        ).items():
            cases.append(CaseSource(name, tuple(files), None, -1, "test"))
    return cases, ending, channels


def _validation_cases(src: Path, names: list[str], mapping: dict[str, int]) -> set[str]:
    splits_path = src / "splits_final.json"
    if splits_path.is_file():
        splits = json.loads(splits_path.read_text())
        if not isinstance(splits, list) or not splits or "val" not in splits[0]:
            raise ValueError(f'{splits_path}: expected nnU-Net\'s [{{"train": [...], "val": [...]}}, ...]')
        return set(splits[0]["val"])
    log.warning("%s: no splits_final.json; using a stratified 80/20 train/validation split (seed 0)", src)
    rng = np.random.default_rng(0)
    val: set[str] = set()
    for subtype in SUBTYPES:
        group = sorted(n for n in names if mapping.get(n) == subtype)
        k = int(round(0.2 * len(group)))
        val.update(rng.permutation(group)[:k].tolist())
    return val
