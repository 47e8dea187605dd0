"""A tiny nnU-Net v2 raw dataset on disk (imagesTr, labelsTr, dataset.json, subtype mapping, splits)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from fastpanc.data.io import Geometry, write_image

SPACINGS = [(3.0, 0.8, 0.8), (2.5, 0.7, 0.7), (1.0, 0.9, 0.9), (2.0, 0.75, 0.75)]


def make_case(rng: np.random.Generator, shape: tuple[int, int, int]) -> tuple[np.ndarray, np.ndarray]:
    """A CT-like image (float32 HU) with a zero margin, an enclosed zero hole and a zero notch at the border
    of the nonzero box, and labels 1 (organ) / 2 (lesion)."""
    z, y, x = shape
    img = np.zeros(shape, np.float32)
    body = (slice(1, z - 1), slice(2, y - 1), slice(1, x - 2))
    values = rng.normal(40, 60, size=img[body].shape).round()
    values[values == 0] = 1  # exact zeros only where placed below
    img[body] = values
    img[z // 2, y // 2, x // 2 - 1] = 0  # enclosed hole
    img[1 : z - 2, 2:6, 1:5] = 0  # notch on two faces of the box: stays outside the filled mask
    seg = np.zeros(shape, np.uint8)
    seg[z // 3 : 2 * z // 3 + 1, y // 4 : 3 * y // 4, x // 4 : 3 * x // 4] = 1
    seg[z // 2 - 1 : z // 2 + 1, y // 2 - 2 : y // 2 + 2, x // 2 - 2 : x // 2 + 2] = 2
    img[seg == 1] += 60
    img[seg == 2] -= 30
    return img, seg


def make_raw_dataset(root: Path, n: int = 3, seed: int = 0, shapes=None, subtypes: bool = True) -> Path:
    """Write ``n`` cases into ``root`` (an nnU-Net v2 raw dataset folder) and return ``root``."""
    rng = np.random.default_rng(seed)
    (root / "imagesTr").mkdir(parents=True, exist_ok=True)
    (root / "labelsTr").mkdir(parents=True, exist_ok=True)
    names = []
    for i in range(n):
        shape = shapes[i] if shapes else (10 + 2 * i, 22 + i, 26 - i)
        img, seg = make_case(rng, shape)
        g = Geometry(SPACINGS[i % len(SPACINGS)], (1.5 * i, -3.0, 7.0), (1, 0, 0, 0, 1, 0, 0, 0, 1))
        name = f"case_{i:03d}"
        write_image(root / "imagesTr" / f"{name}_0000.nii.gz", img, g)
        write_image(root / "labelsTr" / f"{name}.nii.gz", seg, g)
        names.append(name)
    dj = {
        "channel_names": {"0": "CT"},
        "labels": {"background": 0, "pancreas": 1, "lesion": 2},
        "numTraining": n,
        "file_ending": ".nii.gz",
        "name": "Tiny",
    }
    (root / "dataset.json").write_text(json.dumps(dj, indent=2))
    if subtypes:
        (root / "subtype_mapping.json").write_text(json.dumps({c: i % 3 for i, c in enumerate(names)}))
    (root / "splits_final.json").write_text(json.dumps([{"train": names[1:], "val": names[:1]}]))
    return root
