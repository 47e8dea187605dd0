"""Prediction settings: one frozen dataclass, resolved from the mode and validated on creation."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

MODES = ("exact", "fast")
EXPORTS = ("resample_logits", "argmax_nearest")
PADDINGS = ("patch", "minimal", "cover")
SUBTYPE_SOURCES = ("lesion_window", "windows")

# fast mode: windows overlap by a quarter instead of a half (about 2.4x fewer windows on large volumes)
FAST_STEP = 0.75


@dataclass(frozen=True)
class PredictConfig:
    """How to predict.

    ``mode="exact"`` reproduces ``nnUNetv2_predict`` (step 0.5, mirroring TTA when the checkpoint allows it,
    float32, padding to the patch size, logits resampled with order 1 before the argmax).
    ``mode="fast"``: no TTA unless asked, step ``FAST_STEP``, bfloat16 autocast where the device has it, the
    least padding the network allows with windows grown to cover axes up to 1.5 patches long (``padding="cover"``,
    see ``sliding_window.padded_shape``) on a CPU, and patch-sized windows on a GPU (``padding="patch"``: every
    window has the same shape, so cuDNN picks its convolution algorithms once; with a new window shape per
    image, its autotuning took 1-2 s per image on an H200, more than the network itself), argmax before a
    nearest-neighbour resize. Fields left ``None`` take the mode's value (see :meth:`resolved`). ``subtype_from`` (multitask models): ``"lesion_window"`` runs
    one more window centred on the largest predicted lesion and takes the subtype from it, falling back to
    ``"windows"`` (the sliding windows' outputs weighted by their lesion voxels) when no lesion is predicted.
    ``fused_inference`` (default: on a CPU, in both modes; see ``MultitaskResEncUNet.fuse_inference`` and
    docs/inference.md): each conv block's instance norm, residual add and LeakyReLU run as one
    ``fastpanc.ops.instance_norm_act`` pass, strided skips pool in the activations' own dtype
    (``avg_pool_down``) and the decoder upsamples with a 1x1 convolution plus ``depth_to_space_cat``, for
    fastpanc networks and nnU-Net ResEnc folders. The statistics are summed in another order than torch's,
    so float32 logits differ by about 1e-5. ``channels_last`` (default: wherever ``fused_inference`` is on;
    it needs it): with the fused passes every layer runs channels-last (NDHWC), where oneDNN's convolutions
    are faster and the fused passes have their own kernels (``MultitaskResEncUNet.fuse_inference``); the
    logits equal the contiguous fused path's to float32 rounding.
    """

    mode: str = "exact"
    tta: bool | None = None
    step: float | None = None
    autocast: bool | None = None
    padding: str | None = None
    export: str | None = None
    batch_size: int = 1
    roi: bool = False
    roi_margin_mm: float = 20.0
    save_probabilities: bool = False
    configuration: str = "3d_fullres"
    subtype_from: str = "lesion_window"
    fused_inference: bool | None = None
    channels_last: bool | None = None

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {self.mode!r}")
        if self.step is not None and not 0.0 < self.step <= 1.0:
            raise ValueError(f"step must be in (0, 1] (a fraction of the patch size), got {self.step}")
        if self.padding is not None and self.padding not in PADDINGS:
            raise ValueError(f"padding must be one of {PADDINGS}, got {self.padding!r}")
        if self.export is not None and self.export not in EXPORTS:
            raise ValueError(f"export must be one of {EXPORTS}, got {self.export!r}")
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {self.batch_size}")
        if self.subtype_from not in SUBTYPE_SOURCES:
            raise ValueError(f"subtype_from must be one of {SUBTYPE_SOURCES}, got {self.subtype_from!r}")
        if self.roi_margin_mm < 0:
            raise ValueError(f"roi_margin_mm must be >= 0, got {self.roi_margin_mm}")
        if self.channels_last and self.fused_inference is False:
            raise ValueError(
                "channels_last=True needs the fused passes (torch's instance norm is slow on channels-last "
                "tensors), got fused_inference=False; leave channels_last unset or set fused_inference=True"
            )

    def resolved(self, device_type: str = "cpu") -> PredictConfig:
        """A copy with every ``None`` replaced by the mode's value on a ``device_type`` (cpu or cuda) device."""
        exact = self.mode == "exact"
        fast_padding = "patch" if device_type == "cuda" else "cover"
        values: dict[str, Any] = {
            "tta": exact if self.tta is None else self.tta,
            "step": (0.5 if exact else FAST_STEP) if self.step is None else self.step,
            "autocast": (not exact) if self.autocast is None else self.autocast,
            "padding": ("patch" if exact else fast_padding) if self.padding is None else self.padding,
            "export": ("resample_logits" if exact else "argmax_nearest")
            if self.export is None
            else self.export,
            # measured on CPUs only (benchmarks/RESULTS.md); on a GPU the torch/cuDNN modules run
            "fused_inference": (device_type == "cpu")
            if self.fused_inference is None
            else self.fused_inference,
        }
        # with the fused passes wherever they run, unless asked otherwise
        values["channels_last"] = (
            values["fused_inference"] if self.channels_last is None else self.channels_last
        )
        if values["channels_last"] and not values["fused_inference"]:
            raise ValueError(
                f"channels_last=True needs the fused passes, which are off by default on {device_type}; "
                "set fused_inference=True as well"
            )
        return dataclasses.replace(self, **values)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)
