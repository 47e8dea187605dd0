"""Record one comparison against nnU-Net v2 as benchmarks/results/<name>.json (read by make_report.py)."""

from __future__ import annotations

import datetime as _dt
import json
import os
import platform
import sys
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent / "results"


def machine() -> str:
    """A short description of the machine the benchmark ran on."""
    try:
        import torch

        if torch.cuda.is_available():
            return f"{torch.cuda.get_device_name(0)} (torch {torch.__version__})"
    except Exception:
        pass
    return f"{cpu_model()}, {os.cpu_count()} cores (python {platform.python_version()})"


def cpu_model(cpuinfo: str | None = None) -> str:
    """The CPU's model name from /proc/cpuinfo (Linux), with its family and model numbers (virtual machines often
    show only "AMD EPYC", which spans generations of very different speed), else the architecture: CPU timings
    depend on it."""
    if cpuinfo is None:
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text()
        except OSError:
            cpuinfo = ""
    fields: dict[str, str] = {}
    for line in cpuinfo.splitlines():
        key, sep, value = line.partition(":")
        if sep and key.strip() not in fields:  # the first processor's
            fields[key.strip()] = value.strip()
    name = fields.get("model name")
    if not name:
        return f"{platform.machine()} CPU"
    if fields.get("cpu family") and fields.get("model"):
        name += f" (family {fields['cpu family']}, model {fields['model']})"
    return name


def record(
    name: str,
    baseline_s: float,
    fastpanc_s: float,
    command: str,
    device: str = "cpu",
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Write the result and print the ratio (baseline time / fastpanc time; > 1 means fastpanc is faster)."""
    if baseline_s <= 0 or fastpanc_s <= 0:
        raise ValueError(f"times must be positive, got baseline={baseline_s}, fastpanc={fastpanc_s}")
    row = {
        "name": name,
        "device": device,
        "baseline_s": float(baseline_s),
        "fastpanc_s": float(fastpanc_s),
        "ratio": float(baseline_s) / float(fastpanc_s),
        "command": command,
        "date": _dt.date.today().isoformat(),
        "machine": machine(),
        "extra": extra or {},
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}-{device}.json"
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(row, indent=2) + "\n")
    os.replace(tmp, path)
    print(
        f"[{name} on {device}] nnU-Net {baseline_s:.4f} s, fastpanc {fastpanc_s:.4f} s: {row['ratio']:.2f}x",
        file=sys.stderr,
    )
    return row
