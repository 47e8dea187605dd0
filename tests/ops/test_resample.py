from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from fastpanc.ops import (
    BackendUnavailableError,
    compute_new_shape,
    resample,
    resample_labels,
    resample_labels_reference,
    resample_reference,
    separate_z_axis,
)

SEPARATE = [(None, 0), (0, 0), (0, 1), (1, 0), (2, 1)]
CASES = [
    ((7, 9, 11), (12, 5, 17)),
    ((6, 20, 33), (13, 31, 9)),
    ((1, 8, 5), (3, 1, 9)),
    ((5, 5, 5), (5, 9, 5)),
]


def _image(shape, seed=0, channels=2):
    g = torch.Generator().manual_seed(seed)
    return torch.randn((channels, *shape), generator=g, dtype=torch.float64) * 120 + 40


def _blobby_labels(shape, seed=0, n_labels=3):
    """Labels with spatial structure (as segmentations have), plus a few isolated voxels."""
    g = torch.Generator().manual_seed(seed)
    coarse = torch.randint(0, n_labels, (1, 1, *(max(1, s // 3) for s in shape)), generator=g).float()
    lab = torch.nn.functional.interpolate(coarse, size=shape, mode="nearest")[0, 0].to(torch.uint8)
    noise = torch.rand(shape, generator=g) < 0.05
    lab[noise] = torch.randint(0, n_labels, (int(noise.sum()),), generator=g).to(torch.uint8)
    return lab


def _nnunet(data: np.ndarray, new_shape, is_seg, order, separate_z, order_z):
    from nnunetv2.preprocessing.resampling.default_resampling import resample_data_or_seg

    return resample_data_or_seg(
        data, np.array(new_shape), is_seg, separate_z, order, separate_z is not None, order_z=order_z
    )


# ---------------------------------------------------------------- the reference is nnU-Net's resampling


@pytest.mark.nnunet
@pytest.mark.parametrize(("shape", "new"), CASES)
@pytest.mark.parametrize("order", [0, 1, 3])
@pytest.mark.parametrize(("separate_z", "order_z"), SEPARATE)
def test_reference_equals_nnunet_images(shape, new, order, separate_z, order_z):
    x = _image(shape)
    want = _nnunet(x.numpy(), new, False, order, separate_z, order_z)
    got = resample_reference(x, new, order, separate_z, order_z, out_dtype=torch.float64).numpy()
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-9 * float(np.ptp(want)))


@pytest.mark.nnunet
@pytest.mark.parametrize(("shape", "new"), CASES + [((8, 12, 12), (4, 6, 6)), ((4, 6, 6), (8, 12, 12))])
@pytest.mark.parametrize("mode", ["linear", "nearest"])
@pytest.mark.parametrize(("separate_z", "order_z"), [(None, 0), (0, 0), (0, 1), (2, 1)])
def test_labels_equal_nnunet(shape, new, mode, separate_z, order_z):
    lab = _blobby_labels(shape)
    want = _nnunet(lab.numpy()[None], new, True, 1 if mode == "linear" else 0, separate_z, order_z)[0]
    for backend in ("reference", "cpu"):
        got = resample_labels(lab, new, mode, separate_z, order_z, backend=backend).numpy()
        assert got.dtype == want.dtype
        # the target is 99.9 %; the float64 scores reproduce scipy's, so this is exact in practice
        assert (got == want).mean() >= 0.999, (backend, (got == want).mean())


@pytest.mark.nnunet
@pytest.mark.parametrize("order", [1, 3])
@pytest.mark.parametrize(("separate_z", "order_z"), SEPARATE)
def test_cpu_within_target_of_nnunet(order, separate_z, order_z):
    x = _image((9, 23, 30), seed=3, channels=3)
    new = (14, 17, 41)
    want = _nnunet(x.numpy(), new, False, order, separate_z, order_z)
    got = resample(x.float(), new, order, separate_z, order_z, backend="cpu").double().numpy()
    assert np.abs(got - want).max() <= 1e-3 * float(np.ptp(x.numpy()))


@pytest.mark.nnunet
@settings(max_examples=60, deadline=None)
@given(
    spacing=st.lists(
        st.sampled_from([0.5, 0.7, 0.732, 0.8, 1.0, 1.5, 2.0, 2.5, 3.0, 5.0]), min_size=3, max_size=3
    ),
    new=st.lists(st.sampled_from([0.5, 0.732, 1.0, 2.0, 3.0, 4.0]), min_size=3, max_size=3),
    shape=st.lists(st.integers(1, 300), min_size=3, max_size=3),
    force=st.sampled_from([None, True, False]),
)
def test_spacing_rules_equal_nnunet(spacing, new, shape, force):
    from nnunetv2.preprocessing.resampling.default_resampling import compute_new_shape as nn_shape
    from nnunetv2.preprocessing.resampling.default_resampling import determine_do_sep_z_and_axis

    do_sep, axis = determine_do_sep_z_and_axis(force, spacing, new, 3.0)
    assert separate_z_axis(spacing, new, 3.0, force=force) == (int(axis) if do_sep else None)
    assert compute_new_shape(shape, spacing, new) == tuple(int(s) for s in nn_shape(shape, spacing, new))


# ---------------------------------------------------------------- every backend against the reference


def _tolerance(x: torch.Tensor) -> dict:
    scale = float(x.double().abs().max()) or 1.0
    return {"rtol": 0, "atol": 2e-5 * scale}


@settings(max_examples=40, deadline=None)
@given(
    shape=st.lists(st.integers(1, 13), min_size=3, max_size=3),
    new=st.lists(st.integers(1, 17), min_size=3, max_size=3),
    order=st.sampled_from([0, 1, 3]),
    sep=st.sampled_from(SEPARATE),
    layout=st.sampled_from(["contiguous", "permuted", "sliced"]),
    dtype=st.sampled_from([torch.float32, torch.float16, torch.int16]),
    seed=st.integers(0, 1000),
)
def test_cpu_matches_reference_random(shape, new, order, sep, layout, dtype, seed):
    x = _image(shape, seed=seed).to(dtype)
    if layout == "permuted":
        x = x.permute(0, 3, 1, 2).contiguous().permute(0, 2, 3, 1)
    elif layout == "sliced":
        x = torch.cat([x, x], dim=3)[..., ::2]
    assert layout == "contiguous" or not x.is_contiguous() or min(shape) == 1
    want = resample_reference(x, new, order, *sep)
    got = resample(x, new, order, *sep, backend="cpu")
    assert got.shape == (2, *new) and got.dtype == torch.float32 and got.is_contiguous()
    torch.testing.assert_close(got, want, **_tolerance(want))


@pytest.mark.parametrize("order", [0, 1, 3])
@pytest.mark.parametrize("dim", [1, 2, 3])
def test_cpu_single_axis_kernel(order, dim):
    # resample() uses the per-axis kernel for order 3 and a fused kernel for orders 0/1; the per-axis kernel
    # takes every order and must agree with the reference on its own (strided input, no clipping)
    from fastpanc.ops import _backend as B
    from fastpanc.ops._resample_ref import resample_axis_reference

    x = _image((6, 70, 13), seed=5).float().transpose(2, 3)
    new = [6, 13, 70]
    new[dim - 1] = 151 if dim != 1 else 4
    out = torch.empty((2, *new))
    B.extension().resample_axis_cpu(*B.view_args(x), out.data_ptr(), 0, dim, new[dim - 1], order, 0, 0, 0, 0)
    want = resample_axis_reference(x.double(), dim, new[dim - 1], order).float()
    torch.testing.assert_close(out, want, **_tolerance(want))


@pytest.mark.parametrize("out_dtype", [torch.float16, torch.bfloat16])
def test_cpu_out_dtypes(out_dtype):
    x = _image((6, 10, 130), seed=1).float()
    want = resample_reference(x, (9, 7, 61), 3, out_dtype=torch.float32)
    got = resample(x, (9, 7, 61), 3, backend="cpu", out_dtype=out_dtype)
    assert got.dtype == out_dtype
    torch.testing.assert_close(got.float(), want, rtol=1e-2, atol=1e-2 * float(want.abs().max()))


def test_large_tile_not_multiple_of_block():
    # lines longer than one 64-lane tile, sizes prime to every block size, strong up- and down-sampling
    x = _image((5, 67, 131), seed=2, channels=1).float()
    for new in [(11, 29, 263), (2, 131, 7)]:
        for order in (0, 1, 3):
            want = resample_reference(x, new, order)
            torch.testing.assert_close(resample(x, new, order, backend="cpu"), want, **_tolerance(want))


@pytest.mark.parametrize("backend", ["reference", "cpu"])
def test_same_shape_is_a_copy(backend):
    x = _image((3, 4, 5)).float()
    y = resample(x, (3, 4, 5), 3, backend=backend)
    torch.testing.assert_close(y, x)
    assert y.data_ptr() != x.data_ptr()


def test_order3_is_clipped_to_input_range():
    x = torch.zeros(1, 1, 1, 12)
    x[..., 6:] = 100.0  # a step overshoots with a cubic spline before clipping
    y = resample(x, (1, 1, 37), 3, backend="cpu")
    assert float(y.min()) == 0.0 and float(y.max()) == 100.0


@settings(max_examples=30, deadline=None)
@given(
    shape=st.lists(st.integers(1, 11), min_size=3, max_size=3),
    new=st.lists(st.integers(1, 15), min_size=3, max_size=3),
    mode=st.sampled_from(["linear", "nearest"]),
    sep=st.sampled_from([(None, 0), (0, 0), (0, 1), (1, 1), (2, 0)]),
    dtype=st.sampled_from([torch.uint8, torch.int8, torch.int16, torch.int64]),
    transpose=st.booleans(),
    seed=st.integers(0, 1000),
)
def test_labels_cpu_equal_reference_random(shape, new, mode, sep, dtype, transpose, seed):
    lab = _blobby_labels(tuple(shape), seed=seed, n_labels=4).to(dtype)
    if transpose:
        lab = lab.transpose(0, 2).contiguous().transpose(0, 2)
    want = resample_labels_reference(lab, new, mode, *sep)
    got = resample_labels(lab, new, mode, *sep, backend="cpu")
    assert got.dtype == dtype and got.shape == tuple(new)
    torch.testing.assert_close(got, want, rtol=0, atol=0)


def test_labels_channel_axis_kept():
    lab = _blobby_labels((6, 8, 9))[None]
    out = resample_labels(lab, (4, 11, 5), backend="cpu")
    assert out.shape == (1, 4, 11, 5)
    torch.testing.assert_close(out, resample_labels_reference(lab, (4, 11, 5)), rtol=0, atol=0)


# ---------------------------------------------------------------- user errors


def test_bad_arguments_are_value_errors():
    x = torch.zeros(1, 2, 2, 2)
    with pytest.raises(ValueError, match="order must be"):
        resample(x, (3, 3, 3), order=2)
    with pytest.raises(ValueError, match="out_shape"):
        resample(x, (3, 3))
    with pytest.raises(ValueError, match="out_shape"):
        resample(x, (3, 0, 3))
    with pytest.raises(ValueError, match=r"\(C, Z, Y, X\)"):
        resample(x[0], (3, 3, 3))
    with pytest.raises(ValueError, match="separate_z"):
        resample(x, (3, 3, 3), separate_z=3)
    with pytest.raises(ValueError, match="order_z"):
        resample(x, (3, 3, 3), separate_z=0, order_z=3)
    with pytest.raises(ValueError, match="out_dtype"):
        resample(x, (3, 3, 3), out_dtype=torch.int16)
    with pytest.raises(ValueError, match="integer dtype"):
        resample_labels(torch.zeros(2, 2, 2), (3, 3, 3))
    with pytest.raises(ValueError, match="mode"):
        resample_labels(torch.zeros(2, 2, 2, dtype=torch.uint8), (3, 3, 3), mode="cubic")
    with pytest.raises(ValueError, match="positive"):
        separate_z_axis((1.0, 0.0, 1.0), (1.0, 1.0, 1.0))
    with pytest.raises(ValueError, match="same length"):
        compute_new_shape((1, 2, 3), (1.0, 1.0), (1.0, 1.0, 1.0))


def test_explicit_cuda_backend_says_why():
    if torch.cuda.is_available():
        pytest.skip("a GPU is present")
    with pytest.raises(BackendUnavailableError, match="cuda"):
        resample(torch.zeros(1, 2, 2, 2), (3, 3, 3), backend="cuda")
    with pytest.raises(BackendUnavailableError, match="cuda"):
        resample_labels(torch.zeros(2, 2, 2, dtype=torch.uint8), (3, 3, 3), backend="cuda")


# ---------------------------------------------------------------- real CT


@pytest.mark.real_data
@pytest.mark.nnunet
def test_real_ct_crop_within_target_of_nnunet(shared_data):
    import SimpleITK as sitk

    path = sorted((shared_data / "real" / "test_images").glob("*_0000.nii.gz"))[0]
    arr = sitk.GetArrayFromImage(sitk.ReadImage(str(path)))  # (z, y, x)
    z0, y0, x0 = (max(0, s // 2 - 16) for s in arr.shape)
    crop = np.ascontiguousarray(arr[z0 : z0 + 16, y0 : y0 + 40, x0 : x0 + 40], dtype=np.float32)[None]
    new = (23, 29, 52)
    want = _nnunet(crop.astype(np.float64), new, False, 3, None, 0)
    got = resample(torch.from_numpy(crop), new, 3, backend="cpu").double().numpy()
    assert np.abs(got - want).max() <= 1e-3 * float(np.ptp(crop))


# ---------------------------------------------------------------- CUDA


@pytest.mark.cuda
@pytest.mark.parametrize("order", [0, 1, 3])
@pytest.mark.parametrize(("separate_z", "order_z"), SEPARATE)
def test_cuda_matches_reference(order, separate_z, order_z, cuda_ok):
    for shape, new in CASES + [((5, 67, 131), (11, 29, 263))]:
        x = _image(shape, seed=4).float()
        want = resample_reference(x, new, order, separate_z, order_z)
        for xc in (x.cuda(), x.cuda().transpose(2, 3).contiguous().transpose(2, 3), x.to(torch.int16).cuda()):
            w = (
                want
                if xc.dtype == torch.float32
                else resample_reference(xc.cpu(), new, order, separate_z, order_z)
            )
            got = resample(xc, new, order, separate_z, order_z, backend="cuda").cpu()
            torch.testing.assert_close(got, w, **_tolerance(w))


@pytest.mark.cuda
@pytest.mark.parametrize("mode", ["linear", "nearest"])
@pytest.mark.parametrize(("separate_z", "order_z"), [(None, 0), (0, 0), (0, 1), (2, 1)])
def test_cuda_labels_equal_reference(mode, separate_z, order_z, cuda_ok):
    for shape, new in CASES + [((8, 12, 12), (4, 6, 6))]:
        lab = _blobby_labels(shape)
        want = resample_labels_reference(lab, new, mode, separate_z, order_z)
        got = resample_labels(
            lab.cuda().transpose(1, 2).contiguous().transpose(1, 2),
            new,
            mode,
            separate_z,
            order_z,
            backend="cuda",
        ).cpu()
        torch.testing.assert_close(got, want, rtol=0, atol=0)
