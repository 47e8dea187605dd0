from __future__ import annotations

import pytest
import torch
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from fastpanc.ops import BackendUnavailableError, instance_norm_act, instance_norm_act_reference

DTYPES = [torch.float32, torch.bfloat16, torch.float16]


def _tol(dtype):
    # one rounding of the float32 result to the output dtype (bf16 has 8 significant bits)
    return {
        torch.float32: {"rtol": 1e-5, "atol": 1e-5},
        torch.float16: {"rtol": 1e-3, "atol": 2e-3},
        torch.bfloat16: {"rtol": 8e-3, "atol": 8e-3},
    }[dtype]


def _data(shape, dtype, seed=0, scale=3.0, shift=2.0):
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(shape, generator=g) * scale + shift).to(dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("res_dtype", [None, *DTYPES])
@pytest.mark.parametrize("slope", [None, 0.01, 0.2])
def test_cpu_matches_reference(dtype, res_dtype, slope):
    # 7 * 33 * 41 = 9471 voxels per plane: not a multiple of the kernel's 2048-voxel tile
    x = _data((2, 5, 7, 33, 41), dtype)
    w, b = _data((5,), torch.float32, 1), _data((5,), torch.float32, 2)
    r = None if res_dtype is None else _data(x.shape, res_dtype, 3)
    want = instance_norm_act_reference(x, w, b, 1e-5, slope, r)
    got = instance_norm_act(x, w, b, 1e-5, slope, r, backend="cpu")
    assert got.dtype == want.dtype and got.shape == x.shape and got.is_contiguous()
    if r is not None:
        assert got.dtype == torch.promote_types(dtype, res_dtype)
    torch.testing.assert_close(got.float(), want.float(), **_tol(got.dtype))
    pre = instance_norm_act_reference(x, w, b, 1e-5, None, r).float()
    assert (pre < 0).any()  # the nonlinearity has negative inputs to act on


def test_matches_torch_modules():
    """The sequence a ResEnc block runs: InstanceNorm3d(affine) -> + residual -> LeakyReLU."""
    norm = torch.nn.InstanceNorm3d(4, eps=1e-5, affine=True)
    with torch.no_grad():
        norm.weight.copy_(torch.tensor([0.5, 1.0, 2.0, -1.0]))
        norm.bias.copy_(torch.tensor([0.1, -0.2, 0.0, 0.3]))
    x, r = _data((3, 4, 6, 10, 12), torch.float32), _data((3, 4, 6, 10, 12), torch.float32, 5)
    with torch.inference_mode():
        want = torch.nn.functional.leaky_relu(norm(x) + r, 0.01)
        got = instance_norm_act(x, norm.weight, norm.bias, norm.eps, 0.01, r, backend="cpu")
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)


def test_no_affine_and_2d():
    x = _data((2, 3, 17, 19), torch.float32)
    want = instance_norm_act_reference(x, None, None, 1e-3, 0.05)
    got = instance_norm_act(x, None, None, 1e-3, 0.05, backend="cpu")
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
    per_plane = instance_norm_act(x, None, None, 1e-3, None, backend="cpu").flatten(2)
    torch.testing.assert_close(per_plane.mean(-1), torch.zeros(2, 3), rtol=0, atol=1e-5)


def test_large_offset_statistics():
    """Two-pass statistics: a plane with mean 100 and std 0.01 still normalises to unit variance (with
    E[x^2] - E[x]^2 in float32 the variance would be lost to rounding)."""
    x = _data((1, 2, 8, 64, 64), torch.float32, scale=0.01, shift=100.0)
    got = instance_norm_act(x, None, None, 1e-12, None, backend="cpu")
    want = instance_norm_act_reference(x.double(), None, None, 1e-12, None).float()
    torch.testing.assert_close(got, want, rtol=5e-3, atol=5e-3)


