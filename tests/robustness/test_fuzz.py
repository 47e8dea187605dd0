"""Property-based fuzzing of the IO and the ops: random shapes, dtypes, spacings, directions, boxes and
parameters. Nothing crashes; what is accepted round-trips or matches the torch reference, and what is not
accepted raises ValueError (or TypeError for a non-tensor) with a message naming the bad value."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fastpanc.data.io import Geometry, read_case, read_image, write_image
from fastpanc.ops import (
    bounding_box,
    crop_pad,
    crop_pad_reference,
    ct_normalize,
    ct_normalize_reference,
    resample,
    resample_reference,
)

FUZZ = settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])

shapes = st.tuples(*[st.integers(1, 6)] * 3)
spacings = st.one_of(
    st.tuples(*[st.floats(1e-3, 100.0)] * 3),
    st.tuples(*[st.sampled_from([0.0, -1.0, math.nan, math.inf, 1.0])] * 3),
)
ENDINGS = [".nii.gz", ".nii", ".mha", ".nrrd", ".mhd"]
NP_DTYPES = [
    "uint8",
    "int8",
    "int16",
    "uint16",
    "int32",
    "float32",
    "float64",
    "float16",
    "bool",
    "complex64",
]


@st.composite
def directions(draw, rotation_only: bool = False) -> tuple[float, ...]:
    """A random rotation (sometimes with a reflection), or a random, possibly singular, matrix."""
    m = np.array(draw(st.lists(st.floats(-1, 1), min_size=9, max_size=9))).reshape(3, 3)
    if rotation_only or draw(st.booleans()):
        q, r = np.linalg.qr(m + 3 * np.eye(3))
        m = q * np.sign(np.diag(r))
    return tuple(float(v) for v in m.ravel())


def _array(shape, dtype: str, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    if dtype == "bool":
        return rng.random(shape) > 0.5
    if dtype.startswith(("float", "complex")):
        return (rng.standard_normal(shape) * 500).astype(dtype)
    info = np.iinfo(dtype)
    return rng.integers(info.min, int(info.max) + 1, size=shape, dtype=dtype)


@FUZZ
@given(shape=shapes, dtype=st.sampled_from(NP_DTYPES), spacing=spacings, direction=directions(),
       ending=st.sampled_from(ENDINGS), seed=st.integers(0, 2**16))  # fmt: skip
def test_write_then_read_round_trips_or_refuses(
    tmp_path: Path, shape, dtype, spacing, direction, ending, seed
):
    arr = _array(shape, dtype, seed)
    path = tmp_path / f"fuzz_{seed}{ending}"
    try:
        geometry = Geometry(spacing, (1.5, -2.0, 3.25), direction)
        write_image(path, arr, geometry)
    except ValueError as exc:
        msg = str(exc)
        assert any(w in msg for w in ("spacing", "dtype", "direction", str(path))), msg
        return
    back, g2 = read_image(path)
    want = arr.astype(np.uint8) if arr.dtype == np.bool_ else arr
    np.testing.assert_array_equal(back, want)
    assert back.dtype == want.dtype
    rtol = 1e-6 if ending in (".nii", ".nii.gz") else 1e-12  # NIfTI stores geometry as float32
    np.testing.assert_allclose(g2.spacing, geometry.spacing, rtol=rtol)
    np.testing.assert_allclose(g2.direction, geometry.direction, atol=1e-6 if rtol > 1e-9 else 1e-12)


@FUZZ
@given(
    junk=st.binary(min_size=0, max_size=600),
    keep=st.floats(0.0, 1.0),
    ending=st.sampled_from([".nii.gz", ".nii", ".mha", ".nrrd"]),
)
def test_damaged_files_are_refused_with_a_value_error(tmp_path: Path, junk: bytes, keep: float, ending: str):
    good = tmp_path / f"good{ending}"
    write_image(good, _array((4, 5, 6), "int16", 0), Geometry.identity((2.0, 1.0, 1.0)))
    raw = good.read_bytes()
    bad = tmp_path / f"bad{ending}"
    bad.write_bytes(raw[: int(keep * len(raw))] + junk)
    try:
        arr, _ = read_image(bad)
    except ValueError as exc:
        assert str(bad) in str(exc)
        return
    # accepted: then it must be a real image (e.g. junk appended after a complete file)
    assert arr.ndim == 3


@FUZZ
@given(a=st.tuples(*[st.floats(0.1, 5.0)] * 3), b=st.tuples(*[st.floats(0.1, 5.0)] * 3), d=directions(True))
def test_read_case_accepts_only_matching_channels(tmp_path: Path, a, b, d):
    arr = _array((3, 4, 5), "float32", 1)
    write_image(tmp_path / "c_0000.mha", arr, Geometry(a, (0.0, 0.0, 0.0), d))
    write_image(tmp_path / "c_0001.mha", arr, Geometry(b, (0.0, 0.0, 0.0), d))
    same = np.allclose(a, b, rtol=1e-5, atol=0)
    if same:
        stacked, _ = read_case([tmp_path / "c_0000.mha", tmp_path / "c_0001.mha"])
        assert stacked.shape == (2, 3, 4, 5)
    else:
        with pytest.raises(ValueError, match="differ in geometry"):
            read_case([tmp_path / "c_0000.mha", tmp_path / "c_0001.mha"])


TORCH_DTYPES = [torch.float32, torch.float16, torch.bfloat16, torch.float64, torch.int16, torch.int32,
                torch.uint8, torch.int8, torch.bool, torch.complex64]  # fmt: skip
numbers = st.one_of(st.floats(-2000, 2000), st.sampled_from([math.nan, math.inf, -math.inf, 0.0]))


def _tensor(shape, dtype: torch.dtype, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(shape, generator=g, dtype=torch.float64) * 300
    if dtype == torch.bool:
        return x > 0
    if dtype == torch.complex64:
        return x.to(torch.complex64)
    if not dtype.is_floating_point:
        info = torch.iinfo(dtype)
        x = x.clamp(info.min, info.max)
    return x.to(dtype)


@FUZZ
@given(shape=st.lists(st.integers(1, 5), min_size=0, max_size=5), dtype=st.sampled_from(TORCH_DTYPES),
       lo=numbers, hi=numbers, mean=numbers, std=numbers, seed=st.integers(0, 999),
       backend=st.sampled_from(["auto", "cpu", "reference"]))  # fmt: skip
def test_ct_normalize_matches_the_reference_or_refuses(shape, dtype, lo, hi, mean, std, seed, backend):
    x = _tensor(tuple(shape), dtype, seed)
    try:
        y = ct_normalize(x, lo, hi, mean, std, backend=backend)
    except ValueError as exc:
        assert "ct_normalize" in str(exc)
        return
    want = ct_normalize_reference(x, lo, hi, mean, std)
    torch.testing.assert_close(y, want, equal_nan=True, rtol=1e-6, atol=1e-6)


@FUZZ
@given(shape=st.tuples(*[st.integers(1, 5)] * 3), out=st.tuples(*[st.integers(0, 7)] * 3),
       order=st.sampled_from([0, 1, 3, 2]), separate_z=st.sampled_from([None, 0, 1, 2, 3]),
       dtype=st.sampled_from(TORCH_DTYPES), seed=st.integers(0, 999), channels=st.integers(0, 2))  # fmt: skip
def test_resample_matches_the_reference_or_refuses(shape, out, order, separate_z, dtype, seed, channels):
    x = _tensor((channels, *shape), dtype, seed)
    try:
        y = resample(x, out, order=order, separate_z=separate_z, backend="cpu")
    except ValueError as exc:
        assert "resample" in str(exc)
        return
    assert y.shape == (channels, *out) and y.dtype == torch.float32
    want = resample_reference(x, out, order=order, separate_z=separate_z)
    torch.testing.assert_close(y, want, rtol=1e-4, atol=1e-3)


@FUZZ
@given(shape=st.tuples(*[st.integers(1, 6)] * 3), box=st.lists(st.integers(-4, 10), min_size=6, max_size=6),
       dtype=st.sampled_from(TORCH_DTYPES), pad=st.sampled_from([0, -1, 255, 0.5, math.nan, 1e40]),
       seed=st.integers(0, 999))  # fmt: skip
def test_crop_pad_and_bounding_box_match_the_reference_or_refuse(shape, box, dtype, pad, seed):
    x = _tensor(shape, dtype, seed)
    b = ((box[0], box[1]), (box[2], box[3]), (box[4], box[5]))
    try:
        y = crop_pad(x, b, pad_value=pad, backend="cpu")
    except ValueError as exc:
        assert "crop_pad" in str(exc)
    else:
        torch.testing.assert_close(y, crop_pad_reference(x, b, pad), equal_nan=True, rtol=0, atol=0)
    try:
        bb = bounding_box(x, backend="cpu")
    except ValueError as exc:
        assert "bounding_box" in str(exc)
    else:
        nz = torch.nonzero(x != 0) if x.dtype != torch.bool else torch.nonzero(x)
        if len(nz) == 0:
            assert bb is None
        else:
            assert tuple(tuple(v) for v in bb) == tuple(
                (int(nz[:, a].min()), int(nz[:, a].max()) + 1) for a in range(3)
            )
