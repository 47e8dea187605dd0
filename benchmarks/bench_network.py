"""One ResEnc M window through the network: nnU-Net's module against fastpanc's predictor network.

Baseline: ``dynamic_network_architectures``' ``ResidualEncoderUNet`` built by nnU-Net v2 from the real
plans (``../shared/data/real/plans``), seeded random weights, eval mode, no deep supervision: the module
``nnUNetv2_predict`` runs for every window. fastpanc: the same weights loaded into
``MultitaskResEncUNet`` with ``fuse_inference`` (instance norm + residual + LeakyReLU as one pass, strided
skips pooled in the activations' dtype, upsampling as a 1x1 convolution + ``depth_to_space_cat``), as
``fastpanc-predict`` runs it on a CPU. With a GPU a third case runs both on CUDA in float16 autocast. One window of the plans'
patch (64 x 128 x 192), float32 (exact mode) and bfloat16 autocast (fast mode; the same autocast for both).
Label agreement is the argmax of the two outputs compared voxel by voxel. The ``channels_last`` rows run fastpanc's
network with ``fuse_inference("auto", channels_last=True)`` (every layer NDHWC) and time the contiguous fused
network in the same interleaved rounds, so the row also holds the channels-last / contiguous ratio. The
``channels_last_winograd`` row adds ``winograd=True`` (the wide 3x3x3 convolutions by Winograd,
``fastpanc.ops.conv3d_same``) and times the channels-last network without it in the same rounds; it also records
the memory of the transformed weights it caches.

    pytest benchmarks/bench_network.py --benchmark-enable -s
"""

from __future__ import annotations

import copy
import json
import statistics
import sys
import time
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent))
from _record import record  # noqa: E402

COMMAND = "pytest benchmarks/bench_network.py --benchmark-enable -s"
ROUNDS = 3


def _nets(shared_data: Path):
    from nnunetv2.utilities.get_network_from_plans import get_network_from_plans

    from fastpanc.model.network import MultitaskResEncUNet

    plans = json.loads((shared_data / "real" / "plans" / "nnUNetResEncUNetMPlans.json").read_text())
    cfg = plans["configurations"]["3d_fullres"]
    arch = cfg["architecture"]
    torch.manual_seed(0)
    ref = get_network_from_plans(
        arch["network_class_name"],
        arch["arch_kwargs"],
        arch["_kw_requires_import"],
        1,
        3,
        deep_supervision=False,
    ).eval()
    with torch.no_grad():  # nnU-Net zero-inits the last norm of each block; random values make it count
        for p in ref.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    ours = MultitaskResEncUNet.from_plans(plans, num_subtypes=0, deep_supervision=False)
    ours.load_state_dict(ref.state_dict(), strict=True)
    return ref, ours.eval().fuse_inference("auto"), tuple(cfg["patch_size"])


CUDA = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA GPU")


