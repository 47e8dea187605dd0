"""Hard inputs for the reader and the predictor: each bad file gives one line naming it and saying what to do,
the other cases of the batch still finish, and every written mask has exactly its input's grid."""

from __future__ import annotations

import gzip
import math
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from fastpanc.cli import EXIT_PARTIAL_FAILURE, main
from fastpanc.data.io import labels_from_array, read_case, read_image, read_labels

OBLIQUE = (  # a rotation of 30 degrees about z, then 20 degrees about x
    math.cos(math.pi / 6),
    -math.sin(math.pi / 6) * math.cos(math.pi / 9),
    math.sin(math.pi / 6) * math.sin(math.pi / 9),
    math.sin(math.pi / 6),
    math.cos(math.pi / 6) * math.cos(math.pi / 9),
    -math.cos(math.pi / 6) * math.sin(math.pi / 9),
    0.0,
    math.sin(math.pi / 9),
    math.cos(math.pi / 9),
)


def _predict(inputs: Path, out: Path, model: Path, *extra: str) -> int:
    return main(
        [
            "predict",
            "-i",
            str(inputs),
            "-o",
            str(out),
            "-m",
            str(model),
            "--device",
            "cpu",
            "--mode",
            "fast",
            *extra,
        ]
    )


def _corrupt_files(folder: Path, good: np.ndarray, write_case) -> dict[str, Path]:
    """One file per way of not being a readable 3D image; returns {case name: file}."""
    folder.mkdir(parents=True, exist_ok=True)
    full = write_case(folder / "full_0000.nii.gz", good)
    raw = full.read_bytes()
    files = {
        "garbage": folder / "garbage_0000.nii.gz",
        "truncated": folder / "truncated_0000.nii.gz",
        "truncated_payload": folder / "truncated_payload_0000.nii.gz",
        "empty": folder / "empty_0000.nii.gz",
        "textfile": folder / "textfile_0000.nii",
    }
    files["garbage"].write_bytes(np.random.default_rng(0).bytes(4000))
    files["truncated"].write_bytes(raw[: len(raw) // 2])  # a broken gzip stream
    # a valid gzip stream whose voxel data stop half way (ITK would zero-fill the rest)
    payload = gzip.decompress(raw)
    files["truncated_payload"].write_bytes(gzip.compress(payload[: 352 + (len(payload) - 352) // 2]))
    files["empty"].write_bytes(b"")
    files["textfile"].write_text("patient notes, not an image\n")
    full.unlink()
    return files


def test_unreadable_files_are_refused_naming_the_file(tmp_path: Path, inf) -> None:
    files = _corrupt_files(tmp_path, inf.synthetic_ct(), inf.write_case)
    for path in files.values():
        with pytest.raises(ValueError, match="cannot read the image") as err:
            read_image(path)
        assert str(path) in str(err.value)
    with pytest.raises(FileNotFoundError, match="not found"):
        read_image(tmp_path / "missing_0000.nii.gz")
    with pytest.raises(ValueError, match="unsupported image file ending"):
        read_image(files["garbage"].rename(tmp_path / "garbage_0000.nii.gz.bak"))


def test_2d_and_4d_images_are_refused(tmp_path: Path) -> None:
    sitk.WriteImage(sitk.GetImageFromArray(np.ones((8, 9), np.float32)), str(tmp_path / "flat.nii.gz"))
    frames = [sitk.GetImageFromArray(np.full((4, 5, 6), t, np.float32)) for t in range(2)]
    sitk.WriteImage(sitk.JoinSeries(frames), str(tmp_path / "series.nii.gz"))
    with pytest.raises(ValueError, match=r"expected a 3D image, got a 2D image") as err:
        read_image(tmp_path / "flat.nii.gz")
    assert "flat.nii.gz" in str(err.value)
    with pytest.raises(ValueError, match=r"got a 4D image.*split 4D series into one file per channel"):
        read_image(tmp_path / "series.nii.gz")
    rgb = sitk.GetImageFromArray(np.ones((4, 5, 6, 3), np.uint8), isVector=True)
    sitk.WriteImage(rgb, str(tmp_path / "rgb.mha"))
    with pytest.raises(ValueError, match="expected one scalar per voxel, got 3 components"):
        read_image(tmp_path / "rgb.mha")


def test_channels_with_different_geometry_name_both_files(tmp_path: Path, inf) -> None:
    img = inf.synthetic_ct((6, 8, 10))
    a = inf.write_case(tmp_path / "c_0000.nii.gz", img)
    b = inf.write_case(tmp_path / "c_0001.nii.gz", img, spacing=(2.5, 0.9, 1.6))
    c = inf.write_case(tmp_path / "c_0002.nii.gz", img, origin=(10.0, -20.0, 9.0))
    d = inf.write_case(tmp_path / "c_0003.nii.gz", inf.synthetic_ct((6, 8, 11)))
    for other, what in ((b, "spacing"), (c, "origin"), (d, "differ in shape")):
        with pytest.raises(ValueError, match=what) as err:
            read_case([a, other])
        assert str(a) in str(err.value) and str(other) in str(err.value)
        assert "resample them onto one grid" in str(err.value)


def test_float_labels_are_rounded_and_non_labels_refused(tmp_path: Path, inf) -> None:
    seg = np.zeros((4, 5, 6), np.float64)
    seg[1:3, 1:4, 2:5] = 1.0000152587890625  # how several challenge masks store the pancreas
    seg[2, 2, 3] = 2.0
    path = inf.write_case(tmp_path / "float_mask.nii.gz", seg)
    labels, _ = read_labels(path)
    assert labels.dtype == np.uint8
    np.testing.assert_array_equal(labels, np.rint(seg).astype(np.uint8))
    for bad, match in (
        (0.5, "not integers"),
        (3.0, r"label values \[3\] are outside"),
        (-1.0, r"label values \[-1\]"),
    ):
        wrong = seg.copy()
        wrong[0, 0, 0] = bad
        bad_path = inf.write_case(tmp_path / "bad_mask.nii.gz", wrong)
        with pytest.raises(ValueError, match=match) as err:
            read_labels(bad_path)
        assert str(bad_path) in str(err.value)
    with pytest.raises(ValueError, match="outside the allowed"):
        labels_from_array(np.full((2, 2, 2), 7, np.int16))
    with pytest.raises(ValueError, match="NaN or infinite"):  # ITK's NIfTI reader turns NaN into 0 itself
        labels_from_array(np.where(seg > 0, np.nan, seg), source="mask.mha")


def test_batch_with_bad_files_finishes_the_good_cases(
    tmp_path: Path, inf, tiny_model: Path, capsys, caplog
) -> None:
    inputs = tmp_path / "in"
    files = _corrupt_files(inputs, inf.synthetic_ct(), inf.write_case)
    inf.write_case(inputs / "good_0000.nii.gz", inf.synthetic_ct(seed=3))
    sitk.WriteImage(sitk.GetImageFromArray(np.ones((8, 9), np.float32)), str(inputs / "flat_0000.nii.gz"))
    (inputs / "README.txt").write_text("not an image")  # no image ending: skipped, with a warning
    (inputs / ".DS_Store").write_bytes(b"\0\1")
    two = inf.write_case(inputs / "twochan_0000.nii.gz", inf.synthetic_ct(seed=4))
    (inputs / "twochan_0001.nii.gz").write_bytes(two.read_bytes())
    out = tmp_path / "out"

    assert _predict(inputs, out, tiny_model) == EXIT_PARTIAL_FAILURE
    err = capsys.readouterr().err
    assert (out / "good.nii.gz").is_file()
    failed_lines = [ln for ln in err.splitlines() if ln.startswith("  ")]
    assert len(failed_lines) == len(files) + 2, err  # one line per bad case
    for name, path in files.items():
        line = next(ln for ln in failed_lines if ln.strip().startswith(f"{name} ("))
        assert str(path) in line and "cannot read the image" in line
    assert any("flat (" in ln and "expected a 3D image" in ln for ln in failed_lines)
    two_line = next(ln for ln in failed_lines if ln.strip().startswith("twochan ("))
    assert "2 channel file(s) but the model expects 1" in two_line
    skipped = [r.getMessage() for r in caplog.records if "without an image ending" in r.getMessage()]
    assert len(skipped) == 1 and "README.txt" in skipped[0] and ".DS_Store" in skipped[0]
    written = sorted(p.name for p in out.iterdir() if not p.name.startswith("."))
    assert written == [
        "good.nii.gz",
        "predict_config.json",
        "subtype_probabilities.csv",
        "subtype_results.csv",
    ]
    assert not [p for p in out.rglob("*") if p.name.endswith(".tmp")]


def test_non_finite_voxels_are_refused(tmp_path: Path, inf, tiny_model: Path, capsys) -> None:
    """NaN/Inf reach fastpanc from .mha/.nrrd (ITK's NIfTI reader itself maps them to 0) and are refused."""
    inputs = tmp_path / "in"
    img = inf.synthetic_ct()
    for name, value in (("nan", np.nan), ("posinf", np.inf), ("neginf", -np.inf)):
        bad = img.copy()
        bad[5, 10, 10] = value
        inf.write_case(inputs / f"{name}_0000.mha", bad)
    inf.write_case(inputs / "fine_0000.mha", img)
    assert _predict(inputs, tmp_path / "out", tiny_model) == EXIT_PARTIAL_FAILURE
    err = capsys.readouterr().err
    for name in ("nan", "posinf", "neginf"):
        line = next(ln for ln in err.splitlines() if ln.strip().startswith(f"{name} ("))
        assert f"{name}_0000.mha" in line and "1 NaN or infinite voxel" in line
    assert (tmp_path / "out" / "fine.mha").is_file()
    assert not (tmp_path / "out" / "nan.mha").exists()


def _geometry(path: Path) -> tuple:
    r = sitk.ImageFileReader()
    r.SetFileName(str(path))
    r.ReadImageInformation()
    return r.GetSize(), r.GetSpacing(), r.GetOrigin(), r.GetDirection()


CASES = {
    # name: (shape (Z, Y, X), spacing (z, y, x), direction, dtype, ending)
    "constant": ((10, 20, 18), (2.0, 1.0, 1.0), None, np.float32, ".nii.gz"),
    "tiny": ((3, 5, 4), (2.0, 1.0, 1.0), None, np.float32, ".nii.gz"),  # far smaller than the 16x32x32 patch
    "fine_spacing": ((24, 60, 60), (0.3, 0.3, 0.3), None, np.float32, ".nii.gz"),
    "coarse_spacing": ((4, 6, 5), (10.0, 10.0, 10.0), None, np.float32, ".nii.gz"),
    "anisotropic": ((5, 48, 48), (10.0, 0.3, 0.3), None, np.float32, ".nii.gz"),
    "oblique_mha": ((10, 24, 20), (2.5, 0.9, 0.8), OBLIQUE, np.float32, ".mha"),
    "oblique_nii": ((10, 24, 20), (2.5, 0.9, 0.8), OBLIQUE, np.float32, ".nii.gz"),
    "int16": ((10, 24, 20), (2.0, 1.0, 1.0), None, np.int16, ".nii.gz"),
    "uint8": ((10, 24, 20), (2.0, 1.0, 1.0), None, np.uint8, ".nii.gz"),
    "float64": ((10, 24, 20), (2.0, 1.0, 1.0), None, np.float64, ".nrrd"),
}


def test_edge_geometries_and_dtypes_keep_the_input_grid(
    tmp_path: Path, inf, tiny_model: Path, capsys
) -> None:
    inputs = tmp_path / "in"
    for name, (shape, spacing, direction, dtype, ending) in CASES.items():
        if name == "constant":
            img = np.full(shape, 100.0, np.float32)
        else:
            img = inf.synthetic_ct(shape, seed=len(name))
            if dtype == np.uint8:
                img = np.clip(img, 0, 255)
        kw = {"direction": direction} if direction is not None else {}
        inf.write_case(inputs / f"{name}_0000{ending}", img.astype(dtype), spacing=spacing, **kw)
    out = tmp_path / "out"
    assert _predict(inputs, out, tiny_model) == 0, capsys.readouterr().err
    for name, (shape, _spacing, _direction, _dtype, ending) in CASES.items():
        source, mask = inputs / f"{name}_0000{ending}", out / f"{name}{ending}"
        if name == "oblique_nii":
            # NIfTI stores an oblique direction as a float32 quaternion: re-deriving it moves it by ~1e-8
            (size_m, spacing_m, origin_m, dir_m), (size_s, spacing_s, origin_s, dir_s) = (
                _geometry(mask),
                _geometry(source),
            )
            assert (size_m, spacing_m, origin_m) == (size_s, spacing_s, origin_s)
            np.testing.assert_allclose(dir_m, dir_s, rtol=0, atol=1e-7)
        else:
            assert _geometry(mask) == _geometry(source), name  # bit for bit
        arr = sitk.GetArrayFromImage(sitk.ReadImage(str(mask)))
        assert arr.shape == shape and arr.dtype == np.uint8 and set(np.unique(arr)) <= {0, 1, 2}, name


def test_all_zero_image_is_refused(tmp_path: Path, inf, tiny_model: Path, capsys) -> None:
    inputs = tmp_path / "in"
    inf.write_case(inputs / "zeros_0000.nii.gz", np.zeros((6, 8, 8), np.float32))
    assert _predict(inputs, tmp_path / "out", tiny_model) == EXIT_PARTIAL_FAILURE
    err = capsys.readouterr().err
    assert "zeros (" in err and "zero everywhere" in err


NAMES = ["a b", "naïve_Ærø_肝", "..", "...", "a\\b", "..\\..\\evil", "-rf", "x.nii"]


def test_case_names_never_write_outside_the_output_folder(
    tmp_path: Path, inf, tiny_model: Path, capsys
) -> None:
    root = tmp_path / "root"
    inputs, out = root / "in", root / "deep" / "out"
    img = inf.synthetic_ct((6, 12, 12))
    for i, name in enumerate(NAMES):
        inf.write_case(inputs / f"{name}_0000.nii.gz", img + i)
    before = {p for p in tmp_path.rglob("*")}
    assert _predict(inputs, out, tiny_model) == 0, capsys.readouterr().err
    created = {p for p in tmp_path.rglob("*")} - before
    outside = [p for p in created if out not in p.parents and p not in (out, out.parent)]
    assert outside == []
    for name in NAMES:
        assert (out / f"{name}.nii.gz").is_file(), name
    csv_names = (out / "subtype_results.csv").read_text().splitlines()[1:]
    assert sorted(line.rsplit(",", 1)[0].strip('"') for line in csv_names) == sorted(
        f"{n}.nii.gz" for n in NAMES
    )
