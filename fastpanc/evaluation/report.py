"""A static HTML report of an evaluation (and of the run that produced it), with relative image links.

The page needs no server and no script: open ``report.html`` in a browser from its folder. Images are
linked by paths relative to the report, so the folder can be moved or zipped as a whole.
"""

from __future__ import annotations

import datetime as _dt
import html
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:2em auto;max-width:1100px;
color:#222;padding:0 1em}
h1{font-size:1.6em;margin-bottom:.2em}h2{font-size:1.25em;margin-top:1.8em;border-bottom:1px solid #ddd}
table{border-collapse:collapse;margin:.6em 0}td,th{border:1px solid #ccc;padding:.25em .6em;text-align:right}
th{background:#f4f4f4}td:first-child,th:first-child{text-align:left}
.pass{color:#137333;font-weight:600}.fail{color:#c5221f;font-weight:600}.na{color:#777}
.muted{color:#666;font-size:.9em}figure{margin:1em 0}figure img{max-width:100%;border:1px solid #eee}
figcaption{color:#555;font-size:.9em}.grid{display:flex;flex-wrap:wrap;gap:1.5em;align-items:flex-start}
.grid figure{flex:1 1 300px;max-width:520px}
"""


@dataclass(frozen=True)
class Step:
    """One step of a run as the report lists it: its name, duration and the folder it wrote."""

    name: str
    seconds: float
    output: str = ""
    detail: str = ""


@dataclass(frozen=True)
class ReportInputs:
    """What a report shows. Paths may be absolute; they are linked relative to the report file."""

    summary: dict[str, Any]
    evaluation_dir: Path
    title: str = "fastpanc evaluation"
    steps: Sequence[Step] = ()
    training_curve: Path | None = None
    facts: dict[str, str] = field(default_factory=dict)
    notes: Sequence[str] = ()


def _fmt(v: Any, digits: int = 3) -> str:
    if v is None:
        return '<span class="na">n/a</span>'
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, float):
        return f"{v:.{digits}f}"
    return html.escape(str(v))


def _table(header: Sequence[str] | None, rows: Sequence[Sequence[str]]) -> str:
    """Cells of ``rows`` are HTML already; header names are escaped here. No header row when ``header`` is None."""
    head = (
        ""
        if header is None
        else "<thead><tr>" + "".join(f"<th>{html.escape(h)}</th>" for h in header) + "</tr></thead>"
    )
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in r) + "</tr>" for r in rows)
    return f"<table>{head}<tbody>{body}</tbody></table>"


def _figure(report_dir: Path, image: Path, caption: str) -> str:
    if not image.is_file():
        raise FileNotFoundError(f"report image {image} not found; the report links only images that exist")
    rel = Path(os.path.relpath(image.resolve(), report_dir.resolve())).as_posix()
    return (
        f'<figure><img src="{html.escape(rel)}" alt="{html.escape(caption)}">'
        f"<figcaption>{html.escape(caption)}</figcaption></figure>"
    )


def _targets_table(summary: dict[str, Any]) -> str:
    names = {
        "whole_dice": "whole-pancreas Dice (mean)",
        "lesion_dice": "lesion Dice (mean)",
        "macro_f1": "subtype macro-F1",
    }
    rows = []
    for key, c in summary["targets"]["checks"].items():
        verdict = (
            '<span class="na">not evaluated</span>'
            if c["passed"] is None
            else '<span class="pass">PASS</span>'
            if c["passed"]
            else '<span class="fail">FAIL</span>'
        )
        rows.append([html.escape(names[key]), _fmt(c["value"]), f"&ge; {c['target']:.2f}", verdict])
    return _table(["challenge target", "value", "target", ""], rows)


def _segmentation_table(summary: dict[str, Any]) -> str:
    rows = []
    for region, stats in summary["segmentation"].items():

        def ms(m: str, stats: dict[str, Any] = stats) -> str:
            s = stats[m]
            return "n/a" if s["mean"] is None else f"{s['mean']:.3f} &plusmn; {s['std']:.3f} (n={s['n']})"

        rows.append(
            [html.escape(region), ms("dice"), ms("nsd"), ms("hd95"), ms("volume_pred_ml"), ms("volume_gt_ml")]
        )
    tol = summary["tolerance_mm"]
    return _table(["region", "Dice", f"NSD @ {tol:g} mm", "HD95 (mm)", "predicted ml", "reference ml"], rows)


def _classification_table(cls: dict[str, Any]) -> str:
    rows = [
        [
            f"subtype {k}",
            _fmt(cls["precision"][k]),
            _fmt(cls["recall"][k]),
            _fmt(cls["f1"][k]),
            str(cls["support"][k]),
        ]
        for k in range(len(cls["f1"]))
    ]
    overall = _table(
        ["macro-F1", "balanced accuracy", "MCC", "accuracy"],
        [[_fmt(cls["macro_f1"]), _fmt(cls["balanced_accuracy"]), _fmt(cls["mcc"]), _fmt(cls["accuracy"])]],
    )
    return overall + _table(["class", "precision", "recall", "F1", "cases"], rows)


def _cases_table(summary: dict[str, Any]) -> str:
    cols = ["whole_dice", "whole_nsd", "whole_hd95", "lesion_dice", "lesion_nsd", "lesion_hd95"]
    has_sub = summary["classification"] is not None
    header = ["case", *cols] + (["subtype (ref)", "subtype (pred)"] if has_sub else [])
    rows = []
    for r in summary["cases"]:
        name = html.escape(r["case"]) + (
            ' <span class="fail">(no prediction)</span>' if r["missing_prediction"] else ""
        )
        row = [name] + [_fmt(r[c]) for c in cols]
        if has_sub:
            row += [_fmt(r.get("subtype_gt")), _fmt(r.get("subtype_pred"))]
        rows.append(row)
    return _table(header, rows)


def write_html_report(path: str | Path, inputs: ReportInputs) -> Path:
    """Write the report to ``path`` (its folder is created) and return the path."""
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    here, ev, summary = out.parent, inputs.evaluation_dir, inputs.summary
    overall = summary["targets"]["passed"]
    parts = [
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>",
        f"<title>{html.escape(inputs.title)}</title><style>{_CSS}</style></head><body>",
        f"<h1>{html.escape(inputs.title)}</h1>",
        f"<p class='muted'>written {_dt.datetime.now().strftime('%Y-%m-%d %H:%M')} &middot; "
        f"{summary['num_cases']} case(s) evaluated &middot; overall: "
        f"<span class='{'pass' if overall else 'fail'}'>{'PASS' if overall else 'FAIL'}</span></p>",
    ]
    parts += [f"<p class='muted'>{html.escape(n)}</p>" for n in inputs.notes]
    if inputs.facts:
        parts.append(_table(None, [[html.escape(k), html.escape(v)] for k, v in inputs.facts.items()]))
    if inputs.steps:
        parts.append("<h2>Steps</h2>")
        parts.append(
            _table(
                ["step", "seconds", "output", "detail"],
                [
                    [html.escape(s.name), f"{s.seconds:.1f}", html.escape(s.output), html.escape(s.detail)]
                    for s in inputs.steps
                ],
            )
        )
    parts += ["<h2>Metrics</h2>", _targets_table(summary), _segmentation_table(summary)]
    if summary["classification"] is not None:
        parts += ["<h3>Lesion subtype</h3>", _classification_table(summary["classification"])]
    figs = summary["figures"]
    parts.append("<h2>Figures</h2><div class='grid'>")
    if inputs.training_curve is not None:
        parts.append(
            _figure(here, inputs.training_curve, "training curves (loss, validation Dice, learning rate)")
        )
    parts.append(_figure(here, ev / figs["dice_boxplot"], "Dice per case; dashed: challenge target"))
    if "confusion_matrix" in figs:
        parts.append(
            _figure(here, ev / figs["confusion_matrix"], "subtype confusion matrix (rows: reference)")
        )
    parts.append("</div>")
    for o in figs["overlays"]:
        parts.append(
            _figure(here, ev / o["file"], f"{o['kind']} case {o['case']}: solid reference, dashed prediction")
        )
    parts += ["<h2>Cases</h2>", _cases_table(summary), "</body></html>"]
    out.write_text("\n".join(parts) + "\n", encoding="utf-8")
    return out
