"""How close the CPU network's convolutions run to what this CPU can compute: the bound on exact mode.

Exact mode predicts in float32, and on a CPU its time is the network's convolutions (oneDNN). This script
counts the floating-point operations of one ResEnc M window (the real plans, ``torch.utils.flop_counter``), times
the window through fastpanc's channels-last fused network as ``fastpanc-predict`` runs it on a CPU, takes the
convolutions' share of it from the torch profiler, and compares their throughput with a large float32 matrix
product on the same threads (what oneDNN / MKL reach on this CPU in their best case) and with bfloat16 ones.

    python benchmarks/conv_efficiency.py [--rounds 3]

It prints a table; nothing is recorded (benchmarks/RESULTS.md quotes the runs).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch
from torch.profiler import ProfilerActivity, profile
from torch.utils.flop_counter import FlopCounterMode

from fastpanc.model.network import MultitaskResEncUNet

PLANS = (
    Path(__file__).resolve().parents[1].parent
    / "shared"
    / "data"
    / "real"
    / "plans"
    / "nnUNetResEncUNetMPlans.json"
)
CONV_OPS = (
    "aten::mkldnn_convolution",
    "aten::slow_conv3d_forward",
    "aten::_convolution_pointwise",
    "aten::mm",
)


def gemm_gflops(dtype: torch.dtype, n: int, rounds: int) -> float:
    """Best throughput (GFLOP/s) of an ``n x n`` by ``n x n`` matrix product in ``dtype``."""
    a, b = torch.randn(n, n).to(dtype), torch.randn(n, n).to(dtype)
    torch.mm(a, b)
    best = float("inf")
    for _ in range(rounds):
        t0 = time.perf_counter()
        torch.mm(a, b)
        best = min(best, time.perf_counter() - t0)
    return 2 * n**3 / best / 1e9


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--plans", type=Path, default=PLANS)
    args = ap.parse_args(argv)
    if not args.plans.is_file():
        print(f"{args.plans} not found: this needs the real dataset's plans (../shared/data/real/plans)")
        return 2
    plans = json.loads(args.plans.read_text())
    patch = tuple(plans["configurations"]["3d_fullres"]["patch_size"])
    torch.manual_seed(0)
    net = MultitaskResEncUNet.from_plans(plans, num_subtypes=0, deep_supervision=False).eval()
    with torch.no_grad():
        for p in net.parameters():
            p.add_(torch.randn_like(p) * 0.05)

    meta = MultitaskResEncUNet.from_plans(plans, num_subtypes=0, deep_supervision=False).eval().to("meta")
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        meta(torch.zeros(1, 1, *patch, device="meta"))
    gflop = counter.get_total_flops() / 1e9

    net = net.fuse_inference("auto", channels_last=True)
    x = torch.randn(1, 1, *patch)
    with torch.no_grad():
        net(x)
        best = float("inf")
        for _ in range(args.rounds):
            t0 = time.perf_counter()
            net(x)
            best = min(best, time.perf_counter() - t0)
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            net(x)
    events = prof.key_averages()
    conv_s = sum(e.self_cpu_time_total for e in events if e.key in CONV_OPS) / 1e6
    total_s = sum(e.self_cpu_time_total for e in events) / 1e6

    g32 = gemm_gflops(torch.float32, 4096, args.rounds)
    g16 = gemm_gflops(torch.bfloat16, 4096, args.rounds)
    conv_rate = gflop / conv_s
    print(f"threads {torch.get_num_threads()}, window {patch}, {gflop:.0f} GFLOP (multiply-add = 2)")
    print("| quantity | value |")
    print("| --- | ---: |")
    print(f"| forward, float32 channels-last fused (best of {args.rounds}) | {best:.3f} s |")
    print(
        f"| convolutions under the profiler | {conv_s:.3f} s of {total_s:.3f} s ({100 * conv_s / total_s:.0f}%) |"
    )
    print(f"| convolution throughput | {conv_rate:.0f} GFLOP/s |")
    print(f"| float32 matrix product 4096^3 | {g32:.0f} GFLOP/s |")
    print(f"| bfloat16 matrix product 4096^3 | {g16:.0f} GFLOP/s |")
    print(f"| convolutions / float32 matrix product | {100 * conv_rate / g32:.0f}% |")
    print(
        f"| forward if the convolutions ran at the matrix product's rate | {best - conv_s + gflop / g32:.3f} s |"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
