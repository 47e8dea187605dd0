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
    flat = seg.reshape(-1)
    out: dict[int, np.ndarray] = {}
    for label in labels:
        label = int(label)
        # voxels of this label in C order: the order of nnU-Net's stably sorted ``argwhere`` block
        where = np.flatnonzero(flat == label)
        total = where.size
        if total == 0:
            out[label] = np.zeros((0, seg.ndim), np.int64)
            continue
        target = max(min(num_samples, total), int(np.ceil(total * min_percent_coverage)))
        picked = where[rs.choice(total, target, replace=False)]
        out[label] = np.stack(np.unravel_index(picked, seg.shape), axis=1).astype(np.int64)
    return out


def int_rows_json(rows: np.ndarray) -> str:
    """JSON text ``[[a,b,..],..]`` of a non-negative integer ``(N, K)`` array, built with numpy.

    Numbers are right-aligned with spaces (valid JSON); ``json.loads`` gives ``rows.tolist()``. About three
    times faster than ``json.dumps(rows.tolist())`` for the ~20000 locations of a case.
    """
    rows = np.asarray(rows)
    if rows.ndim != 2 or (rows.size and rows.min() < 0):
        raise ValueError(
            f"int_rows_json: expected a non-negative (N, K) integer array, got shape {rows.shape}"
        )
    n, k = rows.shape
    if n == 0:
        return "[]"
    if k == 0:
        return "[" + ",".join(["[]"] * n) + "]"
    width = len(str(int(rows.max())))
    digits = np.empty((n, k, width), np.uint8)  # (N, K, width) ASCII digits, most significant first
    v = rows.astype(np.int64)
    for i in range(width - 1, -1, -1):
        digits[:, :, i] = 48 + v % 10
        v //= 10
    leading = np.logical_and.accumulate(digits == 48, axis=2)
    leading[:, :, -1] = False  # a zero keeps its last digit
    digits[leading] = 32
    cell = width + 1  # digits and the following ',' (']' after the last number of a row)
    text = np.empty((n, 1 + k * cell + 1), np.uint8)  # "[" + cells + "," per row
    text[:, 0] = ord("[")
    for j in range(k):
        text[:, 1 + j * cell : 1 + j * cell + width] = digits[:, j]
        text[:, 1 + j * cell + width] = ord(",")
    text[:, k * cell] = ord("]")
    text[:, -1] = ord(",")
    return "[" + text.tobytes()[:-1].decode("ascii") + "]"
