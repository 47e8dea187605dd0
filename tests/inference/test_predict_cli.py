"""End-to-end runs of ``fastpanc-predict`` on tiny synthetic cases with tiny random-init models."""

from __future__ import annotations

import csv
import os
import zipfile

import numpy as np
import pytest
import SimpleITK as sitk

from fastpanc.cli import EXIT_PARTIAL_FAILURE, predict_main

OBLIQUE = (0.9, -0.3, 0.3, 0.3, 0.95, 0.0, -0.3, 0.1, 0.95)


def _orthonormal(d):
    q, _ = np.linalg.qr(np.asarray(d, dtype=float).reshape(3, 3))
    return tuple(q.flatten())


def _run(*argv: str) -> int:
    return predict_main(["--device", "cpu", *map(str, argv)])


def test_geometry_preserved_exactly(tmp_path, nnunet_model, builders, capsys):
    direction = _orthonormal(OBLIQUE)
    src = builders.write_case(
        tmp_path / "in" / "obl_0000.nii.gz",
        builders.synthetic_ct((18, 34, 30), seed=4),
        spacing=(2.7, 0.83, 0.91),
        origin=(-12.5, 33.25, 101.0),
        direction=direction,
    )
    assert _run("-i", src, "-o", tmp_path / "out", "-m", nnunet_model, "--mode", "fast") == 0
    assert "no subtype output" in capsys.readouterr().out
    a, b = sitk.ReadImage(str(src)), sitk.ReadImage(str(tmp_path / "out" / "obl.nii.gz"))
    assert b.GetSize() == a.GetSize()
    assert b.GetSpacing() == a.GetSpacing()
    assert b.GetOrigin() == a.GetOrigin()
    # NIfTI stores the rotation as a float32 quaternion: an oblique direction round-trips to ~1e-8
    np.testing.assert_allclose(b.GetDirection(), a.GetDirection(), rtol=0, atol=1e-6)
    assert b.GetPixelID() == sitk.sitkUInt8
    assert set(np.unique(sitk.GetArrayFromImage(b))) <= {0, 1, 2}
    assert not (tmp_path / "out" / "subtype_results.csv").exists()


def test_multitask_csvs_and_zip(tmp_path, fastpanc_model, cases_dir):
    out = tmp_path / "out"
    assert (
        _run("-i", cases_dir, "-o", out, "-m", fastpanc_model, "--zip", "team_results.zip", "--profile") == 0
    )
    rows = list(csv.reader((out / "subtype_results.csv").open()))
    assert rows[0] == ["Names", "Subtype"]
    assert [r[0] for r in rows[1:]] == ["case_a.nii.gz", "case_b.nii.gz"]
    assert all(r[1] in {"0", "1", "2"} for r in rows[1:])
    probs = list(csv.DictReader((out / "subtype_probabilities.csv").open()))
    for row, res in zip(probs, rows[1:]):
        p = [float(row[f"p{k}"]) for k in range(3)]
        assert sum(p) == pytest.approx(1.0, abs=1e-4)
        assert int(np.argmax(p)) == int(res[1]) == int(row["Subtype"])
        assert row["Weighting"] in {"lesion_window", "lesion", "pancreas", "uniform"}
    with zipfile.ZipFile(out / "team_results.zip") as z:
        assert sorted(z.namelist()) == ["case_a.nii.gz", "case_b.nii.gz", "subtype_results.csv"]
        assert z.read("subtype_results.csv") == (out / "subtype_results.csv").read_bytes()


def test_continue_skips_finished_cases(tmp_path, nnunet_model, cases_dir, capsys):
    out = tmp_path / "out"
    assert _run("-i", cases_dir, "-o", out, "-m", nnunet_model, "--mode", "fast") == 0
    (out / "case_b.nii.gz").unlink()
    before = (out / "case_a.nii.gz").stat().st_mtime_ns
    capsys.readouterr()
    assert _run("-i", cases_dir, "-o", out, "-m", nnunet_model, "--mode", "fast", "--continue") == 0
    assert "predicted 1, skipped 1" in capsys.readouterr().out
    assert (out / "case_a.nii.gz").stat().st_mtime_ns == before
    assert (out / "case_b.nii.gz").is_file()


