"""Typed training configuration (frozen dataclasses), saved as JSON beside every checkpoint.

Defaults follow nnU-Net v2's ``nnUNetTrainer``: SGD with Nesterov momentum 0.99, initial LR 1e-2,
poly LR with exponent 0.9, weight decay 3e-5, 250 iterations per epoch, 33% foreground oversampling,
gradient clipping at 12, EMA 0.9 of the validation score picking the best checkpoint.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

OPTIMIZERS = ("sgd", "adamw")
AMP_DTYPES = ("bf16", "fp16")
HEADS = ("attention", "pool")


def _check_prob(name: str, value: float) -> None:
    if not 0.0 <= float(value) <= 1.0:
        raise ValueError(f"{name} must be a probability in [0, 1], got {value!r}")


def _check_range(name: str, value: tuple[float, float], low: float | None = None) -> None:
    if len(value) != 2 or float(value[0]) > float(value[1]):
        raise ValueError(f"{name} must be a (min, max) pair with min <= max, got {value!r}")
    if low is not None and float(value[0]) < low:
        raise ValueError(f"{name} must not go below {low}, got {value!r}")


@dataclass(frozen=True)
class AugmentConfig:
    """Probabilities (per sample) and ranges of the batched on-device augmentation (nnU-Net v2 defaults).

    Elastic deformation is off in nnU-Net v2's default trainer (``p_elastic=0``); set it above 0 to use it.
    """

    enabled: bool = True
    p_rotation: float = 0.2
    rotation_deg: tuple[float, float] = (-30.0, 30.0)
    p_scaling: float = 0.2
    scaling: tuple[float, float] = (0.7, 1.4)
    p_elastic: float = 0.0
    elastic_magnitude: tuple[float, float] = (0.0, 0.05)  # displacement as a fraction of the patch half-size
    elastic_grid: int = 4  # control points per axis of the smooth displacement field
    p_mirror_axis: float = 0.5  # per axis
    mirror_axes: tuple[int, ...] = (0, 1, 2)  # spatial axes (z, y, x) that may be mirrored
    p_noise: float = 0.1
    noise_variance: tuple[float, float] = (0.0, 0.1)
    p_blur: float = 0.2
    blur_sigma: tuple[float, float] = (0.5, 1.0)
    p_brightness: float = 0.15
    brightness: tuple[float, float] = (0.75, 1.25)
    p_contrast: float = 0.15
    contrast: tuple[float, float] = (0.75, 1.25)
    p_lowres: float = 0.25
    lowres_zoom: tuple[float, float] = (0.5, 1.0)
    p_gamma_inverted: float = 0.1
    p_gamma: float = 0.3
    gamma: tuple[float, float] = (0.7, 1.5)

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            if f.name.startswith("p_"):
                _check_prob(f"augmentation.{f.name}", getattr(self, f.name))
        _check_range("augmentation.rotation_deg", self.rotation_deg)
        for name in ("scaling", "blur_sigma", "brightness", "contrast", "lowres_zoom", "gamma"):
            _check_range(f"augmentation.{name}", getattr(self, name), low=1e-6)
        _check_range("augmentation.elastic_magnitude", self.elastic_magnitude, low=0.0)
        _check_range("augmentation.noise_variance", self.noise_variance, low=0.0)
        if self.lowres_zoom[1] > 1.0:
            raise ValueError(f"augmentation.lowres_zoom must be within (0, 1], got {self.lowres_zoom!r}")
        if self.elastic_grid < 2:
            raise ValueError(f"augmentation.elastic_grid must be >= 2, got {self.elastic_grid}")
        if any(a not in (0, 1, 2) for a in self.mirror_axes):
            raise ValueError(
                f"augmentation.mirror_axes must be a subset of (0, 1, 2), got {self.mirror_axes!r}"
            )


@dataclass(frozen=True)
class NetworkOverrides:
    """Shrink the planned network (e.g. for CPU runs). Applied to plans.json before it is saved in the model folder.

    ``features_scale`` multiplies ``features_per_stage``, ``features_cap`` caps it, ``n_stages`` keeps the
    first stages only.
    """

    features_scale: float | None = None
    features_cap: int | None = None
    n_stages: int | None = None
    n_blocks_per_stage: tuple[int, ...] | None = None

    def __post_init__(self) -> None:
        if self.features_scale is not None and not self.features_scale > 0:
            raise ValueError(f"network.features_scale must be > 0, got {self.features_scale}")
        if self.features_cap is not None and self.features_cap < 1:
            raise ValueError(f"network.features_cap must be >= 1, got {self.features_cap}")
        if self.n_stages is not None and self.n_stages < 2:
            raise ValueError(f"network.n_stages must be >= 2 (an encoder and one skip), got {self.n_stages}")
        if self.n_blocks_per_stage is not None and any(b < 1 for b in self.n_blocks_per_stage):
            raise ValueError(f"network.n_blocks_per_stage must be >= 1 each, got {self.n_blocks_per_stage}")


@dataclass(frozen=True)
class TrainConfig:
    """Everything that decides a training run. ``epochs`` bounds the schedule; ``minutes`` (if set) replaces it
    with a wall-clock budget, the poly LR then decaying over the elapsed fraction of the budget."""

    epochs: int = 1000
    minutes: float | None = None
    iterations_per_epoch: int = 250
    val_iterations: int = 50
    batch_size: int | None = None  # None: from plans
    patch_size: tuple[int, int, int] | None = None  # None: from plans
    configuration: str = "3d_fullres"
    optimizer: str = "sgd"
    lr: float | None = None  # None: 1e-2 for SGD, 1e-3 for AdamW
    momentum: float = 0.99
    weight_decay: float = 3e-5
    poly_exponent: float = 0.9
    grad_clip: float = 12.0
    amp_dtype: str | None = "bf16"  # used on a GPU; fp16 adds a GradScaler
    cpu_bf16: bool = False  # bf16 autocast on the CPU
    # CPU training: each block's instance norm (+ residual) + LeakyReLU as one fastpanc.ops.instance_norm_act pass
    # with its C++ backward (the same weights and state dict). Not used on CUDA, where the fused op has no
    # backward (neither CUDA nor Triton): a GPU run trains with torch's modules whatever this says
    fused_norm: bool = True
    # CPU training with fused_norm: every layer channels-last (NDHWC), where oneDNN's convolutions and their
    # backward are much faster at few channels; the state dict is the same. Ignored without fused_norm or on CUDA
    channels_last: bool = True
    head: str = "attention"
    lambda_cls: float = 0.5
    lambda_warmup_epochs: int = 0  # epochs with classification weight 0 (segmentation first)
    lambda_ramp_epochs: int = 50  # then a linear ramp to lambda_cls
    cls_requires_lesion: bool = True  # classification loss only on patches that contain lesion voxels
    # attention head: share of training steps that attend to the lesion labels; the others (and validation and
    # inference) attend to the network's own lesion prediction, so the head also learns what that looks like
    label_attention: float = 0.5
    label_smoothing: float = 0.0
    focal_gamma: float = 0.0
    class_balanced: bool = False
    oversample_foreground: float = 0.33
    lesion_fraction: float = 0.5  # share of forced-foreground samples centred on a lesion voxel
    ema_alpha: float = 0.9
    # exponential moving average of the weights, decay per optimiser step (0: off, as nnU-Net). With it on,
    # validation (and so the best checkpoint) and the saved ``network_weights`` use the averaged weights; the
    # trained ones are kept in the checkpoint's trainer state for --resume. The decay warms up as
    # min(weight_ema, (1 + t) / (10 + t)) at step t, so the first steps do not hold on to the initialisation
    weight_ema: float = 0.0
    seed: int = 0
    num_workers: int = 2
    prefetch: int = 4  # batches prepared ahead
    augmentation: AugmentConfig = field(default_factory=AugmentConfig)
    network: NetworkOverrides = field(default_factory=NetworkOverrides)

    def __post_init__(self) -> None:
        if self.epochs < 1:
            raise ValueError(f"epochs must be >= 1, got {self.epochs}")
        if self.minutes is not None and not self.minutes > 0:
            raise ValueError(f"minutes must be > 0 (or null for an epoch budget), got {self.minutes}")
        for name in ("iterations_per_epoch", "val_iterations", "num_workers", "prefetch"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.batch_size is not None and self.batch_size < 1:
            raise ValueError(f"batch_size must be >= 1 (or null for the plans' value), got {self.batch_size}")
        if self.patch_size is not None and (len(self.patch_size) != 3 or min(self.patch_size) < 1):
            raise ValueError(f"patch_size must be three positive ints (z, y, x), got {self.patch_size!r}")
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"optimizer must be one of {OPTIMIZERS}, got {self.optimizer!r}")
        if self.amp_dtype not in (*AMP_DTYPES, None):
            raise ValueError(f"amp_dtype must be one of {AMP_DTYPES} or null, got {self.amp_dtype!r}")
        if not 0.0 <= self.label_attention <= 1.0:
            raise ValueError(f"label_attention must be in [0, 1], got {self.label_attention}")
        if self.head not in HEADS:
            raise ValueError(f"head must be one of {HEADS}, got {self.head!r}")
        if self.lr is not None and not self.lr > 0:
            raise ValueError(f"lr must be > 0, got {self.lr}")
        for name in ("momentum", "oversample_foreground", "lesion_fraction", "ema_alpha"):
            _check_prob(name, getattr(self, name))
        if not 0.0 <= self.weight_ema < 1.0:
            raise ValueError(f"weight_ema must be in [0, 1) (0: off), got {self.weight_ema}")
        if not 0.0 <= self.label_smoothing < 1.0:
            raise ValueError(f"label_smoothing must be in [0, 1), got {self.label_smoothing}")
        for name in ("weight_decay", "poly_exponent", "grad_clip", "lambda_cls", "focal_gamma"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        for name in ("lambda_warmup_epochs", "lambda_ramp_epochs"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")

    @property
    def initial_lr(self) -> float:
        """The configured LR, or the optimiser's default (SGD 1e-2 as nnU-Net, AdamW 1e-3)."""
        if self.lr is not None:
            return self.lr
        return 1e-2 if self.optimizer == "sgd" else 1e-3

    def replace(self, **changes: Any) -> TrainConfig:
        """A copy with some fields changed (validated again)."""
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able data (lists for tuples), as stored in checkpoints and train_config.json."""
        return json.loads(json.dumps(dataclasses.asdict(self)))

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        """Build from plain data; unknown keys are an error (a typo would otherwise be silently ignored)."""
        return _build(cls, data, "")

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), indent=2) + "\n")

    @classmethod
    def load(cls, path: str | Path) -> TrainConfig:
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(
                f"training config {path} does not exist; write one with TrainConfig().save(path)"
            )
        try:
            data = json.loads(path.read_text())
        except json.JSONDecodeError as exc:
            raise ValueError(f"training config {path} is not valid JSON: {exc}") from exc
        if not isinstance(data, dict):
            raise ValueError(f"training config {path} must hold a JSON object, got {type(data).__name__}")
        return cls.from_dict(data)


_NESTED = {"augmentation": AugmentConfig, "network": NetworkOverrides}


def _build(cls: type, data: dict[str, Any], prefix: str) -> Any:
    names = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - set(names))
    if unknown:
        raise ValueError(
            f"unknown training config key(s) {[prefix + k for k in unknown]}; "
            f"expected some of {sorted(prefix + n for n in names)}"
        )
    kwargs: dict[str, Any] = {}
    for key, value in data.items():
        if key in _NESTED and cls is TrainConfig:
            if not isinstance(value, dict):
                raise ValueError(f"training config key {key!r} must be an object, got {value!r}")
            kwargs[key] = _build(_NESTED[key], value, f"{key}.")
        elif isinstance(value, list):
            kwargs[key] = tuple(value)
        else:
            kwargs[key] = value
    return cls(**kwargs)
