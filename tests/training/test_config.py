"""TrainConfig: validation, JSON round trip, unknown keys."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from fastpanc.training.config import AugmentConfig, NetworkOverrides, TrainConfig


def test_defaults_follow_nnunet() -> None:
    c = TrainConfig()
    assert (c.optimizer, c.initial_lr, c.momentum, c.weight_decay, c.poly_exponent) == (
        "sgd",
        1e-2,
        0.99,
        3e-5,
        0.9,
    )
    assert (c.oversample_foreground, c.grad_clip, c.iterations_per_epoch) == (0.33, 12.0, 250)
    assert TrainConfig(optimizer="adamw").initial_lr == 1e-3


def test_json_round_trip(tmp_path) -> None:
    c = TrainConfig(
        epochs=7,
        patch_size=(16, 32, 32),
        optimizer="adamw",
        amp_dtype=None,
        augmentation=AugmentConfig(p_elastic=0.3, mirror_axes=(1, 2)),
        network=NetworkOverrides(features_scale=0.5, n_stages=3),
    )
    c.save(tmp_path / "c.json")
    back = TrainConfig.load(tmp_path / "c.json")
    assert back == c
    assert isinstance(back.patch_size, tuple) and isinstance(back.augmentation.mirror_axes, tuple)
    assert json.loads((tmp_path / "c.json").read_text())["augmentation"]["p_elastic"] == 0.3


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"optimizer": "adam"}, "optimizer must be one of"),
        ({"amp_dtype": "fp8"}, "amp_dtype"),
        ({"epochs": 0}, "epochs must be >= 1"),
        ({"minutes": 0}, "minutes must be > 0"),
        ({"oversample_foreground": 1.5}, "oversample_foreground must be a probability"),
        ({"patch_size": (16, 32)}, "patch_size must be three"),
        ({"head": "mlp"}, "head must be one of"),
        ({"label_smoothing": 1.0}, "label_smoothing"),
        ({"weight_ema": 1.0}, "weight_ema"),
        ({"weight_ema": -0.1}, "weight_ema"),
        ({"augmentation": AugmentConfig(p_rotation=0.1)}, None),
    ],
)
def test_validation(kwargs, match) -> None:
    if match is None:
        TrainConfig(**kwargs)
        return
    with pytest.raises(ValueError, match=match):
        TrainConfig(**kwargs)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"p_mirror_axis": -0.1}, "p_mirror_axis"),
        ({"scaling": (1.4, 0.7)}, "min <= max"),
        ({"lowres_zoom": (0.5, 2.0)}, "lowres_zoom"),
        ({"mirror_axes": (0, 3)}, "mirror_axes"),
    ],
)
def test_augment_validation(kwargs, match) -> None:
    with pytest.raises(ValueError, match=match):
        AugmentConfig(**kwargs)


def test_unknown_keys_are_errors(tmp_path) -> None:
    with pytest.raises(ValueError, match=r"unknown training config key\(s\) \['epochz'\]"):
        TrainConfig.from_dict({"epochz": 3})
    with pytest.raises(ValueError, match=r"augmentation\.p_rot"):
        TrainConfig.from_dict({"augmentation": {"p_rot": 0.2}})
    with pytest.raises(FileNotFoundError, match="does not exist"):
        TrainConfig.load(tmp_path / "missing.json")
    (tmp_path / "bad.json").write_text("[1, 2]")
    with pytest.raises(ValueError, match="JSON object"):
        TrainConfig.load(tmp_path / "bad.json")


def test_every_config_key_is_documented() -> None:
    doc = (Path(__file__).resolve().parents[2] / "docs" / "training.md").read_text()
    for cls in (TrainConfig, AugmentConfig, NetworkOverrides):
        for f in dataclasses.fields(cls):
            assert f"`{f.name}`" in doc, f"{cls.__name__}.{f.name} is missing from docs/training.md"
