from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from fastpanc.ops import (
    BackendUnavailableError,
    accumulate,
    accumulate_reference,
    argmax_labels,
    argmax_labels_reference,
    finalize,
    finalize_reference,
    gaussian_map,
    sliding_window_starts,
    window_slices,
)


def _case(vol, patch, k, n_windows, dtype, seed, layout="contiguous"):
    """Random accumulators (already holding something), logits and window starts that include the
    volume's borders and repeated (fully overlapping) windows."""
    g = torch.Generator().manual_seed(seed)
    acc = torch.randn((k, *vol), generator=g)
    weight = torch.rand(vol, generator=g) + 0.5
    if layout == "strided":  # acc stored (Z, X, K, Y), weight (X, Z, Y): still the same logical tensors
        acc = acc.permute(1, 3, 0, 2).contiguous().permute(2, 0, 3, 1)
        weight = weight.permute(2, 0, 1).contiguous().permute(1, 2, 0)
    logits = (torch.randn((n_windows, k, *patch), generator=g) * 4).to(dtype)
    if layout == "strided":  # logits as a slice of a wider, permuted buffer
        wide = torch.randn((n_windows, k, patch[2] + 3, *patch[:2]), generator=g).to(dtype)
        wide[:, :, 1 : patch[2] + 1] = logits.permute(0, 1, 4, 2, 3)
        logits = wide[:, :, 1 : patch[2] + 1].permute(0, 1, 3, 4, 2)
    hi = [v - p for v, p in zip(vol, patch)]
    starts = [[0, 0, 0], hi, hi]  # both corners, one window twice
    starts += [[int(torch.randint(0, h + 1, (1,), generator=g)) for h in hi] for _ in range(n_windows - 3)]
    return acc, weight, logits, starts[:n_windows]


@settings(max_examples=30, deadline=None, derandomize=True)
@given(
    patch=st.lists(st.integers(1, 9), min_size=3, max_size=3),
    extra=st.lists(st.integers(0, 7), min_size=3, max_size=3),
    k=st.integers(1, 4),
    n_windows=st.integers(3, 6),
    dtype=st.sampled_from([torch.float32, torch.float16, torch.bfloat16]),
    layout=st.sampled_from(["contiguous", "strided"]),
    seed=st.integers(0, 10_000),
)
def test_accumulate_cpu_matches_reference(patch, extra, k, n_windows, dtype, layout, seed):
    vol = [p + e for p, e in zip(patch, extra)]
    acc, weight, logits, starts = _case(vol, patch, k, n_windows, dtype, seed, layout)
    gauss = gaussian_map(patch)
    want_acc, want_w = acc.clone(), weight.clone()
    accumulate_reference(want_acc, want_w, logits, starts, gauss)
    accumulate(acc, weight, logits, torch.tensor(starts), gauss, backend="cpu")
    torch.testing.assert_close(acc, want_acc)
    torch.testing.assert_close(weight, want_w)


def test_accumulate_odd_sizes_many_overlaps():
    vol, patch = (19, 37, 41), (7, 13, 29)
    acc, weight, logits, starts = _case(vol, patch, 3, 12, torch.float32, 7)
    gauss = gaussian_map(patch)
    want_acc, want_w = acc.clone(), weight.clone()
    accumulate_reference(want_acc, want_w, logits, starts, gauss)
    accumulate(acc, weight, logits, starts, gauss)
    torch.testing.assert_close(acc, want_acc)
    torch.testing.assert_close(weight, want_w)


@settings(max_examples=30, deadline=None, derandomize=True)
@given(
    shape=st.lists(st.integers(1, 13), min_size=3, max_size=3),
    k=st.integers(1, 5),
    softmax=st.booleans(),
    strided=st.booleans(),
    seed=st.integers(0, 10_000),
)
def test_finalize_cpu_matches_reference(shape, k, softmax, strided, seed):
    g = torch.Generator().manual_seed(seed)
    acc = torch.randn((k, *shape), generator=g) * 20
    weight = torch.rand(shape, generator=g) * 10 + 0.1
    if strided:
        acc = acc.permute(3, 0, 1, 2).contiguous().permute(1, 2, 3, 0)
        weight = weight.transpose(0, 2).contiguous().transpose(0, 2)
    want_l, want_p = finalize_reference(acc, weight, softmax)
    got_l, got_p = finalize(acc, weight, softmax, backend="cpu")
    assert got_l.dtype == torch.uint8 and got_l.is_contiguous()
    torch.testing.assert_close(got_l, want_l, rtol=0, atol=0)
    if softmax:
        assert got_p.dtype == torch.float16 and got_p.is_contiguous()
        torch.testing.assert_close(got_p, want_p, rtol=2e-3, atol=1e-4)
    else:
        assert got_p is None and want_p is None


def test_finalize_ties_and_nan_follow_torch_argmax():
    acc = torch.tensor([[1.0, 2.0, 5.0, 0.0], [1.0, 3.0, 5.0, 0.0], [0.0, 3.0, 1.0, 0.0]]).reshape(3, 1, 1, 4)
    weight = torch.tensor([1.0, 1.0, 2.0, 0.0]).reshape(1, 1, 4)  # last voxel: 0/0 = NaN in every class
    acc[2, 0, 0, 2] = float("nan")
    want_l, want_p = finalize_reference(acc, weight, True)
    for backend in ("reference", "cpu"):
        labels, probs = finalize(acc, weight, True, backend=backend)
        assert labels.flatten().tolist() == [0, 1, 2, 0] == want_l.flatten().tolist()
        torch.testing.assert_close(probs, want_p, equal_nan=True, rtol=2e-3, atol=1e-4)


