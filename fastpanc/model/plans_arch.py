"""Read the network topology from an nnU-Net v2 ``plans.json`` without importing classes by name."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

# the class names nnU-Net writes into plans, mapped to what fastpanc builds; nothing is imported by name
_CONV_NAMES = {"Conv3d": 3, "Conv2d": 2}
_NORM_NAMES = {"InstanceNorm3d": 3, "InstanceNorm2d": 2}
_NONLIN_NAMES = {"LeakyReLU"}
_NETWORK_NAMES = {"ResidualEncoderUNet"}


@dataclass(frozen=True)
class ArchConfig:
    """Residual-encoder U-Net topology (the fields of nnU-Net's ``architecture.arch_kwargs``).

    Per-stage lists have ``n_stages`` entries (``n_stages - 1`` for ``n_conv_per_stage_decoder``);
    kernel sizes and strides have one entry per spatial axis, ``(z, y, x)`` in 3D.
    """

    n_stages: int
    features_per_stage: tuple[int, ...]
    kernel_sizes: tuple[tuple[int, ...], ...]
    strides: tuple[tuple[int, ...], ...]
    n_blocks_per_stage: tuple[int, ...]
    n_conv_per_stage_decoder: tuple[int, ...]
    dim: int = 3
    conv_bias: bool = True
    norm_affine: bool = True
    norm_eps: float = 1e-5
    negative_slope: float = 0.01

    def __post_init__(self) -> None:
        n = self.n_stages
        if n < 2:
            raise ValueError(f"n_stages must be >= 2 (an encoder and at least one decoder stage), got {n}")
        for name, value, want in (
            ("features_per_stage", self.features_per_stage, n),
            ("kernel_sizes", self.kernel_sizes, n),
            ("strides", self.strides, n),
            ("n_blocks_per_stage", self.n_blocks_per_stage, n),
            ("n_conv_per_stage_decoder", self.n_conv_per_stage_decoder, n - 1),
        ):
            if len(value) != want:
                raise ValueError(
                    f"{name} must have {want} entries for n_stages={n}, got {len(value)}: {list(value)!r}"
                )
        if self.dim not in (2, 3):
            raise ValueError(f"dim must be 2 or 3, got {self.dim}")
        for name, seq in (("kernel_sizes", self.kernel_sizes), ("strides", self.strides)):
            for entry in seq:
                if len(entry) != self.dim or any(int(v) < 1 for v in entry):
                    raise ValueError(
                        f"every {name} entry must be {self.dim} positive ints, got {list(entry)!r}"
                    )
        for entry in self.kernel_sizes:
            if any(k % 2 == 0 for k in entry):
                raise ValueError(f"kernel sizes must be odd ('same' padding), got {list(entry)!r}")
        if any(f < 1 for f in self.features_per_stage) or any(b < 1 for b in self.n_blocks_per_stage):
            raise ValueError("features_per_stage and n_blocks_per_stage must be positive")
        if any(c < 1 for c in self.n_conv_per_stage_decoder):
            raise ValueError("n_conv_per_stage_decoder entries must be >= 1")

    @classmethod
    def build(
        cls,
        n_stages: int,
        features_per_stage: int | list[int] | tuple[int, ...],
        kernel_sizes: int | list | tuple,
        strides: int | list | tuple,
        n_blocks_per_stage: int | list[int] | tuple[int, ...],
        n_conv_per_stage_decoder: int | list[int] | tuple[int, ...],
        dim: int = 3,
        **kwargs: Any,
    ) -> ArchConfig:
        """Broadcast ints to per-stage lists (and per-axis tuples) as dynamic_network_architectures does."""

        def per_stage(v: Any, n: int) -> tuple:
            return tuple(v) if isinstance(v, (list, tuple)) else (v,) * n

        def per_axis(v: Any) -> tuple[int, ...]:
            return tuple(int(i) for i in v) if isinstance(v, (list, tuple)) else (int(v),) * dim

        return cls(
            n_stages=n_stages,
            features_per_stage=tuple(int(f) for f in per_stage(features_per_stage, n_stages)),
            kernel_sizes=tuple(per_axis(k) for k in per_stage(kernel_sizes, n_stages)),
            strides=tuple(per_axis(s) for s in per_stage(strides, n_stages)),
            n_blocks_per_stage=tuple(int(b) for b in per_stage(n_blocks_per_stage, n_stages)),
            n_conv_per_stage_decoder=tuple(int(c) for c in per_stage(n_conv_per_stage_decoder, n_stages - 1)),
            dim=dim,
            **kwargs,
        )


def _short(name: Any) -> str:
    return str(name).rsplit(".", 1)[-1]


def configuration_dict(plans: dict, configuration: str) -> dict:
    """The configuration's dict with ``inherits_from`` resolved (as nnunetv2's PlansManager does)."""
    configs = plans.get("configurations")
    if not isinstance(configs, dict) or configuration not in configs:
        known = sorted(configs) if isinstance(configs, dict) else []
        raise ValueError(
            f"configuration {configuration!r} is not in the plans (available: {known}); pass one of those"
        )
    conf = dict(configs[configuration])
    seen = {configuration}
    while "inherits_from" in conf:
        parent = conf.pop("inherits_from")
        if parent in seen or parent not in configs:
            raise ValueError(f"configuration {configuration!r} inherits from unknown or cyclic {parent!r}")
        seen.add(parent)
        merged = dict(configs[parent])
        merged.update(conf)
        conf = merged
    return conf


def arch_from_plans(plans: dict, configuration: str = "3d_fullres") -> ArchConfig:
    """Turn ``plans["configurations"][configuration]["architecture"]`` into an :class:`ArchConfig`.

    Only the ops nnU-Net's ResEnc plans use are accepted (Conv3d/Conv2d, InstanceNorm3d/2d, LeakyReLU, no
    dropout); any other class name raises ValueError naming it.
    """
    conf = configuration_dict(plans, configuration)
    arch = conf.get("architecture")
    if not isinstance(arch, dict) or "arch_kwargs" not in arch:
        raise ValueError(
            f"plans configuration {configuration!r} has no 'architecture.arch_kwargs'; fastpanc reads nnU-Net "
            "v2 (>= 2.3) plans; re-plan the dataset with `fastpanc plan` or nnUNetv2_plan_experiment"
        )
    net = _short(arch.get("network_class_name", ""))
    if net not in _NETWORK_NAMES:
        raise ValueError(
            f"network_class_name {arch.get('network_class_name')!r} is not supported; fastpanc builds "
            f"{sorted(_NETWORK_NAMES)} (use nnU-Net's ResEnc plans, e.g. nnUNetResEncUNetMPlans)"
        )
    kw = dict(arch["arch_kwargs"])
    conv = _short(kw.get("conv_op"))
    if conv not in _CONV_NAMES:
        raise ValueError(
            f"conv_op {kw.get('conv_op')!r} is not supported; expected one of {sorted(_CONV_NAMES)}"
        )
    dim = _CONV_NAMES[conv]
    norm = _short(kw.get("norm_op"))
    if _NORM_NAMES.get(norm) != dim:
        raise ValueError(
            f"norm_op {kw.get('norm_op')!r} is not supported with {conv}; expected InstanceNorm{dim}d"
        )
    nonlin = _short(kw.get("nonlin"))
    if nonlin not in _NONLIN_NAMES:
        raise ValueError(f"nonlin {kw.get('nonlin')!r} is not supported; expected LeakyReLU")
    if kw.get("dropout_op") is not None:
        raise ValueError(f"dropout_op {kw.get('dropout_op')!r} is not supported; expected null")
    for key in ("block", "bottleneck_channels", "stem_channels"):
        if kw.get(key) is not None:
            raise ValueError(
                f"arch_kwargs[{key!r}]={kw[key]!r} is not supported (BasicBlockD, default stem only)"
            )
    norm_kwargs = kw.get("norm_op_kwargs") or {}
    nonlin_kwargs = kw.get("nonlin_kwargs") or {}
    return ArchConfig.build(
        n_stages=int(kw["n_stages"]),
        features_per_stage=kw["features_per_stage"],
        kernel_sizes=kw["kernel_sizes"],
        strides=kw["strides"],
        n_blocks_per_stage=kw["n_blocks_per_stage"],
        n_conv_per_stage_decoder=kw["n_conv_per_stage_decoder"],
        dim=dim,
        conv_bias=bool(kw.get("conv_bias", False)),
        norm_affine=bool(norm_kwargs.get("affine", False)),  # torch InstanceNorm default
        norm_eps=float(norm_kwargs.get("eps", 1e-5)),
        negative_slope=float(nonlin_kwargs.get("negative_slope", 0.01)),
    )
