"""The HTML report: content, relative links, and its images loading in a real headless browser."""

from __future__ import annotations

import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

from fastpanc.data.io import Geometry, write_image  # noqa: E402
from fastpanc.evaluation.evaluate import evaluate_folders  # noqa: E402
from fastpanc.evaluation.report import ReportInputs, Step, write_html_report  # noqa: E402


@pytest.fixture()
def evaluated(tmp_path: Path) -> tuple[Path, dict]:
    geom = Geometry.identity((2.0, 0.8, 0.8))
    rng = np.random.default_rng(1)
    subtypes = {}
    for i in range(3):
        gt = np.zeros((8, 20, 20), np.uint8)
        gt[1:7, 4:16, 4:16] = 1
        gt[3:5, 7 + i : 11 + i, 7:11] = 2
        pred = np.roll(gt, i, axis=2)
        write_image(tmp_path / "gt" / f"case_{i}.nii.gz", gt, geom)
        write_image(tmp_path / "pred" / f"case_{i}.nii.gz", pred, geom)
        write_image(
            tmp_path / "img" / f"case_{i}_0000.nii.gz", rng.normal(size=gt.shape).astype(np.float32), geom
        )
        subtypes[f"case_{i}"] = i
    (tmp_path / "gt.json").write_text(json.dumps(subtypes))
    (tmp_path / "pred.csv").write_text("Names,Subtype\ncase_0.nii.gz,0\ncase_1.nii.gz,1\ncase_2.nii.gz,0\n")
    summary = evaluate_folders(
        tmp_path / "pred",
        tmp_path / "gt",
        tmp_path / "out" / "evaluation",
        tmp_path / "pred.csv",
        tmp_path / "gt.json",
        tmp_path / "img",
    )
    return tmp_path, summary


def _curve(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig, ax = plt.subplots()
    ax.plot([1.0, 0.6, 0.4])
    fig.savefig(path)
    plt.close(fig)
    return path


def _report(root: Path, summary: dict) -> Path:
    return write_html_report(
        root / "out" / "report.html",
        ReportInputs(
            summary=summary,
            evaluation_dir=root / "out" / "evaluation",
            title="demo <report>",
            steps=[Step("train", 12.5, "model", "3 epochs")],
            training_curve=_curve(root / "out" / "model" / "progress.png"),
            facts={"device": "cpu"},
            notes=["synthetic data"],
        ),
    )


def test_report_content_and_links(evaluated):
    root, summary = evaluated
    page = _report(root, summary).read_text()
    assert "demo &lt;report&gt;" in page  # escaped
    assert 'src="model/progress.png"' in page and 'src="evaluation/dice_boxplot.png"' in page
    for name in ("confusion_matrix.png", "overlay_best_", "overlay_worst_", "macro-F1", "case_2"):
        assert name in page
    with pytest.raises(FileNotFoundError, match="report image"):
        write_html_report(
            root / "out" / "r2.html",
            ReportInputs(
                summary=summary,
                evaluation_dir=root / "out" / "evaluation",
                training_curve=root / "missing.png",
            ),
        )


def test_report_images_load_in_chromium(evaluated, browser):
    root, summary = evaluated
    report = _report(root, summary)
    images = browser(report, root / "out" / "screenshot.png")
    assert len(images) == 5  # curve, box plot, confusion matrix, best and worst overlays
    broken = [im["src"] for im in images if not (im["complete"] and im["width"] > 0 and im["height"] > 0)]
    assert not broken, f"images that did not load: {broken}"
    assert (root / "out" / "screenshot.png").stat().st_size > 10_000


def test_browser_check_detects_a_broken_image(tmp_path, browser):
    page = tmp_path / "broken.html"
    page.write_text("<!DOCTYPE html><html><body><img src='nothing-here.png'></body></html>")
    (im,) = browser(page)
    assert im["width"] == 0
