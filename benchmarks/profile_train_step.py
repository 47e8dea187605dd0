"""Where a CPU training step spends its time: torch profiler over fastpanc's ``Trainer.train_step``.

The same small ResEnc plans and batches as ``bench_train_throughput.py -k cpu`` (patch 16 x 64 x 64, batch 2,
float32). Prints the share of the profiled steps spent in instance norm and LeakyReLU, forward and backward
(inclusive times of the top-level ops and autograd nodes), next to the convolutions, for the torch modules and
(``--fused on``) for the fused ``instance_norm_act`` with its C++ backward.

    python benchmarks/profile_train_step.py --fused off --threads 2 --steps 6
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # as benchmarks/conftest.py and the CLI

import torch  # noqa: E402
from torch.profiler import ProfilerActivity, profile, record_function  # noqa: E402

sys.path.insert(0, str(Path(__file__).parent))
from bench_train_throughput import small_plans, write_cases  # noqa: E402

from fastpanc.training.config import TrainConfig  # noqa: E402
from fastpanc.training.trainer import Trainer  # noqa: E402

# (group, profiler event names); inclusive CPU time of each event, summed over the profiled steps. torch's
# instance norm returns a view of its batch-norm output, so the in-place LeakyReLU on it records CopySlices (which
# runs LeakyReluBackward1 inside it) and an AsStridedBackward0 for the view: both are part of the LeakyReLU backward.
GROUPS = {
    "instance norm forward": ["aten::instance_norm"],
    "instance norm backward": ["autograd::engine::evaluate_function: NativeBatchNormBackward0"],
    "LeakyReLU forward": ["aten::leaky_relu_", "aten::leaky_relu"],
    "LeakyReLU backward": [
        "autograd::engine::evaluate_function: LeakyReluBackward1",
        "autograd::engine::evaluate_function: LeakyReluBackward0",
        "autograd::engine::evaluate_function: torch::autograd::CopySlices",
        "autograd::engine::evaluate_function: AsStridedBackward0",
    ],
    "fused norm + act forward": ["_InstanceNormAct"],
    "fused norm + act backward": ["autograd::engine::evaluate_function: _InstanceNormActBackward"],
    "convolution forward": ["aten::convolution"],
    "convolution backward": ["autograd::engine::evaluate_function: ConvolutionBackward0"],
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--fused", choices=["on", "off"], default="off", help="TrainConfig.fused_norm")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--steps", type=int, default=6, help="profiled steps (after 2 warm-up steps)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        pre = Path(tmp) / "pre"
        pre.mkdir()
        write_cases(pre, small_plans())
        cfg = TrainConfig(num_workers=1, lambda_ramp_epochs=0)
        if any(f.name == "fused_norm" for f in dataclasses.fields(TrainConfig)):
            cfg = cfg.replace(fused_norm=args.fused == "on")
        elif args.fused == "on":
            raise SystemExit("this fastpanc has no TrainConfig.fused_norm")
        tr = Trainer(pre, Path(tmp) / "model", cfg, "cpu")
        batches = [
            {k: torch.from_numpy(v) for k, v in tr.sampler.sample(0, i).items()}
            for i in range(args.steps + 2)
        ]
        tr.model.train()
        for i in range(2):
            tr.train_step(batches[i], seed=i)
        plain = []
        for i in range(2, args.steps + 2):  # the same steps unprofiled, for the profiler's overhead
            t0 = time.perf_counter()
            tr.train_step(batches[i], seed=i)
            plain.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            for i in range(2, args.steps + 2):
                with record_function("train_step"):
                    tr.train_step(batches[i], seed=i)
        wall = time.perf_counter() - t0
    events = {e.key: e for e in prof.key_averages()}
    total = events["train_step"].cpu_time_total  # microseconds, all profiled steps
    print(f"fused_norm={args.fused}, {args.threads} threads, {args.steps} steps")
    print(
        f"  step: {statistics.median(plain) * 1e3:.1f} ms unprofiled (median), {total / args.steps / 1e3:.1f} ms "
        f"profiled ({wall / args.steps * 1e3:.1f} ms wall)"
    )
    for group, names in GROUPS.items():
        us = sum(events[n].cpu_time_total for n in names if n in events)
        if us:
            print(f"  {group:28s} {us / args.steps / 1e3:7.2f} ms/step  {100 * us / total:5.1f}%")


if __name__ == "__main__":
    main()
