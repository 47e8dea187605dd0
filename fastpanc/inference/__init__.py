"""Inference: sliding-window prediction, export to the original geometry, the batch predictor and its CLI."""

from __future__ import annotations

from fastpanc.inference.config import PredictConfig

__all__ = ["PredictConfig", "Predictor"]


def __getattr__(name: str):
    if name == "Predictor":
        from fastpanc.inference.predictor import Predictor

        return Predictor
    raise AttributeError(f"module 'fastpanc.inference' has no attribute {name!r}")
