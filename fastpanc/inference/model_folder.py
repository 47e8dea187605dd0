"""Find and load a trained model folder: fastpanc's own or an nnU-Net v2 trainer output folder.

Both share the layout ``plans.json``, ``dataset.json``, ``fold_K/checkpoint_{final,best}.pth``; a fastpanc
folder is recognised by the ``"fastpanc"`` key of ``plans.json`` (head settings). Checkpoints are read with
``torch.load(weights_only=True)``; the weights of every fold are loaded once and kept in memory.
"""

from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from fastpanc.model.nnunet_compat import read_checkpoint

log = logging.getLogger("fastpanc.inference")

CHECKPOINT_ORDER = ("checkpoint_final.pth", "checkpoint_best.pth")


@dataclass
class ModelFolder:
    """A model folder read from disk. ``states`` holds one state dict per fold, in ``folds`` order."""

    path: Path
    kind: str  # "fastpanc" | "nnunet"
    plans: dict[str, Any]
    dataset: dict[str, Any]
    configuration: str
    folds: list[str]
    checkpoints: list[Path]
    states: list[dict[str, torch.Tensor]] = field(repr=False)
    mirror_axes: tuple[int, ...] | None
    fastpanc: dict[str, Any]

    @property
    def config(self) -> dict[str, Any]:
        return self.plans["configurations"][self.configuration]

    @property
    def patch_size(self) -> tuple[int, ...]:
        return tuple(int(p) for p in self.config["patch_size"])

    @property
    def spacing(self) -> tuple[float, ...]:
        return tuple(float(s) for s in self.config["spacing"])

    @property
    def num_classes(self) -> int:
        return len(self.dataset["labels"])

    @property
    def num_input_channels(self) -> int:
        names = self.dataset.get("channel_names", self.dataset.get("modality"))
        if not names:
            raise ValueError(f"{self.path / 'dataset.json'}: no 'channel_names'; expected e.g. {{'0': 'CT'}}")
        return len(names)

    @property
    def multitask(self) -> bool:
        return self.kind == "fastpanc" and int(self.fastpanc.get("num_subtypes", 0)) > 0

    @property
    def strides(self) -> list[tuple[int, ...]]:
        return [tuple(int(v) for v in s) for s in self.config["architecture"]["arch_kwargs"]["strides"]]

    def build_network(self) -> torch.nn.Module:
        """A network of this folder's architecture in eval mode (weights not loaded; see ``states``)."""
        if self.kind == "fastpanc":
            from fastpanc.model.network import MultitaskResEncUNet

            head = {k: self.fastpanc[k] for k in ("head", "head_hidden") if k in self.fastpanc}
            net = MultitaskResEncUNet.from_plans(
                self.plans,
                configuration=self.configuration,
                num_input_channels=self.num_input_channels,
                num_seg_classes=self.num_classes,
                num_subtypes=int(self.fastpanc.get("num_subtypes", 0)),
                deep_supervision=False,
                **head,
            )
        elif _is_resenc(self.plans, self.configuration):
            # nnU-Net's ResidualEncoderUNet, rebuilt by fastpanc: the same modules and state-dict keys
            # (tests/model/test_nnunet_compat.py), plus the fused inference passes of fuse_inference
            from fastpanc.model.network import MultitaskResEncUNet

            net = MultitaskResEncUNet.from_plans(
                self.plans,
                configuration=self.configuration,
                num_input_channels=self.num_input_channels,
                num_seg_classes=self.num_classes,
                num_subtypes=0,
                deep_supervision=False,
            )
        else:
            net = build_nnunet_network(
                self.plans, self.configuration, self.num_input_channels, self.num_classes
            )
        if hasattr(net, "deep_supervision"):
            net.deep_supervision = False
        return net.eval()


def _is_resenc(plans: dict[str, Any], configuration: str) -> bool:
    """Whether an nnU-Net plans configuration describes a network fastpanc builds itself (nnU-Net's ResEnc
    U-Net). Class names outside the fixed lists raise ValueError first, as :func:`build_nnunet_network` does."""
    from fastpanc.model.plans_arch import arch_from_plans

    _checked_class_names(plans, configuration)
    try:
        arch_from_plans(plans, configuration)
    except (ValueError, KeyError, TypeError):
        return False
    return True


# the classes an nnU-Net v2 plans file may name, by class name: nothing is imported by the name a plans file gives
_NETWORK_CLASSES = ("ResidualEncoderUNet", "PlainConvUNet")
_OP_CLASSES = (
    "Conv2d", "Conv3d", "InstanceNorm2d", "InstanceNorm3d", "BatchNorm2d", "BatchNorm3d",
    "Dropout", "Dropout2d", "Dropout3d", "LeakyReLU", "ReLU", "PReLU", "ELU", "GELU",
)  # fmt: skip


def _known_name(value: object, names: tuple[str, ...], package: str, what: str) -> str:
    name = str(value)
    module, _, short = name.rpartition(".")
    if short not in names or not (module == package or module.startswith(package + ".")):
        raise ValueError(
            f"plans.json names {what} {name!r}, which fastpanc does not build; expected one of "
            f"{sorted(names)} from {package} (class names in plans.json are looked up in this fixed "
            "list, never imported)"
        )
    return short


