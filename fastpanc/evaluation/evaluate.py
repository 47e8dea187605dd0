"""``fastpanc evaluate``: score predicted masks (and subtypes) against a reference and write a report folder.

Outputs in the output folder: ``summary.json``, ``cases.csv``, ``dice_boxplot.png``,
``confusion_matrix.png`` (when subtypes are given) and ``overlay_best_<case>.png`` /
``overlay_worst_<case>.png`` (three orthogonal slices through the lesion). A reference case without
a prediction is scored as an empty prediction (Dice 0) and listed under ``missing_predictions``.
"""

from __future__ import annotations

import argparse
import csv
import json
import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from fastpanc.data.io import read_image, read_labels
from fastpanc.evaluation.classification import MISSING, classification_metrics
from fastpanc.evaluation.files import image_file, label_files, read_subtypes
from fastpanc.evaluation.metrics import REGIONS, case_metrics

log = logging.getLogger(__name__)

EXIT_MISSING_PREDICTIONS = 3


@dataclass(frozen=True)
class Targets:
    """The challenge's targets: mean whole-pancreas Dice, mean lesion Dice and subtype macro-F1."""

    whole_dice: float = 0.91
    lesion_dice: float = 0.31
    macro_f1: float = 0.70

    def __post_init__(self) -> None:
        for k, v in vars(self).items():
            if not 0.0 <= v <= 1.0:
                raise ValueError(f"Targets.{k} must be in [0, 1], got {v}")


@dataclass(frozen=True)
class EvaluateConfig:
    """Settings of one evaluation; ``tolerance_mm`` is the normalised surface Dice tolerance."""

    tolerance_mm: float = 2.0
    num_subtypes: int = 3
    targets: Targets = Targets()

    def __post_init__(self) -> None:
        if not (math.isfinite(self.tolerance_mm) and self.tolerance_mm >= 0):
            raise ValueError(f"tolerance_mm must be a finite value >= 0 mm, got {self.tolerance_mm}")
        if self.num_subtypes < 2:
            raise ValueError(f"num_subtypes must be >= 2, got {self.num_subtypes}")


def _stats(values: list[float]) -> dict[str, Any]:
    v = np.array([x for x in values if x is not None and not math.isnan(x)], dtype=float)
    if v.size == 0:
        return {"mean": None, "median": None, "std": None, "min": None, "max": None, "n": 0}
    return {
        "mean": float(v.mean()),
        "median": float(np.median(v)),
        "std": float(v.std()),
        "min": float(v.min()),
        "max": float(v.max()),
        "n": int(v.size),
    }


def _score_cases(pred: dict[str, Path], gt: dict[str, Path], config: EvaluateConfig) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    for case in tqdm(sorted(gt), desc="evaluate", unit="case"):
        ref, geom = read_labels(gt[case])
        if case in pred:
            out, pgeom = read_labels(pred[case])
            if out.shape != ref.shape:
                raise ValueError(
                    f"{pred[case]}: shape {out.shape} differs from the reference {gt[case]} shape {ref.shape}; "
                    "predictions must be written in the reference's geometry"
                )
            why = geom.mismatch(pgeom)
            if why is not None:
                log.warning(
                    "%s: geometry differs from the reference (%s); using the reference spacing", case, why
                )
        else:
            out = np.zeros_like(ref)
        metrics = case_metrics(ref, out, geom.spacing, config.tolerance_mm)
        row: dict[str, Any] = {"case": case, "missing_prediction": case not in pred}
        for region, m in metrics.items():
            row.update({f"{region}_{k}": v for k, v in m.as_dict().items()})
        rows.append(row)
    return rows


