from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from fastpanc.ops import (
    BackendUnavailableError,
    bounding_box,
    bounding_box_reference,
    crop_pad,
    crop_pad_reference,
    nonzero_bounding_box,
    paste,
    paste_reference,
)

# every dtype the kernels take; values below stay inside every dtype's range so that casts are exact
DTYPES = [
    torch.float32,
    torch.float64,
    torch.float16,
    torch.bfloat16,
    torch.int16,
    torch.uint8,
    torch.int32,
    torch.int64,
    torch.int8,
]


def _volume(shape, dtype, seed, density=0.05, signed=True):
    g = torch.Generator().manual_seed(seed)
    vals = torch.randint(-100 if signed else 1, 101, shape, generator=g).to(torch.float32)
    vals = vals + (torch.rand(shape, generator=g) - 0.5) * (0.9 if dtype.is_floating_point else 0)
    keep = torch.rand(shape, generator=g) < density
    if dtype == torch.uint8:
        vals = vals.abs()
    return (vals * keep).to(dtype)


def _strided(x: torch.Tensor, seed: int) -> torch.Tensor:
    """The same values in a non-contiguous layout (permuted storage, then permuted back)."""
    g = torch.Generator().manual_seed(seed)
    perm = torch.randperm(x.dim(), generator=g).tolist()
    inv = [perm.index(i) for i in range(x.dim())]
    y = x.permute(perm).contiguous().permute(inv)
    assert torch.equal(y, x)
    return y


@settings(max_examples=40, deadline=None, derandomize=True)
@given(
    shape=st.lists(st.integers(1, 11), min_size=3, max_size=4),
    dtype=st.sampled_from(DTYPES + [torch.bool]),
    density=st.sampled_from([0.0, 0.002, 0.05, 0.6]),
    threshold=st.sampled_from([None, 0.5, -3.0, 50.0]),
    seed=st.integers(0, 10_000),
)
def test_bounding_box_cpu_matches_reference(shape, dtype, density, threshold, seed):
    if dtype == torch.bool:
        x = _volume(shape, torch.float32, seed, density) != 0
    else:
        x = _volume(shape, dtype, seed, density)
    xs = _strided(x, seed)
    if dtype == torch.bool and threshold is not None:
        threshold = 0.5
    want = bounding_box_reference(x, threshold)
    assert bounding_box(xs, threshold, backend="cpu") == want
    assert bounding_box(xs, threshold, backend="auto") == want


def test_bounding_box_known_values_and_channels():
    x = torch.zeros(2, 6, 7, 8, dtype=torch.int16)
    x[0, 1, 2, 3] = 5
    x[1, 4, 5, 1] = -2
    for backend in ("reference", "cpu"):
        assert bounding_box(x, backend=backend) == ((1, 5), (2, 6), (1, 4))
        assert bounding_box(x, threshold=0, backend=backend) == ((1, 2), (2, 3), (3, 4))
        assert bounding_box(x, threshold=10, backend=backend) is None
        assert bounding_box(x[1], backend=backend) == ((4, 5), (5, 6), (1, 2))


def test_bounding_box_nan_counts_as_nonzero_but_not_above_threshold():
    x = torch.zeros(4, 5, 6)
    x[2, 3, 4] = float("nan")
    for backend in ("reference", "cpu"):
        assert bounding_box(x, backend=backend) == ((2, 3), (3, 4), (4, 5))
        assert bounding_box(x, threshold=-1.0, backend=backend) == ((0, 4), (0, 5), (0, 6))
        x2 = x.clone()
        x2.zero_()
        x2[2, 3, 4] = float("nan")
        x2 -= 1  # everything -1 but the NaN
        assert bounding_box(x2, threshold=-1.0, backend=backend) is None


def test_nonzero_bounding_box_of_empty_image_is_full_extent():
    assert nonzero_bounding_box(torch.zeros(2, 3, 4, 5)) == ((0, 3), (0, 4), (0, 5))


@pytest.mark.nnunet
@settings(max_examples=25, deadline=None, derandomize=True)
@given(
    shape=st.lists(st.integers(1, 10), min_size=3, max_size=3),
    channels=st.integers(1, 3),
    density=st.sampled_from([0.0, 0.01, 0.2, 1.0]),
    seed=st.integers(0, 10_000),
)
def test_nonzero_bounding_box_equals_nnunet(shape, channels, density, seed):
    from acvl_utils.cropping_and_padding.bounding_boxes import get_bbox_from_mask
    from nnunetv2.preprocessing.cropping.cropping import create_nonzero_mask

    x = _volume([channels, *shape], torch.float32, seed, density)
    want = get_bbox_from_mask(create_nonzero_mask(x.numpy()))
    for backend in ("reference", "cpu"):
        got = nonzero_bounding_box(x, backend=backend)
        assert [list(p) for p in got] == [[int(a), int(b)] for a, b in want]


