"""The trainer on a CUDA GPU (skipped without one): augmentation on the device, bf16 and fp16 autocast (fp16 with
a GradScaler), both heads learn, and a short fit writes its checkpoints."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from fastpanc.training.config import AugmentConfig, TrainConfig
from fastpanc.training.trainer import Trainer

pytestmark = pytest.mark.cuda


@pytest.mark.parametrize("amp", ["bf16", "fp16"])
def test_cuda_training_steps_learn(tiny_preprocessed: Path, tmp_path: Path, amp: str) -> None:
    cfg = TrainConfig(
        optimizer="adamw",
        lr=3e-3,
        lambda_ramp_epochs=0,
        lambda_cls=1.0,
        num_workers=1,
        patch_size=(8, 16, 16),
        batch_size=4,
        amp_dtype=amp,
        augmentation=AugmentConfig(p_rotation=0.3, p_elastic=0.3),
        oversample_foreground=1.0,
    )
    tr = Trainer(tiny_preprocessed, tmp_path / "m", cfg, "cuda")
    assert (tr.scaler is not None) == (amp == "fp16")
    assert next(tr.network.parameters()).device.type == "cuda"
    batches = [tr.sampler.sample(0, it) for it in range(4)]
    losses = []
    for step in range(30):
        b = {k: torch.from_numpy(v) for k, v in batches[step % 4].items()}
        losses.append(tr.train_step(b, seed=step))
        if step == 0:
            head = [p.grad for p in tr.network.head.parameters()]
            assert all(g is not None for g in head) and any(float(g.abs().sum()) > 0 for g in head)
            dec = [p.grad for p in tr.network.decoder.parameters()]
            assert any(g is not None and float(g.abs().sum()) > 0 for g in dec)
    seg = np.array([s for _, s, _ in losses])
    assert np.isfinite(seg).all()
    assert seg[-4:].mean() < 0.9 * seg[:4].mean(), seg


def test_cuda_fit_writes_checkpoints(tiny_preprocessed: Path, tmp_path: Path) -> None:
    cfg = TrainConfig(
        epochs=2,
        iterations_per_epoch=3,
        val_iterations=1,
        num_workers=1,
        patch_size=(8, 16, 16),
        lambda_ramp_epochs=0,
    )
    fold = Trainer(tiny_preprocessed, tmp_path / "m", cfg, "cuda").fit()
    for name in ("checkpoint_final.pth", "checkpoint_latest.pth", "checkpoint_best.pth"):
        assert (fold / name).is_file(), name
    ck = torch.load(fold / "checkpoint_final.pth", map_location="cpu", weights_only=True)
    assert ck["current_epoch"] == 2
    assert all(
        t.device.type == "cpu" and torch.isfinite(t.float()).all() for t in ck["network_weights"].values()
    )
