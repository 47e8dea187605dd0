"""Tiny random-init models in both folder formats (fastpanc and nnU-Net v2) and tiny synthetic CT cases."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
import torch

from fastpanc.data.plan_rules import resenc_architecture

LABELS = {"background": 0, "pancreas": 1, "lesion": 2}
# nnU-Net's CT statistics of the real dataset (plans' foreground_intensity_properties_per_channel)
CT_PROPS = {
    "0": {
        "max": 1929.0,
        "mean": 74.06,
        "median": 77.99,
        "min": -407.0,
        "percentile_00_5": -56.0,
        "percentile_99_5": 180.0,
        "std": 44.36,
    }
}


def tiny_plans(patch=(16, 32, 32), spacing=(2.0, 1.0, 1.0)) -> dict:
    """nnU-Net v2 plans of a 3-stage ResidualEncoderUNet (4/8/16 features): fast on a CPU."""
    arch = resenc_architecture(
        [4, 8, 16], [[1, 3, 3], [3, 3, 3], [3, 3, 3]], [[1, 1, 1], [2, 2, 2], [2, 2, 2]], [1, 1, 1], [1, 1]
    )
    cfg = {
        "data_identifier": "nnUNetPlans_3d_fullres",
        "preprocessor_name": "DefaultPreprocessor",
        "batch_size": 2,
        "patch_size": list(patch),
        "median_image_size_in_voxels": list(patch),
        "spacing": list(spacing),
        "normalization_schemes": ["CTNormalization"],
        "use_mask_for_norm": [False],
        "resampling_fn_data": "resample_data_or_seg_to_shape",
        "resampling_fn_seg": "resample_data_or_seg_to_shape",
        "resampling_fn_data_kwargs": {"is_seg": False, "order": 3, "order_z": 0, "force_separate_z": None},
        "resampling_fn_seg_kwargs": {"is_seg": True, "order": 1, "order_z": 0, "force_separate_z": None},
        "resampling_fn_probabilities": "resample_data_or_seg_to_shape",
        "resampling_fn_probabilities_kwargs": {
            "is_seg": False,
            "order": 1,
            "order_z": 0,
            "force_separate_z": None,
        },
        "architecture": arch,
        "batch_dice": False,
    }
    return {
        "dataset_name": "Dataset900_Tiny",
        "plans_name": "nnUNetResEncUNetMPlans",
        "original_median_spacing_after_transp": list(spacing),
        "original_median_shape_after_transp": list(patch),
        "image_reader_writer": "SimpleITKIO",
        "transpose_forward": [0, 1, 2],
        "transpose_backward": [0, 1, 2],
        "configurations": {"3d_fullres": cfg},
        "experiment_planner_used": "nnUNetPlannerResEncM",
        "label_manager": "LabelManager",
        "foreground_intensity_properties_per_channel": CT_PROPS,
    }


def dataset_json() -> dict:
    return {"channel_names": {"0": "CT"}, "labels": LABELS, "numTraining": 2, "file_ending": ".nii.gz"}


def _checkpoint(weights: dict, plans: dict, trainer: str, extra: dict | None = None) -> dict:
    ck = {
        "network_weights": weights,
        "optimizer_state": {},
        "grad_scaler_state": None,
        "current_epoch": 1,
        "logging": {},
        "_best_ema": None,
        "inference_allowed_mirroring_axes": (0, 1, 2),
        "trainer_name": trainer,
        "init_args": {
            "plans": plans,
            "configuration": "3d_fullres",
            "fold": 0,
            "dataset_json": dataset_json(),
        },
    }
    ck.update(extra or {})
    return ck


def _bias_towards_foreground(weights: dict) -> dict:
    """Shift the last layer's bias so a random network predicts all three labels (not only background)."""
    key = [k for k in weights if k.endswith("seg_layers.0.bias") or k.endswith("seg_layers.1.bias")]
    for k in key:
        weights[k] = torch.tensor([0.0, 0.1, 0.05])
    return weights