@pytest.mark.nnunet
@pytest.mark.real_data
def test_nonzero_bounding_box_equals_nnunet_on_real_ct(shared_data):
    import SimpleITK as sitk
    from acvl_utils.cropping_and_padding.bounding_boxes import get_bbox_from_mask
    from nnunetv2.preprocessing.cropping.cropping import create_nonzero_mask

    path = sorted((shared_data / "real" / "test_images").glob("*_0000.nii.gz"))[0]
    img = sitk.GetArrayFromImage(sitk.ReadImage(str(path))).astype(np.float32)[None]
    img[:, :3] = 0  # give the box something to cut
    img[:, :, :, -5:] = 0
    want = get_bbox_from_mask(create_nonzero_mask(img))
    got = nonzero_bounding_box(torch.from_numpy(img))
    assert [list(p) for p in got] == [[int(a), int(b)] for a, b in want]


box_axis = st.tuples(st.integers(-6, 8), st.integers(0, 9)).map(lambda t: (t[0], t[0] + t[1]))


@settings(max_examples=60, deadline=None, derandomize=True)
@given(
    shape=st.lists(st.integers(1, 9), min_size=3, max_size=4),
    box=st.tuples(box_axis, box_axis, box_axis),
    in_dtype=st.sampled_from(DTYPES),
    out_dtype=st.sampled_from(DTYPES + [None]),
    pad_value=st.sampled_from([0, 1, 7]),
    seed=st.integers(0, 10_000),
)
def test_crop_pad_cpu_matches_reference(shape, box, in_dtype, out_dtype, pad_value, seed):
    signed = torch.uint8 not in (in_dtype, out_dtype)
    x = _strided(_volume(shape, in_dtype, seed, density=0.7, signed=signed), seed)
    want = crop_pad_reference(x, box, pad_value, out_dtype)
    got = crop_pad(x, box, pad_value, out_dtype, backend="cpu")
    assert got.is_contiguous() and got.dtype == want.dtype
    torch.testing.assert_close(got, want, rtol=0, atol=0)


def test_crop_pad_box_entirely_outside_is_all_padding():
    x = torch.arange(24, dtype=torch.float32).reshape(2, 3, 4)
    for backend in ("reference", "cpu"):
        out = crop_pad(x, ((5, 7), (0, 3), (-9, -7)), pad_value=-1, backend=backend)
        assert out.shape == (2, 3, 2) and bool((out == -1).all())


def test_crop_pad_prime_sized_large_volume():
    # sizes not divisible by any block or vector width, box sticking out of every face
    x = _volume((2, 37, 41, 53), torch.int16, 3, density=0.9)
    box = ((-3, 40), (5, 47), (-11, 61))
    want = crop_pad_reference(x, box, -1024, torch.float32)
    torch.testing.assert_close(crop_pad(x, box, -1024, torch.float32, backend="cpu"), want, rtol=0, atol=0)


@pytest.mark.nnunet
@settings(max_examples=25, deadline=None, derandomize=True)
@given(
    shape=st.lists(st.integers(1, 9), min_size=4, max_size=4),
    box=st.tuples(box_axis, box_axis, box_axis),
    seed=st.integers(0, 10_000),
)
def test_crop_pad_equals_acvl_crop_and_pad_nd(shape, box, seed):
    from acvl_utils.cropping_and_padding.bounding_boxes import crop_and_pad_nd

    x = _volume(shape, torch.float32, seed, density=0.7)
    want = crop_and_pad_nd(x.numpy(), [list(b) for b in box], pad_value=0)
    np.testing.assert_array_equal(crop_pad(x, box, 0).numpy(), want)


@settings(max_examples=40, deadline=None, derandomize=True)
@given(
    shape=st.lists(st.integers(1, 9), min_size=3, max_size=4),
    box=st.tuples(box_axis, box_axis, box_axis),
    dtype=st.sampled_from(DTYPES),
    fill=st.sampled_from([0, 3]),
    seed=st.integers(0, 10_000),
)
def test_paste_cpu_matches_reference_and_inverts_crop(shape, box, dtype, fill, seed):
    vol = _volume(shape, dtype, seed, density=0.7, signed=dtype != torch.uint8)
    patch = _strided(crop_pad(vol, box, fill), seed)
    want = paste_reference(patch, vol.shape, box, fill)
    got = paste(patch, vol.shape, box, fill, backend="cpu")
    torch.testing.assert_close(got, want, rtol=0, atol=0)
    # inside the box the volume comes back; outside it is fill
    expect = torch.full(vol.shape, fill, dtype=dtype)
    sl = tuple(slice(max(lo, 0), max(min(hi, n), 0)) for (lo, hi), n in zip(box, vol.shape[-3:]))
    expect[(..., *sl)] = vol[(..., *sl)]
    torch.testing.assert_close(got, expect, rtol=0, atol=0)


