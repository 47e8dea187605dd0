"""PNG figures of an evaluation: confusion matrix, Dice box plots and orthogonal-slice overlays (matplotlib Agg)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only, never a window; set before pyplot is imported
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from scipy import ndimage  # noqa: E402

REFERENCE_COLOURS = {1: "#2ca02c", 2: "#17becf"}  # pancreas, lesion
PREDICTION_COLOURS = {1: "#ff7f0e", 2: "#d62728"}


def _save(fig: plt.Figure, path: str | Path) -> Path:
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(p, dpi=110, bbox_inches="tight")
    plt.close(fig)
    return p


def plot_confusion_matrix(
    confusion: np.ndarray,
    path: str | Path,
    class_names: Sequence[str] | None = None,
    missing: np.ndarray | None = None,
) -> Path:
    """Confusion matrix ``(K, K)`` (rows true, columns predicted) as a labelled heat map; ``missing`` ``(K,)`` adds a column."""
    k = confusion.shape[0]
    names = list(class_names) if class_names is not None else [f"subtype {i}" for i in range(k)]
    counts = (
        confusion
        if missing is None or not missing.any()
        else np.concatenate([confusion, missing[:, None]], 1)
    )
    cols = names + (["missing"] if counts.shape[1] > k else [])
    fig, ax = plt.subplots(figsize=(1.2 * len(cols) + 1.5, 1.1 * k + 1.2))
    ax.imshow(counts, cmap="Blues", vmin=0, vmax=max(int(counts.max()), 1))
    for i in range(counts.shape[0]):
        for j in range(counts.shape[1]):
            dark = counts[i, j] > 0.6 * counts.max()
            ax.text(
                j, i, str(int(counts[i, j])), ha="center", va="center", color="white" if dark else "black"
            )
    ax.set_xticks(range(len(cols)), cols)
    ax.set_yticks(range(k), names)
    ax.set_xlabel("predicted")
    ax.set_ylabel("reference")
    ax.set_title("Lesion subtype")
    return _save(fig, path)


def plot_dice_boxes(
    dice: Mapping[str, Sequence[float]], path: str | Path, targets: Mapping[str, float] | None = None
) -> Path:
    """Box plot (with every case as a dot) of per-case Dice per region, with the target as a dashed line."""
    names = list(dice)
    fig, ax = plt.subplots(figsize=(1.8 * len(names) + 1.5, 3.6))
    data = [np.asarray(dice[n], dtype=float) for n in names]
    ax.boxplot(data, showfliers=False)
    ax.set_xticks(range(1, len(names) + 1), names)
    rng = np.random.default_rng(0)
    for i, d in enumerate(data, start=1):
        ax.scatter(i + rng.uniform(-0.12, 0.12, d.size), d, s=12, color="black", alpha=0.6, zorder=3)
        if targets and names[i - 1] in targets:
            t = targets[names[i - 1]]
            ax.hlines(
                t, i - 0.35, i + 0.35, colors="#d62728", linestyles="--", label="target" if i == 1 else None
            )
    ax.set_ylim(-0.02, 1.02)
    ax.set_ylabel("Dice")
    ax.set_title("Dice per case")
    if targets:
        ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize="small")
    return _save(fig, path)


def lesion_center(gt: np.ndarray, pred: np.ndarray) -> tuple[int, int, int]:
    """The voxel to slice through: the reference lesion's centre, else the prediction's, else the pancreas's."""
    for mask in (gt == 2, pred == 2, gt > 0, pred > 0):
        if mask.any():
            return tuple(int(round(c)) for c in ndimage.center_of_mass(mask))  # type: ignore[return-value]
    return tuple(s // 2 for s in gt.shape)  # type: ignore[return-value]


def plot_overlay(
    gt: np.ndarray,
    pred: np.ndarray,
    spacing: tuple[float, float, float],
    path: str | Path,
    image: np.ndarray | None = None,
    title: str = "",
) -> Path:
    """Three orthogonal slices ``(axial, coronal, sagittal)`` through the lesion with contours of both label maps.

    Args:
        gt, pred: label maps ``(Z, Y, X)`` (0 background, 1 pancreas, 2 lesion).
        spacing: ``(z, y, x)`` in mm, sets each slice's aspect ratio.
        image: the CT ``(Z, Y, X)`` shown in grey beneath; without it the background is blank.
    """
    if gt.shape != pred.shape or (image is not None and image.shape != gt.shape):
        raise ValueError(
            f"overlay arrays must share one shape, got gt {gt.shape}, pred {pred.shape}, "
            f"image {None if image is None else image.shape}"
        )
    cz, cy, cx = lesion_center(gt, pred)
    sz, sy, sx = spacing
    # (name, slicer, aspect = row spacing / column spacing, origin): axial rows top-down as viewers show
    # them; coronal and sagittal with the slice index z growing upwards.
    views = [
        (f"axial z={cz}", (cz, slice(None), slice(None)), sy / sx, "upper"),
        (f"coronal y={cy}", (slice(None), cy, slice(None)), sz / sx, "lower"),
        (f"sagittal x={cx}", (slice(None), slice(None), cx), sz / sy, "lower"),
    ]
    if image is not None:
        lo, hi = np.percentile(image, [1, 99])
    fig, axes = plt.subplots(1, 3, figsize=(11, 4))
    for ax, (name, sl, aspect, origin) in zip(axes, views):
        g, p = gt[sl], pred[sl]
        if image is not None:
            ax.imshow(image[sl], cmap="gray", vmin=lo, vmax=hi, aspect=aspect, origin=origin)
        else:
            ax.imshow(np.zeros(g.shape), cmap="gray", vmin=0, vmax=1, aspect=aspect, origin=origin)
        for labels, colours, style in ((g, REFERENCE_COLOURS, "-"), (p, PREDICTION_COLOURS, "--")):
            for value, colour in colours.items():
                region = (labels >= value) if value == 1 else (labels == value)
                if region.any() and not region.all():
                    ax.contour(
                        region.astype(float), levels=[0.5], colors=colour, linestyles=style, linewidths=1.2
                    )
        ax.set_title(name, fontsize="small")
        ax.set_axis_off()
    handles = [
        plt.Line2D([], [], color=REFERENCE_COLOURS[1], label="reference pancreas"),
        plt.Line2D([], [], color=REFERENCE_COLOURS[2], label="reference lesion"),
        plt.Line2D([], [], color=PREDICTION_COLOURS[1], ls="--", label="predicted pancreas"),
        plt.Line2D([], [], color=PREDICTION_COLOURS[2], ls="--", label="predicted lesion"),
    ]
    fig.legend(handles=handles, loc="lower center", ncol=4, fontsize="small", frameon=False)
    if title:
        fig.suptitle(title)
    return _save(fig, path)
