"""Per-epoch training logs: a CSV row per epoch, TensorBoard scalars and ``progress.png``."""

from __future__ import annotations

import csv
import logging
import math
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

COLUMNS = (
    "epoch",
    "lr",
    "train_loss",
    "train_seg_loss",
    "train_cls_loss",
    "lambda_cls",
    "val_loss",
    "dice_pancreas",
    "dice_lesion",
    "macro_f1",
    "ema_score",
    "epoch_time_s",
    "data_wait_s",
    "iterations_per_s",
)


class TrainLog:
    """Collects one dict of :data:`COLUMNS` per epoch; the whole history is plain data (saved in checkpoints)."""

    def __init__(
        self, fold_dir: Path, history: dict[str, list[float]] | None = None, tensorboard: bool = True
    ) -> None:
        self.fold_dir = Path(fold_dir)
        self.history: dict[str, list[float]] = {c: list((history or {}).get(c, [])) for c in COLUMNS}
        self._tb = None
        if tensorboard:
            from torch.utils.tensorboard import SummaryWriter

            self._tb = SummaryWriter(
                log_dir=str(self.fold_dir / "tensorboard"), purge_step=len(self.history["epoch"]) or None
            )

    def append(self, row: dict[str, Any]) -> None:
        """Add an epoch's values (missing columns become NaN) and write CSV, TensorBoard and the plot."""
        missing = set(row) - set(COLUMNS)
        if missing:
            raise ValueError(f"unknown log columns {sorted(missing)}; expected some of {COLUMNS}")
        for c in COLUMNS:
            self.history[c].append(float(row.get(c, math.nan)))
        self.write_csv()
        if self._tb is not None:
            epoch = int(row["epoch"])
            for c in COLUMNS[1:]:
                if c in row and math.isfinite(float(row[c])):
                    self._tb.add_scalar(c, float(row[c]), epoch)
            self._tb.flush()
        self.plot(self.fold_dir / "progress.png")

    def write_csv(self) -> None:
        path = self.fold_dir / "training_log.csv"
        tmp = path.with_suffix(".csv.tmp")
        with tmp.open("w", newline="") as fh:
            w = csv.writer(fh)
            w.writerow(COLUMNS)
            for i in range(len(self.history["epoch"])):
                w.writerow([_fmt(self.history[c][i]) for c in COLUMNS])
        tmp.replace(path)

    def plot(self, path: Path) -> None:
        """progress.png: losses, Dice and F1, learning rate, epoch time (and data wait) against the epoch."""
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        h = self.history
        x = h["epoch"]
        fig, axes = plt.subplots(4, 1, figsize=(10, 13), sharex=True)
        axes[0].plot(x, h["train_loss"], label="train loss", color="b")
        axes[0].plot(x, h["val_loss"], label="val loss", color="r")
        axes[0].plot(x, h["train_cls_loss"], label="train cls loss", color="c", ls=":")
        axes[0].set_ylabel("loss")
        axes[1].plot(x, h["dice_pancreas"], label="pseudo-Dice pancreas", color="g")
        axes[1].plot(x, h["dice_lesion"], label="pseudo-Dice lesion", color="m")
        axes[1].plot(x, h["macro_f1"], label="subtype macro-F1", color="orange")
        axes[1].plot(x, h["ema_score"], label="EMA score", color="k", ls="--")
        axes[1].set_ylabel("metric")
        axes[1].set_ylim(0, 1)
        axes[2].plot(x, h["lr"], label="learning rate", color="b")
        axes[2].set_ylabel("LR")
        axes[3].plot(x, h["epoch_time_s"], label="epoch time", color="b")
        axes[3].plot(x, h["data_wait_s"], label="waiting for data", color="r")
        axes[3].set_ylabel("seconds")
        axes[3].set_xlabel("epoch")
        for ax in axes:
            ax.legend(loc="best", fontsize=8)
            ax.grid(alpha=0.3)
        fig.tight_layout()
        tmp = path.with_name(f".{path.stem}.tmp.png")
        fig.savefig(tmp, dpi=80)
        plt.close(fig)
        tmp.replace(path)

    def close(self) -> None:
        if self._tb is not None:
            self._tb.close()


def _fmt(v: float) -> str:
    return "" if math.isnan(v) else (str(int(v)) if float(v).is_integer() and abs(v) < 1e15 else f"{v:.6g}")
