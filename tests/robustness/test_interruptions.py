"""Processes killed with SIGKILL (no cleanup handler runs): training resumes from its last checkpoint on the same
schedule, prediction and preprocessing leave only complete output files and a rerun finishes the rest."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch

from fastpanc.data.io import read_image
from fastpanc.inference.outputs import PROBABILITY_CSV, SUBTYPE_CSV
from fastpanc.training.config import AugmentConfig, TrainConfig
from fastpanc.training.trainer import Trainer, poly_lr

REPO = Path(__file__).resolve().parents[2]
TIMEOUT_S = 240.0


def _start(*args: str, log: Path) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    with log.open("w") as fh:
        return subprocess.Popen(
            [sys.executable, "-m", "fastpanc.cli", *args],
            cwd=REPO,
            env=env,
            stdout=fh,
            stderr=subprocess.STDOUT,
        )


def _wait_for(proc: subprocess.Popen, ready: Callable[[], bool], log: Path) -> None:
    deadline = time.monotonic() + TIMEOUT_S
    while not ready():
        if proc.poll() is not None:
            pytest.fail(f"the process ended (rc {proc.returncode}) before the kill point:\n{log.read_text()}")
        if time.monotonic() > deadline:
            proc.kill()
            pytest.fail(f"kill point not reached in {TIMEOUT_S} s:\n{log.read_text()}")
        time.sleep(0.05)


def _sigkill(proc: subprocess.Popen) -> None:
    assert proc.poll() is None, "the process finished before it could be killed"
    os.kill(proc.pid, signal.SIGKILL)
    assert proc.wait(30) == -signal.SIGKILL


def _run(*args: str, log: Path) -> str:
    proc = _start(*args, log=log)
    rc = proc.wait(TIMEOUT_S)
    out = log.read_text()
    assert rc == 0, out
    return out


def _csv_rows(path: Path) -> list[dict[str, str]]:
    with path.open() as f:
        return list(csv.DictReader(f))


CONFIG = TrainConfig(
    epochs=3,
    iterations_per_epoch=10,
    val_iterations=1,
    num_workers=1,
    prefetch=2,
    patch_size=(8, 16, 16),
    lambda_ramp_epochs=0,
    augmentation=AugmentConfig(p_rotation=0.5),
)


@pytest.mark.slow
def test_training_killed_mid_epoch_resumes_on_the_same_schedule(
    tiny_preprocessed: Path, tmp_path: Path
) -> None:
    cfg_file = tmp_path / "config.json"
    CONFIG.save(cfg_file)
    model, log = tmp_path / "model", tmp_path / "train.log"
    fold = model / "fold_0"
    args = ("train", str(tiny_preprocessed), "-o", str(model), "--device", "cpu")
    proc = _start(*args, "--config", str(cfg_file), log=log)
    # the kill point: epoch 0 is logged and checkpointed, epoch 1 is half way
    _wait_for(proc, lambda: (fold / "checkpoint_latest.pth").is_file(), log)
    epoch_s = float(_csv_rows(fold / "training_log.csv")[0]["epoch_time_s"])
    time.sleep(0.3 * epoch_s)
    _sigkill(proc)
    assert not (fold / "checkpoint_final.pth").exists()
    killed_at = torch.load(fold / "checkpoint_latest.pth", weights_only=True)["current_epoch"]
    assert killed_at in (1, 2)
    # the CSV is written just before the checkpoint: a kill between the two leaves one row more
    assert len(_csv_rows(fold / "training_log.csv")) in (killed_at, killed_at + 1)

    _run(*args, "--resume", log=tmp_path / "resume.log")
    final = torch.load(fold / "checkpoint_final.pth", weights_only=True)
    assert final["current_epoch"] == CONFIG.epochs
    rows = _csv_rows(fold / "training_log.csv")
    assert [int(float(r["epoch"])) for r in rows] == list(
        range(CONFIG.epochs)
    )  # continued, no repeat, no gap
    lr0 = 1e-2
    expected_lr = [poly_lr(lr0, e / CONFIG.epochs, 0.9) for e in range(CONFIG.epochs)]
    assert final["logging"]["lr"] == expected_lr
    np.testing.assert_allclose([float(r["lr"]) for r in rows], expected_lr, rtol=1e-5)
    # the same run without the kill, in this process: identical losses and weights
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as the subprocesses (OMP_NUM_THREADS=1): reductions then add in the same order
    try:
        Trainer(tiny_preprocessed, tmp_path / "reference", CONFIG, "cpu").fit()
    finally:
        torch.set_num_threads(threads)
    ref = torch.load(tmp_path / "reference" / "fold_0" / "checkpoint_final.pth", weights_only=True)
    assert ref["logging"]["train_loss"] == final["logging"]["train_loss"]
    for k, v in ref["network_weights"].items():
        torch.testing.assert_close(final["network_weights"][k], v, rtol=0, atol=0, msg=k)


def _write_cases(folder: Path, inf, n: int) -> list[str]:
    names = [f"case_{i:02d}" for i in range(n)]
    for i, name in enumerate(names):
        inf.write_case(folder / f"{name}_0000.nii.gz", inf.synthetic_ct((20, 48, 44), seed=i))
    return names


def _complete_outputs(out: Path) -> list[str]:
    """Names of the finished masks; fails on any visible output file that is not complete."""
    done = []
    for p in sorted(out.iterdir()):
        if p.name.startswith("."):
            continue  # .fastpanc/ records and the temporary files of a write that was killed
        if p.name.endswith(".nii.gz"):
            arr, _ = read_image(p)  # refuses truncated files
            assert arr.shape == (20, 48, 44) and arr.dtype == np.uint8, p
            done.append(p.name[: -len(".nii.gz")])
        else:
            assert p.name in ("predict_config.json", SUBTYPE_CSV, PROBABILITY_CSV), f"unexpected output {p}"
            if p.suffix == ".json":
                json.loads(p.read_text())
    for rec in (out / ".fastpanc" / "subtypes").glob("*.json"):
        json.loads(rec.read_text())
    return done


def test_prediction_killed_mid_run_leaves_complete_files_and_continue_finishes(
    tmp_path: Path, inf, tiny_model: Path
) -> None:
    inputs, out, log = tmp_path / "in", tmp_path / "out", tmp_path / "predict.log"
    names = _write_cases(inputs, inf, 8)
    args = ("predict", "-i", str(inputs), "-o", str(out), "-m", str(tiny_model), "--device", "cpu")
    proc = _start(*args, "--mode", "exact", log=log)  # mirroring TTA: slow enough to be killed mid-run
    _wait_for(proc, lambda: (out / f"{names[0]}.nii.gz").is_file(), log)
    _sigkill(proc)
    done = _complete_outputs(out)
    assert names[0] in done and len(done) < len(names)
    assert not (out / "subtype_results.csv").exists()  # the CSVs are built at the end of a run

    # what a kill during a write leaves (whether this kill did depends on timing): hidden temporaries
    unfinished = next(n for n in names if n not in done)
    (out / f".{unfinished}.nii.gz.k1ll3d_x.tmp").mkdir()  # write_image's temporary folder
    (out / f".{unfinished}.nii.gz.k1ll3d_x.tmp" / "image.nii.gz").write_bytes(b"half")
    (out / ".fastpanc" / "subtypes").mkdir(parents=True, exist_ok=True)
    (out / ".fastpanc" / "subtypes" / f".{unfinished}.json.abcd1234.tmp").write_text("{")
    other = out / ".someone_else.nii.gz.abcd1234.tmp"  # not a case of this run: left alone
    other.write_bytes(b"")
    # a kill after the mask was renamed into place but before write_image removed its temporary folder
    (out / f".{names[0]}.nii.gz.f1n1shed.tmp").mkdir()
    text = _run(*args, "--mode", "exact", "--continue", log=tmp_path / "continue.log")
    assert f"skipped {len(done)} (--continue)" in text and f"predicted {len(names) - len(done)}," in text
    assert sorted(_complete_outputs(out)) == names
    assert [p for p in out.rglob("*.tmp")] == [other]
    rows = (out / "subtype_results.csv").read_text().splitlines()
    assert rows[0] == "Names,Subtype" and sorted(r.split(",")[0] for r in rows[1:]) == [
        f"{n}.nii.gz" for n in names
    ]


def test_preprocessing_killed_mid_run_leaves_complete_files_and_a_rerun_finishes(tmp_path: Path, inf) -> None:
    sys.path.insert(0, str(REPO / "tests" / "data"))
    from raw_fixture import make_raw_dataset

    raw = make_raw_dataset(tmp_path / "Dataset997_Kill", n=8, shapes=[(32, 80, 80)] * 8)
    plans = tmp_path / "plans.json"
    plans.write_text(json.dumps(inf.tiny_plans(spacing=(1.0, 0.5, 0.5))))
    out, log = tmp_path / "pre", tmp_path / "pre.log"
    args = ("preprocess", str(raw), "--plans", str(plans), "-o", str(out), "-j", "1")
    proc = _start(*args, log=log)
    _wait_for(proc, lambda: (out / "case_000.json").is_file(), log)
    _sigkill(proc)
    finished = sorted(p.stem for p in out.glob("case_*.json"))
    assert 1 <= len(finished) < 8
    for p in out.glob("case_*.npy"):  # every visible array is complete (written under a temporary name first)
        arr = np.load(p, mmap_mode="r")
        assert arr.ndim == 4 and arr.shape[0] == 1, p

    unfinished = next(f"case_{i:03d}" for i in range(8) if f"case_{i:03d}" not in finished)
    stale = [out / f".{unfinished}.npy.99999.tmp", out / f".{unfinished}.json.99999.tmp"]
    for p in stale:  # what a kill during a write leaves (whether this kill did depends on timing)
        p.write_bytes(b"half")
    text = _run(*args, log=tmp_path / "rerun.log")
    assert "preprocessed into" in text
    assert list(out.glob(".*.tmp")) == []
    assert sorted(p.stem for p in out.glob("case_*.json")) == [f"case_{i:03d}" for i in range(8)]
    for i in range(8):
        name = f"case_{i:03d}"
        data, seg = np.load(out / f"{name}.npy"), np.load(out / f"{name}_seg.npy")
        props = json.loads((out / f"{name}.json").read_text())
        assert data.shape[1:] == seg.shape[1:] and np.isfinite(data).all() and "class_locations" in props
