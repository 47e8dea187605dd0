"""Multitask training: config, patch sampling and prefetching, on-device augmentation, the training loop,
checkpoints, logs and DDP. Entry points: :class:`fastpanc.training.trainer.Trainer` and ``fastpanc train``."""

from __future__ import annotations

from fastpanc.training.config import AugmentConfig, NetworkOverrides, TrainConfig

__all__ = ["AugmentConfig", "NetworkOverrides", "TrainConfig"]