def _classification(
    rows: list[dict[str, Any]], pred_subtypes: Path | None, gt_subtypes: Path | None, config: EvaluateConfig
) -> dict[str, Any] | None:
    if pred_subtypes is None or gt_subtypes is None:
        if pred_subtypes is not None or gt_subtypes is not None:
            raise ValueError("subtype evaluation needs both --pred-subtypes and --gt-subtypes; got only one")
        return None
    truth, guess = read_subtypes(gt_subtypes), read_subtypes(pred_subtypes)
    for path, table in ((gt_subtypes, truth), (pred_subtypes, guess)):
        bad = {k: v for k, v in table.items() if not 0 <= v < config.num_subtypes}
        if bad:
            raise ValueError(f"{path}: subtypes must be 0..{config.num_subtypes - 1}, got {bad}")
    y_true, y_pred = [], []
    for row in rows:
        if row["case"] not in truth:
            raise ValueError(f"{gt_subtypes}: no subtype for reference case {row['case']}")
        row["subtype_gt"] = truth[row["case"]]
        row["subtype_pred"] = guess.get(row["case"])
        y_true.append(truth[row["case"]])
        y_pred.append(MISSING if row["subtype_pred"] is None else row["subtype_pred"])
    missing = [r["case"] for r in rows if r["subtype_pred"] is None]
    if missing:
        log.warning(
            "%d case(s) have no predicted subtype in %s and count as wrong: %s",
            len(missing),
            pred_subtypes,
            ", ".join(missing),
        )
    result = classification_metrics(np.array(y_true), np.array(y_pred), config.num_subtypes).as_dict()
    result["cases_without_prediction"] = missing
    return result


def _verdict(summary: dict[str, Any], targets: Targets) -> dict[str, Any]:
    seg = summary["segmentation"]
    checks = {
        "whole_dice": (seg["whole"]["dice"]["mean"], targets.whole_dice),
        "lesion_dice": (seg["lesion"]["dice"]["mean"], targets.lesion_dice),
        "macro_f1": (
            summary["classification"]["macro_f1"] if summary["classification"] else None,
            targets.macro_f1,
        ),
    }
    out = {
        k: {"value": v, "target": t, "passed": None if v is None else bool(v >= t)}
        for k, (v, t) in checks.items()
    }
    evaluated = [c["passed"] for c in out.values() if c["passed"] is not None]
    return {
        "checks": out,
        "passed": bool(evaluated) and all(evaluated) and not summary["missing_predictions"],
    }


