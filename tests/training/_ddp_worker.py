"""Run by ``torch.distributed.run`` in test_ddp.py: train a tiny model for one epoch and save what each rank saw."""

from __future__ import annotations

import sys
from pathlib import Path

import torch

from fastpanc.training.config import TrainConfig
from fastpanc.training.distributed import shutdown
from fastpanc.training.trainer import Trainer


def main(preprocessed: str, output: str) -> None:
    cfg = TrainConfig(
        epochs=1,
        iterations_per_epoch=2,
        val_iterations=1,
        num_workers=1,
        patch_size=(8, 16, 16),
        lambda_ramp_epochs=0,
    )
    tr = Trainer(preprocessed, output, cfg, "cpu")
    first_batch = tr.sampler.sample(0, 0)
    tr.fit()
    torch.save(
        {
            "rank": tr.dist.rank,
            "world_size": tr.dist.world_size,
            "weights": tr.network.state_dict(),
            "first_cases": torch.from_numpy(first_batch["case"]),
            "first_image_sum": float(first_batch["image"].sum()),
        },
        Path(output) / f"rank{tr.dist.rank}.pt",
    )
    shutdown(tr.dist)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
