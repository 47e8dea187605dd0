"""``fastpanc demo OUT``: the whole pipeline end to end on a synthetic cohort, within a time budget.

Steps, each writing into its own folder of ``OUT`` (nothing is deleted):

1. ``synth``: a training cohort (``cohort_train/``) and a held-out cohort (``cohort_heldout/``);
2. ``convert``: both to nnU-Net v2 raw datasets (``raw_train/``, ``raw_heldout/``);
3. ``plan``: ``plans.json`` for the training dataset;
4. ``preprocess``: ``preprocessed/``;
5. ``train``: a small multitask model (``model/``) for the time left after the other steps;
6. ``predict``: masks and subtypes of the held-out images in fast mode (``predictions/``);
7. ``evaluate``: metrics and figures (``evaluation/``), then ``report.html``.

Every step runs the same code as its ``fastpanc`` command; ``OUT/commands.sh`` lists those commands.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import shlex
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tqdm.auto import tqdm

if TYPE_CHECKING:
    from fastpanc.training.config import TrainConfig

log = logging.getLogger(__name__)

STEPS = ("synth", "convert", "plan", "preprocess", "train", "predict", "evaluate")


@dataclass(frozen=True)
class DemoConfig:
    """Size and budget of a demo run.

    ``minutes`` bounds the whole run; training gets what the other steps leave, less ``reserve_fraction``
    of the budget (and ``seconds_per_heldout_case`` per held-out case) kept for prediction and evaluation.
    """

    minutes: float = 10.0
    device: str = "cpu"
    seed: int = 0
    train_cases: int = 16
    heldout_cases: int = 6
    size_scale: float = 0.5
    val_fraction: float = 0.25
    reserve_fraction: float = 0.06
    seconds_per_heldout_case: float = 5.0
    min_train_minutes: float = 0.25

    def __post_init__(self) -> None:
        if not (math.isfinite(self.minutes) and self.minutes > 0):
            raise ValueError(f"--minutes must be > 0, got {self.minutes}")
        if self.train_cases < 6:
            raise ValueError(
                f"train_cases must be >= 6 (train and validation cases of 3 subtypes), got {self.train_cases}"
            )
        if self.heldout_cases < 3:
            raise ValueError(f"heldout_cases must be >= 3 (one per subtype), got {self.heldout_cases}")
        if not 0 < self.size_scale <= 1.5:
            raise ValueError(f"size_scale must be in (0, 1.5], got {self.size_scale}")
        if not 0 < self.val_fraction < 1:
            raise ValueError(f"val_fraction must be in (0, 1), got {self.val_fraction}")
        if not 0 <= self.reserve_fraction < 1:
            raise ValueError(f"reserve_fraction must be in [0, 1), got {self.reserve_fraction}")
        if self.device != "cpu" and not self.device.startswith("cuda"):
            raise ValueError(f"device must be cpu, cuda or cuda:N, got {self.device!r}")


CPU_PATCH_CAP = (32, 64, 64)
GPU_PATCH_CAP = (64, 128, 128)


def small_train_config(
    plans: dict[str, Any], minutes: float, device: str, seed: int, configuration: str = "3d_fullres"
) -> TrainConfig:
    """A training configuration small enough for a few minutes on 2 CPU cores (larger on a GPU).

    At most 4 stages of one residual block each, capped at 16 features (128 on a GPU); the planned patch
    clipped to ``CPU_PATCH_CAP`` (``GPU_PATCH_CAP``) and kept divisible by the strides; short epochs so
    the time budget is met closely; light augmentation; the subtype loss ramped in over 3 epochs.
    """
    from fastpanc.training.config import AugmentConfig, NetworkOverrides, TrainConfig

    gpu = device.startswith("cuda")
    conf = plans["configurations"][configuration]
    kw = conf["architecture"]["arch_kwargs"]
    n_stages = min(4, int(kw["n_stages"]))
    factor = [1, 1, 1]
    for stride in kw["strides"][:n_stages]:
        factor = [f * int(v) for f, v in zip(factor, stride)]
    cap = GPU_PATCH_CAP if gpu else CPU_PATCH_CAP
    patch = tuple(max(f, min(int(p), c) // f * f) for p, c, f in zip(conf["patch_size"], cap, factor))
    return TrainConfig(
        minutes=minutes,
        epochs=1000,
        iterations_per_epoch=50 if gpu else 10,
        val_iterations=10 if gpu else 2,
        batch_size=4 if gpu else 2,
        patch_size=patch,
        configuration=configuration,
        optimizer="adamw",
        lr=3e-3,
        lambda_warmup_epochs=0,
        lambda_ramp_epochs=3,
        num_workers=1,
        prefetch=2,
        seed=seed,
        augmentation=AugmentConfig(p_rotation=0.1, p_scaling=0.1, p_lowres=0.0, p_gamma=0.1, p_blur=0.0),
        network=NetworkOverrides(
            features_cap=128 if gpu else 16, n_stages=n_stages, n_blocks_per_stage=(1,) * n_stages
        ),
    )


class _Runner:
    """Runs ``fastpanc`` commands in this process, timing them and writing them to ``commands.sh``."""

    def __init__(self, out: Path) -> None:
        self.out = out
        self.script = out / "commands.sh"
        self.script.write_text(
            "#!/usr/bin/env bash\n# The commands of this demo run, in order.\nset -euo pipefail\n"
        )

    def __call__(self, command: str, *argv: str, ok_codes: tuple[int, ...] = (0,)) -> int:
        from fastpanc.cli import COMMANDS, build_parser

        with self.script.open("a") as fh:
            fh.write(shlex.join(["fastpanc", command, *argv]) + "\n")
        args = build_parser().parse_args([command, *argv])
        args.verbose = 0
        rc = int(COMMANDS[command][2](args) or 0)
        if rc not in ok_codes:
            raise RuntimeError(
                f"demo step `fastpanc {command}` exited with code {rc}; see the messages above"
            )
        return rc


def _train_minutes(config: DemoConfig, elapsed_s: float) -> float:
    reserve_s = (
        config.reserve_fraction * config.minutes * 60 + config.seconds_per_heldout_case * config.heldout_cases
    )
    left = (config.minutes * 60 - elapsed_s - reserve_s) / 60
    if left < config.min_train_minutes:
        log.warning(
            "only %.1f min of the %.1f min budget left for training; training %.2f min instead",
            max(left, 0.0),
            config.minutes,
            config.min_train_minutes,
        )
    return max(left, config.min_train_minutes)


def run_demo(out: str | Path, config: DemoConfig) -> dict[str, Any]:
    """Run every step into ``out`` and return the evaluation summary (also written as ``report.html``)."""
    from fastpanc.cli import EXIT_PARTIAL_FAILURE
    from fastpanc.evaluation.evaluate import EXIT_MISSING_PREDICTIONS
    from fastpanc.evaluation.report import ReportInputs, Step, write_html_report

    root = Path(out)
    if root.exists() and any(root.iterdir()):
        raise FileExistsError(f"demo output folder {root} is not empty; choose a new folder or delete it")
    root.mkdir(parents=True, exist_ok=True)
    (root / "demo_config.json").write_text(json.dumps(vars(config), indent=2) + "\n")
    run = _Runner(root)
    steps: list[Step] = []
    start = time.perf_counter()
    bar = tqdm(total=len(STEPS), desc="demo", unit="step")

    def step(
        name: str, output: str, detail: str, *commands: list[object], ok: tuple[int, ...] = (0,)
    ) -> None:
        bar.set_postfix_str(name)
        t0 = time.perf_counter()
        for argv in commands:
            run(*(str(a) for a in argv), ok_codes=ok)
        steps.append(Step(name, time.perf_counter() - t0, output, detail))
        bar.update(1)

    c, scale = config, config.size_scale
    train_raw, heldout = root / "raw_train", root / "raw_heldout"
    step(
        "synth",
        "cohort_train/, cohort_heldout/",
        f"{c.train_cases} training, {c.heldout_cases} held-out cases",
        [
            "synth",
            root / "cohort_train",
            "--cases",
            c.train_cases,
            "--seed",
            c.seed,
            "--val-fraction",
            c.val_fraction,
            "--size-scale",
            scale,
        ],
        [
            "synth",
            root / "cohort_heldout",
            "--cases",
            c.heldout_cases,
            "--seed",
            c.seed + 1000,
            "--val-fraction",
            0,
            "--size-scale",
            scale,
        ],
    )
    step(
        "convert",
        "raw_train/, raw_heldout/",
        "nnU-Net v2 raw datasets",
        ["convert", root / "cohort_train", train_raw],
        ["convert", root / "cohort_heldout", heldout],
    )
    step("plan", "plans.json", "ResEnc M planner", ["plan", train_raw, "-o", root / "plans.json"])
    step(
        "preprocess",
        "preprocessed/",
        "crop, resample, normalise",
        ["preprocess", train_raw, "--plans", root / "plans.json", "-o", root / "preprocessed"],
    )
    train_minutes = _train_minutes(c, time.perf_counter() - start)
    plans = json.loads((root / "plans.json").read_text())
    small_train_config(plans, train_minutes, c.device, c.seed).save(root / "train_config.json")
    step(
        "train",
        "model/",
        f"{train_minutes:.2f} min budget on {c.device}",
        [
            "train",
            root / "preprocessed",
            "-o",
            root / "model",
            "--config",
            root / "train_config.json",
            "--device",
            c.device,
        ],
    )
    step(
        "predict",
        "predictions/",
        f"{c.heldout_cases} held-out cases, fast mode",
        [
            "predict",
            "-i",
            heldout / "imagesTr",
            "-o",
            root / "predictions",
            "-m",
            root / "model",
            "--device",
            c.device,
            "--mode",
            "fast",
        ],
        ok=(0, EXIT_PARTIAL_FAILURE),
    )
    step(
        "evaluate",
        "evaluation/",
        "Dice, NSD, HD95, subtype F1",
        [
            "evaluate",
            "--pred",
            root / "predictions",
            "--gt",
            heldout / "labelsTr",
            "--pred-subtypes",
            root / "predictions" / "subtype_results.csv",
            "--gt-subtypes",
            heldout / "subtype_mapping.json",
            "--images",
            heldout / "imagesTr",
            "-o",
            root / "evaluation",
        ],
        ok=(0, EXIT_MISSING_PREDICTIONS),
    )
    bar.close()
    total = time.perf_counter() - start

    summary = json.loads((root / "evaluation" / "summary.json").read_text())
    curves = sorted((root / "model").glob("fold_*/progress.png"))
    if not curves:
        raise FileNotFoundError(
            f"the trainer wrote no progress.png under {root / 'model'}; the report needs it"
        )
    import torch

    from fastpanc import __version__

    facts = {
        "fastpanc": __version__,
        "torch": torch.__version__,
        "device": c.device,
        "time budget": f"{c.minutes:g} min",
        "total time": f"{total / 60:.2f} min",
        "training budget": f"{train_minutes:.2f} min",
        "commands": "commands.sh",
    }
    report = write_html_report(
        root / "report.html",
        ReportInputs(
            summary=summary,
            evaluation_dir=root / "evaluation",
            title="fastpanc demo",
            steps=steps,
            training_curve=curves[0],
            facts=facts,
            notes=[
                "Synthetic CT cohort and a small model trained for minutes: the numbers show that the pipeline "
                "runs end to end, not the accuracy of a fully trained model on real data."
            ],
        ),
    )
    print(f"demo finished in {total / 60:.2f} min (budget {c.minutes:g} min); report: {report}")
    if total > c.minutes * 60 * 1.1:
        log.warning("the demo took %.1f min, over its %.1f min budget", total / 60, c.minutes)
    return summary


def demo_command(args: argparse.Namespace) -> int:
    """CLI entry: ``auto`` device means CUDA when torch sees a GPU, else the CPU."""
    device = args.device
    if device == "auto":
        import torch

        device = "cuda" if torch.cuda.is_available() else "cpu"
    config = DemoConfig(
        minutes=args.minutes,
        device=device,
        seed=args.seed,
        train_cases=args.cases,
        heldout_cases=args.heldout_cases,
        size_scale=args.size_scale,
    )
    run_demo(args.out, config)
    return 0
