"""`fastpanc evaluate` end to end on tiny label maps written to disk."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from fastpanc.cli import main
from fastpanc.data.io import Geometry, write_image
from fastpanc.evaluation.evaluate import EvaluateConfig, Targets, evaluate_folders
from fastpanc.evaluation.files import read_subtypes

SPACING = (2.0, 0.8, 0.8)


def _labels(shift: int = 0, lesion: bool = True) -> np.ndarray:
    m = np.zeros((10, 16, 16), np.uint8)
    m[2:8, 3 + shift : 13 + shift, 3:13] = 1
    if lesion:
        m[4:6, 6 + shift : 9 + shift, 6:9] = 2
    return m


def _strict_json(path: Path) -> dict:
    def no_constants(name: str) -> None:
        raise AssertionError(f"{path} holds {name}, which is not valid JSON")

    return json.loads(path.read_text(), parse_constant=no_constants)


@pytest.fixture()
def dataset(tmp_path: Path) -> Path:
    geom = Geometry.identity(SPACING)
    rng = np.random.default_rng(0)
    for case in ("c1", "c2", "c3"):
        write_image(tmp_path / "gt" / f"{case}.nii.gz", _labels(), geom)
        write_image(
            tmp_path / "images" / f"{case}_0000.nii.gz",
            rng.normal(size=(10, 16, 16)).astype(np.float32),
            geom,
        )
    write_image(tmp_path / "pred" / "c1.nii.gz", _labels(), geom)  # perfect
    write_image(
        tmp_path / "pred" / "c2.nii.gz", _labels(shift=1, lesion=False), geom
    )  # shifted, lesion missed
    # c3 has no prediction
    (tmp_path / "gt_subtypes.json").write_text(json.dumps({"c1": 0, "c2": 1, "c3": 2}))
    (tmp_path / "subtype_results.csv").write_text("Names,Subtype\nc1.nii.gz,0\nc2.nii.gz,2\n")
    return tmp_path


def test_evaluate_command_outputs(dataset: Path, capsys):
    out = dataset / "eval"
    rc = main(
        [
            "evaluate",
            "--pred",
            str(dataset / "pred"),
            "--gt",
            str(dataset / "gt"),
            "-o",
            str(out),
            "--pred-subtypes",
            str(dataset / "subtype_results.csv"),
            "--gt-subtypes",
            str(dataset / "gt_subtypes.json"),
            "--images",
            str(dataset / "images"),
        ]
    )
    printed = capsys.readouterr().out
    assert rc == 3  # a reference case had no prediction
    assert "missing predictions: 1 (c3)" in printed and "overall: FAIL" in printed
    summary = _strict_json(out / "summary.json")
    assert summary["num_cases"] == 3 and summary["missing_predictions"] == ["c3"]
    cases = {r["case"]: r for r in summary["cases"]}
    assert cases["c1"]["whole_dice"] == 1.0 and cases["c1"]["lesion_hd95"] == 0.0
    assert cases["c2"]["lesion_dice"] == 0.0 and cases["c2"]["lesion_hd95"] is None
    assert cases["c3"]["whole_dice"] == 0.0 and cases["c3"]["missing_prediction"] is True
    # c2 is shifted by one 0.8 mm row: within the 2 mm tolerance
    assert 0 < cases["c2"]["whole_dice"] < 1 and cases["c2"]["whole_nsd"] == pytest.approx(1.0)
    assert summary["segmentation"]["whole"]["dice"]["mean"] == pytest.approx(
        np.mean([cases[c]["whole_dice"] for c in cases])
    )
    assert summary["segmentation"]["lesion"]["hd95"]["n"] == 1  # only c1 has a defined lesion HD95
    cls = summary["classification"]
    assert cls["confusion_matrix"] == [[1, 0, 0], [0, 0, 1], [0, 0, 0]] and cls["missing_predictions"] == [
        0,
        0,
        1,
    ]
    assert cls["macro_f1"] == pytest.approx((1 + 0 + 0) / 3)
    assert summary["targets"]["checks"]["macro_f1"]["passed"] is False
    with (out / "cases.csv").open() as fh:
        rows = list(csv.DictReader(fh))
    assert [r["case"] for r in rows] == ["c1", "c2", "c3"] and rows[1]["lesion_hd95"] == ""
    figures = summary["figures"]
    names = [figures["dice_boxplot"], figures["confusion_matrix"]] + [o["file"] for o in figures["overlays"]]
    assert {o["kind"]: o["case"] for o in figures["overlays"]} == {"best": "c1", "worst": "c3"}
    for name in names:
        assert (out / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_passing_run_and_targets(dataset: Path, capsys):
    for p in (dataset / "pred").iterdir():
        p.unlink()
    for case in ("c1", "c2", "c3"):
        (dataset / "pred" / f"{case}.nii.gz").write_bytes((dataset / "gt" / f"{case}.nii.gz").read_bytes())
    rc = main(
        ["evaluate", "--pred", str(dataset / "pred"), "--gt", str(dataset / "gt"), "-o", str(dataset / "e")]
    )
    printed = capsys.readouterr().out
    assert rc == 0 and "overall: PASS" in printed and "not evaluated" in printed
    s = evaluate_folders(
        dataset / "pred",
        dataset / "gt",
        dataset / "e2",
        config=EvaluateConfig(targets=Targets(whole_dice=1.0, lesion_dice=1.0)),
    )
    assert s["targets"]["passed"] is True and s["classification"] is None


def test_user_errors(dataset: Path, capsys):
    rc = main(
        ["evaluate", "--pred", str(dataset / "nope"), "--gt", str(dataset / "gt"), "-o", str(dataset / "e")]
    )
    assert rc == 2 and "prediction folder" in capsys.readouterr().err
    with pytest.raises(ValueError, match="both --pred-subtypes and --gt-subtypes"):
        evaluate_folders(
            dataset / "pred", dataset / "gt", dataset / "e", pred_subtypes=dataset / "subtype_results.csv"
        )
    write_image(dataset / "pred" / "c3.nii.gz", np.zeros((10, 16, 15), np.uint8), Geometry.identity(SPACING))
    with pytest.raises(ValueError, match="differs from the reference"):
        evaluate_folders(dataset / "pred", dataset / "gt", dataset / "e")
    (dataset / "pred" / "c3.nii.gz").unlink()
    (dataset / "bad.csv").write_text("Names,Subtype\nc1,-1\n")
    with pytest.raises(ValueError, match="subtypes must be 0..2"):
        evaluate_folders(
            dataset / "pred", dataset / "gt", dataset / "e", dataset / "bad.csv", dataset / "gt_subtypes.json"
        )
    with pytest.raises(ValueError, match="tolerance_mm"):
        EvaluateConfig(tolerance_mm=-1)


def test_read_subtypes_formats(tmp_path: Path):
    (tmp_path / "a.csv").write_text("case,subtype\nx_1,1.0\n")
    assert read_subtypes(tmp_path / "a.csv") == {"x_1": 1}
    (tmp_path / "b.csv").write_text("file,value\nx_1,1\n")
    with pytest.raises(ValueError, match="lacks a case column"):
        read_subtypes(tmp_path / "b.csv")
    (tmp_path / "c.json").write_text('{"x_1": "one"}')
    with pytest.raises(ValueError, match="expected an integer"):
        read_subtypes(tmp_path / "c.json")
    with pytest.raises(FileNotFoundError, match="subtype file"):
        read_subtypes(tmp_path / "missing.json")
