"""DDP on the CPU: two gloo processes under torch.distributed.run train in sync on different batches."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import torch

WORKER = Path(__file__).with_name("_ddp_worker.py")


def test_two_process_gloo_training_stays_in_sync(tiny_preprocessed: Path, tmp_path: Path) -> None:
    out = tmp_path / "model"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nnodes",
        "1",
        "--nproc_per_node",
        "2",
        str(WORKER),
        str(tiny_preprocessed),
        str(out),
    ]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-4000:]
    r0 = torch.load(out / "rank0.pt", weights_only=True)
    r1 = torch.load(out / "rank1.pt", weights_only=True)
    assert (r0["rank"], r1["rank"], r0["world_size"], r1["world_size"]) == (0, 1, 2, 2)
    assert r0["first_image_sum"] != r1["first_image_sum"]  # rank-aware sampling: different patches per rank
    for k, v in r0["weights"].items():
        torch.testing.assert_close(v, r1["weights"][k], msg=k)  # gradients were averaged: parameters in sync
    # only rank 0 wrote the model folder, and its checkpoint holds the synchronised weights
    final = torch.load(out / "fold_0/checkpoint_final.pth", weights_only=True)["network_weights"]
    for k, v in final.items():
        torch.testing.assert_close(v, r0["weights"][k], msg=k)
    assert sorted(p.name for p in (out / "fold_0").glob("checkpoint_*.pth")) == [
        "checkpoint_best.pth",
        "checkpoint_final.pth",
        "checkpoint_latest.pth",
    ]
