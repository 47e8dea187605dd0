"""`fastpanc demo` end to end on a tiny cohort with a one-minute budget, then its report in Chromium."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from fastpanc.cli import main
from fastpanc.demo import DemoConfig, _train_minutes

# The demo takes minutes on 2 busy CPU cores (synth, plan, preprocess, train, predict, evaluate), hence slow.
DEMO_ARGS = "--minutes 1 --cases 6 --heldout-cases 3 --size-scale 0.3 --device cpu --seed 3".split()


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory) -> tuple[Path, int]:
    out = tmp_path_factory.mktemp("demo") / "run"
    return out, main(["demo", str(out), *DEMO_ARGS])


@pytest.mark.slow
def test_demo_writes_every_step(demo_run):
    out, rc = demo_run
    assert rc == 0
    for rel in (
        "cohort_train",
        "cohort_heldout",
        "raw_train/dataset.json",
        "raw_heldout/subtype_mapping.json",
        "plans.json",
        "preprocessed/plans.json",
        "model/plans.json",
        "model/fold_0/checkpoint_final.pth",
        "model/fold_0/progress.png",
        "predictions/subtype_results.csv",
        "evaluation/summary.json",
        "evaluation/cases.csv",
        "commands.sh",
        "train_config.json",
        "report.html",
    ):
        assert (out / rel).exists(), f"demo output {rel} is missing"
    summary = json.loads((out / "evaluation" / "summary.json").read_text())
    assert summary["num_cases"] == 3 and summary["missing_predictions"] == []
    assert summary["classification"] is not None
    commands = (out / "commands.sh").read_text()
    for cmd in (
        "fastpanc synth",
        "fastpanc convert",
        "fastpanc plan",
        "fastpanc preprocess",
        "fastpanc train",
        "fastpanc predict",
        "fastpanc evaluate",
    ):
        assert cmd in commands
    page = (out / "report.html").read_text()
    links = re.findall(r'<img src="([^"]+)"', page)
    assert "model/fold_0/progress.png" in links and len(links) >= 4
    for link in links:
        assert (out / link).is_file(), f"report links {link}, which does not exist"


@pytest.mark.slow
def test_demo_report_renders_in_chromium(demo_run, browser):
    out, rc = demo_run
    assert rc == 0
    images = browser(out / "report.html", out / "report_screenshot.png")
    broken = [im["src"] for im in images if not (im["complete"] and im["width"] > 0)]
    assert images and not broken, f"images that did not load: {broken}"


def test_demo_refuses_a_non_empty_folder(tmp_path, capsys):
    (tmp_path / "x").mkdir()
    (tmp_path / "x" / "file").write_text("keep me")
    assert main(["demo", str(tmp_path / "x"), "--device", "cpu"]) == 2
    assert "not empty" in capsys.readouterr().err
    assert (tmp_path / "x" / "file").read_text() == "keep me"


def test_demo_config_and_budget():
    with pytest.raises(ValueError, match="minutes"):
        DemoConfig(minutes=0)
    with pytest.raises(ValueError, match="device"):
        DemoConfig(device="tpu")
    c = DemoConfig(minutes=10, heldout_cases=6, reserve_fraction=0.1, seconds_per_heldout_case=6.0)
    # 10 min budget, 3 min spent: training gets 7 min less the reserve (10% of 10 min + 6 x 6 s)
    assert _train_minutes(c, 180) == pytest.approx(7 - 1.0 - 0.6)
    assert _train_minutes(c, 10_000) == c.min_train_minutes


def _plans(patch: list[int], strides: list[list[int]]) -> dict:
    n = len(strides)
    kw = {
        "n_stages": n,
        "features_per_stage": [32 * 2**i for i in range(n)],
        "kernel_sizes": [[3, 3, 3]] * n,
        "strides": strides,
        "n_blocks_per_stage": [1, 3, 4, 6, 6, 6][:n],
        "n_conv_per_stage_decoder": [1] * (n - 1),
    }
    return {
        "configurations": {
            "3d_fullres": {"patch_size": patch, "batch_size": 2, "architecture": {"arch_kwargs": kw}}
        }
    }


@pytest.mark.parametrize(
    ("patch", "strides", "device", "expected"),
    [
        (
            [64, 128, 192],
            [[1, 1, 1], [1, 2, 2], [2, 2, 2], [2, 2, 2], [2, 2, 2], [2, 2, 2]],
            "cpu",
            (32, 64, 64),
        ),
        (
            [64, 128, 192],
            [[1, 1, 1], [1, 2, 2], [2, 2, 2], [2, 2, 2], [2, 2, 2], [2, 2, 2]],
            "cuda",
            (64, 128, 128),
        ),
        (
            [20, 44, 52],
            [[1, 1, 1], [1, 2, 2], [2, 2, 2], [2, 2, 2]],
            "cpu",
            (20, 40, 48),
        ),  # small plans: fit strides
        ([12, 40, 40], [[1, 1, 1], [1, 2, 2], [1, 2, 2]], "cpu", (12, 40, 40)),
    ],
)
def test_small_train_config_fits_the_plans(patch, strides, device, expected):
    from fastpanc.demo import small_train_config
    from fastpanc.training.model_dir import plans_as_used

    cfg = small_train_config(_plans(patch, strides), 2.0, device, 0)
    assert cfg.patch_size == expected and cfg.minutes == 2.0
    used = plans_as_used(_plans(patch, strides), cfg)  # raises when the patch does not fit the strides
    kw = used["configurations"]["3d_fullres"]["architecture"]["arch_kwargs"]
    assert kw["n_stages"] == min(4, len(strides)) and set(kw["n_blocks_per_stage"]) == {1}
    assert max(kw["features_per_stage"]) <= (128 if device == "cuda" else 16)