def test_parts_are_disjoint_and_complete(tmp_path, nnunet_model, builders, monkeypatch):
    d = tmp_path / "in"
    for i in range(3):
        builders.write_case(d / f"c{i}_0000.nii.gz", builders.synthetic_ct((10, 24, 24), seed=i))
    outs = []
    for part in range(2):
        out = tmp_path / f"out{part}"
        assert (
            _run("-i", d, "-o", out, "-m", nnunet_model, "--mode", "fast", "--num-parts", 2, "--part", part)
            == 0
        )
        outs.append({p.name for p in out.glob("*.nii.gz")})
    assert outs[0].isdisjoint(outs[1])
    assert outs[0] | outs[1] == {"c0.nii.gz", "c1.nii.gz", "c2.nii.gz"}
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "1")
    assert _run("-i", d, "-o", tmp_path / "tr", "-m", nnunet_model, "--mode", "fast") == 0
    assert {p.name for p in (tmp_path / "tr").glob("*.nii.gz")} == outs[1]
    assert _run("-i", d, "-o", tmp_path / "x", "-m", nnunet_model, "--num-parts", 2, "--part", 2) == 2


def test_bad_case_does_not_stop_the_batch(tmp_path, nnunet_model, cases_dir, capsys):
    (cases_dir / "broken_0000.nii.gz").write_bytes(b"this is not a NIfTI file")
    out = tmp_path / "out"
    assert _run("-i", cases_dir, "-o", out, "-m", nnunet_model, "--mode", "fast") == EXIT_PARTIAL_FAILURE
    err = capsys.readouterr().err
    lines = [ln for ln in err.splitlines() if "broken_0000.nii.gz" in ln and ln.startswith("  ")]
    assert len(lines) == 1, err
    assert {p.name for p in out.glob("*.nii.gz")} == {"case_a.nii.gz", "case_b.nii.gz"}


def test_failed_write_leaves_no_partial_file(tmp_path, nnunet_model, cases_dir, monkeypatch):
    import fastpanc.data.io as io

    real = sitk.WriteImage

    def write_half_then_fail(img, path, *args, **kwargs):
        with open(path, "wb") as f:
            f.write(b"\x00" * 100)  # a partial file, then the disk "fills up"
        raise RuntimeError("No space left on device")

    monkeypatch.setattr(io.sitk, "WriteImage", write_half_then_fail)
    out = tmp_path / "out"
    assert _run("-i", cases_dir, "-o", out, "-m", nnunet_model, "--mode", "fast") == EXIT_PARTIAL_FAILURE
    monkeypatch.setattr(io.sitk, "WriteImage", real)
    leftovers = [p.name for p in out.rglob("*") if p.is_file() and p.name != "predict_config.json"]
    assert leftovers == []


def test_user_errors_are_one_line(tmp_path, nnunet_model, capsys):
    assert _run("-i", tmp_path / "missing", "-o", tmp_path / "o", "-m", nnunet_model) == 2
    assert "does not exist" in capsys.readouterr().err
    assert _run("-i", tmp_path, "-o", tmp_path / "o", "-m", nnunet_model, "--folds", "7") == 2
    assert "fold(s) ['7'] not found" in capsys.readouterr().err
    os.makedirs(tmp_path / "empty_model")
    assert _run("-i", tmp_path, "-o", tmp_path / "o", "-m", tmp_path / "empty_model") == 2
    assert "plans.json not found" in capsys.readouterr().err


def test_torch_modules_flag(tmp_path, nnunet_model, cases_dir):
    """``--torch-modules`` turns the fused CPU passes off (recorded in predict_config.json); masks agree."""
    import json

    assert _run("-i", cases_dir, "-o", tmp_path / "fused", "-m", nnunet_model) == 0
    assert _run("-i", cases_dir, "-o", tmp_path / "plain", "-m", nnunet_model, "--torch-modules") == 0
    assert json.loads((tmp_path / "fused" / "predict_config.json").read_text())["fused_inference"] is True
    assert json.loads((tmp_path / "plain" / "predict_config.json").read_text())["fused_inference"] is False
    names = sorted(p.name for p in (tmp_path / "fused").glob("*.nii.gz"))
    assert names and names == sorted(p.name for p in (tmp_path / "plain").glob("*.nii.gz"))
    for n in names:
        a = sitk.GetArrayFromImage(sitk.ReadImage(str(tmp_path / "fused" / n)))
        b = sitk.GetArrayFromImage(sitk.ReadImage(str(tmp_path / "plain" / n)))
        assert (a == b).mean() >= 0.999
