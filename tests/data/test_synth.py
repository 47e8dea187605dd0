"""fastpanc synth: determinism, label sanity, spacing ranges, the layout `fastpanc convert` accepts, and
subtypes that are learnable from texture but not from lesion volume and mean HU alone."""

from __future__ import annotations

import json

import numpy as np
import pytest
from scipy import ndimage, stats

from fastpanc.cli import main
from fastpanc.data.convert import convert
from fastpanc.data.io import read_image, read_labels
from fastpanc.data.synth import (
    INPLANE_RANGE_MM,
    SLICE_RANGE_MM,
    _spacing,
    generate_case,
    load_stats,
    subtype_counts,
    write_cohort,
)

SMALL = 0.3  # size_scale of the quick tests: ~1/30 of the voxels


def test_same_seed_same_case_and_other_seed_differs():
    a = generate_case(1, 123, size_scale=SMALL)
    b = generate_case(1, 123, size_scale=SMALL)
    np.testing.assert_array_equal(a.image, b.image)
    np.testing.assert_array_equal(a.labels, b.labels)
    assert a.spacing == b.spacing and a.origin == b.origin
    c = generate_case(1, 124, size_scale=SMALL)
    assert a.image.shape != c.image.shape or not np.array_equal(a.image, c.image)


@pytest.mark.parametrize("subtype", [0, 1, 2])
def test_labels_and_lesion_inside_pancreas(subtype):
    for seed in range(4):
        case = generate_case(subtype, seed, size_scale=SMALL)
        assert case.image.dtype == np.float32 and case.labels.dtype == np.uint8
        assert case.image.shape == case.labels.shape and case.subtype == subtype
        assert set(np.unique(case.labels).tolist()) == {0, 1, 2}
        lesion = case.labels == 2
        touching = ndimage.binary_dilation(lesion, np.ones((3, 3, 3), bool)) & (case.labels == 1)
        assert touching.any(), "the lesion must lie in the pancreas"
        # the crop is the pancreas' bounding box plus a margin: no label touches the border
        for axis in range(3):
            profile = (case.labels > 0).any(axis=tuple(a for a in range(3) if a != axis))
            assert not profile[0] and not profile[-1]
        assert -1024 <= case.image.min() and case.image.max() <= 3071


def test_spacing_ranges_and_real_sized_crops():
    stats_json = load_stats()
    rng = np.random.default_rng(0)
    draws = np.array([_spacing(rng, stats_json, 1.0) for _ in range(500)])
    assert SLICE_RANGE_MM[0] <= draws[:, 0].min() and draws[:, 0].max() <= SLICE_RANGE_MM[1]
    assert INPLANE_RANGE_MM[0] <= draws[:, 1:].min() and draws[:, 1:].max() <= INPLANE_RANGE_MM[1]
    assert len(np.unique(draws[:, 0])) >= 5, "slice spacings should vary like the real ones"
    for seed in range(2):
        case = generate_case(seed, 1000 + seed)
        assert all(30 <= n <= 300 for n in case.image.shape), case.image.shape
        assert SLICE_RANGE_MM[0] <= case.spacing[0] <= SLICE_RANGE_MM[1]
        pancreas_ml = (case.labels > 0).sum() * np.prod(case.spacing) / 1000.0
        assert 20.0 < pancreas_ml < 250.0


def test_subtype_counts_follow_real_proportions():
    assert subtype_counts(252) == (62, 106, 84)
    assert subtype_counts(3) == (1, 1, 1)
    assert sum(subtype_counts(10)) == 10 and min(subtype_counts(10)) >= 1
    with pytest.raises(ValueError, match="at least 3"):
        subtype_counts(2)


def test_cohort_layout_is_converted_and_independent_of_workers(tmp_path):
    one = write_cohort(tmp_path / "one", 5, seed=7, test_cases=1, val_fraction=0.4, size_scale=SMALL)
    two = write_cohort(
        tmp_path / "two", 5, seed=7, test_cases=1, val_fraction=0.4, size_scale=SMALL, workers=2
    )
    assert one["cases"] == two["cases"]
    for name, info in one["cases"].items():
        if info["split"] == "test":
            rel = f"test/{name}_0000.nii.gz"
        else:
            rel = f"{info['split']}/subtype{info['subtype']}/{name}_0000.nii.gz"
        assert (tmp_path / "one" / rel).read_bytes() == (tmp_path / "two" / rel).read_bytes()
    assert json.loads((tmp_path / "one" / "cohort.json").read_text())["seed"] == 7
    report = convert(tmp_path / "one", tmp_path / "raw")
    assert not report.problems and len(report.test) == 1 and len(report.train) + len(report.val) == 5
    mapping = json.loads((tmp_path / "raw" / "subtype_mapping.json").read_text())
    assert mapping == {n: c["subtype"] for n, c in one["cases"].items() if c["split"] != "test"}
    assert sorted(mapping.values()) == [0, 1, 1, 2, 2]
    assert len(report.val) == 2  # one of each subtype with two cases; subtype 0 keeps its only case
    labels, geo = read_labels(tmp_path / "raw" / "labelsTr" / f"{report.train[0]}.nii.gz")
    image, igeo = read_image(tmp_path / "raw" / "imagesTr" / f"{report.train[0]}_0000.nii.gz")
    assert image.dtype == np.float32 and labels.shape == image.shape and geo.mismatch(igeo) is None