@pytest.mark.parametrize("dtype", DTYPES)
def test_in_place(dtype):
    x = _data((1, 3, 5, 40, 50), dtype)
    r = _data(x.shape, torch.float32, 4).to(dtype)
    w = torch.ones(3)
    want = instance_norm_act_reference(x, w, None, 1e-5, 0.01, r)
    y = x.clone()
    out = instance_norm_act(y, w, None, 1e-5, 0.01, r, backend="cpu", inplace=True)
    assert out.data_ptr() == y.data_ptr()
    torch.testing.assert_close(y.float(), want.float(), **_tol(dtype))


def test_in_place_refused_when_dtype_changes():
    """A float32 residual promotes a bf16 x: the result cannot be written over x, so x is left alone."""
    x = _data((1, 2, 4, 8, 8), torch.bfloat16)
    keep = x.clone()
    out = instance_norm_act(
        x, None, None, 1e-5, 0.01, _data(x.shape, torch.float32), backend="cpu", inplace=True
    )
    assert out.dtype == torch.float32 and out.data_ptr() != x.data_ptr()
    assert torch.equal(x, keep)


@settings(max_examples=25, deadline=None)
@given(
    shape=st.lists(st.integers(1, 9), min_size=3, max_size=5),
    seed=st.integers(0, 1000),
    slope=st.sampled_from([None, 0.01]),
    residual=st.booleans(),
)
def test_random_shapes_and_strides(shape, seed, slope, residual):
    assume(torch.Size(shape[2:]).numel() > 1)  # statistics need two voxels per plane
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(shape, generator=g) * 5
    perm = [0, 1, *(2 + torch.randperm(len(shape) - 2, generator=g)).tolist()]
    xt = x.permute(perm)  # a strided view of (B, C, *spatial)
    w = torch.randn(xt.shape[1], generator=g)
    r = torch.randn(xt.shape, generator=g) if residual else None
    want = instance_norm_act_reference(xt, w, None, 1e-5, slope, r)
    got = instance_norm_act(xt, w, None, 1e-5, slope, r, backend="cpu")
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-4)


def test_bad_input_errors():
    x = torch.randn(1, 3, 4, 4, 4)
    with pytest.raises(ValueError, match=r"weight must have shape \(3,\)"):
        instance_norm_act(x, torch.ones(4), None)
    with pytest.raises(ValueError, match="residual must have x's shape"):
        instance_norm_act(x, None, None, residual=torch.zeros(1, 3, 4, 4))
    with pytest.raises(ValueError, match="not supported"):
        instance_norm_act(x.double(), None, None)
    with pytest.raises(ValueError, match="expected \\(B, C, \\*spatial\\)"):
        instance_norm_act(torch.randn(3, 4), None, None)
    with pytest.raises(ValueError, match="more than 1 voxel"):
        instance_norm_act(torch.randn(2, 3, 1, 1, 1), None, None)
    with pytest.raises(ValueError, match="eps must be > 0"):
        instance_norm_act(x, None, None, eps=0.0)


def test_triton_backend_refuses_autograd():
    w = torch.ones(3, requires_grad=True)
    x = torch.randn(1, 3, 4, 4, 4)
    with pytest.raises(BackendUnavailableError, match="no backward"):
        instance_norm_act(x.to(TRITON_DEVICE), w.to(TRITON_DEVICE), None, backend="triton")


# ---------------------------------------------------------------- training: the C++ backward

GRAD_TOL = {torch.float32: 1e-4, torch.bfloat16: 1.6e-2}


def _grads(backend, x, w, b, r, slope, eps=1e-5, out_dtype=None, seed=7):
    """Output and gradients of every input that requires grad, for a random upstream gradient."""
    leaves = [t for t in (x, w, b, r) if t is not None and t.requires_grad]
    y = instance_norm_act(x, w, b, eps, slope, r, out_dtype, backend=backend)
    g = torch.randn(y.shape, generator=torch.Generator().manual_seed(seed)).to(y.dtype)
    return y, torch.autograd.grad(y, leaves, g)


