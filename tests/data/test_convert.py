"""fastpanc convert: challenge layout and nnU-Net raw input, checks, broken cases, real raw pair."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

from fastpanc.cli import main
from fastpanc.data.convert import convert
from fastpanc.data.io import Geometry, read_image, write_image

GEO = Geometry((2.5, 0.8, 0.8), (-10.0, 20.0, 30.0), (1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0))


def make_case(
    folder: Path,
    name: str,
    lesion: bool = True,
    label_value: float = 1.0000152587890625,
    geometry: Geometry = GEO,
    mask_shape=(6, 8, 10),
) -> None:
    rng = np.random.default_rng(abs(hash(name)) % 2**32)
    image = rng.normal(40, 20, (6, 8, 10)).astype(np.float32)
    mask = np.zeros(mask_shape, np.float64)
    mask[1:5, 2:6, 2:8] = label_value
    if lesion:
        mask[2:4, 3:5, 3:5] = 2.0
    write_image(folder / f"{name}_0000.nii.gz", image, GEO)
    write_image(folder / f"{name}.nii.gz", mask, geometry)


def challenge(root: Path, n_per_subtype: int = 2) -> Path:
    for split, count in (("train", n_per_subtype), ("validation", 1)):
        for k in range(3):
            for i in range(count):
                make_case(root / split / f"subtype{k}", f"quiz_{k}_{split[0]}{i:02d}")
    for i in range(2):
        write_image(root / "test" / f"quiz_{i:03d}_0000.nii.gz", np.zeros((6, 8, 10), np.float32), GEO)
    return root


def test_challenge_layout_converts(tmp_path):
    src = challenge(tmp_path / "src")
    report = convert(src, tmp_path / "out")
    out = tmp_path / "out"
    dj = json.loads((out / "dataset.json").read_text())
    assert dj["channel_names"] == {"0": "CT"} and dj["file_ending"] == ".nii.gz"
    assert dj["labels"] == {"background": 0, "pancreas": 1, "lesion": 2} and dj["numTraining"] == 9
    mapping = json.loads((out / "subtype_mapping.json").read_text())
    assert mapping == {
        f"quiz_{k}_{s}{i:02d}": k for k in range(3) for s, n in (("t", 2), ("v", 1)) for i in range(n)
    }
    splits = json.loads((out / "splits_final.json").read_text())
    assert len(splits) == 1 and len(splits[0]["train"]) == 6 and len(splits[0]["val"]) == 3
    assert set(splits[0]["val"]) == {f"quiz_{k}_v00" for k in range(3)}
    labels, geo = read_image(out / "labelsTr" / "quiz_1_t00.nii.gz")
    assert labels.dtype == np.uint8 and set(np.unique(labels).tolist()) == {0, 1, 2}
    assert geo.mismatch(GEO) is None
    assert (out / "imagesTr" / "quiz_1_t00_0000.nii.gz").read_bytes() == (
        src / "train" / "subtype1" / "quiz_1_t00_0000.nii.gz"
    ).read_bytes()
    assert sorted(p.name for p in (out / "imagesTs").iterdir()) == [
        "quiz_000_0000.nii.gz",
        "quiz_001_0000.nii.gz",
    ]
    assert report.test == ["quiz_000", "quiz_001"] and not report.problems
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def broken_source(tmp_path: Path) -> Path:
    src = challenge(tmp_path / "src", n_per_subtype=1)
    make_case(src / "train" / "subtype0", "quiz_0_nolesion", lesion=False)
    make_case(src / "train" / "subtype1", "quiz_1_badlabel", label_value=3.0)
    make_case(
        src / "train" / "subtype2",
        "quiz_2_shifted",
        geometry=Geometry((2.5, 0.8, 0.8), (0, 0, 0), GEO.direction),
    )
    make_case(src / "train" / "subtype2", "quiz_2_shape", mask_shape=(6, 8, 11))
    make_case(src / "train" / "subtype1", "quiz_0_wrongfolder")
    make_case(src / "validation" / "subtype0", "quiz_0_noimage")
    (src / "validation" / "subtype0" / "quiz_0_noimage_0000.nii.gz").unlink()
    return src


EXPECTED_PROBLEMS = {
    "quiz_0_nolesion": "no lesion",
    "quiz_1_badlabel": "[3]",
    "quiz_2_shifted": "origin",
    "quiz_2_shape": "(6, 8, 11)",
    "quiz_0_wrongfolder": "subtype 0 but the file lies in subtype1/",
    "quiz_0_noimage": "missing file(s): quiz_0_noimage_0000.nii.gz",
}


def test_broken_cases_refused_and_nothing_written(tmp_path):
    src = broken_source(tmp_path)
    with pytest.raises(ValueError, match="6 of 14 case") as err:
        convert(src, tmp_path / "out")
    for case, what in EXPECTED_PROBLEMS.items():
        assert f"{case}: " in str(err.value) and what in str(err.value), case
    assert not (tmp_path / "out").exists()
    assert [p.name for p in tmp_path.iterdir()] == ["src"]


def test_allow_broken_leaves_bad_cases_out(tmp_path):
    report = convert(broken_source(tmp_path), tmp_path / "out", allow_broken=True)
    assert set(report.problems) == set(EXPECTED_PROBLEMS)
    mapping = json.loads((tmp_path / "out" / "subtype_mapping.json").read_text())
    assert len(mapping) == 6 and not set(mapping) & set(EXPECTED_PROBLEMS)
    assert len(list((tmp_path / "out" / "labelsTr").iterdir())) == 6
    assert set(json.loads((tmp_path / "out" / "conversion_problems.json").read_text())) == set(
        EXPECTED_PROBLEMS
    )


def test_nnunet_raw_input_with_subtypes(tmp_path):
    convert(challenge(tmp_path / "src"), tmp_path / "raw")
    (tmp_path / "raw" / "splits_final.json").unlink()
    mapping = json.loads((tmp_path / "raw" / "subtype_mapping.json").read_text())
    (tmp_path / "raw" / "subtype_mapping.json").unlink()
    csv_path = tmp_path / "subtypes.csv"
    csv_path.write_text("case,subtype\n" + "".join(f"{c},{s}\n" for c, s in mapping.items()))
    with pytest.raises(ValueError, match="--subtypes"):
        convert(tmp_path / "raw", tmp_path / "again")
    report = convert(tmp_path / "raw", tmp_path / "again", subtypes=csv_path)
    assert json.loads((tmp_path / "again" / "subtype_mapping.json").read_text()) == mapping
    splits = json.loads((tmp_path / "again" / "splits_final.json").read_text())[0]
    assert sorted(splits["train"] + splits["val"]) == sorted(mapping) and len(splits["val"]) == 3
    assert len(report.test) == 2
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({**mapping, next(iter(mapping)): 5}))
    with pytest.raises(ValueError, match=r"bad\.json: case .* has subtype 5"):
        convert(tmp_path / "raw", tmp_path / "third", subtypes=bad)


def test_cli_errors_and_success(tmp_path, capsys):
    src = challenge(tmp_path / "src", n_per_subtype=1)
    assert main(["convert", str(src), str(tmp_path / "out")]) == 0
    assert main(["convert", str(src), str(tmp_path / "out")]) == 2
    assert "not an empty folder" in capsys.readouterr().err
    assert main(["convert", str(tmp_path / "nope"), str(tmp_path / "o2")]) == 2
    os.makedirs(tmp_path / "weird" / "stuff")
    assert main(["convert", str(tmp_path / "weird"), str(tmp_path / "o3")]) == 2
    assert "neither the challenge layout" in capsys.readouterr().err


def test_real_raw_pair_converts(shared_data, tmp_path):
    folder = tmp_path / "src" / "train" / "subtype0"
    folder.mkdir(parents=True)
    pair = shared_data / "real" / "raw_pair"
    for name in ("quiz_0_324_0000.nii.gz", "quiz_0_324.nii.gz"):
        (folder / name).symlink_to(pair / name)
    convert(tmp_path / "src", tmp_path / "out")
    labels, geo = read_image(tmp_path / "out" / "labelsTr" / "quiz_0_324.nii.gz")
    image, igeo = read_image(pair / "quiz_0_324_0000.nii.gz")
    assert labels.dtype == np.uint8 and labels.shape == image.shape and geo == igeo
    assert set(np.unique(labels).tolist()) == {0, 1, 2}
    assert json.loads((tmp_path / "out" / "subtype_mapping.json").read_text()) == {"quiz_0_324": 0}


def test_duplicate_case_across_splits_is_a_problem(tmp_path):
    src = challenge(tmp_path / "src", n_per_subtype=1)
    make_case(src / "validation" / "subtype0", "quiz_0_t00")
    with pytest.raises(ValueError, match="quiz_0_t00: the case appears 2 times"):
        convert(src, tmp_path / "out")
