"""Sliding-window aggregation: fastpanc accumulate + finalize against the torch code of nnU-Net's predictor.

The baseline is ``nnUNetPredictor._internal_predict_sliding_window_return_logits`` without the network,
reproduced line by line: half-precision ``predicted_logits`` and ``n_predictions`` on the results device,
the float16 Gaussian from nnU-Net's own ``compute_gaussian(patch, 1/8, value_scaling_factor=10)``, per
window ``prediction *= gaussian; predicted_logits[sl] += prediction; n_predictions[sl[1:]] += gaussian``,
then ``torch.div(..., out=predicted_logits)``, the ``isinf`` check, and the argmax. fastpanc accumulates
the same windows (one call per window, as nnU-Net predicts one window at a time) in float32 and
finalizes (divide + argmax to uint8) in one pass. The per-window network outputs are made before the
timed region for both (nnU-Net multiplies them in place, so it gets fresh copies each round).

Volume: the largest real test image's shape at the ResEnc M target spacing (2.0, 0.732, 0.732) mm,
padded to at least the patch 64 x 128 x 192 as nnU-Net pads; 3 classes, tile step 0.5.

    pytest benchmarks/bench_aggregate.py --benchmark-enable -s
"""

from __future__ import annotations

import json
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent))
from _record import record  # noqa: E402

from fastpanc.ops import accumulate, finalize, gaussian_map, window_slices  # noqa: E402

