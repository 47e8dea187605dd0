"""Patch sampling from memory-mapped preprocessed cases (nnU-Net's data loader, batched and stateless).

Every batch is drawn from its own ``numpy.random.Generator`` seeded with ``(seed, rank, epoch, iteration)``,
so a batch does not depend on how many batches were prepared before it: background prefetching, several
workers and ``--resume`` all give the same batches as one sequential run.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Case:
    """One preprocessed case: memory-mapped arrays and the properties the sampler needs."""

    name: str
    image: np.ndarray  # (C, Z, Y, X) float32, memory-mapped
    seg: np.ndarray  # (1, Z, Y, X) int8, memory-mapped; -1 outside the nonzero crop region
    subtype: int
    class_locations: dict[int, np.ndarray]  # label -> (N, 4) int64 rows (c, z, y, x)


def load_case(folder: Path, name: str) -> Case:
    """Open ``{name}.npy``, ``{name}_seg.npy`` (memory-mapped) and ``{name}.json`` of a preprocessed folder."""
    paths = [folder / f"{name}.npy", folder / f"{name}_seg.npy", folder / f"{name}.json"]
    for p in paths:
        if not p.is_file():
            raise FileNotFoundError(f"preprocessed case file {p} is missing; run `fastpanc preprocess` again")
    image = np.load(paths[0], mmap_mode="r")
    seg = np.load(paths[1], mmap_mode="r")
    props = json.loads(paths[2].read_text())
    if image.ndim != 4 or seg.shape != (1, *image.shape[1:]):
        raise ValueError(
            f"case {name}: expected image (C, Z, Y, X) and seg (1, Z, Y, X) of the same grid, "
            f"got {image.shape} and {seg.shape}"
        )
    if "subtype" not in props:
        raise ValueError(f"case {name}: {paths[2]} has no 'subtype'; preprocess with a subtype_mapping.json")
    locs = {
        int(k): np.asarray(v, dtype=np.int64).reshape(-1, 4)
        for k, v in props.get("class_locations", {}).items()
    }
    return Case(name, image, seg, int(props["subtype"]), {k: v for k, v in locs.items() if len(v)})


def read_split(folder: Path, fold: int) -> tuple[list[str], list[str]]:
    """Train and val case names of ``fold`` from ``splits_final.json``."""
    path = folder / "splits_final.json"
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing; `fastpanc preprocess` copies it from the raw dataset")
    splits = json.loads(path.read_text())
    if not 0 <= fold < len(splits):
        raise ValueError(f"fold {fold} does not exist in {path}: it has folds 0..{len(splits) - 1}")
    return list(splits[fold]["train"]), list(splits[fold]["val"])


def crop_bbox(
    patch: tuple[int, int, int], shape: tuple[int, ...], rng: np.random.Generator, centre: np.ndarray | None
) -> np.ndarray:
    """Lower corner (z, y, x) of a patch, as nnU-Net's ``get_bbox``.

    Cases smaller than the patch are padded symmetrically. A random patch may reach outside the volume by the
    padding only; a forced patch is centred on ``centre`` and clipped to the same range.
    """
    p = np.asarray(patch)
    s = np.asarray(shape)
    need = np.maximum(p - s, 0)
    lbs = -(need // 2)
    ubs = s + need // 2 + need % 2 - p
    if centre is None:
        return np.array([rng.integers(lo, hi + 1) for lo, hi in zip(lbs, ubs)], dtype=np.int64)
    return np.clip(np.asarray(centre) - p // 2, lbs, ubs).astype(np.int64)


def extract(
    array: np.ndarray, lower: np.ndarray, patch: tuple[int, int, int], pad_value: float
) -> np.ndarray:
    """Copy ``array[:, lower:lower+patch]`` (C, *patch), padding with ``pad_value`` outside the volume."""
    out = np.full((array.shape[0], *patch), pad_value, dtype=array.dtype)
    src, dst = [slice(None)], [slice(None)]
    for lo, size, dim in zip(lower, patch, array.shape[1:]):
        a, b = max(int(lo), 0), min(int(lo) + size, dim)
        src.append(slice(a, b))
        dst.append(slice(a - int(lo), b - int(lo)))
    out[tuple(dst)] = array[tuple(src)]
    return out


class PatchSampler:
    """Draws training batches: foreground oversampling, lesion-aware centring, optional class-balanced cases.

    In a batch of ``B`` samples, ``floor(B * p) + Bernoulli(frac(B * p))`` are forced to contain foreground
    (``p = oversample_foreground``), so that the forced share is exactly ``p`` in expectation for any batch
    size (nnU-Net rounds ``B * (1 - p)``, which forces none at ``B = 1`` and half at ``B = 2``). A forced sample
    is centred on a random voxel of the lesion with probability ``lesion_fraction`` (when the case has one),
    otherwise on a random pancreas voxel. Cases are drawn uniformly, or with weight ``1 / n(subtype)`` when
    ``class_balanced`` so that every subtype is drawn equally often.
    """

    def __init__(
        self,
        cases: list[Case],
        patch_size: tuple[int, int, int],
        batch_size: int,
        *,
        oversample_foreground: float = 0.33,
        lesion_fraction: float = 0.5,
        class_balanced: bool = False,
        seed: int = 0,
        rank: int = 0,
    ) -> None:
        if not cases:
            raise ValueError("the sampler needs at least one case; check the split's train list")
        self.cases = cases
        self.patch_size = tuple(int(p) for p in patch_size)
        self.batch_size = int(batch_size)
        self.oversample_foreground = float(oversample_foreground)
        self.lesion_fraction = float(lesion_fraction)
        self.seed = int(seed)
        self.rank = int(rank)
        subtypes = np.array([c.subtype for c in cases])
        if class_balanced:
            counts = {s: int((subtypes == s).sum()) for s in np.unique(subtypes)}
            w = np.array([1.0 / counts[s] for s in subtypes])
        else:
            w = np.ones(len(cases))
        self.case_probs = w / w.sum()

    def rng(self, epoch: int, iteration: int) -> np.random.Generator:
        """The generator of one batch: a function of (seed, rank, epoch, iteration) only."""
        return np.random.default_rng([self.seed, self.rank, int(epoch), int(iteration)])

    def forced_mask(self, rng: np.random.Generator) -> np.ndarray:
        """(B,) bool: which samples of a batch must contain foreground."""
        expected = self.batch_size * self.oversample_foreground
        n = int(np.floor(expected)) + int(rng.random() < expected - np.floor(expected))
        mask = np.zeros(self.batch_size, dtype=bool)
        mask[rng.permutation(self.batch_size)[:n]] = True
        return mask

    def centre(self, case: Case, rng: np.random.Generator) -> np.ndarray | None:
        """A foreground voxel (z, y, x) to centre a forced patch on; None when the case has no foreground."""
        if not case.class_locations:
            return None
        if 2 in case.class_locations and (
            1 not in case.class_locations or rng.random() < self.lesion_fraction
        ):
            label = 2
        else:
            label = 1 if 1 in case.class_locations else min(case.class_locations)
        locs = case.class_locations[label]
        return locs[rng.integers(len(locs))][1:]

    def sample(self, epoch: int, iteration: int) -> dict[str, np.ndarray]:
        """One batch: ``image`` (B, C, *patch) float32, ``seg`` (B, 1, *patch) int8 (padding and -1 become 0),
        ``subtype`` (B,) int64, ``case`` (B,) indices into ``cases``, ``forced`` (B,) bool."""
        rng = self.rng(epoch, iteration)
        idx = rng.choice(len(self.cases), size=self.batch_size, p=self.case_probs)
        forced = self.forced_mask(rng)
        images, segs = [], []
        for i, f in zip(idx, forced):
            case = self.cases[i]
            lower = crop_bbox(
                self.patch_size, case.image.shape[1:], rng, self.centre(case, rng) if f else None
            )
            images.append(extract(case.image, lower, self.patch_size, 0.0))
            segs.append(extract(case.seg, lower, self.patch_size, 0))
        seg = np.stack(segs)
        seg[seg < 0] = 0
        return {
            "image": np.stack(images).astype(np.float32, copy=False),
            "seg": seg,
            "subtype": np.array([self.cases[i].subtype for i in idx], dtype=np.int64),
            "case": idx.astype(np.int64),
            "forced": forced,
        }