def write_nnunet_folder(path: Path, plans: dict, folds=(0,), seed: int = 0) -> Path:
    """An nnU-Net v2 trainer output folder with a seeded random-init ResidualEncoderUNet per fold."""
    from fastpanc.inference.model_folder import build_nnunet_network

    path.mkdir(parents=True, exist_ok=True)
    (path / "plans.json").write_text(json.dumps(plans, indent=1))
    (path / "dataset.json").write_text(json.dumps(dataset_json(), indent=1))
    for f in folds:
        torch.manual_seed(seed + int(f))
        net = build_nnunet_network(plans, "3d_fullres", 1, 3)
        (path / f"fold_{f}").mkdir(exist_ok=True)
        torch.save(
            _checkpoint(_bias_towards_foreground(net.state_dict()), plans, "nnUNetTrainer"),
            path / f"fold_{f}" / "checkpoint_final.pth",
        )
    return path


def write_fastpanc_folder(path: Path, plans: dict, folds=(0,), seed: int = 0) -> Path:
    """A fastpanc model folder (multitask network with a subtype head) with seeded random weights."""
    from fastpanc.model.network import MultitaskResEncUNet

    plans = copy.deepcopy(plans)
    plans["fastpanc"] = {"num_subtypes": 3, "head": "pool"}
    path.mkdir(parents=True, exist_ok=True)
    (path / "plans.json").write_text(json.dumps(plans, indent=1))
    (path / "dataset.json").write_text(json.dumps(dataset_json(), indent=1))
    (path / "train_config.json").write_text("{}\n")
    for f in folds:
        torch.manual_seed(seed + int(f))
        net = MultitaskResEncUNet.from_plans(
            plans, num_input_channels=1, num_seg_classes=3, num_subtypes=3, head="pool"
        )
        (path / f"fold_{f}").mkdir(exist_ok=True)
        torch.save(
            _checkpoint(net.state_dict(), plans, "fastpanc", {"fastpanc": plans["fastpanc"]}),
            path / f"fold_{f}" / "checkpoint_final.pth",
        )
    return path


def synthetic_ct(shape=(20, 40, 36), seed: int = 0) -> np.ndarray:
    """A float32 CT-like volume (Z, Y, X) in HU: air border (0 outside the body), tissue, a bright blob."""
    rng = np.random.default_rng(seed)
    z, y, x = np.meshgrid(*[np.linspace(-1, 1, s) for s in shape], indexing="ij")
    body = (y**2 + x**2) < 0.8
    img = np.where(body, 40.0 + 30.0 * rng.standard_normal(shape), 0.0)
    blob = ((z - 0.1) ** 2 + (y + 0.2) ** 2 + (x - 0.1) ** 2) < 0.15
    img[blob & body] += 120.0
    return img.astype(np.float32)


def write_case(
    path: Path,
    image: np.ndarray,
    spacing=(2.5, 0.9, 0.8),
    origin=(10.0, -20.0, 5.0),
    direction=(1, 0, 0, 0, 1, 0, 0, 0, 1),
) -> Path:
    img = sitk.GetImageFromArray(image)
    img.SetSpacing(tuple(reversed(spacing)))
    img.SetOrigin(origin)
    img.SetDirection(direction)
    path.parent.mkdir(parents=True, exist_ok=True)
    sitk.WriteImage(img, str(path))
    return path


@pytest.fixture(scope="session")
def nnunet_model(tmp_path_factory) -> Path:
    return write_nnunet_folder(tmp_path_factory.mktemp("models") / "nnunet", tiny_plans())


@pytest.fixture(scope="session")
def fastpanc_model(tmp_path_factory) -> Path:
    return write_fastpanc_folder(tmp_path_factory.mktemp("models") / "fastpanc", tiny_plans(), folds=(0, 1))


@pytest.fixture()
def cases_dir(tmp_path) -> Path:
    d = tmp_path / "images"
    write_case(d / "case_a_0000.nii.gz", synthetic_ct(seed=1))
    write_case(d / "case_b_0000.nii.gz", synthetic_ct((14, 30, 44), seed=2), spacing=(3.0, 0.7, 0.75))
    return d


@pytest.fixture(scope="session")
def builders():
    """The builders above, for tests (``--import-mode=importlib`` cannot import conftest by name)."""
    import types

    return types.SimpleNamespace(
        synthetic_ct=synthetic_ct,
        write_case=write_case,
        tiny_plans=tiny_plans,
        write_nnunet_folder=write_nnunet_folder,
        write_fastpanc_folder=write_fastpanc_folder,
    )