def _checked_class_names(plans: dict[str, Any], configuration: str) -> tuple[str, dict[str, str]]:
    """The network class and the ``_kw_requires_import`` op classes a configuration names, checked against
    the fixed lists: ``(network short name, {arch_kwargs key: op short name})``. Raises ValueError."""
    arch = plans["configurations"][configuration]["architecture"]
    network = _known_name(
        arch.get("network_class_name"), _NETWORK_CLASSES, "dynamic_network_architectures", "the network class"
    )
    kwargs = arch["arch_kwargs"]
    ops = {
        key: _known_name(kwargs[key], _OP_CLASSES, "torch.nn", key)
        for key in arch.get("_kw_requires_import", [])
        if kwargs.get(key) is not None
    }
    return network, ops


def build_nnunet_network(
    plans: dict[str, Any], configuration: str, in_channels: int, num_classes: int
) -> torch.nn.Module:
    """The network nnU-Net v2 builds from ``plans`` (dynamic-network-architectures), without deep supervision.

    The class names in ``plans.json`` are untrusted: they are matched against a fixed list of
    dynamic-network-architectures networks and torch ops, never imported by name.
    """
    network, ops = _checked_class_names(plans, configuration)
    try:
        from dynamic_network_architectures.architectures import unet
    except ImportError as exc:
        raise ValueError(
            "nnU-Net v2 model folders need dynamic-network-architectures (pip install dynamic-network-architectures)"
        ) from exc
    kwargs = dict(plans["configurations"][configuration]["architecture"]["arch_kwargs"])
    kwargs.update({key: getattr(torch.nn, short) for key, short in ops.items()})
    cls = getattr(unet, network)
    return cls(input_channels=in_channels, num_classes=num_classes, deep_supervision=False, **kwargs)


def _fold_dirs(path: Path) -> dict[str, Path]:
    out = {}
    for d in sorted(path.iterdir()):
        m = re.fullmatch(r"fold_(\w+)", d.name)
        if m and d.is_dir():
            out[m.group(1)] = d
    return out


def _pick_checkpoint(fold_dir: Path, checkpoint: str | None) -> Path:
    names = [checkpoint] if checkpoint else list(CHECKPOINT_ORDER)
    for name in names:
        if (fold_dir / name).is_file():
            return fold_dir / name
    raise FileNotFoundError(
        f"{fold_dir}: no {' or '.join(names)}; expected a trained fold "
        "(pass --checkpoint NAME to pick another file)"
    )


def load_model_folder(
    path: str | Path,
    folds: list[str] | None = None,
    checkpoint: str | None = None,
    configuration: str = "3d_fullres",
) -> ModelFolder:
    """Read ``plans.json``, ``dataset.json`` and the checkpoints of ``folds`` (default: every ``fold_*``)."""
    path = Path(path)
    if not path.is_dir():
        raise FileNotFoundError(
            f"model folder {path} does not exist; expected a folder with plans.json, "
            "dataset.json and fold_K/checkpoint_final.pth"
        )
    for name in ("plans.json", "dataset.json"):
        if not (path / name).is_file():
            raise FileNotFoundError(
                f"{path / name} not found: {path} is not a fastpanc or nnU-Net v2 model "
                "folder (expected plans.json, dataset.json, fold_K/checkpoint_final.pth)"
            )
    plans = json.loads((path / "plans.json").read_text())
    dataset = json.loads((path / "dataset.json").read_text())
    if configuration not in plans.get("configurations", {}):
        raise ValueError(
            f"{path / 'plans.json'} has no configuration {configuration!r}; "
            f"available: {sorted(plans.get('configurations', {}))}"
        )
    available = _fold_dirs(path)
    if folds is None:
        folds = list(available)
        if not folds:
            raise FileNotFoundError(f"{path}: no fold_K folders found; expected fold_0/checkpoint_final.pth")
    missing = [f for f in folds if str(f) not in available]
    if missing:
        raise FileNotFoundError(f"{path}: fold(s) {missing} not found; available folds: {sorted(available)}")
    ckpts = [_pick_checkpoint(available[str(f)], checkpoint) for f in folds]

    states, mirror_axes = [], None
    for ck in ckpts:
        try:  # torch.load(weights_only=True) plus numpy scalars (nnU-Net's logs); refuses code in pickles
            saved = read_checkpoint(ck)
        except ValueError:
            raise
        except Exception as exc:  # a truncated file or not a torch.save file
            raise ValueError(
                f"{ck} cannot be read as a checkpoint (truncated, or not written by torch.save): "
                f"{type(exc).__name__}: {' '.join(str(exc).split())[:300]}; copy the file again or retrain"
            ) from exc
        if not isinstance(saved, dict) or "network_weights" not in saved:
            raise ValueError(f"{ck} has no 'network_weights'; expected an nnU-Net v2 / fastpanc checkpoint")
        states.append(saved["network_weights"])
        axes = saved.get("inference_allowed_mirroring_axes")
        mirror_axes = tuple(int(a) for a in axes) if axes is not None else None
    kind = "fastpanc" if "fastpanc" in plans else "nnunet"
    log.info("model folder %s (%s), folds %s, checkpoints %s", path, kind, folds, [c.name for c in ckpts])
    return ModelFolder(
        path=path,
        kind=kind,
        plans=plans,
        dataset=dataset,
        configuration=configuration,
        folds=[str(f) for f in folds],
        checkpoints=ckpts,
        states=states,
        mirror_axes=mirror_axes,
        fastpanc=dict(plans.get("fastpanc", {})),
    )
