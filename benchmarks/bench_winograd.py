"""ResEnc M's 3x3x3 convolutions one at a time: torch's ``Conv3d`` (oneDNN on the CPU, what nnU-Net runs) against
``fastpanc.ops.conv3d_same`` by Winograd F(2, 3) and F(4, 3).

The layers of one 64 x 128 x 192 window through the real plans' network (input channels, output channels, the
activation's size), float32, channels-last on both sides, random weights, inference mode. Each row records the
F(4, 3) time against torch's (the ``auto`` choice from ``MIN_CHANNELS`` input channels) and prints F(2, 3) as well;
both are checked against the direct convolution. The whole network with and without Winograd is the
``channels_last_winograd`` row of bench_network.py.

    pytest benchmarks/bench_winograd.py --benchmark-enable -s
"""

from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent))
from _record import record  # noqa: E402

COMMAND = "pytest benchmarks/bench_winograd.py --benchmark-enable -s"
ROUNDS = 3
LAYERS = [  # (input channels, output channels, kernel z, activation size): the plans' stages and decoder
    (32, 32, 1, (64, 128, 192)),
    (64, 64, 3, (64, 64, 96)),
    (128, 64, 3, (64, 64, 96)),
    (128, 128, 3, (32, 32, 48)),
    (256, 128, 3, (32, 32, 48)),
    (256, 256, 3, (16, 16, 24)),
    (512, 256, 3, (16, 16, 24)),
    (320, 320, 3, (8, 8, 12)),
]


@pytest.mark.parametrize(("cin", "cout", "kz", "size"), LAYERS, ids=lambda v: str(v).replace(" ", ""))
def test_conv3x3_winograd_vs_torch(benchmark, cin, cout, kz, size):
    from fastpanc.ops import conv3d_same

    g = torch.Generator().manual_seed(cin * 1000 + cout)
    x = torch.randn(1, cin, *size, generator=g).contiguous(memory_format=torch.channels_last_3d)
    conv = torch.nn.Conv3d(cin, cout, (kz, 3, 3), padding=(kz // 2, 1, 1)).eval()
    conv = conv.to(memory_format=torch.channels_last_3d)
    w, b = conv.weight.detach(), conv.bias.detach()

    def run_ref():
        with torch.inference_mode():
            return conv(x)

    def run(tile):
        def f():
            with torch.inference_mode():
                return conv3d_same(x, w, b, backend="cpu", tile=tile)

        return f

    want = run_ref()  # also the warm-ups (oneDNN primitive, the transformed weights)
    scale = float(want.abs().max())
    errors = {tile: float((run(tile)() - want).abs().max()) / scale for tile in (2, 4)}
    sides = {"torch": [], 2: [], 4: []}
    fns = {"torch": run_ref, 2: run(2), 4: run(4)}
    for _ in range(ROUNDS):  # interleaved, so that load changes hit every side alike
        for key, fn in fns.items():
            t0 = time.perf_counter()
            fn()
            sides[key].append(time.perf_counter() - t0)
    base, f2, f4 = min(sides["torch"]), min(sides[2]), min(sides[4])
    print(
        f"[conv {cin}->{cout} k{kz}x3x3 {size}] torch {base * 1e3:.1f} ms, F(2,3) {f2 * 1e3:.1f} ms "
        f"({base / f2:.2f}x, err {errors[2]:.1e}), F(4,3) {f4 * 1e3:.1f} ms ({base / f4:.2f}x, err {errors[4]:.1e})",
        file=sys.stderr,
    )
    record(
        f"kernel_conv3x3_winograd_{cin}_{cout}_{'x'.join(map(str, size))}",
        base,
        f4,
        COMMAND,
        extra={
            "layer": {"cin": cin, "cout": cout, "kernel": [kz, 3, 3], "size": list(size)},
            "timing": f"min of {ROUNDS} interleaved rounds after one warm-up call each",
            "baseline_median_s": statistics.median(sides["torch"]),
            "fastpanc_median_s": statistics.median(sides[4]),
            "f23_s": f2,
            "f23_ratio": base / f2,
            "max_abs_diff_over_scale": {"f23": errors[2], "f43": errors[4]},
            "threads": torch.get_num_threads(),
        },
    )
    assert errors[2] <= 2e-5 and errors[4] <= 2e-4
    benchmark.pedantic(run(4), rounds=1, warmup_rounds=0)
