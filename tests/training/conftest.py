"""A tiny preprocessed dataset in the documented format (DEVELOPERS.md), written by the tests themselves so that
the trainer is tested without the data pipeline: blobs of pancreas with a lesion whose intensity encodes the
subtype."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from fastpanc.data.plan_rules import resenc_architecture

LESION_INTENSITY = (-1.5, 0.2, 3.0)  # per subtype; pancreas is 1.0, background ~0


def tiny_plans(
    patch: tuple[int, int, int] = (16, 32, 32), batch_size: int = 2, features: tuple[int, ...] = (4, 8, 16)
) -> dict:
    """nnU-Net v2 plans with a small ResEnc U-Net (one stride-1 stage, then stride 2)."""
    n = len(features)
    arch = resenc_architecture(
        list(features), [[3, 3, 3]] * n, [[1, 1, 1]] + [[2, 2, 2]] * (n - 1), [1] * n, [1] * (n - 1)
    )
    return {
        "dataset_name": "Dataset900_Tiny",
        "plans_name": "nnUNetResEncUNetMPlans",
        "transpose_forward": [0, 1, 2],
        "transpose_backward": [0, 1, 2],
        "configurations": {
            "3d_fullres": {
                "data_identifier": "nnUNetPlans_3d_fullres",
                "preprocessor_name": "DefaultPreprocessor",
                "batch_size": batch_size,
                "patch_size": list(patch),
                "spacing": [2.0, 1.0, 1.0],
                "normalization_schemes": ["CTNormalization"],
                "use_mask_for_norm": [False],
                "architecture": arch,
                "batch_dice": False,
            }
        },
        "fastpanc": {"num_subtypes": 3},
    }


def _ellipsoid(shape: tuple[int, ...], centre: np.ndarray, radii: np.ndarray) -> np.ndarray:
    grid = np.stack(np.meshgrid(*[np.arange(s) for s in shape], indexing="ij"), axis=-1)
    return (((grid - centre) / radii) ** 2).sum(-1) <= 1.0


def write_preprocessed(
    folder: Path,
    subtypes: list[int],
    shape: tuple[int, int, int] = (20, 40, 40),
    n_val: int = 3,
    seed: int = 0,
    plans: dict | None = None,
) -> Path:
    """Write ``len(subtypes)`` cases; the last ``n_val`` are the validation split of fold 0."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    names = [f"case_{i:03d}" for i in range(len(subtypes))]
    for name, subtype in zip(names, subtypes):
        centre = np.asarray(shape) / 2 + rng.uniform(-2, 2, 3)
        radii = np.asarray(shape) * rng.uniform(0.25, 0.35, 3)
        pancreas = _ellipsoid(shape, centre, radii)
        lesion = _ellipsoid(shape, centre + rng.uniform(-1, 1, 3), radii * rng.uniform(0.35, 0.5))
        seg = np.where(lesion & pancreas, 2, np.where(pancreas, 1, 0)).astype(np.int8)
        image = rng.normal(0.0, 0.3, shape).astype(np.float32)
        image[seg == 1] += 1.0
        image[seg == 2] += LESION_INTENSITY[subtype]
        np.save(folder / f"{name}.npy", image[None])
        np.save(folder / f"{name}_seg.npy", seg[None])
        locs = {}
        for label in (1, 2):
            idx = np.argwhere(seg == label)
            pick = idx[rng.choice(len(idx), size=min(len(idx), 50), replace=False)]
            locs[str(label)] = [[0, *map(int, v)] for v in pick]
        props = {
            "shape_after_cropping_and_before_resampling": list(shape),
            "spacing": [2.0, 1.0, 1.0],
            "subtype": int(subtype),
            "class_locations": locs,
        }
        (folder / f"{name}.json").write_text(json.dumps(props))
    (folder / "plans.json").write_text(json.dumps(plans or tiny_plans()))
    (folder / "dataset.json").write_text(
        json.dumps(
            {
                "channel_names": {"0": "CT"},
                "labels": {"background": 0, "pancreas": 1, "lesion": 2},
                "numTraining": len(names),
                "file_ending": ".nii.gz",
            }
        )
    )
    (folder / "subtype_mapping.json").write_text(json.dumps(dict(zip(names, map(int, subtypes)))))
    (folder / "splits_final.json").write_text(json.dumps([{"train": names[:-n_val], "val": names[-n_val:]}]))
    return folder


@pytest.fixture(scope="session")
def tiny_preprocessed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """12 cases (4 per subtype), 3 of them (one per subtype) for validation."""
    return write_preprocessed(tmp_path_factory.mktemp("preprocessed"), [0, 1, 2] * 4, n_val=3)
