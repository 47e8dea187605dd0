"""Load nnU-Net v2 (and fastpanc) checkpoints and model folders safely.

Checkpoints are read with ``torch.load(weights_only=True)``. nnU-Net stores numpy scalars (for example
EMA Dice values) in its ``logging`` entry, so exactly the numpy scalar reconstructor, ``numpy.dtype`` and
the numeric dtype classes are allowed via ``torch.serialization.safe_globals``; anything that would need
arbitrary unpickling (custom classes, functions) is refused with the list of offending globals.
"""

from __future__ import annotations

import json
import logging
import pickle
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch

from fastpanc.model.heads import HeadConfig
from fastpanc.model.network import MultitaskResEncUNet

log = logging.getLogger(__name__)


def _numpy_safe_globals() -> list[Any]:
    """numpy objects a numpy scalar's pickle refers to: the scalar reconstructor, dtype, dtype classes."""
    try:
        from numpy._core.multiarray import scalar  # numpy >= 2
    except ImportError:  # pragma: no cover - numpy 1.x
        from numpy.core.multiarray import scalar  # type: ignore[no-redef]
    dtype_classes = [
        type(np.dtype(t)) for t in (np.float16, np.float32, np.float64, np.int32, np.int64, np.bool_)
    ]
    return [scalar, np.dtype, *dtype_classes]


def read_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Read a checkpoint dict with ``weights_only=True`` plus the numpy scalar types.

    Raises FileNotFoundError for a missing file and ValueError for a file that is not a checkpoint
    dict or that would need arbitrary unpickling (the error lists the globals it asks for).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} does not exist; expected fold_K/checkpoint_*.pth")
    try:
        with torch.serialization.safe_globals(_numpy_safe_globals()):
            ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as e:
        try:
            unsafe = torch.serialization.get_unsafe_globals_in_checkpoint(path)
        except Exception:  # noqa: BLE001 - only used to improve the message
            unsafe = []
        raise ValueError(
            f"refusing to load {path}: it needs arbitrary unpickling of {unsafe or 'unknown globals'}, which can "
            "run code. fastpanc only reads plain-data checkpoints (tensors, numbers, strings, numpy scalars). "
            "If you trust the file, re-save its 'network_weights' state dict as plain tensors and load that."
        ) from e
    if not isinstance(ckpt, dict):
        raise ValueError(f"{path} holds a {type(ckpt).__name__}, expected a checkpoint dict")
    return ckpt


def _network_weights(ckpt: dict[str, Any], path: Path) -> dict[str, torch.Tensor]:
    weights = ckpt.get("network_weights")
    if not isinstance(weights, dict):
        raise ValueError(f"{path} has no 'network_weights' state dict (keys: {sorted(ckpt)})")
    out = {}
    for k, v in weights.items():
        # DDP (module.) and torch.compile (_orig_mod.) prefixes, as nnU-Net strips them
        for prefix in ("module.", "_orig_mod."):
            if k.startswith(prefix):
                k = k[len(prefix) :]
        out[k] = v
    return out


def load_nnunet_checkpoint(network: MultitaskResEncUNet, path: str | Path) -> dict[str, Any]:
    """Load ``network_weights`` of an nnU-Net v2 or fastpanc checkpoint into ``network``.

    The segmentation part must match key for key (strict). Head weights load when the checkpoint has
    them; an nnU-Net checkpoint has none, so the head keeps its initialisation (logged). Returns the
    checkpoint dict (for ``inference_allowed_mirroring_axes``, ``current_epoch`` ...).
    """
    path = Path(path)
    ckpt = read_checkpoint(path)
    weights = _network_weights(ckpt, path)
    own = network.state_dict()
    head_keys = {k for k in own if k.startswith("head.")}
    missing = sorted(set(own) - set(weights) - head_keys)
    unexpected = sorted(set(weights) - set(own))
    if missing or unexpected:
        raise ValueError(
            f"{path} does not fit the network built from the plans: missing {missing[:8]}"
            f"{' ...' if len(missing) > 8 else ''}, unexpected {unexpected[:8]}"
            f"{' ...' if len(unexpected) > 8 else ''}; build the network from the plans.json saved with it"
        )
    wrong = [
        f"{k}: {tuple(weights[k].shape)} vs {tuple(v.shape)}"
        for k, v in own.items()
        if k in weights and tuple(weights[k].shape) != tuple(v.shape)
    ]
    if wrong:
        raise ValueError(
            f"{path} does not fit the network built from the plans: shape mismatch (checkpoint vs network) "
            f"{wrong[:4]}{' ...' if len(wrong) > 4 else ''}; build the network from the plans.json saved with it"
        )
    has_head = bool(head_keys) and head_keys <= set(weights)
    if head_keys and not has_head:
        if head_keys & set(weights):
            raise ValueError(f"{path} holds only part of the classification head weights")
        log.warning("%s has no classification head weights; the head keeps its initialisation", path)
        weights = {**weights, **{k: own[k] for k in head_keys}}
    network.load_state_dict(weights, strict=True)
    return ckpt


