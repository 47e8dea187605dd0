"""The model folder a training run writes: the plans as used (with overrides), dataset.json, subtype info and
train_config.json, so that a checkpoint always rebuilds exactly its network."""

from __future__ import annotations

import copy
import json
import logging
import shutil
from pathlib import Path
from typing import Any

from fastpanc.training.config import NetworkOverrides, TrainConfig

log = logging.getLogger(__name__)

NUM_SUBTYPES = 3


def read_json(path: Path) -> Any:
    if not path.is_file():
        raise FileNotFoundError(
            f"{path} is missing; is {path.parent} a folder written by `fastpanc preprocess`?"
        )
    return json.loads(path.read_text())


def _apply_network_overrides(kw: dict[str, Any], o: NetworkOverrides) -> None:
    if o.n_stages is not None:
        n = int(kw["n_stages"])
        if o.n_stages > n:
            raise ValueError(f"network.n_stages={o.n_stages} exceeds the plans' {n} stages; use at most {n}")
        for key in ("features_per_stage", "kernel_sizes", "strides", "n_blocks_per_stage"):
            kw[key] = list(kw[key])[: o.n_stages]
        kw["n_conv_per_stage_decoder"] = list(kw["n_conv_per_stage_decoder"])[: o.n_stages - 1]
        kw["n_stages"] = o.n_stages
    feats = [int(f) for f in kw["features_per_stage"]]
    if o.features_scale is not None:
        feats = [max(1, round(f * o.features_scale)) for f in feats]
    if o.features_cap is not None:
        feats = [min(f, o.features_cap) for f in feats]
    kw["features_per_stage"] = feats
    if o.n_blocks_per_stage is not None:
        if len(o.n_blocks_per_stage) != int(kw["n_stages"]):
            raise ValueError(
                f"network.n_blocks_per_stage has {len(o.n_blocks_per_stage)} entries, expected one per "
                f"stage ({kw['n_stages']})"
            )
        kw["n_blocks_per_stage"] = list(o.n_blocks_per_stage)


def plans_as_used(plans: dict[str, Any], config: TrainConfig) -> dict[str, Any]:
    """A copy of ``plans`` with the config's network, patch-size and batch-size overrides and the ``"fastpanc"``
    head settings written in."""
    out = copy.deepcopy(plans)
    confs = out.get("configurations", {})
    if config.configuration not in confs:
        raise ValueError(
            f"configuration {config.configuration!r} is not in plans.json (available: "
            f"{sorted(confs)}); set 'configuration' in the training config"
        )
    conf = confs[config.configuration]
    kw = conf["architecture"]["arch_kwargs"]
    _apply_network_overrides(kw, config.network)
    if config.patch_size is not None:
        conf["patch_size"] = [int(p) for p in config.patch_size]
    if config.batch_size is not None:
        conf["batch_size"] = int(config.batch_size)
    factor = [1, 1, 1]
    for s in kw["strides"]:
        factor = [f * int(v) for f, v in zip(factor, s)]
    if any(int(p) % f for p, f in zip(conf["patch_size"], factor)):
        raise ValueError(
            f"patch size {conf['patch_size']} must be divisible by {factor} (the product of the "
            "strides); change patch_size or network.n_stages in the training config"
        )
    fp = dict(out.get("fastpanc", {}))
    fp.update({"num_subtypes": int(fp.get("num_subtypes", NUM_SUBTYPES)), "head": config.head})
    out["fastpanc"] = fp
    return out


def write_model_dir(output: Path, preprocessed: Path, plans: dict[str, Any], config: TrainConfig) -> None:
    """Write plans.json (as used), dataset.json, subtype_mapping.json, splits_final.json and train_config.json."""
    output.mkdir(parents=True, exist_ok=True)
    (output / "plans.json").write_text(json.dumps(plans, indent=2) + "\n")
    for name in ("dataset.json", "subtype_mapping.json", "splits_final.json"):
        src = preprocessed / name
        if src.is_file():
            shutil.copyfile(src, output / name)
        elif name == "dataset.json":
            raise FileNotFoundError(
                f"{src} is missing; `fastpanc preprocess` copies it into the output folder"
            )
    config.save(output / "train_config.json")