def test_end_to_end_matches_nnunet_style_loop():
    """accumulate over all windows of a volume in batches, then finalize, against the plain torch loop
    of nnU-Net's predictor run in float32."""
    vol, patch, k = (21, 30, 26), (8, 16, 12), 3
    gauss = gaussian_map(patch)
    slices = window_slices(vol, patch, 0.5)
    gen = torch.Generator().manual_seed(0)
    preds = torch.randn((len(slices), k, *patch), generator=gen)
    ref_logits = torch.zeros((k, *vol))
    ref_n = torch.zeros(vol)
    for sl, p in zip(slices, preds):
        ref_logits[(slice(None), *sl)] += p * gauss
        ref_n[sl] += gauss
    want = torch.argmax(ref_logits / ref_n, 0).to(torch.uint8)
    acc, weight = torch.zeros((k, *vol)), torch.zeros(vol)
    starts = [[s.start for s in sl] for sl in slices]
    for b in range(0, len(slices), 4):  # batches of 4 windows
        accumulate(acc, weight, preds[b : b + 4], starts[b : b + 4], gauss, backend="cpu")
    labels, _ = finalize(acc, weight, backend="cpu")
    torch.testing.assert_close(labels, want, rtol=0, atol=0)
    assert [len(s) for s in sliding_window_starts(vol, patch)] == [5, 3, 4]  # overlapping windows


def test_accumulate_errors_say_what_is_wrong():
    acc, weight = torch.zeros(2, 8, 8, 8), torch.zeros(8, 8, 8)
    gauss = gaussian_map((4, 4, 4))
    logits = torch.zeros(1, 2, 4, 4, 4)
    with pytest.raises(ValueError, match="does not fit"):
        accumulate(acc, weight, logits, [[5, 0, 0]], gauss)
    with pytest.raises(ValueError, match="window starts"):
        accumulate(acc, weight, logits, [[0, 0, 0], [1, 1, 1]], gauss)
    with pytest.raises(ValueError, match="classes"):
        accumulate(acc, weight, torch.zeros(1, 3, 4, 4, 4), [[0, 0, 0]], gauss)
    with pytest.raises(ValueError, match="gaussian"):
        accumulate(acc, weight, logits, [[0, 0, 0]], gauss.half())
    with pytest.raises(ValueError, match="float32"):
        accumulate(acc.double(), weight, logits, [[0, 0, 0]], gauss)
    with pytest.raises(ValueError, match="zero stride"):
        accumulate(acc, torch.zeros(8, 8, 1).expand(8, 8, 8), logits, [[0, 0, 0]], gauss)
    with pytest.raises(ValueError, match="256"):
        finalize(torch.zeros(257, 1, 1, 1), torch.ones(1, 1, 1))
    if not torch.cuda.is_available():
        with pytest.raises(BackendUnavailableError, match="cuda"):
            finalize(acc, weight, backend="cuda")


@pytest.mark.cuda
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
@pytest.mark.parametrize("layout", ["contiguous", "strided"])
def test_cuda_accumulate_finalize_match_reference(dtype, layout, cuda_ok):
    vol, patch = (23, 45, 67), (9, 17, 33)
    acc, weight, logits, starts = _case(vol, patch, 3, 8, dtype, 11, layout)
    gauss = gaussian_map(patch)
    want_acc, want_w = acc.clone(), weight.clone()
    accumulate_reference(want_acc, want_w, logits, starts, gauss)
    acc_c, w_c = acc.cuda(), weight.cuda()
    accumulate(acc_c, w_c, logits.cuda(), starts, gauss.cuda(), backend="cuda")
    torch.testing.assert_close(acc_c.cpu(), want_acc)
    torch.testing.assert_close(w_c.cpu(), want_w)
    want_l, want_p = finalize_reference(want_acc, want_w, True)
    labels, probs = finalize(acc_c, w_c, True, backend="cuda")
    torch.testing.assert_close(labels.cpu(), want_l, rtol=0, atol=0)
    torch.testing.assert_close(probs.cpu(), want_p, rtol=2e-3, atol=1e-4)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
def test_argmax_labels_equals_torch_argmax(dtype):
    g = torch.Generator().manual_seed(5)
    logits = torch.randn(3, 7, 9, 11, generator=g).to(dtype)
    logits[:, 0, 0, :3] = 0.5  # ties: the first maximum wins, as in torch.argmax
    logits[1, 1, 1, 1] = float("nan")  # NaN wins, as in torch.argmax
    want = argmax_labels_reference(logits)
    for backend in ("auto", "cpu"):
        got = argmax_labels(logits, backend=backend)
        assert got.dtype == torch.uint8 and torch.equal(got, want)
    strided = logits.float().permute(0, 3, 2, 1)  # any strides
    assert torch.equal(argmax_labels(strided), argmax_labels_reference(strided))


def test_argmax_labels_refuses_bad_input():
    with pytest.raises(ValueError, match="K, Z, Y, X"):
        argmax_labels(torch.zeros(3, 4, 5))
    with pytest.raises(ValueError, match="must be one of"):
        argmax_labels(torch.zeros(3, 2, 2, 2, dtype=torch.int32))
