"""fastpanc.data.io: round trips, geometry, label rounding and the errors users see."""

from __future__ import annotations

import json

import numpy as np
import pytest
import SimpleITK as sitk
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fastpanc.data.io import (
    SUPPORTED_ENDINGS,
    Geometry,
    find_cases,
    read_case,
    read_image,
    read_labels,
    write_image,
)

DTYPES = [np.uint8, np.int8, np.int16, np.uint16, np.int32, np.float32, np.float64]
EXACT_ENDINGS = [".mha", ".mhd"]  # float64 geometry in the header
NIFTI_ENDINGS = [".nii.gz", ".nii"]  # float32 geometry (format limit)


def rotation(ax: float, ay: float, az: float, flip: bool = False) -> tuple[float, ...]:
    """A row-major 3x3 rotation (optionally with one axis mirrored) as 9 floats."""
    cx, sx, cy, sy, cz, sz = np.cos(ax), np.sin(ax), np.cos(ay), np.sin(ay), np.cos(az), np.sin(az)
    rx = np.array([[1, 0, 0], [0, cx, -sx], [0, sx, cx]])
    ry = np.array([[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]])
    rz = np.array([[cz, -sz, 0], [sz, cz, 0], [0, 0, 1]])
    r = rz @ ry @ rx
    if flip:
        r = r @ np.diag([1.0, 1.0, -1.0])
    return tuple(float(v) for v in r.ravel())


OBLIQUE = Geometry(
    (3.0000001, 0.6123456789, 0.8765432101), (-123.456789012, 45.6789, -1001.25), rotation(0.1, -0.2, 0.3)
)