def _assert_grads_close(got, want, dtype):
    """Each result within ``GRAD_TOL[dtype]`` of the reference, relative to the reference's largest entry."""
    (y_got, g_got), (y_want, g_want) = got, want
    assert y_got.dtype == y_want.dtype
    tol = GRAD_TOL[dtype]
    torch.testing.assert_close(y_got.float(), y_want.float(), rtol=tol, atol=tol)
    for a, e in zip(g_got, g_want):
        assert a.dtype == e.dtype and a.shape == e.shape
        scale = max(1.0, float(e.abs().max()))
        torch.testing.assert_close(a.float(), e.float(), rtol=tol, atol=tol * scale)


def _leaf(t, requires_grad=True):
    return None if t is None else t.detach().requires_grad_(requires_grad)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("res_dtype", [None, torch.float32, torch.bfloat16])
@pytest.mark.parametrize("slope", [None, 0.0, 0.01])
def test_cpu_backward_matches_reference(dtype, res_dtype, slope):
    # 7 * 33 * 41 = 9471 voxels per plane: several 2048-voxel tiles, the last partial
    x = _leaf(_data((2, 5, 7, 33, 41), dtype))
    w, b = _leaf(_data((5,), torch.float32, 1)), _leaf(_data((5,), torch.float32, 2))
    r = None if res_dtype is None else _leaf(_data(x.shape, res_dtype, 3))
    got = _grads("cpu", x, w, b, r, slope)
    assert got[0].grad_fn is not None and type(got[0].grad_fn).__name__ == "_InstanceNormActBackward"
    _assert_grads_close(got, _grads("reference", x, w, b, r, slope), dtype)


@settings(max_examples=40, deadline=None, derandomize=True)
@given(
    shape=st.lists(st.integers(1, 9), min_size=3, max_size=5),
    seed=st.integers(0, 1000),
    dtype=st.sampled_from([torch.float32, torch.bfloat16]),
    slope=st.sampled_from([None, 0.0, 0.01]),
    residual=st.sampled_from([None, torch.float32, torch.bfloat16]),
    affine=st.sampled_from(["both", "weight", "bias", "none"]),
    needs=st.sampled_from(["all", "params only", "x only"]),
)
def test_cpu_backward_random_shapes_and_strides(shape, seed, dtype, slope, residual, affine, needs):
    assume(torch.Size(shape[2:]).numel() > 1)  # statistics need two voxels per plane
    gen = torch.Generator().manual_seed(seed)
    x = (torch.randn(shape, generator=gen) * 4 + 1).to(dtype)
    perm = [0, 1, *(2 + torch.randperm(len(shape) - 2, generator=gen)).tolist()]
    x = x.permute(perm)  # a strided (non-contiguous) view of (B, C, *spatial)
    c = x.shape[1]
    w = torch.randn(c, generator=gen) if affine in ("both", "weight") else None
    b = torch.randn(c, generator=gen) if affine in ("both", "bias") else None
    r = None if residual is None else torch.randn(x.shape, generator=gen).to(residual)
    x = _leaf(x, needs != "params only")
    w, b = _leaf(w, needs != "x only"), _leaf(b, needs != "x only")
    r = _leaf(r, needs == "all")
    assume(any(t is not None and t.requires_grad for t in (x, w, b, r)))
    got = _grads("cpu", x, w, b, r, slope, seed=seed)
    _assert_grads_close(got, _grads("reference", x, w, b, r, slope, seed=seed), dtype)


