"""fastpanc: fast multi-task pancreas / lesion segmentation and lesion-subtype classification in 3D CT."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError
from importlib.metadata import version as _dist_version

try:
    __version__ = _dist_version("fastpanc")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0+unknown"

from fastpanc._info import build_info

__all__ = ["__version__", "build_info", "Predictor"]


def __getattr__(name: str):
    # The predictor pulls in torch and the network; import it only when asked for.
    if name == "Predictor":
        from fastpanc.inference.predictor import Predictor

        return Predictor
    raise AttributeError(f"module 'fastpanc' has no attribute {name!r}")
