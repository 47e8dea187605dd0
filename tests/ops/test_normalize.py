from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from fastpanc.ops import BackendUnavailableError, ct_normalize, ct_normalize_reference

DTYPES = [torch.float32, torch.float64, torch.float16, torch.int16, torch.uint8, torch.int32]
# Triton runs on the GPU when there is one; without one tests/conftest.py sets TRITON_INTERPRET=1 and it
# runs on CPU tensors.
TRITON_DEVICE = "cuda" if torch.cuda.is_available() else "cpu"


def _run(x, *args, backend, **kwargs):
    """ct_normalize on the backend's device; the result comes back to the CPU."""
    dev = TRITON_DEVICE if backend == "triton" else "cpu"
    return ct_normalize(x.to(dev), *args, backend=backend, **kwargs).cpu()  # .to keeps x's strides


def _input(shape, dtype, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(shape, generator=g) * 300 + 40
    if dtype.is_floating_point:
        return x.to(dtype)
    info = torch.iinfo(dtype)
    return x.clamp(info.min, info.max).to(dtype)


@pytest.mark.parametrize("backend", ["cpu", "triton"])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("out_dtype", [torch.float32, torch.float16, torch.bfloat16])
def test_matches_reference(backend, dtype, out_dtype):
    x = _input((2, 5, 7, 33), dtype)
    args = (-56.0, 180.0, 74.06, 44.36, out_dtype)
    want = ct_normalize_reference(x, *args)
    got = _run(x, *args, backend=backend)
    assert got.dtype == out_dtype and got.shape == x.shape
    torch.testing.assert_close(
        got.float(),
        want.float(),
        **({"rtol": 0, "atol": 0} if out_dtype == torch.float32 else {"rtol": 8e-3, "atol": 1e-2}),
    )


@settings(max_examples=25, deadline=None)
@given(
    shape=st.lists(st.integers(1, 9), min_size=3, max_size=4),
    perm_seed=st.integers(0, 100),
    lo=st.floats(-500, 0),
    width=st.floats(1, 800),
)
def test_non_contiguous_random(shape, perm_seed, lo, width):
    g = torch.Generator().manual_seed(perm_seed)
    x = torch.randn(shape, generator=g) * 200
    perm = torch.randperm(len(shape), generator=g).tolist()
    xt = x.permute(perm)  # strided view
    want = ct_normalize_reference(xt, lo, lo + width, 10.0, 3.0)
    for backend in ("cpu", "triton"):
        torch.testing.assert_close(_run(xt, lo, lo + width, 10.0, 3.0, backend=backend), want)


def test_nan_propagates_like_reference():
    x = torch.tensor([[[[float("nan"), 1000.0, -1000.0, 5.0]]]])
    want = ct_normalize_reference(x, -1, 1, 0, 1)
    for backend in ("cpu", "triton"):
        torch.testing.assert_close(_run(x, -1, 1, 0, 1, backend=backend), want, equal_nan=True)


@settings(max_examples=40, deadline=None, derandomize=True)
@given(n=st.integers(1, 300), seed=st.integers(0, 1000), in_place=st.booleans())
def test_contiguous_float32_vector_loops_and_tails(n, seed, in_place):
    """The contiguous float32 path (explicit SIMD loops of 64, 16 or 8 values, then a tail) on every length,
    with NaN and infinities anywhere, in place and into a separate buffer."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(1, 1, 1, n, generator=g) * 300
    special = torch.randint(0, n, (3,), generator=g)
    x[0, 0, 0, special] = torch.tensor([float("nan"), float("inf"), -float("inf")])
    want = ct_normalize_reference(x, -56.0, 180.0, 74.0, 44.0)
    y = x.clone()
    got = ct_normalize(y, -56.0, 180.0, 74.0, 44.0, backend="cpu", out=y if in_place else None)
    torch.testing.assert_close(got, want, rtol=0, atol=0, equal_nan=True)


@pytest.mark.parametrize("level", ["avx2", "none"])
def test_narrower_vector_loops_match_reference(level, tmp_path):
    """FASTPANC_SIMD caps the contiguous float32 loop (AVX-512 by default where the CPU has it) at AVX2 or the
    plain loop; the kernel is chosen once per process, so each level runs in its own interpreter."""
    code = (
        "import torch\n"
        "from fastpanc.ops import ct_normalize, ct_normalize_reference\n"
        "for n in list(range(1, 80)) + [1000, 40007]:\n"
        "    x = torch.randn(1, 1, 1, n) * 300\n"
        "    x[0, 0, 0, n // 2] = float('nan')\n"
        "    want = ct_normalize_reference(x, -56.0, 180.0, 74.0, 44.0)\n"
        "    y = x.clone()\n"
        "    torch.testing.assert_close(ct_normalize(y, -56.0, 180.0, 74.0, 44.0, backend='cpu', out=y), want,\n"
        "                               rtol=0, atol=0, equal_nan=True)\n"
        "    torch.testing.assert_close(ct_normalize(x, -56.0, 180.0, 74.0, 44.0, backend='cpu'), want,\n"
        "                               rtol=0, atol=0, equal_nan=True)\n"
        "print('ok')\n"
    )
    env = {**os.environ, "FASTPANC_SIMD": level}
    # run outside the checkout, so that the installed package (with its built extension) is the one imported
    done = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120, cwd=tmp_path
    )
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr


def test_explicit_cuda_backend_says_why():
    with pytest.raises(BackendUnavailableError, match="cuda"):
        ct_normalize(torch.zeros(1, 2, 2, 2), 0, 1, 0, 1, backend="cuda")


def test_bad_arguments_are_value_errors():
    x = torch.zeros(1, 2, 2, 2)
    with pytest.raises(ValueError, match="std"):
        ct_normalize(x, 0, 1, 0, 0.0)
    with pytest.raises(ValueError, match="lo <= hi"):
        ct_normalize(x, 2, 1, 0, 1.0)
    with pytest.raises(ValueError, match="out_dtype"):
        ct_normalize(x, 0, 1, 0, 1.0, out_dtype=torch.int16)
    with pytest.raises(ValueError, match="unknown backend"):
        ct_normalize(x, 0, 1, 0, 1.0, backend="gpu")


@pytest.mark.cuda
@pytest.mark.parametrize("backend", ["cuda", "triton"])
def test_cuda_backends_match_reference(backend, cuda_ok):
    x = _input((1, 17, 31, 45), torch.int16).cuda().transpose(2, 3)
    want = ct_normalize_reference(x.cpu(), -56, 180, 74, 44)
    torch.testing.assert_close(ct_normalize(x, -56, 180, 74, 44, backend=backend).cpu(), want)


@pytest.mark.parametrize("backend", ["reference", "cpu", "triton"])
def test_out_argument_and_in_place(backend):
    dev = TRITON_DEVICE if backend == "triton" else "cpu"
    x = _input((2, 5, 7, 33), torch.float32, seed=3).to(dev)
    want = ct_normalize_reference(x.cpu(), -56.0, 180.0, 74.0, 44.0)
    out = torch.empty_like(x)
    assert ct_normalize(x, -56.0, 180.0, 74.0, 44.0, backend=backend, out=out) is out
    torch.testing.assert_close(out.cpu(), want, rtol=0, atol=0)
    y = x.clone()
    assert ct_normalize(y, -56.0, 180.0, 74.0, 44.0, backend=backend, out=y) is y  # in place, like nnU-Net
    torch.testing.assert_close(y.cpu(), want, rtol=0, atol=0)


def test_out_argument_errors():
    x = torch.zeros(2, 4, 4, 4)
    with pytest.raises(ValueError, match="dtype"):
        ct_normalize(x, 0, 1, 0, 1.0, out=torch.empty(2, 4, 4, 4, dtype=torch.float16))
    with pytest.raises(ValueError, match="shape"):
        ct_normalize(x, 0, 1, 0, 1.0, out=torch.empty(2, 4, 4, 3))
    with pytest.raises(ValueError, match="contiguous"):
        ct_normalize(x, 0, 1, 0, 1.0, out=torch.empty(2, 4, 4, 4).transpose(1, 3))
    buf = torch.zeros(200)
    with pytest.raises(ValueError, match="overlaps"):
        ct_normalize(buf[:128].view(2, 4, 4, 4), 0, 1, 0, 1.0, out=buf[64:192].view(2, 4, 4, 4))
