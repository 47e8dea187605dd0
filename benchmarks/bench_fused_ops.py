"""The fused inference passes against the torch modules nnU-Net's network runs for the same step (CPU).

Shapes are those of one ResEnc M window (64 x 128 x 192, real plans) at its full-resolution level. Baselines
are the modules of ``dynamic_network_architectures``' blocks, run as nnU-Net runs them (eval mode, inference
mode; bf16 rows under CPU autocast, as fastpanc's fast mode):

- ``kernel_norm_act_*``: ``InstanceNorm3d(affine) -> LeakyReLU(inplace)`` on a convolution output of
  1 x 32 x 64 x 128 x 192, against ``instance_norm_act(..., inplace=True)``;
- ``kernel_upsample_cat_*``: ``ConvTranspose3d(64 -> 32, kernel = stride = 1 x 2 x 2)`` then ``torch.cat`` with the
  skip, against the 1x1 convolution plus ``depth_to_space_cat``;
- ``kernel_avg_pool_bf16``: the strided skip's ``AvgPool3d(1 x 2 x 2)`` of a bf16 block input under autocast,
  against ``avg_pool_down``;
- ``kernel_norm_act_train_*`` (training): the end of a residual block, ``InstanceNorm3d(affine) -> + residual ->
  LeakyReLU(inplace)``, forward and backward (gradients of the input, the residual, weight and bias) on
  2 x 32 x 32 x 64 x 96 (a batch of two, half a ResEnc M patch along each axis), against ``instance_norm_act``
  with autograd (its C++ forward and backward).

The ``*_cl_*`` rows time the channels-last kernels (the layout of ``fuse_inference(..., channels_last=True)``) on
channels-last copies of the same data against the same nnU-Net baseline (its contiguous modules), and also
record torch's modules on the channels-last tensors and fastpanc's contiguous kernels in the same rounds.

Each side gets a fresh input every call (made outside the timed region), the calls alternate, the minimum of
5 rounds after a warm-up is recorded.

    pytest benchmarks/bench_fused_ops.py --benchmark-enable -s
"""

from __future__ import annotations

import contextlib
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).parent))
from _record import record  # noqa: E402

from fastpanc.ops import (  # noqa: E402
    avg_pool_down,
    depth_to_space_cat,
    instance_norm_act,
    instance_norm_act_reference,
    transposed_conv_as_1x1_weight,
)

COMMAND = "pytest benchmarks/bench_fused_ops.py --benchmark-enable -s"
ROUNDS = 5
WINDOW = (64, 128, 192)


def _paired(calls: list[tuple[Callable, Callable]], rounds: int = ROUNDS) -> list[tuple[float, float]]:
    """(min, median) of each ``(fn, setup)``; setup's result is passed to fn, untimed; calls alternate."""
    times: list[list[float]] = [[] for _ in calls]
    for i in range(rounds + 1):
        for k, (fn, setup) in enumerate(calls):
            arg = setup()
            t0 = time.perf_counter()
            fn(arg)
            if i:
                times[k].append(time.perf_counter() - t0)
    return [(min(t), statistics.median(t)) for t in times]


