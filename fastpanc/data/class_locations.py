"""Foreground voxel locations per label, sampled as nnU-Net v2's ``_sample_foreground_locations``.

The trainer oversamples foreground by centring patches on these locations. Per label: all its voxels
when there are at most 10000, else 10000 of them, but never fewer than 1% of them; drawn without
replacement by ``RandomState(1234)``, one label after the other, so the result equals nnU-Net's.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

NUM_SAMPLES = 10000
MIN_PERCENT_COVERAGE = 0.01
SEED = 1234


def sample_foreground_locations(
    seg: np.ndarray,
    labels: Sequence[int],
    seed: int = SEED,
    num_samples: int = NUM_SAMPLES,
    min_percent_coverage: float = MIN_PERCENT_COVERAGE,
) -> dict[int, np.ndarray]:
    """Sample voxel coordinates of each label.

    Args:
        seg: ``(1, Z, Y, X)`` integer labels.
        labels: the foreground labels, in order (e.g. ``[1, 2]``).

    Returns:
        ``{label: int64 array (N, 4) of (c, z, y, x)}``; ``N = 0`` (an empty list) for absent labels.
    """
    rs = np.random.RandomState(seed)
    wanted = np.asarray(sorted({int(label) for label in labels}), dtype=np.int32)
    valid = np.isin(seg, wanted)
    coords = np.argwhere(valid)  # (n, 4), C order
    values = seg[valid]
    del valid
    out: dict[int, np.ndarray] = {}
    if values.size == 0:
        return {int(label): np.zeros((0, seg.ndim), np.int64) for label in labels}
    order = np.argsort(values, kind="stable")
    values, coords = values[order], coords[order]
    change = np.flatnonzero(values[1:] != values[:-1]) + 1
    starts = np.r_[0, change]
    ends = np.r_[change, values.size]
    ranges = {int(values[s]): (int(s), int(e)) for s, e in zip(starts, ends)}
    for label in labels:
        label = int(label)
        if label not in ranges:
            out[label] = np.zeros((0, seg.ndim), np.int64)
            continue
        s, e = ranges[label]
        total = e - s
        target = max(min(num_samples, total), int(np.ceil(total * min_percent_coverage)))
        picked = rs.choice(total, target, replace=False)
        out[label] = coords[s + picked.astype(np.int64)]
    return out