COMMAND = "pytest benchmarks/bench_aggregate.py --benchmark-enable -s"
DEVICES = [
    "cpu",
    pytest.param("cuda", marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA GPU")),
]
NUM_CLASSES = 3


def timings(
    fn: Callable[..., object], setup: Callable[[], object] | None = None, rounds: int = 5, sync: bool = False
) -> tuple[float, float]:
    """(min, median) wall time of ``fn`` over ``rounds`` after one warm-up; ``setup`` runs untimed."""
    times = []
    for i in range(rounds + 1):
        arg = setup() if setup is not None else None
        if sync:
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        fn() if setup is None else fn(arg)
        if sync:
            torch.cuda.synchronize()
        if i:
            times.append(time.perf_counter() - t0)
    return min(times), statistics.median(times)


def _volume_shape(
    shared_data: Path, patch: tuple[int, ...], spacing: list[float]
) -> tuple[str, tuple[int, ...]]:
    sitk = pytest.importorskip("SimpleITK", reason="SimpleITK reads the real CT headers")
    best = None
    for p in sorted((shared_data / "real" / "test_images").glob("*_0000.nii.gz")):
        reader = sitk.ImageFileReader()
        reader.SetFileName(str(p))
        reader.ReadImageInformation()
        size_zyx = reader.GetSize()[::-1]
        sp_zyx = reader.GetSpacing()[::-1]
        shape = tuple(int(round(n * s / t)) for n, s, t in zip(size_zyx, sp_zyx, spacing))
        n = shape[0] * shape[1] * shape[2]
        if best is None or n > best[0]:
            best = (n, p.name, shape)
    if best is None:
        pytest.skip(f"no test images in {shared_data / 'real' / 'test_images'}")
    return best[1], tuple(max(s, p) for s, p in zip(best[2], patch))  # nnU-Net pads to the patch size


def nnunet_aggregate(
    preds: list[torch.Tensor], slicers, shape, gaussian: torch.Tensor, device
) -> torch.Tensor:
    """nnU-Net v2.8.1's aggregation loop and final argmax, network calls replaced by ``preds``."""
    predicted_logits = torch.zeros((NUM_CLASSES, *shape), dtype=torch.half, device=device)
    n_predictions = torch.zeros(shape, dtype=torch.half, device=device)
    for prediction, sl in zip(preds, slicers):
        prediction *= gaussian
        predicted_logits[sl] += prediction
        n_predictions[sl[1:]] += gaussian
    torch.div(predicted_logits, n_predictions, out=predicted_logits)
    if torch.any(torch.isinf(predicted_logits)):
        raise RuntimeError("Encountered inf in predicted array")
    return predicted_logits.argmax(0)


def fastpanc_aggregate(preds: torch.Tensor, starts: list[list[int]], shape, gaussian: torch.Tensor, device):
    acc = torch.zeros((NUM_CLASSES, *shape), dtype=torch.float32, device=device)
    weight = torch.zeros(shape, dtype=torch.float32, device=device)
    for b in range(preds.shape[0]):
        accumulate(acc, weight, preds[b : b + 1], starts[b : b + 1], gaussian)
    labels, _ = finalize(acc, weight)
    return labels


@pytest.mark.parametrize("device", DEVICES)
def test_aggregate_vs_nnunet(benchmark, shared_data, device):
    swp = pytest.importorskip(
        "nnunetv2.inference.sliding_window_prediction", reason="nnunetv2 is the baseline"
    )
    plans = json.loads((shared_data / "real" / "plans" / "nnUNetResEncUNetMPlans.json").read_text())
    cfg = plans["configurations"]["3d_fullres"]
    patch = tuple(cfg["patch_size"])
    name, shape = _volume_shape(shared_data, patch, cfg["spacing"])
    sync = device == "cuda"
    dev = torch.device(device)

    slices = window_slices(shape, patch, 0.5)
    slicers = [(slice(None), *sl) for sl in slices]
    starts = [[s.start for s in sl] for sl in slices]
    gen = torch.Generator().manual_seed(0)
    preds = (torch.randn((len(slices), NUM_CLASSES, *patch), generator=gen) * 3).to(dev)
    swp.compute_gaussian.cache_clear()
    g_half = swp.compute_gaussian(patch, sigma_scale=1.0 / 8, value_scaling_factor=10, device=dev)
    g32 = gaussian_map(patch, device=dev)

    want = nnunet_aggregate([p.clone() for p in preds], slicers, shape, g_half, dev)
    want32 = nnunet_aggregate_fp32([p.clone() for p in preds], slicers, shape, g32, dev)
    got = fastpanc_aggregate(preds, starts, shape, g32, dev)
    # the same loop in float32 gives exactly fastpanc's labels; nnU-Net's float16 accumulators differ on
    # near-ties (random logits have many)
    assert torch.equal(got.long(), want32)
    agree = float((got.long() == want).float().mean())
    assert agree > 0.99, f"labels agree with nnU-Net's on only {agree:.5f} of voxels"

    base_min, base_med = timings(
        lambda p: nnunet_aggregate(p, slicers, shape, g_half, dev),
        setup=lambda: [p.clone() for p in preds],
        sync=sync,
    )

    def fp32_torch(p):  # the same loop in float32, to show what the half precision costs nnU-Net
        return nnunet_aggregate_fp32(p, slicers, shape, g32, dev)

    ref32_min, _ = timings(fp32_torch, setup=lambda: [p.clone() for p in preds], sync=sync, rounds=3)
    fast_min, fast_med = timings(lambda: fastpanc_aggregate(preds, starts, shape, g32, dev), sync=sync)
    record(
        "kernel_aggregate",
        base_min,
        fast_min,
        COMMAND,
        device=device,
        extra={
            "image": name,
            "volume_zyx": list(shape),
            "patch": list(patch),
            "windows": len(slices),
            "classes": NUM_CLASSES,
            "timing": "min of 5 rounds after a warm-up",
            "baseline_median_s": base_med,
            "fastpanc_median_s": fast_med,
            "torch_float32_loop_min_s": ref32_min,
            "label_agreement_with_nnunet": agree,
            "threads": torch.get_num_threads(),
        },
    )

    def run():
        fastpanc_aggregate(preds, starts, shape, g32, dev)
        if sync:
            torch.cuda.synchronize()

    benchmark.pedantic(run, rounds=5, warmup_rounds=1)


def nnunet_aggregate_fp32(preds, slicers, shape, gaussian, device) -> torch.Tensor:
    """The same loop with float32 accumulators (not what nnU-Net does; for the record only)."""
    predicted_logits = torch.zeros((NUM_CLASSES, *shape), dtype=torch.float32, device=device)
    n_predictions = torch.zeros(shape, dtype=torch.float32, device=device)
    for prediction, sl in zip(preds, slicers):
        prediction *= gaussian
        predicted_logits[sl] += prediction
        n_predictions[sl[1:]] += gaussian
    torch.div(predicted_logits, n_predictions, out=predicted_logits)
    return predicted_logits.argmax(0)