@pytest.mark.parametrize(
    ("device", "precision", "layout"),
    [
        ("cpu", "float32", "contiguous"),
        ("cpu", "bfloat16", "contiguous"),
        ("cpu", "float32", "channels_last"),
        ("cpu", "bfloat16", "channels_last"),
        ("cpu", "float32", "channels_last_winograd"),
        pytest.param("cuda", "float16", "contiguous", marks=CUDA),
    ],
)
def test_network_forward_vs_nnunet(benchmark, shared_data, device, precision, layout):
    """On CUDA: float16 autocast as nnU-Net predicts there, fastpanc's norm pass in Triton (not yet the
    predictor's GPU default; this benchmark decides it)."""
    pytest.importorskip("nnunetv2", reason="nnunetv2 is the baseline")
    if precision == "bfloat16":
        from fastpanc.inference.predictor import cpu_has_bf16

        if not cpu_has_bf16():
            pytest.skip("this CPU has no native bfloat16 (AVX512-BF16/AMX)")
    ref, ours, patch = _nets(shared_data)
    ref, ours = ref.to(device), ours.to(device)
    contiguous = None  # the network timed in the same rounds as the row's second reference
    if layout == "channels_last":
        contiguous = ours
        ours = copy.deepcopy(ours).fuse_inference("auto", channels_last=True)
    elif layout == "channels_last_winograd":
        contiguous = copy.deepcopy(ours).fuse_inference("auto", channels_last=True)
        ours = copy.deepcopy(ours).fuse_inference("auto", channels_last=True, winograd=True)
    x = torch.randn(1, 1, *patch, generator=torch.Generator().manual_seed(1)).to(device)
    dtype = getattr(torch, precision)
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)

    def ctx():
        return torch.autocast(device, dtype=dtype, enabled=precision != "float32")

    def run_ref():
        with torch.inference_mode(), ctx():
            out = ref(x)
        sync()
        return out

    def run_ours():
        with torch.inference_mode(), ctx():
            out = ours(x).seg[0]
        sync()
        return out

    def run_contiguous():
        with torch.inference_mode(), ctx():
            return contiguous(x).seg[0]

    want, got = run_ref().float(), run_ours().float()  # also the warm-up (oneDNN primitive creation)
    agree = float((want.argmax(1) == got.argmax(1)).float().mean())
    max_diff = float((want - got).abs().max())
    base, fast, cont = [], [], []
    sides = [(run_ref, base), (run_ours, fast)]
    layout_extra = {}
    if contiguous is not None:
        got_contiguous = run_contiguous().float()
        layout_extra["max_abs_logit_diff_to_contiguous_fused"] = float((got - got_contiguous).abs().max())
        sides.append((run_contiguous, cont))
    rounds = 20 if device == "cuda" else ROUNDS
    for _ in range(rounds):  # interleaved, so that load changes hit both sides alike
        for fn, times in sides:
            t0 = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t0)
    if cont and layout == "channels_last_winograd":
        d = layout_extra.pop("max_abs_logit_diff_to_contiguous_fused")
        layout_extra["max_abs_logit_diff_to_channels_last"] = d
        layout_extra["channels_last_s"] = min(cont)
        layout_extra["channels_last_median_s"] = statistics.median(cont)
        layout_extra["channels_last_over_winograd"] = min(cont) / min(fast)
        from fastpanc.ops import winograd

        layout_extra["winograd_weights_gib"] = (
            sum(u.numel() * 4 for _, per_tile in winograd._transformed.values() for u in per_tile.values())
            / 2**30
        )
        print(
            f"[network {precision}] channels-last {min(cont):.3f} s, with Winograd {min(fast):.3f} s: "
            f"{min(cont) / min(fast):.3f}x; max |logit diff| {d:.2e}; transformed weights "
            f"{layout_extra['winograd_weights_gib']:.2f} GiB",
            file=sys.stderr,
        )
    elif cont:
        layout_extra["contiguous_fused_s"] = min(cont)
        layout_extra["contiguous_fused_median_s"] = statistics.median(cont)
        layout_extra["contiguous_over_channels_last"] = min(cont) / min(fast)
        print(
            f"[network {precision}] contiguous fused {min(cont):.3f} s, channels-last {min(fast):.3f} s: "
            f"{min(cont) / min(fast):.3f}x; max |logit diff| {layout_extra['max_abs_logit_diff_to_contiguous_fused']:.2e}",
            file=sys.stderr,
        )
    record(
        f"network_forward_{precision}" + ("" if layout == "contiguous" else f"_{layout}"),
        min(base),
        min(fast),
        COMMAND,
        device=device,
        extra={
            "patch": list(patch),
            "timing": f"min of {rounds} interleaved rounds after one warm-up call each",
            "baseline_median_s": statistics.median(base),
            "fastpanc_median_s": statistics.median(fast),
            "label_agreement_with_nnunet": agree,
            "max_abs_logit_diff": max_diff,
            "threads": torch.get_num_threads(),
            **layout_extra,
        },
    )
    assert agree >= (0.999 if precision == "float32" else 0.99)
    benchmark.pedantic(run_ours, rounds=1, warmup_rounds=0)