def _ctx(precision: str):
    if precision == "bfloat16":
        return torch.autocast("cpu", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def _dtype(precision: str) -> torch.dtype:
    return torch.bfloat16 if precision == "bfloat16" else torch.float32


def _skip_without_bf16(precision: str) -> None:
    if precision == "bfloat16":
        from fastpanc.inference.predictor import cpu_has_bf16

        if not cpu_has_bf16():
            pytest.skip("this CPU has no native bfloat16 (AVX512-BF16/AMX)")


def _record(name, results, extra, benchmark, fn, setup):
    (base_min, base_med), (fast_min, fast_med) = results
    record(
        name,
        base_min,
        fast_min,
        COMMAND,
        extra={
            **extra,
            "timing": f"min of {ROUNDS} alternating rounds after a warm-up",
            "baseline_median_s": base_med,
            "fastpanc_median_s": fast_med,
            "threads": torch.get_num_threads(),
        },
    )
    benchmark.pedantic(lambda: fn(setup()), rounds=1, warmup_rounds=0)


@pytest.mark.parametrize("precision", ["float32", "bfloat16"])
def test_norm_act(benchmark, precision):
    _skip_without_bf16(precision)
    norm = torch.nn.InstanceNorm3d(32, eps=1e-5, affine=True).eval()
    act = torch.nn.LeakyReLU(0.01, inplace=True)
    with torch.no_grad():
        norm.weight.uniform_(0.5, 1.5)
        norm.bias.uniform_(-0.2, 0.2)
    src = torch.randn(1, 32, *WINDOW).to(_dtype(precision))  # a convolution's output in the compute dtype

    def modules(y):
        with torch.inference_mode(), _ctx(precision):
            return act(norm(y))

    def fused(y):
        with torch.inference_mode():
            return instance_norm_act(y, norm.weight, norm.bias, norm.eps, 0.01, inplace=True)

    want, got = modules(src.clone()).float(), fused(src.clone()).float()
    max_diff = float((want - got).abs().max())
    assert max_diff <= (1e-4 if precision == "float32" else 0.05)
    results = _paired([(modules, src.clone), (fused, src.clone)])
    extra = {"shape": list(src.shape), "dtype": precision, "max_abs_diff": max_diff}
    _record(f"kernel_norm_act_{precision}", results, extra, benchmark, fused, src.clone)


@pytest.mark.parametrize("precision", ["float32", "bfloat16"])
def test_upsample_cat(benchmark, precision):
    _skip_without_bf16(precision)
    torch.manual_seed(0)
    stride = (1, 2, 2)
    tconv = torch.nn.ConvTranspose3d(64, 32, stride, stride).eval()
    low = tuple(n // s for n, s in zip(WINDOW, stride))
    x = torch.randn(1, 64, *low).to(_dtype(precision))
    skip = torch.randn(1, 32, *WINDOW).to(_dtype(precision))

    def modules(_):
        with torch.inference_mode(), _ctx(precision):
            return torch.cat((tconv(x), skip), 1)

    def fused(_):
        with torch.inference_mode(), _ctx(precision):
            y = F.conv3d(x, transposed_conv_as_1x1_weight(tconv.weight))
            return depth_to_space_cat(y, stride, tconv.bias, skip)

    want, got = modules(None).float(), fused(None).float()
    max_diff = float((want - got).abs().max())
    assert max_diff <= (1e-4 if precision == "float32" else 0.1)
    results = _paired([(modules, lambda: None), (fused, lambda: None)])
    extra = {"input": list(x.shape), "skip": list(skip.shape), "dtype": precision, "max_abs_diff": max_diff}
    _record(f"kernel_upsample_cat_{precision}", results, extra, benchmark, fused, lambda: None)


def test_avg_pool_bf16(benchmark):
    _skip_without_bf16("bfloat16")
    pool = torch.nn.AvgPool3d((1, 2, 2), (1, 2, 2))
    x = torch.randn(1, 32, *WINDOW).to(torch.bfloat16)

    def modules(_):
        with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16):
            return pool(x)  # autocast widens x to float32 for the pool

    def fused(_):
        with torch.inference_mode():
            return avg_pool_down(x, (1, 2, 2))

    max_diff = float((modules(None).float() - fused(None).float()).abs().max())
    assert max_diff <= 0.02
    results = _paired([(modules, lambda: None), (fused, lambda: None)])
    extra = {"shape": list(x.shape), "dtype": "bfloat16", "max_abs_diff": max_diff}
    _record("kernel_avg_pool_bf16", results, extra, benchmark, fused, lambda: None)


CL = torch.channels_last_3d


def _record_layouts(name, results, labels, extra, benchmark, fn, setup):
    """Record results[0] (nnU-Net) against results[1] (channels-last fastpanc); the rest go into ``extra``."""
    for label, (t_min, t_med) in zip(labels, results[2:]):
        extra[f"{label}_s"] = t_min
        extra[f"{label}_median_s"] = t_med
        print(
            f"[{name}] {label}: {t_min:.4f} s ({t_min / results[1][0]:.2f}x the channels-last kernel)",
            file=sys.stderr,
        )
    _record(name, results[:2], extra, benchmark, fn, setup)


def _record_cl_vs_contiguous(name, extra, benchmark, modules, fused_cl, fused):
    """nnU-Net's modules, fastpanc's channels-last kernel and its contiguous one in paired rounds (no set-up);
    recorded as the channels-last row, the contiguous time in ``extra``."""
    results = _paired([(modules, lambda: None), (fused_cl, lambda: None), (fused, lambda: None)])
    extra = {**extra, "layout": "channels_last_3d"}
    _record_layouts(name, results, ["fastpanc_contiguous"], extra, benchmark, fused_cl, lambda: None)


@pytest.mark.parametrize("precision", ["float32", "bfloat16"])
def test_norm_act_channels_last(benchmark, precision):
    _skip_without_bf16(precision)
    norm = torch.nn.InstanceNorm3d(32, eps=1e-5, affine=True).eval()
    act = torch.nn.LeakyReLU(0.01, inplace=True)
    with torch.no_grad():
        norm.weight.uniform_(0.5, 1.5)
        norm.bias.uniform_(-0.2, 0.2)
    src = torch.randn(1, 32, *WINDOW).to(_dtype(precision))
    src_cl = src.contiguous(memory_format=CL)

    def modules(y):
        with torch.inference_mode(), _ctx(precision):
            return act(norm(y))

    def fused(y):
        with torch.inference_mode():
            return instance_norm_act(y, norm.weight, norm.bias, norm.eps, 0.01, inplace=True)

    def clone_cl():
        return src_cl.clone(memory_format=CL)

    want, got = modules(src.clone()).float(), fused(clone_cl()).float()
    assert got.is_contiguous(memory_format=CL)
    max_diff = float((want - got).abs().max())
    assert max_diff <= (1e-4 if precision == "float32" else 0.05)
    results = _paired([(modules, src.clone), (fused, clone_cl), (modules, clone_cl), (fused, src.clone)])
    extra = {
        "shape": list(src.shape),
        "dtype": precision,
        "layout": "channels_last_3d",
        "max_abs_diff": max_diff,
    }
    labels = ["torch_modules_channels_last", "fastpanc_contiguous"]
    _record_layouts(f"kernel_norm_act_cl_{precision}", results, labels, extra, benchmark, fused, clone_cl)


@pytest.mark.parametrize("precision", ["float32", "bfloat16"])
def test_upsample_cat_channels_last(benchmark, precision):
    _skip_without_bf16(precision)
    torch.manual_seed(0)
    stride = (1, 2, 2)
    tconv = torch.nn.ConvTranspose3d(64, 32, stride, stride).eval()
    low = tuple(n // s for n, s in zip(WINDOW, stride))
    x = torch.randn(1, 64, *low).to(_dtype(precision))
    skip = torch.randn(1, 32, *WINDOW).to(_dtype(precision))
    x_cl, skip_cl = x.contiguous(memory_format=CL), skip.contiguous(memory_format=CL)
    w_cl = transposed_conv_as_1x1_weight(tconv.weight).contiguous(memory_format=CL)

    def modules(_):
        with torch.inference_mode(), _ctx(precision):
            return torch.cat((tconv(x), skip), 1)

    def fused_cl(_):
        with torch.inference_mode(), _ctx(precision):
            y = F.conv3d(x_cl, w_cl)
            return depth_to_space_cat(y, stride, tconv.bias, skip_cl)

    def fused(_):
        with torch.inference_mode(), _ctx(precision):
            y = F.conv3d(x, transposed_conv_as_1x1_weight(tconv.weight))
            return depth_to_space_cat(y, stride, tconv.bias, skip)

    want, got = modules(None).float(), fused_cl(None)
    assert got.is_contiguous(memory_format=CL)
    max_diff = float((want - got.float()).abs().max())
    assert max_diff <= (1e-4 if precision == "float32" else 0.1)
    extra = {"input": list(x.shape), "skip": list(skip.shape), "dtype": precision, "max_abs_diff": max_diff}
    _record_cl_vs_contiguous(
        f"kernel_upsample_cat_cl_{precision}", extra, benchmark, modules, fused_cl, fused
    )


@pytest.mark.parametrize("precision", ["float32", "bfloat16"])
def test_avg_pool_channels_last(benchmark, precision):
    _skip_without_bf16(precision)
    pool = torch.nn.AvgPool3d((1, 2, 2), (1, 2, 2))
    x = torch.randn(1, 32, *WINDOW).to(_dtype(precision))
    x_cl = x.contiguous(memory_format=CL)

    def modules(_):
        with torch.inference_mode(), _ctx(precision):
            return pool(x)

    def fused_cl(_):
        with torch.inference_mode():
            return avg_pool_down(x_cl, (1, 2, 2))

    def fused(_):
        with torch.inference_mode():
            return avg_pool_down(x, (1, 2, 2))

    got = fused_cl(None)
    assert got.is_contiguous(memory_format=CL)
    max_diff = float((modules(None).float() - got.float()).abs().max())
    assert max_diff <= (1e-5 if precision == "float32" else 0.02)
    extra = {"shape": list(x.shape), "dtype": precision, "max_abs_diff": max_diff}
    _record_cl_vs_contiguous(f"kernel_avg_pool_cl_{precision}", extra, benchmark, modules, fused_cl, fused)


@pytest.mark.parametrize("precision", ["float32", "bfloat16"])
def test_norm_act_train(benchmark, precision):
    _skip_without_bf16(precision)
    torch.manual_seed(0)
    norm = torch.nn.InstanceNorm3d(32, eps=1e-5, affine=True)
    with torch.no_grad():
        norm.weight.uniform_(0.5, 1.5)
        norm.bias.uniform_(-0.2, 0.2)
    shape = (2, 32, 32, 64, 96)
    dtype = _dtype(precision)
    src, res, grad = (torch.randn(shape).to(dtype) for _ in range(3))

    def setup():
        norm.weight.grad = norm.bias.grad = None
        return src.clone().requires_grad_(), res.clone().requires_grad_()

    def modules(args):
        x, r = args
        with _ctx(precision):
            y = torch.nn.functional.leaky_relu(norm(x) + r, 0.01, inplace=True)
        y.backward(grad.to(y.dtype))
        return y, x.grad, r.grad, norm.weight.grad, norm.bias.grad

    def fused(args):
        x, r = args
        y = instance_norm_act(x, norm.weight, norm.bias, norm.eps, 0.01, r)
        y.backward(grad.to(y.dtype))
        return y, x.grad, r.grad, norm.weight.grad, norm.bias.grad

    def exact(args):  # the definition: float32 arithmetic on the same inputs, float32 result
        x, r = args
        y = instance_norm_act_reference(x, norm.weight, norm.bias, norm.eps, 0.01, r, torch.float32)
        y.backward(grad.float())
        return y, x.grad, r.grad, norm.weight.grad, norm.bias.grad

    def rel_err(got, want):
        """The largest relative L2 error of the output and the gradients (in bf16 a LeakyReLU mask bit flips
        wherever two computations round a value near 0 differently, which a largest-entry error would count
        as a whole gradient value)."""
        return max(float((a.float() - b.float()).norm() / b.float().norm()) for a, b in zip(got, want))

    want = exact(setup())
    err_fused, err_modules = rel_err(fused(setup()), want), rel_err(modules(setup()), want)
    # bf16: torch's modules under autocast normalise and add in bf16, the fused op in float32
    assert err_fused <= (1e-5 if precision == "float32" else 1e-2), err_fused
    results = _paired([(modules, setup), (fused, setup)])
    extra = {
        "shape": list(shape),
        "dtype": precision,
        "pass": "forward + backward",
        "relative_l2_error_fastpanc": err_fused,
        "relative_l2_error_torch_modules": err_modules,
    }
    _record(f"kernel_norm_act_train_{precision}", results, extra, benchmark, fused, setup)
