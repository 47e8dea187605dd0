"""Dataset fingerprint, as nnU-Net v2's ``DatasetFingerprintExtractor`` computes it.

Per training case: spacing, shape after cropping to the nonzero region, the size kept by the crop, and a
sample (with replacement, seed 1234) of foreground intensities per channel, ``1e8 // num_cases`` of them.
Over the dataset: mean, median, std, min, max and the 0.5 / 99.5 percentiles of the pooled samples per
channel. Written as ``dataset_fingerprint.json`` in nnU-Net's schema.
"""

from __future__ import annotations

import logging
import multiprocessing
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from fastpanc.data.cropping import crop_to_nonzero
from fastpanc.data.io import read_case, read_labels
from fastpanc.data.raw_dataset import RawCase, label_values, load_dataset_json, training_cases

log = logging.getLogger(__name__)

FOREGROUND_SAMPLES_TOTAL = 10e7  # nnU-Net's num_foreground_voxels_for_intensitystats
SAMPLE_SEED = 1234


def foreground_samples(
    seg: np.ndarray, images: np.ndarray, num_samples: int, seed: int = SAMPLE_SEED
) -> list[np.ndarray]:
    """``num_samples`` intensities drawn with replacement from the voxels with ``seg > 0``, per channel.

    Args:
        seg: ``(1, Z, Y, X)`` labels (-1 outside the nonzero region).
        images: ``(C, Z, Y, X)`` float32.

    Returns:
        One float32 array of ``num_samples`` values per channel (empty without foreground).
    """
    rs = np.random.RandomState(seed)
    fg = seg[0] > 0
    out = []
    for c in range(images.shape[0]):
        pixels = images[c][fg]
        out.append(rs.choice(pixels, num_samples, replace=True) if pixels.size else np.empty(0, np.float32))
    return out


def analyze_case(case: RawCase, num_samples: int, labels: tuple[int, ...]) -> dict[str, Any]:
    """Fingerprint of one case: shape after crop, spacing, foreground samples, relative crop size."""
    images, geometry = read_case(case.images)
    images = images.astype(np.float32, copy=False)  # nnU-Net's reader yields float32
    if np.isnan(images).any():
        raise ValueError(f"{case.images[0]}: the image contains NaN values; fix or remove the case")
    seg, seg_geometry = read_labels(case.label, labels)
    if seg.shape != images.shape[1:]:
        raise ValueError(
            f"{case.name}: image (Z, Y, X) {images.shape[1:]} and label {seg.shape} differ in shape"
        )
    why = geometry.mismatch(seg_geometry)
    if why is not None:
        raise ValueError(f"{case.name}: image and label differ in geometry: {why}")
    cropped, seg_c, _ = crop_to_nonzero(images, seg[None])
    return {
        "shape_after_crop": [int(s) for s in cropped.shape[1:]],
        "spacing": [float(s) for s in geometry.spacing],
        "samples": foreground_samples(seg_c, cropped, num_samples),
        "relative_size": float(np.prod(cropped.shape[1:]) / np.prod(images.shape[1:])),
    }


def _analyze(args: tuple[RawCase, int, tuple[int, ...]]) -> dict[str, Any]:
    import torch

    from fastpanc.ops._backend import extension

    torch.set_num_threads(1)  # one thread per worker process, for torch and the OpenMP kernels
    ext = extension()
    if ext is not None:
        ext.set_num_threads(1)
    return analyze_case(*args)


def summarize(results: list[dict[str, Any]], num_channels: int) -> dict[str, Any]:
    """Pool the per-case results (in case order) into nnU-Net's fingerprint dict."""
    stats: dict[str, dict[str, float]] = {}
    for c in range(num_channels):
        values = np.concatenate([r["samples"][c] for r in results])
        if values.size == 0:
            raise ValueError(
                f"no foreground voxels in any case for channel {c}; the fingerprint needs labels > 0"
            )
        p005, median, p995 = np.percentile(values, (0.5, 50.0, 99.5))
        stats[str(c)] = {
            "mean": float(np.mean(values)),
            "median": float(median),
            "std": float(np.std(values)),
            "min": float(np.min(values)),
            "max": float(np.max(values)),
            "percentile_99_5": float(p995),
            "percentile_00_5": float(p005),
        }
    return {
        "spacings": [r["spacing"] for r in results],
        "shapes_after_crop": [r["shape_after_crop"] for r in results],
        "foreground_intensity_properties_per_channel": stats,
        "median_relative_size_after_cropping": float(np.median([r["relative_size"] for r in results])),
    }


def extract_fingerprint(dataset: str | Path, workers: int = 2) -> dict[str, Any]:
    """Fingerprint of the training cases of an nnU-Net v2 raw dataset, computed in ``workers`` processes.

    Raises:
        FileNotFoundError, ValueError: missing files, unreadable or inconsistent cases (the case is named).
    """
    dataset = Path(dataset)
    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    dj = load_dataset_json(dataset)
    cases = training_cases(dataset, dj)
    labels = tuple(label_values(dj))
    num_samples = int(FOREGROUND_SAMPLES_TOTAL // len(cases))
    jobs = [(c, num_samples, labels) for c in cases]
    log.info("fingerprinting %d cases of %s with %d worker(s)", len(cases), dataset, workers)
    bar = tqdm(total=len(cases), desc="fingerprint", unit="case")
    try:
        if workers == 1:
            results = []
            for j in jobs:
                results.append(analyze_case(*j))
                bar.update()
        else:
            with multiprocessing.get_context("spawn").Pool(min(workers, len(cases))) as pool:
                results = []
                for r in pool.imap(_analyze, jobs):
                    results.append(r)
                    bar.update()
    finally:
        bar.close()
    return summarize(results, len(results[0]["samples"]))