def test_cli_synth(tmp_path, capsys):
    out = tmp_path / "cohort"
    assert main(["synth", str(out), "--cases", "3", "--seed", "1", "--size-scale", str(SMALL)]) == 0
    assert "fastpanc convert" in capsys.readouterr().out
    assert main(["synth", str(out), "--cases", "3"]) == 2
    assert main(["synth", str(tmp_path / "x"), "--cases", "2"]) == 2
    assert "at least 3" in capsys.readouterr().err
    with pytest.raises(ValueError, match="subtype"):
        generate_case(3, 0)


def lesion_features(case) -> list[float]:
    """Lesion volume and mean HU (the 'trivial' pair), then pattern and boundary features, all measured on
    the case's image and labels: HU of the outer, second and deeper in-plane layers, contrast of the outer
    layer to the adjacent pancreas, spread and dark fraction of the in-plane smoothed interior, and the
    number of dark compartments."""
    lesion = case.labels == 2
    plane = np.zeros((3, 3, 3), bool)
    plane[1] = ndimage.generate_binary_structure(2, 1)
    second = ndimage.binary_erosion(lesion, plane)
    deep = ndimage.binary_erosion(second, plane)
    outer, second = lesion & ~second, second & ~deep
    second = second if second.sum() > 5 else lesion
    deep = deep if deep.sum() > 5 else second
    ring = ndimage.binary_dilation(lesion, plane, iterations=2) & (case.labels == 1)
    ring = ring if ring.sum() > 5 else ndimage.binary_dilation(lesion, plane, iterations=2) & ~lesion
    smooth = ndimage.uniform_filter(case.image, (1, 3, 3))
    mean = case.image[lesion].mean()
    inner = lesion & ~outer if (lesion & ~outer).sum() > 5 else lesion
    dark = inner & (smooth < mean - 25.0)
    volume_ml = lesion.sum() * np.prod(case.spacing) / 1000.0
    return [
        np.log(volume_ml),
        mean,
        case.image[outer].mean() - mean,
        case.image[second].mean() - mean,
        case.image[deep].mean() - mean,
        case.image[outer].mean() - case.image[ring].mean(),
        smooth[inner].std(),
        dark.sum() / inner.sum(),
        np.log1p(ndimage.label(dark)[1]),
    ]


def test_subtypes_learnable_but_not_from_volume_and_mean_hu():
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import f1_score
    from sklearn.model_selection import StratifiedKFold, cross_val_predict
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    n_per_subtype = 40
    rows, y = [], []
    for i in range(3 * n_per_subtype):
        case = generate_case(i % 3, 5000 + i, size_scale=0.4)  # the training grid, ~1.8 x 1.8 x 5 mm
        rows.append(lesion_features(case))
        y.append(i % 3)
    x, y = np.asarray(rows), np.asarray(y)
    folds = StratifiedKFold(5, shuffle=True, random_state=0)

    def macro_f1(columns: list[int]) -> float:
        model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000))
        return f1_score(y, cross_val_predict(model, x[:, columns], y, cv=folds), average="macro")

    trivial, full = macro_f1([0, 1]), macro_f1(list(range(x.shape[1])))
    assert trivial < 0.9, f"lesion volume and mean HU alone separate the subtypes too well: {trivial:.2f}"
    assert full >= 0.9, f"the lesion patterns should separate the subtypes: {trivial:.2f} -> {full:.2f}"
    # the outer layer is darker than the lesion's mean in subtype 0 (capsule), brighter in 1 and 2 (wall, rim)
    assert stats.kruskal(*(x[y == k, 2] for k in range(3))).pvalue < 1e-3


def test_generated_masks_match_the_real_statistics(tmp_path):
    """The statistics the derivation script measures on the real masks, measured on generated ones."""
    import importlib.util
    from pathlib import Path

    from fastpanc.data.io import write_image

    script = Path(__file__).resolve().parents[2] / "scripts" / "derive_synth_stats.py"
    spec = importlib.util.spec_from_file_location("derive_synth_stats", script)
    derive = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(derive)
    rows = []
    for i in range(36):
        case = generate_case(i % 3, 9000 + i, size_scale=0.6)
        rows.append(derive.mask_features(write_image(tmp_path / "m.nii.gz", case.labels, case.geometry)))
    real = load_stats()["all_masks"]

    def median(key: str) -> float:
        return float(np.median([r[key] for r in rows]))

    for key, rel in [
        ("pancreas_ml", 0.2),
        ("pancreas_length_mm", 0.12),
        ("pancreas_extent_x_mm", 0.15),
        ("pancreas_extent_y_mm", 0.15),
        ("pancreas_extent_z_mm", 0.15),
    ]:
        assert abs(median(key) / real[key]["q50"] - 1) < rel, (key, median(key), real[key]["q50"])
    assert 0.5 < median("lesion_ml") / real["lesion_ml"]["q50"] < 2.0, median("lesion_ml")
    assert abs(median("lesion_position") - real["lesion_position"]["q50"]) < 0.12, median("lesion_position")
    assert all(r["lesion_components"] <= 2 for r in rows)