def _write_csv(rows: list[dict[str, Any]], path: Path) -> None:
    columns = list(dict.fromkeys(k for r in rows for k in r))
    with path.open("w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=columns)
        w.writeheader()
        for r in rows:
            w.writerow({k: "" if r.get(k) is None else r[k] for k in columns})


def _figures(
    rows: list[dict[str, Any]],
    classification: dict[str, Any] | None,
    gt: dict[str, Path],
    pred: dict[str, Path],
    images_dir: Path | None,
    out: Path,
    config: EvaluateConfig,
) -> dict[str, Any]:
    from fastpanc.evaluation.plots import plot_confusion_matrix, plot_dice_boxes, plot_overlay

    figs: dict[str, Any] = {}
    dice = {region: [r[f"{region}_dice"] for r in rows] for region in REGIONS}
    targets = {"whole": config.targets.whole_dice, "lesion": config.targets.lesion_dice}
    figs["dice_boxplot"] = plot_dice_boxes(dice, out / "dice_boxplot.png", targets).name
    if classification is not None:
        figs["confusion_matrix"] = plot_confusion_matrix(
            np.array(classification["confusion_matrix"]),
            out / "confusion_matrix.png",
            missing=np.array(classification["missing_predictions"]),
        ).name
    score = {r["case"]: (r["whole_dice"] + r["lesion_dice"]) / 2 for r in rows}
    ranked = sorted(score, key=lambda c: (score[c], c))
    picks = [("best", ranked[-1]), ("worst", ranked[0])] if len(ranked) > 1 else [("best", ranked[0])]
    figs["overlays"] = []
    for kind, case in picks:
        ref, geom = read_labels(gt[case])
        out_labels = read_labels(pred[case])[0] if case in pred else np.zeros_like(ref)
        image = None
        if images_dir is not None:
            img_path = image_file(images_dir, case)
            if img_path is None:
                log.warning(
                    "no image %s_0000.* in %s: overlay of %s drawn without the CT", case, images_dir, case
                )
            else:
                image = read_image(img_path)[0]
        row = next(r for r in rows if r["case"] == case)
        title = (
            f"{kind} case {case}: whole Dice {row['whole_dice']:.3f}, lesion Dice {row['lesion_dice']:.3f}"
        )
        path = plot_overlay(ref, out_labels, geom.spacing, out / f"overlay_{kind}_{case}.png", image, title)
        figs["overlays"].append({"kind": kind, "case": case, "file": path.name})
    return figs


def evaluate_folders(
    pred_dir: str | Path,
    gt_dir: str | Path,
    out_dir: str | Path,
    pred_subtypes: str | Path | None = None,
    gt_subtypes: str | Path | None = None,
    images_dir: str | Path | None = None,
    config: EvaluateConfig | None = None,
) -> dict[str, Any]:
    """Score every reference case, write the outputs into ``out_dir`` and return the summary (``summary.json``)."""
    config = config or EvaluateConfig()
    gt = label_files(gt_dir, "reference")
    if not gt:
        raise FileNotFoundError(f"reference folder {gt_dir} holds no label maps ({{CASE}}.nii.gz)")
    pred = label_files(pred_dir, "prediction")
    extra = sorted(set(pred) - set(gt))
    if extra:
        log.warning("%d prediction(s) without a reference are ignored: %s", len(extra), ", ".join(extra))
    missing = sorted(set(gt) - set(pred))
    if missing:
        log.warning(
            "%d reference case(s) have no prediction in %s and count as failures (Dice 0): %s",
            len(missing),
            pred_dir,
            ", ".join(missing),
        )
    images = Path(images_dir) if images_dir is not None else None
    if images is not None and not images.is_dir():
        raise FileNotFoundError(f"images folder {images} not found (expected {{CASE}}_0000.nii.gz files)")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)

    rows = _score_cases(pred, gt, config)
    classification = _classification(
        rows,
        Path(pred_subtypes) if pred_subtypes else None,
        Path(gt_subtypes) if gt_subtypes else None,
        config,
    )
    summary: dict[str, Any] = {
        "num_cases": len(rows),
        "tolerance_mm": config.tolerance_mm,
        "missing_predictions": missing,
        "segmentation": {
            region: {
                m: _stats([r[f"{region}_{m}"] for r in rows])
                for m in ("dice", "nsd", "hd95", "volume_pred_ml", "volume_gt_ml")
            }
            for region in REGIONS
        },
        "classification": classification,
    }
    summary["targets"] = _verdict(summary, config.targets)
    summary["figures"] = _figures(rows, classification, gt, pred, images, out, config)
    summary["cases"] = rows
    _write_csv(rows, out / "cases.csv")
    (out / "summary.json").write_text(json.dumps(summary, indent=2, allow_nan=False) + "\n")
    log.info("evaluation written to %s", out)
    return summary


def format_verdict(summary: dict[str, Any]) -> str:
    """Human-readable lines: each target with its value and PASS/FAIL, then the overall verdict."""
    names = {
        "whole_dice": "whole-pancreas Dice",
        "lesion_dice": "lesion Dice",
        "macro_f1": "subtype macro-F1",
    }
    lines = [f"{summary['num_cases']} case(s) evaluated"]
    for key, c in summary["targets"]["checks"].items():
        if c["value"] is None:
            lines.append(f"  {names[key]:<20} not evaluated (no subtypes given)")
        else:
            lines.append(
                f"  {names[key]:<20} {c['value']:.4f}  target >= {c['target']:.2f}  "
                f"{'PASS' if c['passed'] else 'FAIL'}"
            )
    if summary["missing_predictions"]:
        lines.append(
            f"  missing predictions: {len(summary['missing_predictions'])} "
            f"({', '.join(summary['missing_predictions'])}): FAIL"
        )
    lines.append(f"overall: {'PASS' if summary['targets']['passed'] else 'FAIL'}")
    return "\n".join(lines)


def evaluate_command(args: argparse.Namespace) -> int:
    """CLI entry: exit 0 when every reference case had a prediction, 3 otherwise."""
    config = EvaluateConfig(tolerance_mm=args.tolerance_mm)
    summary = evaluate_folders(
        args.pred,
        args.gt,
        args.output,
        args.pred_subtypes,
        args.gt_subtypes,
        args.images,
        config,
    )
    print(format_verdict(summary))
    print(f"results: {Path(args.output) / 'summary.json'}")
    return EXIT_MISSING_PREDICTIONS if summary["missing_predictions"] else 0
