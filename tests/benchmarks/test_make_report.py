"""benchmarks/make_report.py builds the RESULTS.md summary table from what _record.record writes."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

BENCH = Path(__file__).resolve().parents[2] / "benchmarks"


def _load(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"_bench_{name}", BENCH / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture()
def tools(tmp_path, monkeypatch):
    record, report = _load("_record"), _load("make_report")
    monkeypatch.setattr(record, "RESULTS", tmp_path / "results")
    md = tmp_path / "RESULTS.md"
    md.write_text("# Benchmark results\n\nIntro paragraph.\n\n## Kernels\n\nkernel notes\n")
    return record, report, md


def test_table_from_recorded_results(tools, tmp_path):
    record, report, md = tools
    record.record("predict_exact", 10.0, 4.0, "pytest benchmarks/test_predict.py", device="cpu")
    record.record("kernel_resample", 2.0, 0.5, "pytest benchmarks/test_kernels.py -k resample", device="cpu")
    record.record("kernel_resample", 2.0, 0.1, "bash benchmarks/gpu_check.sh", device="cuda")
    args = ["--results", str(tmp_path / "results"), "--markdown", str(md)]
    assert report.main(args) == 0
    text = md.read_text()
    assert text.startswith("# Benchmark results\n\nIntro paragraph.\n\n## Summary\n")
    assert text.rstrip().endswith("kernel notes")  # the sections below are kept
    rows = [ln for ln in text.splitlines() if "`kernel_resample`" in ln]
    assert len(rows) == 1  # only the CPU rows by default; the cuda result is not a CPU row
    assert rows[0].startswith("| kernels | `kernel_resample` | cpu | 2 | 0.5 | **4.00x** |")
    assert (
        "| prediction | `predict_exact` | cpu | 10 | 4 | **2.50x** | `pytest benchmarks/test_predict.py` |"
        in text
    )
    assert report.main([*args, "--check"]) == 0  # idempotent

    # GPU rows are regenerated only on request, and then kept by later CPU-only runs
    assert report.main([*args, "--devices", "cpu", "cuda"]) == 0
    assert "| kernels | `kernel_resample` | cuda | 2 | 0.1 | **20.00x** |" in md.read_text()
    (tmp_path / "results" / "kernel_resample-cuda.json").unlink()
    record.record("predict_exact", 10.0, 5.0, "pytest benchmarks/test_predict.py", device="cpu")
    assert report.main([*args, "--check"]) == 1  # out of date: the CPU result changed
    assert report.main(args) == 0
    text = md.read_text()
    assert "**20.00x**" in text and "**2.00x**" in text and "**2.50x**" not in text


def test_bad_result_file(tools, tmp_path):
    _, report, md = tools
    (tmp_path / "results").mkdir()
    (tmp_path / "results" / "x-cpu.json").write_text('{"name": "x"}')
    with pytest.raises(ValueError, match="missing keys"):
        report.main(["--results", str(tmp_path / "results"), "--markdown", str(md)])


def test_cpu_model_names_family_and_model(tools):
    record = tools[0]
    info = (
        "processor\t: 0\nvendor_id\t: AuthenticAMD\ncpu family\t: 26\nmodel\t\t: 2\nmodel name\t: AMD EPYC\n\n"
        "processor\t: 1\ncpu family\t: 99\nmodel\t\t: 9\nmodel name\t: other\n"
    )
    assert record.cpu_model(info) == "AMD EPYC (family 26, model 2)"
    assert record.cpu_model("model name\t: Intel(R) Xeon(R) Processor\n") == "Intel(R) Xeon(R) Processor"
    assert record.cpu_model("").endswith(" CPU")
