"""Multitask residual-encoder U-Net, classification heads, losses and nnU-Net weight compatibility."""

from __future__ import annotations

from fastpanc.model.heads import HeadConfig
from fastpanc.model.network import Features, MultitaskResEncUNet, NetOutput
from fastpanc.model.plans_arch import ArchConfig, arch_from_plans

__all__ = ["ArchConfig", "Features", "HeadConfig", "MultitaskResEncUNet", "NetOutput", "arch_from_plans"]
