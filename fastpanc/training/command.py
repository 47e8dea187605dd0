"""``fastpanc train``: parse the command's arguments into a :class:`TrainConfig` and run a :class:`Trainer`."""

from __future__ import annotations

import argparse

import torch

from fastpanc.training.config import TrainConfig
from fastpanc.training.distributed import shutdown
from fastpanc.training.trainer import Trainer


def resolve_device(name: str) -> torch.device:
    """CLI device names: ``auto`` picks CUDA when available (library code never does)."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(name)
    except RuntimeError as exc:
        raise ValueError(f"--device {name!r} is not a device; use auto, cpu, cuda or cuda:N") from exc
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"--device {name!r} asks for CUDA but torch sees no GPU; use --device cpu")
    return dev


def train_command(args: argparse.Namespace) -> int:
    """``fastpanc train PREPROCESSED -o MODEL_DIR [--config FILE] [--epochs E | --minutes M] [--resume]``."""
    config = None
    if not args.resume or args.config or args.epochs or args.minutes:
        config = TrainConfig.load(args.config) if args.config else TrainConfig()
        if args.epochs is not None:
            config = config.replace(epochs=args.epochs, minutes=None)
        if args.minutes is not None:
            config = config.replace(minutes=args.minutes)
    trainer = Trainer(
        args.preprocessed,
        args.output,
        config,
        resolve_device(args.device),
        fold=args.fold,
        resume=args.resume,
    )
    try:
        fold_dir = trainer.fit()
    finally:
        shutdown(trainer.dist)
    if trainer.dist.is_main:
        print(fold_dir / "checkpoint_final.pth")
    return 0
