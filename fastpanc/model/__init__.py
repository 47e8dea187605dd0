"""Multitask residual-encoder U-Net, classification heads, losses and nnU-Net weight compatibility."""

from __future__ import annotations

from fastpanc.model.heads import HeadConfig
from fastpanc.model.losses import (
    ClassificationLoss,
    LossConfig,
    LossTerms,
    MultitaskLoss,
    class_weights_from_counts,
)
from fastpanc.model.network import Features, MultitaskResEncUNet, NetOutput
from fastpanc.model.nnunet_compat import (
    build_from_nnunet_folder,
    fastpanc_settings,
    load_nnunet_checkpoint,
    read_checkpoint,
)
from fastpanc.model.plans_arch import ArchConfig, arch_from_plans

__all__ = [
    "ArchConfig",
    "ClassificationLoss",
    "Features",
    "HeadConfig",
    "LossConfig",
    "LossTerms",
    "MultitaskLoss",
    "MultitaskResEncUNet",
    "NetOutput",
    "arch_from_plans",
    "build_from_nnunet_folder",
    "class_weights_from_counts",
    "fastpanc_settings",
    "load_nnunet_checkpoint",
    "read_checkpoint",
]