def fastpanc_settings(network: MultitaskResEncUNet) -> dict[str, Any]:
    """The ``fastpanc`` entry of a checkpoint/plans: subtype count and head settings (JSON-able)."""
    return {
        "num_subtypes": network.num_subtypes,
        "head": asdict(network.head_config) if network.head_config is not None else None,
    }


def _head_from_settings(settings: dict[str, Any]) -> tuple[int, HeadConfig | str]:
    n = int(settings.get("num_subtypes", 0))
    head = settings.get("head") or HeadConfig().kind
    if isinstance(head, dict):
        return n, HeadConfig(**head)
    if isinstance(head, str):
        return n, HeadConfig(kind=head, hidden=int(settings.get("head_hidden", 128)))
    raise ValueError(f"'fastpanc.head' must be a head name or a dict of HeadConfig fields, got {head!r}")


def _read_json(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing; a model folder needs plans.json and dataset.json")
    with path.open() as f:
        return json.load(f)


def build_from_nnunet_folder(
    model_dir: str | Path,
    fold: int | str = 0,
    checkpoint_name: str = "checkpoint_final.pth",
    configuration: str | None = None,
    deep_supervision: bool = False,
) -> tuple[MultitaskResEncUNet, dict[str, Any], dict[str, Any]]:
    """Build the network of a model folder and load ``fold_{fold}/{checkpoint_name}`` into it.

    Works for nnU-Net v2 result folders (segmentation only) and fastpanc model folders (head settings
    from the checkpoint's or the plans' ``fastpanc`` entry). ``configuration`` defaults to the one the
    checkpoint was trained with (``init_args.configuration``), else ``3d_fullres``. Returns
    ``(network in eval mode on the CPU, plans, dataset_json)``.
    """
    model_dir = Path(model_dir)
    if not model_dir.is_dir():
        raise FileNotFoundError(f"model folder {model_dir} does not exist")
    plans = _read_json(model_dir / "plans.json")
    dataset_json = _read_json(model_dir / "dataset.json")
    ckpt_path = model_dir / f"fold_{fold}" / checkpoint_name
    ckpt = read_checkpoint(ckpt_path)
    if configuration is None:
        init_args = ckpt.get("init_args") if isinstance(ckpt.get("init_args"), dict) else {}
        configuration = str(init_args.get("configuration", "3d_fullres"))
    channels = dataset_json.get("channel_names", dataset_json.get("modality"))
    labels = dataset_json.get("labels")
    if not isinstance(channels, dict) or not isinstance(labels, dict):
        raise ValueError(f"{model_dir / 'dataset.json'} needs 'channel_names' and 'labels' dicts")
    if any(isinstance(v, (list, tuple)) for v in labels.values()):
        raise ValueError("region-based labels (lists in dataset.json 'labels') are not supported")
    settings = ckpt.get("fastpanc") or plans.get("fastpanc") or {}
    num_subtypes, head = _head_from_settings(settings) if settings else (0, HeadConfig().kind)
    network = MultitaskResEncUNet.from_plans(
        plans,
        configuration,
        num_input_channels=len(channels),
        num_seg_classes=len(labels),
        num_subtypes=num_subtypes,
        head=head,
        deep_supervision=deep_supervision,
    )
    load_nnunet_checkpoint(network, ckpt_path)
    network.eval()
    log.info("loaded %s (%s, %d subtypes)", ckpt_path, configuration, num_subtypes)
    return network, plans, dataset_json
