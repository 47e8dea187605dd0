"""Dataset fingerprint: nnU-Net's schema and numbers."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

from fastpanc.data import fingerprint as F
from fastpanc.data.cropping import crop_to_nonzero

sys.path.insert(0, str(Path(__file__).parent))
from raw_fixture import make_raw_dataset  # noqa: E402


def test_crop_marks_outside_and_fills_enclosed_holes():
    data = np.zeros((1, 6, 7, 8), np.float32)
    data[0, 1:5, 2:6, 1:7] = 5.0
    data[0, 2, 3, 3] = 0.0  # enclosed: stays inside the mask
    data[0, 1, 2, 1] = 0.0  # corner of the box: outside
    seg = np.zeros((1, 6, 7, 8), np.uint8)
    seg[0, 1, 2, 2] = 1
    cropped, out, bbox = crop_to_nonzero(data, seg)
    assert bbox == [[1, 5], [2, 6], [1, 7]]
    assert cropped.shape == (1, 4, 4, 6) and out.dtype == np.int8
    assert out[0, 0, 0, 0] == -1 and out[0, 1, 1, 2] == 0 and out[0, 0, 0, 1] == 1
    assert (out == -1).sum() == 1
    _, no_seg, _ = crop_to_nonzero(data)
    assert (no_seg == -1).sum() == 1 and no_seg.shape == (1, 4, 4, 6)


def test_all_zero_image_keeps_full_extent():
    _, seg, bbox = crop_to_nonzero(np.zeros((1, 3, 4, 5), np.float32))
    assert bbox == [[0, 3], [0, 4], [0, 5]] and (seg == -1).all()


def test_fingerprint_schema(tmp_path: Path, monkeypatch):
    ds = make_raw_dataset(tmp_path / "Dataset001_Tiny", n=3)
    monkeypatch.setattr(F, "FOREGROUND_SAMPLES_TOTAL", 3000)
    fp = F.extract_fingerprint(ds, workers=1)
    assert set(fp) == {
        "spacings",
        "shapes_after_crop",
        "foreground_intensity_properties_per_channel",
        "median_relative_size_after_cropping",
    }
    assert fp["spacings"][0] == [3.0, 0.800000011920929, 0.800000011920929]  # NIfTI stores float32
    assert fp["shapes_after_crop"][0] == [8, 19, 23]
    s = fp["foreground_intensity_properties_per_channel"]["0"]
    assert s["min"] <= s["percentile_00_5"] <= s["median"] <= s["percentile_99_5"] <= s["max"]
    assert 0 < fp["median_relative_size_after_cropping"] < 1


def test_case_with_wrong_label_values_is_named(tmp_path: Path, monkeypatch):
    import SimpleITK as sitk

    monkeypatch.setattr(F, "FOREGROUND_SAMPLES_TOTAL", 3000)
    ds = make_raw_dataset(tmp_path / "Dataset001_Tiny", n=2)
    lab = ds / "labelsTr" / "case_001.nii.gz"
    img = sitk.ReadImage(str(lab))
    arr = sitk.GetArrayFromImage(img)
    arr[0, 0, 0] = 7
    out = sitk.GetImageFromArray(arr)
    out.CopyInformation(img)
    sitk.WriteImage(out, str(lab))
    with pytest.raises(ValueError, match="case_001"):
        F.extract_fingerprint(ds, workers=1)


@pytest.mark.nnunet
def test_fingerprint_equals_nnunet(tmp_path: Path, monkeypatch):
    from nnunetv2.experiment_planning.dataset_fingerprint import fingerprint_extractor as fe

    name = "Dataset997_FpCheck"
    ds = make_raw_dataset(tmp_path / "raw" / name, n=3)
    monkeypatch.setattr(fe, "nnUNet_raw", str(tmp_path / "raw"))
    monkeypatch.setattr(fe, "nnUNet_preprocessed", str(tmp_path / "pre"))
    ex = fe.DatasetFingerprintExtractor(name, num_processes=1)
    ex.num_foreground_voxels_for_intensitystats = 3000
    ex.run()
    ref = json.loads((tmp_path / "pre" / name / "dataset_fingerprint.json").read_text())
    monkeypatch.setattr(F, "FOREGROUND_SAMPLES_TOTAL", 3000)
    ours = json.loads(json.dumps(F.extract_fingerprint(ds, workers=1)))
    assert ours == ref


def test_plan_command_on_a_dataset(tmp_path: Path, monkeypatch):
    from fastpanc.cli import main

    ds = make_raw_dataset(tmp_path / "Dataset001_Tiny", n=3)
    monkeypatch.setattr(F, "FOREGROUND_SAMPLES_TOTAL", 3000)
    out = tmp_path / "plan" / "plans.json"
    assert main(["plan", str(ds), "-o", str(out), "-j", "1", "--gpu-memory-gb", "1"]) == 0
    plans = json.loads(out.read_text())
    fp = json.loads((out.parent / "dataset_fingerprint.json").read_text())
    assert plans["dataset_name"] == "Dataset001_Tiny" and len(fp["spacings"]) == 3
    assert (
        plans["foreground_intensity_properties_per_channel"]
        == fp["foreground_intensity_properties_per_channel"]
    )
    full = plans["configurations"]["3d_fullres"]
    assert full["normalization_schemes"] == ["CTNormalization"] and full["batch_size"] >= 2
