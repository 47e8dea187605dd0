"""Resampling of real CT: fastpanc.ops.resample against nnU-Net v2's ``resample_data_or_seg_to_shape``.

Two steps of nnU-Net's pipeline, each on two real test images (../shared/data/real/test_images): the
largest one (1.5 mm slices, resampled in 3D) and the one with 4 mm slices (separate-z resampling):

- ``to_target``: the image to the ResEnc M target spacing 2.0 x 0.732 x 0.732 mm (z, y, x) with nnU-Net's
  data kwargs (order 3, order_z 0, force_separate_z None), as its preprocessing does;
- ``logits_back``: 3-channel float32 logits on that target grid back to the original shape with its
  probability kwargs (order 1, order_z 0, force_separate_z None), as its export does.

nnU-Net runs its own function (numpy/scipy on the CPU, float64 inside, as it always does); fastpanc runs on
``device`` (on CUDA the baseline is still nnU-Net's CPU function, since that is what nnU-Net uses). Both
results are compared (max abs difference <= 1e-3 of the value range) before timing.

    pytest benchmarks/bench_resample.py --benchmark-enable -s
"""

from __future__ import annotations

import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent))
from _record import record  # noqa: E402

from fastpanc.ops import compute_new_shape, resample, separate_z_axis  # noqa: E402

COMMAND = "pytest benchmarks/bench_resample.py --benchmark-enable -s"
TARGET_SPACING = (2.0, 0.732, 0.732)
DEVICES = [
    "cpu",
    pytest.param("cuda", marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA GPU")),
]
IMAGES = {"largest": "quiz_405_0000.nii.gz", "thick_slices": "quiz_351_0000.nii.gz"}


def timings(fn: Callable[[], object], rounds: int, sync: bool = False) -> tuple[float, float, float]:
    """(min, median) wall time and min process CPU time (all threads) of ``fn`` over ``rounds`` after a warm-up.

    The CPU time is reported beside the wall time because the benchmark machine's cores may be shared.
    """
    times, cpu = [], []
    for i in range(rounds + 1):
        if sync:
            torch.cuda.synchronize()
        t0, c0 = time.perf_counter(), time.process_time()
        fn()
        if sync:
            torch.cuda.synchronize()
        if i:
            times.append(time.perf_counter() - t0)
            cpu.append(time.process_time() - c0)
    return min(times), statistics.median(times), min(cpu)


def _load(shared_data: Path, key: str) -> tuple[np.ndarray, tuple[float, float, float]]:
    sitk = pytest.importorskip("SimpleITK", reason="SimpleITK reads the real CT")
    path = shared_data / "real" / "test_images" / IMAGES[key]
    if not path.is_file():
        pytest.skip(f"real test image {path} is missing")
    img = sitk.ReadImage(str(path))
    data = sitk.GetArrayFromImage(img).astype(np.float32)[None]  # (1, z, y, x), as nnU-Net reads it
    return np.ascontiguousarray(data), tuple(float(s) for s in img.GetSpacing()[::-1])


def _nnunet():
    mod = pytest.importorskip(
        "nnunetv2.preprocessing.resampling.default_resampling",
        reason="nnunetv2 is the baseline (pip install '.[test]')",
    )
    return mod.resample_data_or_seg_to_shape


def _compare_and_record(name, baseline, fast, reference_range, device, extra, benchmark):
    want = baseline()
    got = fast().cpu().double().numpy()
    diff = float(np.abs(got - want).max())
    assert diff <= 1e-3 * reference_range, f"max abs difference {diff} > 1e-3 of the range {reference_range}"
    sync = device == "cuda"
    base_min, base_med, base_cpu = timings(baseline, rounds=3)
    fast_min, fast_med, fast_cpu = timings(fast, rounds=10, sync=sync)
    extra.update(
        {
            "max_abs_diff": diff,
            "value_range": reference_range,
            "threads": torch.get_num_threads(),
            "timing": "min over rounds after a warm-up (nnU-Net 3, fastpanc 10)",
            "baseline_median_s": base_med,
            "fastpanc_median_s": fast_med,
            "baseline_cpu_s": base_cpu,
            "fastpanc_cpu_s": fast_cpu,
            "load_average_1min": os.getloadavg()[0],
        }
    )
    record(name, base_min, fast_min, COMMAND, device=device, extra=extra)
    benchmark.pedantic(lambda: (fast(), torch.cuda.synchronize() if sync else None), rounds=5)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("image", list(IMAGES))
def test_resample_to_target(benchmark, shared_data, device, image):
    fn = _nnunet()
    data, spacing = _load(shared_data, image)
    new_shape = compute_new_shape(data.shape[1:], spacing, TARGET_SPACING)
    axis = separate_z_axis(spacing, TARGET_SPACING)
    x = torch.from_numpy(data).to(device)

    def baseline():
        return fn(
            data, new_shape, spacing, TARGET_SPACING, is_seg=False, order=3, order_z=0, force_separate_z=None
        )

    def fast():
        return resample(x, new_shape, order=3, separate_z=axis, order_z=0)

    extra = {
        "image": IMAGES[image],
        "spacing": list(spacing),
        "shape": list(data.shape),
        "new_shape": list(new_shape),
        "separate_z": axis,
        "order": 3,
    }
    _compare_and_record(
        f"kernel_resample_to_target_{image}", baseline, fast, float(np.ptp(data)), device, extra, benchmark
    )


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("image", list(IMAGES))
def test_resample_logits_back(benchmark, shared_data, device, image):
    fn = _nnunet()
    data, spacing = _load(shared_data, image)
    target_shape = compute_new_shape(data.shape[1:], spacing, TARGET_SPACING)
    g = torch.Generator().manual_seed(0)
    # smooth 3-class logits on the target grid (their values do not change the work done)
    coarse = torch.randn((1, 3, *(max(2, s // 8) for s in target_shape)), generator=g) * 4
    logits = torch.nn.functional.interpolate(coarse, size=target_shape, mode="trilinear")[0].contiguous()
    logits_np = logits.numpy()
    axis = separate_z_axis(TARGET_SPACING, spacing)
    x = logits.to(device)

    def baseline():
        return fn(
            logits_np,
            data.shape[1:],
            TARGET_SPACING,
            spacing,
            is_seg=False,
            order=1,
            order_z=0,
            force_separate_z=None,
        )

    def fast():
        return resample(x, data.shape[1:], order=1, separate_z=axis, order_z=0)

    extra = {
        "image": IMAGES[image],
        "spacing": list(spacing),
        "logits_shape": list(logits.shape),
        "new_shape": list(data.shape[1:]),
        "separate_z": axis,
        "order": 1,
    }
    _compare_and_record(
        f"kernel_resample_logits_back_{image}",
        baseline,
        fast,
        float(np.ptp(logits_np)),
        device,
        extra,
        benchmark,
    )