@settings(max_examples=40, deadline=None, derandomize=True)
@given(
    b=st.integers(1, 2),
    c=st.integers(1, 40),
    spatial=st.lists(st.integers(1, 12), min_size=2, max_size=3),
    seed=st.integers(0, 1000),
    dtype=st.sampled_from([torch.float32, torch.bfloat16]),
    slope=st.sampled_from([None, 0.0, 0.01]),
    residual=st.sampled_from([None, "channels_last", "contiguous"]),
    affine=st.booleans(),
)
def test_cpu_backward_channels_last(b, c, spatial, seed, dtype, slope, residual, affine):
    """Channels-last inputs (training with NDHWC convolutions) run the channels-last forward and backward
    kernels, give channels-last outputs and gradients, and match the reference."""
    assume(torch.Size(spatial).numel() > 1)
    gen = torch.Generator().manual_seed(seed)
    fmt = torch.channels_last_3d if len(spatial) == 3 else torch.channels_last
    x = (torch.randn(b, c, *spatial, generator=gen) * 4 + 1).to(dtype).contiguous(memory_format=fmt)
    w = torch.randn(c, generator=gen) if affine else None
    bias = torch.randn(c, generator=gen) if affine else None
    r = None
    if residual is not None:
        r = torch.randn(x.shape, generator=gen).to(dtype)
        r = r.contiguous(memory_format=fmt) if residual == "channels_last" else r.contiguous()
    x, w, bias, r = _leaf(x), _leaf(w), _leaf(bias), _leaf(r)
    got = _grads("cpu", x, w, bias, r, slope, seed=seed)
    if c > 1:
        assert got[0].is_contiguous(memory_format=fmt)
        assert got[1][0].is_contiguous(memory_format=fmt)  # grad_x
    _assert_grads_close(got, _grads("reference", x, w, bias, r, slope, seed=seed), dtype)


def test_cpu_backward_of_a_sum_and_through_a_view():
    """An expanded (stride-0) upstream gradient, and an input that is a slice of a larger leaf."""
    base = _leaf(_data((2, 6, 5, 9, 11), torch.float32))
    w = _leaf(torch.linspace(0.5, 1.5, 3))
    grads = []
    for backend in ("reference", "cpu"):
        x = base[:, ::2]  # (2, 3, 5, 9, 11), every other channel
        instance_norm_act(x, w, None, 1e-5, 0.01, backend=backend).sum().backward()
        grads.append((base.grad.clone(), w.grad.clone()))
        base.grad, w.grad = None, None
    for got, want in zip(grads[1], grads[0]):
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-4)
    assert torch.count_nonzero(grads[1][0][:, 1::2]) == 0  # the skipped channels get no gradient


def test_slope_zero_masks_the_gradient():
    """slope 0 (a ReLU): no gradient flows where the pre-activation is <= 0; slope None: it all flows."""
    x = _leaf(_data((1, 2, 6, 8, 8), torch.float32))
    r = _leaf(_data(x.shape, torch.float32, 3))
    y = instance_norm_act(x, None, None, 1e-5, 0.0, r, backend="cpu")
    (gr,) = torch.autograd.grad(y.sum(), [r])
    assert torch.equal(gr, (y > 0).float())
    (gr,) = torch.autograd.grad(instance_norm_act(x, None, None, 1e-5, None, r, backend="cpu").sum(), [r])
    assert torch.equal(gr, torch.ones_like(gr))


def test_autograd_never_writes_in_place_and_auto_takes_cpu():
    x0 = _data((2, 3, 4, 6, 6), torch.float32)
    x = x0.clone().requires_grad_()
    h = x * 1.0  # a non-leaf, like a convolution's output
    w = torch.ones(3, requires_grad=True)
    y = instance_norm_act(h, w, None, 1e-5, 0.01, inplace=True)  # auto
    assert y.data_ptr() != h.data_ptr() and torch.equal(h.detach(), x0)
    assert type(y.grad_fn).__name__ == "_InstanceNormActBackward"  # the C++ backward, not the reference's
    y.sum().backward()
    assert x.grad is not None and w.grad is not None
    with torch.no_grad():  # no autograd: written in place as before
        h2 = x0.clone()
        assert instance_norm_act(h2, w, None, 1e-5, 0.01, inplace=True).data_ptr() == h2.data_ptr()


