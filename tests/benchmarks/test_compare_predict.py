"""benchmarks/compare_predict.py: how other images are named in the input folder all three tools read."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

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
