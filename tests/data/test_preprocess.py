"""fastpanc preprocess: format, resumability, per-case errors, and equality with nnU-Net's DefaultPreprocessor."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

from fastpanc.cli import EXIT_PARTIAL_FAILURE, main
from fastpanc.data.class_locations import int_rows_json, sample_foreground_locations
from fastpanc.data.fingerprint import extract_fingerprint
from fastpanc.data.io import read_case, read_labels
from fastpanc.data.plan import plan_from_fingerprint
from fastpanc.data.preprocess_case import preprocess_case

sys.path.insert(0, str(Path(__file__).parent))
from raw_fixture import make_raw_dataset  # noqa: E402


@pytest.fixture(scope="module")
def raw(tmp_path_factory) -> Path:
    return make_raw_dataset(tmp_path_factory.mktemp("raw") / "Dataset996_Tiny", n=3)


@pytest.fixture(scope="module")
def plans(raw: Path) -> dict:
    import fastpanc.data.fingerprint as F

    old = F.FOREGROUND_SAMPLES_TOTAL
    F.FOREGROUND_SAMPLES_TOTAL = 3000
    try:
        fp = extract_fingerprint(raw, workers=1)
    finally:
        F.FOREGROUND_SAMPLES_TOTAL = old
    return json.loads(
        json.dumps(
            plan_from_fingerprint(fp, json.loads((raw / "dataset.json").read_text()), dataset_name=raw.name)
        )
    )


def _plans_file(plans: dict, tmp_path: Path) -> Path:
    p = tmp_path / "plans.json"
    p.write_text(json.dumps(plans))
    return p


def test_preprocess_writes_the_documented_format(raw: Path, plans: dict, tmp_path: Path):
    out = tmp_path / "pre"
    assert (
        main(
            ["preprocess", str(raw), "--plans", str(_plans_file(plans, tmp_path)), "-o", str(out), "-j", "1"]
        )
        == 0
    )
    for name in ("plans.json", "dataset.json", "subtype_mapping.json", "splits_final.json"):
        assert (out / name).is_file()
    cfg = plans["configurations"]["3d_fullres"]
    for i, case in enumerate(["case_000", "case_001", "case_002"]):
        data = np.load(out / f"{case}.npy", mmap_mode="r")
        seg = np.load(out / f"{case}_seg.npy", mmap_mode="r")
        props = json.loads((out / f"{case}.json").read_text())
        assert data.dtype == np.float32 and data.ndim == 4 and data.shape[0] == 1
        assert seg.dtype == np.int8 and seg.shape == (1, *data.shape[1:])
        assert props["subtype"] == i % 3 and props["case"] == case
        assert props["spacing_after_resampling"] == cfg["spacing"]
        assert props["shape_after_resampling"] == list(data.shape[1:])
        assert set(np.unique(seg)) <= {-1, 0, 1, 2} and (seg == -1).any() and (seg == 2).any()
        for label in ("1", "2"):
            locs = np.asarray(props["class_locations"][label])
            assert locs.shape[1] == 4 and len(locs) == min(10000, int((seg == int(label)).sum()))
            assert (seg[tuple(locs.T)] == int(label)).all()
        assert len(props["bbox_used_for_cropping"]) == 3 and len(props["direction"]) == 9


def test_rerun_skips_finished_cases_and_redoes_missing_ones(raw: Path, plans: dict, tmp_path: Path):
    out = tmp_path / "pre"
    args = ["preprocess", str(raw), "--plans", str(_plans_file(plans, tmp_path)), "-o", str(out), "-j", "1"]
    assert main(args) == 0
    stamp = (out / "case_001.npy").stat().st_mtime_ns
    (out / "case_002.json").unlink()
    assert main(args) == 0
    assert (out / "case_001.npy").stat().st_mtime_ns == stamp
    assert (out / "case_002.json").is_file()
    assert not list(out.glob(".*.tmp"))
    other = dict(plans, plans_name="other")
    with pytest.raises(ValueError, match="other plans"):
        from fastpanc.data.preprocess import preprocess_dataset

        preprocess_dataset(raw, other, out, workers=1)


@pytest.mark.parametrize("workers", [1, 2])
def test_bad_case_fails_alone(raw: Path, plans: dict, tmp_path: Path, capsys, workers: int):
    import shutil

    broken = tmp_path / "Dataset995_Broken"
    shutil.copytree(raw, broken)
    (broken / "imagesTr" / "case_001_0000.nii.gz").write_bytes(b"not an image")
    out = tmp_path / "pre"
    args = [
        "preprocess",
        str(broken),
        "--plans",
        str(_plans_file(plans, tmp_path)),
        "-o",
        str(out),
        "-j",
        str(workers),
    ]
    assert main(args) == EXIT_PARTIAL_FAILURE
    captured = capsys.readouterr()
    assert "case_001" in captured.err and "1 case(s) failed" in captured.out
    assert (out / "case_000.json").is_file() and (out / "case_002.json").is_file()
    assert not (out / "case_001.json").exists()


def test_inference_mode_gives_the_same_data(raw: Path, plans: dict):
    image, geometry = read_case([raw / "imagesTr" / "case_000_0000.nii.gz"])
    labels, _ = read_labels(raw / "labelsTr" / "case_000.nii.gz")
    cfg = plans["configurations"]["3d_fullres"]
    props_in = plans["foreground_intensity_properties_per_channel"]
    d1, s1, p1 = preprocess_case(image, geometry, cfg, props_in, labels)
    d2, s2, p2 = preprocess_case(image, geometry, cfg, props_in)
    assert s2 is None and "class_locations" not in p2
    assert np.array_equal(d1.numpy(), d2.numpy())
    assert p1["bbox_used_for_cropping"] == p2["bbox_used_for_cropping"]


@pytest.mark.nnunet
def test_class_locations_equal_nnunet():
    from nnunetv2.preprocessing.preprocessors.default_preprocessor import DefaultPreprocessor

    rng = np.random.default_rng(3)
    seg = rng.choice([-1, 0, 1, 2], size=(1, 30, 40, 50), p=[0.1, 0.5, 0.3, 0.1]).astype(np.int8)
    for s in (seg, np.where(seg == 1, 0, seg).astype(np.int8)):  # both labels; label 1 absent
        ours = sample_foreground_locations(s, [1, 2])
        ref = DefaultPreprocessor._sample_foreground_locations(s, [1, 2])
        for k in (1, 2):
            assert np.array_equal(ours[k].reshape(-1, 4), np.asarray(ref[k]).reshape(-1, 4))


def test_int_rows_json_round_trips():
    rng = np.random.default_rng(0)
    for shape in [(7, 4), (1, 4), (0, 4), (3, 1)]:
        rows = rng.integers(0, 1200, size=shape)
        if rows.size:
            rows[0, 0] = 0
        assert json.loads(int_rows_json(rows)) == rows.tolist()
    with pytest.raises(ValueError, match="non-negative"):
        int_rows_json(np.array([[1, -2]]))


@pytest.mark.nnunet
@pytest.mark.parametrize("case", ["case_000", "case_002"])
def test_equal_to_nnunet_default_preprocessor(raw: Path, plans: dict, case: str):
    from nnunetv2.preprocessing.preprocessors.default_preprocessor import DefaultPreprocessor
    from nnunetv2.utilities.plans_handling.plans_handler import PlansManager

    pm = PlansManager(plans)
    cm = pm.get_configuration("3d_fullres")
    dj = json.loads((raw / "dataset.json").read_text())
    img_file = raw / "imagesTr" / f"{case}_0000.nii.gz"
    seg_file = raw / "labelsTr" / f"{case}.nii.gz"
    ref_data, ref_seg, ref_props = DefaultPreprocessor(verbose=False).run_case(
        [str(img_file)], str(seg_file), pm, cm, dj
    )
    image, geometry = read_case([img_file])
    labels, _ = read_labels(seg_file)
    data, seg, props = preprocess_case(
        image,
        geometry,
        plans["configurations"]["3d_fullres"],
        plans["foreground_intensity_properties_per_channel"],
        labels,
    )
    assert data.shape == ref_data.shape
    np.testing.assert_allclose(data.numpy(), ref_data, rtol=1e-4, atol=1e-4)
    assert (seg.numpy() == ref_seg).mean() >= 0.999
    assert props["bbox_used_for_cropping"] == [
        [int(a), int(b)] for a, b in ref_props["bbox_used_for_cropping"]
    ]
    assert props["shape_after_cropping_and_before_resampling"] == list(
        ref_props["shape_after_cropping_and_before_resampling"]
    )
    if np.array_equal(seg.numpy(), ref_seg):
        for k in (1, 2):
            assert np.array_equal(props["class_locations"][k], ref_props["class_locations"][k])


@pytest.mark.nnunet
@pytest.mark.real_data
def test_real_raw_case_equals_nnunet(shared_data: Path):
    from nnunetv2.preprocessing.preprocessors.default_preprocessor import DefaultPreprocessor
    from nnunetv2.utilities.plans_handling.plans_handler import PlansManager

    plans = json.loads((shared_data / "real" / "plans" / "nnUNetResEncUNetMPlans.json").read_text())
    pm = PlansManager(plans)
    dj = {
        "channel_names": {"0": "CT"},
        "labels": {"background": 0, "pancreas": 1, "lesion": 2},
        "numTraining": 1,
        "file_ending": ".nii.gz",
    }
    img = shared_data / "real" / "raw_pair" / "quiz_0_324_0000.nii.gz"
    lab = shared_data / "real" / "raw_pair" / "quiz_0_324.nii.gz"
    ref_data, ref_seg, ref_props = DefaultPreprocessor(verbose=False).run_case(
        [str(img)], str(lab), pm, pm.get_configuration("3d_fullres"), dj
    )
    image, geometry = read_case([img])
    labels, _ = read_labels(lab)
    data, seg, props = preprocess_case(
        image,
        geometry,
        plans["configurations"]["3d_fullres"],
        plans["foreground_intensity_properties_per_channel"],
        labels,
    )
    np.testing.assert_allclose(data.numpy(), ref_data, rtol=0, atol=1e-5)
    assert np.array_equal(seg.numpy(), ref_seg)
    for k in (1, 2):
        assert np.array_equal(props["class_locations"][k], ref_props["class_locations"][k])


def test_read_ahead_keeps_order_budget_and_errors(raw: Path, plans: dict, tmp_path: Path, monkeypatch):
    """Cases come out in job order, a read error surfaces at its own case, and the budget bounds what is held."""
    import threading

    import fastpanc.data.preprocess as P
    from fastpanc.data.raw_dataset import load_dataset_json, training_cases

    cases = training_cases(raw, load_dataset_json(raw), require_labels=False)
    jobs = [P.PreprocessJob(c, tmp_path, {}, {}, (0, 1, 2), (0, 1, 2), None) for c in cases]
    broken = P.PreprocessJob(
        cases[0].__class__(cases[1].name, cases[1].images, None), tmp_path, {}, {}, (0, 1, 2), (0, 1, 2), None
    )
    jobs = [jobs[0], broken, jobs[2], jobs[0], jobs[2]]
    real_read = P.read_job
    lock, active, most = threading.Lock(), [0], [0]

    def counting_read(job):
        with lock:
            active[0] += 1
            most[0] = max(most[0], active[0])
        try:
            return real_read(job)
        finally:
            with lock:
                active[0] -= 1

    monkeypatch.setattr(P, "read_job", counting_read)
    sizes = [sum(a.nbytes for a in real_read(j)[::2]) for j in (jobs[0], jobs[2])]
    one_case, largest = min(sizes), max(sizes)
    with P.ReadAhead(jobs, threads=2, budget_bytes=one_case) as reader:
        with reader._cond:  # wait until the read-ahead has stopped at its budget
            assert reader._cond.wait_for(
                lambda: reader._running == 0 and reader._held >= one_case, timeout=30
            )
            held, started = reader._held, reader._next
        # the budget plus what the other reader thread was already reading when it filled; the rest waits
        assert one_case <= held <= one_case + largest
        assert started < len(jobs)
        image, _, labels = reader.take(0)
        np.testing.assert_array_equal(image, real_read(jobs[0])[0])
        with pytest.raises(FileNotFoundError, match="label file missing"):
            reader.take(1)
        for i in (2, 3, 4):
            assert reader.take(i)[0].shape == real_read(jobs[i])[0].shape
    assert most[0] <= 2
