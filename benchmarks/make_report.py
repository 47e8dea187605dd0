"""Rebuild the summary table at the top of benchmarks/RESULTS.md from benchmarks/results/*.json.

Every benchmark records its comparison with ``_record.record`` as ``results/<name>-<device>.json``
(keys: name, device, baseline_s, fastpanc_s, ratio, command, date, machine, extra). This script
writes one row per result between the ``summary:begin``/``summary:end`` markers of RESULTS.md,
grouped as kernels, preprocessing, training and prediction (from the name's first word, or
``extra["group"]``). Rows of the devices not regenerated (by default every device but the CPU) are
kept as they are, so GPU rows measured on another machine survive a CPU rerun.

    python benchmarks/make_report.py              # regenerate the CPU rows
    python benchmarks/make_report.py --devices cpu cuda
    python benchmarks/make_report.py --check      # exit 1 when RESULTS.md is out of date
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
BEGIN, END = "<!-- summary:begin (written by benchmarks/make_report.py) -->", "<!-- summary:end -->"
HEADER = (
    "| group | comparison | device | nnU-Net v2 (s) | fastpanc (s) | ratio | command | date | machine |\n"
    "| --- | --- | --- | ---: | ---: | ---: | --- | --- | --- |"
)
GROUPS = {
    "kernel": "kernels",
    "kernels": "kernels",
    "preprocess": "preprocessing",
    "preprocessing": "preprocessing",
    "train": "training",
    "training": "training",
    "predict": "prediction",
    "prediction": "prediction",
    "inference": "prediction",
    "network": "prediction",
}
ORDER = ["kernels", "preprocessing", "training", "prediction"]
KEYS = ("name", "device", "baseline_s", "fastpanc_s", "ratio", "command", "date", "machine")


def group_of(result: dict[str, Any]) -> str:
    """``extra["group"]`` when given, else the group named by the first word of the result's name."""
    explicit = (result.get("extra") or {}).get("group")
    if explicit:
        return str(explicit)
    first = result["name"].replace("-", "_").split("_")[0].lower()
    return GROUPS.get(first, "other")


def load_results(folder: Path) -> list[dict[str, Any]]:
    """Every ``*.json`` in ``folder``, checked for the keys ``_record.record`` writes."""
    out = []
    for p in sorted(folder.glob("*.json")):
        row = json.loads(p.read_text())
        missing = [k for k in KEYS if k not in row]
        if missing:
            raise ValueError(
                f"{p}: missing keys {missing}; results must be written by benchmarks/_record.py record()"
            )
        out.append(row)
    return out


def _cell(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def format_row(r: dict[str, Any]) -> str:
    """One markdown table row of a result."""
    cells = [
        group_of(r),
        f"`{_cell(r['name'])}`",
        r["device"],
        f"{r['baseline_s']:.4g}",
        f"{r['fastpanc_s']:.4g}",
        f"**{r['ratio']:.2f}x**",
        f"`{_cell(r['command'])}`",
        r["date"],
        _cell(r["machine"]),
    ]
    return "| " + " | ".join(str(c) for c in cells) + " |"


def _row_key(line: str) -> tuple[str, str, str]:
    cells = [c.strip() for c in line.strip().strip("|").split("|")]
    return cells[0], cells[1].strip("`"), cells[2]


def build_table(results: Sequence[dict[str, Any]], old_rows: Sequence[str], devices: Sequence[str]) -> str:
    """The table text: rows of ``devices`` from ``results``, the other devices' old rows kept."""
    rows = {(group_of(r), r["name"], r["device"]): format_row(r) for r in results if r["device"] in devices}
    for line in old_rows:
        key = _row_key(line)
        if key[2] not in devices:
            rows.setdefault(key, line.rstrip())

    def order(key: tuple[str, str, str]) -> tuple[int, str, str, str]:
        g, name, device = key
        return (ORDER.index(g) if g in ORDER else len(ORDER), g, name, device)

    body = [rows[k] for k in sorted(rows, key=order)]
    if not body:
        body = [
            "| | no results yet: run the benchmarks (`pytest benchmarks --benchmark-enable -s`) | | | | | | | |"
        ]
    note = (
        "Ratio = nnU-Net v2 time / fastpanc time (> 1: fastpanc is faster), both measured in the same run. "
        "Details and per-benchmark settings are in the sections below."
    )
    return "\n".join([BEGIN, "", note, "", HEADER, *body, "", END])


def update_results_md(text: str, results: Sequence[dict[str, Any]], devices: Sequence[str]) -> str:
    """RESULTS.md with its summary table rebuilt (inserted after the first paragraph when absent)."""
    if BEGIN in text and END in text:
        head, rest = text.split(BEGIN, 1)
        old, tail = rest.split(END, 1)
        old_rows = [
            ln
            for ln in old.splitlines()
            if ln.startswith("|") and not ln.startswith(("| group", "| ---")) and "no results yet" not in ln
        ]
        return head + build_table(results, old_rows, devices) + tail
    lines = text.split("\n\n", 2)  # title, intro paragraph, the rest
    table = "## Summary\n\n" + build_table(results, [], devices)
    if len(lines) >= 3:
        return "\n\n".join([lines[0], lines[1], table, lines[2]])
    return text.rstrip("\n") + "\n\n" + table + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--results", type=Path, default=HERE / "results", help="folder of result JSON files")
    ap.add_argument(
        "--markdown", type=Path, default=HERE / "RESULTS.md", help="file holding the summary table"
    )
    ap.add_argument(
        "--devices", nargs="+", default=["cpu"], help="devices whose rows are regenerated (default cpu)"
    )
    ap.add_argument("--check", action="store_true", help="write nothing; exit 1 when the file is out of date")
    args = ap.parse_args(argv)
    if not args.markdown.is_file():
        raise FileNotFoundError(f"{args.markdown} not found; expected benchmarks/RESULTS.md")
    results = load_results(args.results) if args.results.is_dir() else []
    old = args.markdown.read_text()
    new = update_results_md(old, results, args.devices)
    if args.check:
        print(f"{args.markdown}: {'up to date' if new == old else 'out of date'}")
        return 0 if new == old else 1
    args.markdown.write_text(new)
    kept = sum(r["device"] in args.devices for r in results)
    print(f"{args.markdown}: {kept} row(s) for {', '.join(args.devices)} from {args.results}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
