"""benchmarks/compare_predict.py: how other images are named in the input folder all three tools read, and how
agreement with nnU-Net is counted and shown."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest

BENCH = Path(__file__).resolve().parents[2] / "benchmarks"


@pytest.fixture(scope="module")
def compare_predict():
    sys.path.insert(0, str(BENCH))  # the script imports _record from its folder
    try:
        spec = importlib.util.spec_from_file_location("_bench_compare_predict", BENCH / "compare_predict.py")
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
        yield mod
    finally:
        sys.path.remove(str(BENCH))


def test_input_name_adds_the_channel_suffix_nnunet_expects(compare_predict):
    assert compare_predict.input_name(Path("/d/quiz_0_324_0000.nii.gz")) == "quiz_0_324_0000.nii.gz"
    assert compare_predict.input_name(Path("/d/example_ct_sm.nii.gz")) == "example_ct_sm_0000.nii.gz"
    with pytest.raises(ValueError, match="expected a .nii.gz image"):
        compare_predict.input_name(Path("/d/scan.mha"))


def test_images_that_are_not_files_are_refused(compare_predict, tmp_path, capsys):
    with pytest.raises(SystemExit):
        compare_predict.main(["--images", str(tmp_path / "missing.nii.gz")])
    assert "is not a file" in capsys.readouterr().err


def test_agreement_counts_the_voxels_that_differ_and_the_table_shows_them(compare_predict, tmp_path):
    import SimpleITK as sitk

    ref, other = tmp_path / "nnunet", tmp_path / "exact"
    ref.mkdir()
    other.mkdir()
    a = np.zeros((10, 20, 30), np.uint8)
    a[2:6, 5:15, 5:25] = 1
    a[3:5, 8:12, 10:20] = 2
    b = a.copy()
    b[0, 0, :3] = 1  # three background voxels that became pancreas
    for d, arr in ((ref, a), (other, b)):
        sitk.WriteImage(sitk.GetImageFromArray(arr), str(d / "c1.nii.gz"))
        sitk.WriteImage(sitk.GetImageFromArray(a), str(d / "c2.nii.gz"))
    ag = compare_predict.agreement(ref, {"exact": other}, ["c1", "c2"])["exact"]
    assert ag["differ"] == 3 and ag["voxels"] == 2 * a.size
    assert ag["agree"] == pytest.approx(1 - 3 / (2 * a.size))
    assert ag["agree_min_case"] == pytest.approx(1 - 3 / a.size)
    n1 = int((a == 1).sum())
    assert ag["dice_1"] == pytest.approx(2 * 2 * n1 / (2 * 2 * n1 + 3)) and ag["dice_2"] == 1.0
    r = {
        "cases": ["c1", "c2"],
        "device": "cpu",
        "tta": False,
        "nnunet": {"seconds": 4.0, "peak_rss_gib": 1.0},
        "exact": {"seconds": 2.0, "peak_rss_gib": 1.0},
        "fast": {"seconds": 1.0, "peak_rss_gib": 1.0},
        "agreement": {"exact": ag},
    }
    row = next(
        line for line in compare_predict.markdown(r).splitlines() if line.startswith("| fastpanc exact")
    )
    # 1 - 3/12000 = 0.99975 shown to seven decimals, never rounded to 1, with the count beside it
    assert "| 2.00x |" in row and "0.9997500 / 0.9995000" in row and "| 3 of 12,000 |" in row