def test_errors_say_what_is_wrong():
    x = torch.zeros(3, 4, 5)
    with pytest.raises(ValueError, match="three"):
        crop_pad(x, ((0, 1), (0, 1)))
    with pytest.raises(ValueError, match="hi < lo"):
        crop_pad(x, ((2, 1), (0, 1), (0, 1)))
    with pytest.raises(ValueError, match="not representable"):
        crop_pad(x, ((0, 1), (0, 1), (0, 1)), pad_value=300, out_dtype=torch.uint8)
    with pytest.raises(ValueError, match="not representable"):
        crop_pad(x, ((0, 1), (0, 1), (0, 1)), pad_value=0.5, out_dtype=torch.int16)
    with pytest.raises(ValueError, match="uint8"):
        crop_pad(x > 0, ((0, 1), (0, 1), (0, 1)))
    with pytest.raises(ValueError, match="spans"):
        paste(torch.zeros(2, 2, 2), (3, 4, 5), ((0, 1), (0, 2), (0, 2)))
    with pytest.raises(ValueError, match="channels"):
        paste(torch.zeros(2, 1, 1, 1), (3, 4, 5, 6), ((0, 1), (0, 1), (0, 1)))
    with pytest.raises(ValueError, match="mask"):
        bounding_box(torch.zeros(4, 4))
    with pytest.raises(ValueError, match="threshold"):
        bounding_box(x, threshold=float("nan"))


def test_explicit_cuda_backend_says_why():
    if torch.cuda.is_available():
        pytest.skip("a GPU is present; the CUDA tests cover this backend")
    with pytest.raises(BackendUnavailableError, match="cuda"):
        crop_pad(torch.zeros(2, 2, 2), ((0, 1), (0, 1), (0, 1)), backend="cuda")
    with pytest.raises(BackendUnavailableError, match="cuda"):
        bounding_box(torch.zeros(2, 2, 2), backend="cuda")


@pytest.mark.cuda
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.int16, torch.uint8, torch.bool])
def test_cuda_bounding_box_matches_reference(dtype, cuda_ok):
    for seed, density in [(0, 0.0), (1, 0.001), (2, 0.05), (3, 0.9)]:
        x = _volume((2, 19, 33, 130), torch.float32, seed, density)
        x = (x != 0) if dtype == torch.bool else x.to(dtype)
        xc = x.cuda().transpose(1, 2)
        for thr in (None, 0.5):
            if dtype == torch.bool and thr is not None:
                continue
            assert bounding_box(xc, thr, backend="cuda") == bounding_box_reference(x.transpose(1, 2), thr)


@pytest.mark.cuda
@pytest.mark.parametrize(
    "in_dtype,out_dtype",
    [
        (torch.int16, torch.float32),
        (torch.float32, torch.float16),
        (torch.uint8, torch.uint8),
        (torch.float32, torch.bfloat16),
    ],
)
def test_cuda_crop_pad_and_paste_match_reference(in_dtype, out_dtype, cuda_ok):
    x = _volume((2, 23, 37, 51), in_dtype, 5, density=0.8, signed=in_dtype != torch.uint8)
    box = ((-4, 20), (3, 45), (-7, 60))
    xc = x.cuda().permute(0, 3, 1, 2).contiguous().permute(0, 2, 3, 1)
    want = crop_pad_reference(x, box, 7, out_dtype)
    torch.testing.assert_close(crop_pad(xc, box, 7, out_dtype, backend="cuda").cpu(), want, rtol=0, atol=0)
    back = paste(want.cuda(), (2, 23, 37, 51), box, 1, backend="cuda").cpu()
    torch.testing.assert_close(back, paste_reference(want, (2, 23, 37, 51), box, 1), rtol=0, atol=0)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
def test_pad_value_that_overflows_a_float_dtype_is_refused(dtype):
    x = torch.zeros((1, 2, 2, 2), dtype=dtype)
    box = ((-1, 3), (0, 2), (0, 2))
    with pytest.raises(ValueError, match="overflows"):
        crop_pad(x, box, pad_value=1e40 if dtype == torch.float32 else 1e5)
    y = crop_pad(x, box, pad_value=float("inf"))
    assert torch.isinf(y[:, 0]).all() and (y[:, 1:3] == 0).all()