def sample(dtype, shape=(5, 7, 9), seed=0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    if np.issubdtype(dtype, np.integer):
        info = np.iinfo(dtype)
        return rng.integers(max(info.min, -1000), min(info.max, 3000), size=shape, endpoint=True).astype(
            dtype
        )
    return (rng.standard_normal(shape) * 300).astype(dtype)


@pytest.mark.parametrize("ending", SUPPORTED_ENDINGS)
@pytest.mark.parametrize("dtype", DTYPES)
def test_round_trip_every_ending_and_dtype(tmp_path, ending, dtype):
    arr = sample(dtype)
    path = write_image(tmp_path / f"img{ending}", arr, OBLIQUE)
    back, geo = read_image(path)
    assert back.dtype == arr.dtype
    np.testing.assert_array_equal(back, arr)
    if ending in EXACT_ENDINGS:
        assert geo == OBLIQUE
    elif ending == ".nrrd":  # spacing * direction in one float64 matrix
        assert geo.origin == OBLIQUE.origin
        np.testing.assert_allclose(geo.spacing, OBLIQUE.spacing, rtol=1e-14)
        np.testing.assert_allclose(geo.direction, OBLIQUE.direction, rtol=0, atol=1e-14)
    else:
        f32 = lambda t: np.asarray(t, dtype=np.float32)  # noqa: E731
        np.testing.assert_array_equal(f32(geo.spacing), f32(OBLIQUE.spacing))
        np.testing.assert_array_equal(f32(geo.origin), f32(OBLIQUE.origin))
        np.testing.assert_allclose(geo.direction, OBLIQUE.direction, atol=1e-6)
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")], "temporary files left behind"


@pytest.mark.parametrize("ending", NIFTI_ENDINGS)
def test_nifti_geometry_read_from_nifti_survives_exactly(tmp_path, ending):
    axis_aligned = Geometry(
        (2.5, 0.7123, 0.7123), (-224.17059326171875, -224.1706, 1317.5), rotation(0, 0, np.pi)
    )
    _, first = read_image(write_image(tmp_path / f"a{ending}", np.zeros((3, 4, 5), np.int16), axis_aligned))
    _, second = read_image(write_image(tmp_path / f"b{ending}", np.zeros((3, 4, 5), np.int16), first))
    assert second == first


def test_spacing_order_is_zyx(tmp_path):
    geo = Geometry((3.0, 0.8, 0.6), (0.0, 0.0, 0.0), rotation(0, 0, 0))
    write_image(tmp_path / "a.nii.gz", np.zeros((2, 3, 4), np.uint8), geo)
    img = sitk.ReadImage(str(tmp_path / "a.nii.gz"))
    assert img.GetSize() == (4, 3, 2)
    np.testing.assert_allclose(img.GetSpacing(), (0.6, 0.8, 3.0), rtol=1e-6)


def test_geometry_dict_is_json_exact():
    d = json.loads(json.dumps(OBLIQUE.to_dict()))
    assert Geometry.from_dict(d) == OBLIQUE


@pytest.mark.parametrize(
    "kwargs",
    [
        dict(spacing=(1.0, 0.0, 1.0), origin=(0, 0, 0), direction=rotation(0, 0, 0)),
        dict(spacing=(1.0, 1.0), origin=(0, 0, 0), direction=rotation(0, 0, 0)),
        dict(spacing=(1.0, 1.0, 1.0), origin=(0, float("nan"), 0), direction=rotation(0, 0, 0)),
        dict(spacing=(1.0, 1.0, 1.0), origin=(0, 0, 0), direction=(1.0, 0.0, 0.0, 1.0)),
    ],
)
def test_geometry_rejects_bad_values(kwargs):
    with pytest.raises(ValueError, match="Geometry"):
        Geometry(**kwargs)


def test_geometry_from_dict_names_missing_keys():
    with pytest.raises(ValueError, match="origin"):
        Geometry.from_dict({"spacing": [1, 1, 1], "direction": list(rotation(0, 0, 0))})


def test_labels_float_quirk_rounded_to_uint8(tmp_path):
    mask = np.zeros((4, 5, 6), np.float64)
    mask[1:3, 1:4, 1:5] = 1.0000152587890625
    mask[2, 2, 2:4] = 2.0
    write_image(tmp_path / "m.nii.gz", mask, OBLIQUE)
    labels, geo = read_labels(tmp_path / "m.nii.gz")
    assert labels.dtype == np.uint8
    assert set(np.unique(labels).tolist()) == {0, 1, 2}
    assert (labels == 2).sum() == 2 and (labels == 1).sum() == 2 * 3 * 4 - 2


def test_labels_outside_allowed_name_file_and_values(tmp_path):
    mask = np.zeros((3, 3, 3), np.uint8)
    mask[0, 0, 0] = 3
    mask[1, 1, 1] = 7
    path = write_image(tmp_path / "bad.nii.gz", mask, Geometry.identity())
    with pytest.raises(ValueError, match=r"bad\.nii\.gz.*\[3, 7\]"):
        read_labels(path)
    assert read_labels(path, allowed=range(8))[0].max() == 7


def test_labels_non_integral_rejected(tmp_path):
    mask = np.zeros((3, 3, 3), np.float32)
    mask[0, 0, 0] = 1.5
    path = write_image(tmp_path / "half.nrrd", mask, Geometry.identity())
    with pytest.raises(ValueError, match=r"half\.nrrd.*not integers.*1\.5"):
        read_labels(path)


def test_labels_nan_rejected(tmp_path):
    mask = np.zeros((3, 3, 3), np.float32)
    mask[0, 0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        read_labels(write_image(tmp_path / "nan.mha", mask, Geometry.identity()))


def test_write_bool_as_uint8_and_refuse_float16(tmp_path):
    back, _ = read_image(write_image(tmp_path / "b.nii.gz", np.ones((2, 2, 2), bool), Geometry.identity()))
    assert back.dtype == np.uint8
    with pytest.raises(ValueError, match="float16"):
        write_image(tmp_path / "h.nii.gz", np.ones((2, 2, 2), np.float16), Geometry.identity())
    with pytest.raises(ValueError, match=r"\(Z, Y, X\)"):
        write_image(tmp_path / "2d.nii.gz", np.ones((2, 2), np.uint8), Geometry.identity())


def test_write_replaces_existing_file(tmp_path):
    path = tmp_path / "a.mhd"
    write_image(path, np.zeros((2, 3, 4), np.int16), Geometry.identity())
    write_image(path, np.full((2, 3, 4), 5, np.int16), Geometry.identity())
    assert (read_image(path)[0] == 5).all()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.mhd", "a.zraw"]


def test_read_case_stacks_channels(tmp_path):
    for c in range(2):
        write_image(tmp_path / f"case_{c:04d}.nii.gz", np.full((3, 4, 5), c, np.int16), OBLIQUE)
    arr, geo = read_case(find_cases(tmp_path)["case"])
    assert arr.shape == (2, 3, 4, 5) and (arr[1] == 1).all()
    assert geo.mismatch(OBLIQUE) is None


@pytest.mark.parametrize(
    "other, what",
    [
        (Geometry((3.1, 0.6123456789, 0.8765432101), OBLIQUE.origin, OBLIQUE.direction), "spacing"),
        (Geometry(OBLIQUE.spacing, (0.0, 0.0, 0.0), OBLIQUE.direction), "origin"),
        (Geometry(OBLIQUE.spacing, OBLIQUE.origin, rotation(0.2, -0.2, 0.3)), "direction"),
    ],
)
def test_read_case_mismatch_names_both_files(tmp_path, other, what):
    a = write_image(tmp_path / "c_0000.nii.gz", np.zeros((3, 4, 5), np.int16), OBLIQUE)
    b = write_image(tmp_path / "c_0001.nii.gz", np.zeros((3, 4, 5), np.int16), other)
    with pytest.raises(ValueError, match=rf"c_0000\.nii\.gz and .*c_0001\.nii\.gz: {what}"):
        read_case([a, b])


def test_read_case_shape_mismatch(tmp_path):
    a = write_image(tmp_path / "c_0000.nii.gz", np.zeros((3, 4, 5), np.int16), OBLIQUE)
    b = write_image(tmp_path / "c_0001.nii.gz", np.zeros((3, 4, 6), np.int16), OBLIQUE)
    with pytest.raises(ValueError, match=r"c_0000\.nii\.gz.*c_0001\.nii\.gz"):
        read_case([a, b])
    with pytest.raises(ValueError, match="at least one"):
        read_case([])


def test_2d_and_4d_rejected(tmp_path):
    sitk.WriteImage(sitk.GetImageFromArray(np.zeros((3, 4), np.float32)), str(tmp_path / "flat.nii.gz"))
    sitk.WriteImage(
        sitk.JoinSeries([sitk.GetImageFromArray(np.zeros((2, 3, 4), np.float32))] * 2),
        str(tmp_path / "series.nii.gz"),
    )
    sitk.WriteImage(
        sitk.GetImageFromArray(np.zeros((2, 3, 4, 3), np.float32), isVector=True), str(tmp_path / "rgb.mha")
    )
    with pytest.raises(ValueError, match=r"flat\.nii\.gz: expected a 3D image, got a 2D"):
        read_image(tmp_path / "flat.nii.gz")
    with pytest.raises(ValueError, match=r"series\.nii\.gz: expected a 3D image, got a 4D"):
        read_image(tmp_path / "series.nii.gz")
    with pytest.raises(ValueError, match=r"rgb\.mha: expected one scalar per voxel"):
        read_image(tmp_path / "rgb.mha")


@pytest.mark.parametrize("ending", [".nii.gz", ".nii", ".nrrd", ".mha"])
def test_truncated_file_rejected(tmp_path, ending):
    path = write_image(tmp_path / f"t{ending}", sample(np.float32, (20, 30, 40)), Geometry.identity())
    data = path.read_bytes()
    path.write_bytes(data[: len(data) * 2 // 3])
    with pytest.raises(ValueError, match=rf"t{ending.replace('.', '[.]')}: cannot read the image"):
        read_image(path)


def test_missing_unsupported_and_garbage_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.nii.gz"):
        read_image(tmp_path / "nope.nii.gz")
    (tmp_path / "a.png").write_bytes(b"\x89PNG")
    with pytest.raises(ValueError, match=r"a\.png: unsupported image file ending"):
        read_image(tmp_path / "a.png")
    (tmp_path / "junk.nii.gz").write_bytes(b"not an image at all")
    with pytest.raises(ValueError, match=r"junk\.nii\.gz: cannot read"):
        read_image(tmp_path / "junk.nii.gz")


def test_find_cases_groups_and_orders_channels(tmp_path):
    for case in ("b", "a_1"):
        for c in (1, 0):
            write_image(
                tmp_path / f"{case}_{c:04d}.nii.gz", np.zeros((2, 2, 2), np.uint8), Geometry.identity()
            )
    (tmp_path / "sub").mkdir()
    found = find_cases(tmp_path)
    assert list(found) == ["a_1", "b"]
    assert [p.name for p in found["a_1"]] == ["a_1_0000.nii.gz", "a_1_0001.nii.gz"]
    with pytest.raises(ValueError, match=r"expected 3 channel\(s\).*missing channel\(s\) \['0002'\]"):
        find_cases(tmp_path, num_channels=3)


def test_find_cases_missing_channel_and_strays(tmp_path):
    g = Geometry.identity()
    write_image(tmp_path / "x_0000.nii.gz", np.zeros((2, 2, 2), np.uint8), g)
    write_image(tmp_path / "x_0001.nii.gz", np.zeros((2, 2, 2), np.uint8), g)
    write_image(tmp_path / "y_0001.nii.gz", np.zeros((2, 2, 2), np.uint8), g)
    with pytest.raises(ValueError, match=r"y: missing channel\(s\) \['0000'\]"):
        find_cases(tmp_path)
    (tmp_path / "y_0001.nii.gz").unlink()
    (tmp_path / "notes.txt").write_text("x")
    write_image(tmp_path / "nochannel.nii.gz", np.zeros((2, 2, 2), np.uint8), g)
    with pytest.raises(ValueError, match=r"2 file\(s\) are not .*nochannel\.nii\.gz, notes\.txt"):
        find_cases(tmp_path)
    assert list(find_cases(tmp_path, strict=False)) == ["x"]
    with pytest.raises(FileNotFoundError):
        find_cases(tmp_path / "absent")


def test_find_cases_mhd_ignores_its_data_files(tmp_path):
    write_image(tmp_path / "m_0000.mhd", np.zeros((2, 2, 2), np.uint8), Geometry.identity())
    assert [p.name for p in find_cases(tmp_path, ".mhd")["m"]] == ["m_0000.mhd"]


def test_real_raw_pair_mask(shared_data):
    pair = shared_data / "real" / "raw_pair"
    labels, geo = read_labels(pair / "quiz_0_324.nii.gz")
    image, igeo = read_image(pair / "quiz_0_324_0000.nii.gz")
    assert labels.dtype == np.uint8 and labels.shape == image.shape
    assert set(np.unique(labels).tolist()) == {0, 1, 2}
    assert geo.mismatch(igeo) is None
    np.testing.assert_allclose(geo.spacing, (3.0, 0.877, 0.877), rtol=1e-4)


_angles = st.floats(-np.pi, np.pi, allow_nan=False)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    shape=st.tuples(st.integers(1, 6), st.integers(1, 6), st.integers(1, 6)),
    dtype=st.sampled_from(DTYPES + [np.uint32, np.int64, np.float16, np.bool_]),
    spacing=st.tuples(*[st.floats(1e-3, 50.0, allow_nan=False)] * 3),
    origin=st.tuples(*[st.floats(-1e4, 1e4, allow_nan=False)] * 3),
    angles=st.tuples(_angles, _angles, _angles),
    flip=st.booleans(),
    ending=st.sampled_from(SUPPORTED_ENDINGS),
)
def test_hypothesis_round_trip_or_value_error(
    tmp_path_factory, shape, dtype, spacing, origin, angles, flip, ending
):
    folder = tmp_path_factory.mktemp("hyp")
    arr = sample(np.uint8 if dtype is np.bool_ else dtype, shape).astype(dtype)
    geo = Geometry(spacing, origin, rotation(*angles, flip=flip))
    try:
        path = write_image(folder / f"h{ending}", arr, geo)
    except ValueError:
        assert dtype is np.float16
        return
    back, got = read_image(path)
    np.testing.assert_array_equal(back, arr.astype(np.uint8) if dtype is np.bool_ else arr)
    assert got.mismatch(geo) is None or ending in NIFTI_ENDINGS
    np.testing.assert_allclose(got.spacing, geo.spacing, rtol=1e-6)
    np.testing.assert_allclose(got.direction, geo.direction, atol=1e-5)
    try:
        labels, _ = read_labels(path)
    except ValueError as exc:
        assert str(path) in str(exc)
    else:
        assert labels.dtype == np.uint8 and set(np.unique(labels).tolist()) <= {0, 1, 2}