def _saved_bytes(fn) -> int:
    """Bytes of the distinct tensors autograd saves while ``fn`` runs."""
    seen: dict[tuple[int, int], int] = {}

    def pack(t):
        seen[(t.data_ptr(), t.numel())] = t.numel() * t.element_size()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        fn()
    return sum(seen.values())


@pytest.mark.parametrize("act", [False, True])
def test_saves_no_more_than_torch_modules(act):
    """InstanceNorm3d -> + residual -> LeakyReLU(inplace) saves the norm's input, weight and statistics plus the
    activation's output; the fused op saves no more."""
    norm = torch.nn.InstanceNorm3d(4, affine=True)
    conv_out = _leaf(_data((2, 4, 6, 10, 12), torch.float32)) * 1.0
    r = _leaf(_data(conv_out.shape, torch.float32, 5))

    def modules():
        y = norm(conv_out) + r
        return torch.nn.functional.leaky_relu(y, 0.01, inplace=True) if act else y

    def fused():
        slope = 0.01 if act else None
        return instance_norm_act(conv_out, norm.weight, norm.bias, norm.eps, slope, r, backend="cpu")

    assert _saved_bytes(fused) <= _saved_bytes(modules)


def test_cuda_backend_is_not_offered():  # the GPU kernel is the Triton one
    with pytest.raises(BackendUnavailableError, match="has no 'cuda' backend"):
        instance_norm_act(torch.randn(1, 2, 3, 3, 3), None, None, backend="cuda")


# Triton runs on the GPU when there is one; without one tests/conftest.py sets TRITON_INTERPRET=1 and it
# runs on CPU tensors.
TRITON_DEVICE = "cuda" if torch.cuda.is_available() else "cpu"


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("res_dtype", [None, torch.float32, torch.bfloat16])
@pytest.mark.parametrize("slope", [None, 0.01])
def test_triton_matches_reference(dtype, res_dtype, slope):
    x = _data((2, 3, 5, 13, 17), dtype)  # 1105 voxels per plane: two 1024-voxel chunks, the second partial
    w, b = _data((3,), torch.float32, 1), _data((3,), torch.float32, 2)
    r = None if res_dtype is None else _data(x.shape, res_dtype, 3)
    want = instance_norm_act_reference(x, w, b, 1e-5, slope, r)
    dev = TRITON_DEVICE
    got = instance_norm_act(
        x.to(dev), w.to(dev), b.to(dev), 1e-5, slope, None if r is None else r.to(dev), backend="triton"
    ).cpu()
    assert got.dtype == want.dtype
    torch.testing.assert_close(got.float(), want.float(), **_tol(got.dtype))


def test_triton_many_chunks_and_offset_statistics():
    """Small blocks force many chunks (and the chunk doubling above 256 chunks); the pairwise combination
    keeps a plane with mean 100 and std 0.01 exact to float32 rounding."""
    from fastpanc.kernels.norm_act import instance_norm_act_triton

    x = _data((1, 2, 4, 30, 50), torch.float32, scale=0.01, shift=100.0).to(TRITON_DEVICE)  # 6000 per plane
    want = instance_norm_act_reference(x.cpu().double(), None, None, 1e-12, 0.1).float()
    for block in (16, 64):  # 375 -> 188 chunks of 32, and 94 chunks of 64
        out = torch.empty_like(x)
        got = instance_norm_act_triton(x, None, None, 1e-12, 0.1, None, out, block=block).cpu()
        torch.testing.assert_close(got, want, rtol=5e-3, atol=5e-3)
    y = x.clone()  # in place
    instance_norm_act(y, None, None, 1e-12, 0.1, backend="triton", inplace=True)
    torch.testing.assert_close(y.cpu(), want, rtol=5e-3, atol=5e-3)
