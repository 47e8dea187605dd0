"""Preprocess one synthetic cohort twice, with ``fastpanc preprocess`` and ``nnUNetv2_preprocess``.

A cohort of real-like spacings and sizes is written with ``fastpanc.data.synth.write_cohort`` (challenge
layout) and converted to an nnU-Net v2 raw dataset; the ResEnc M plans come from ``fastpanc plan`` and are
given to both tools (nnU-Net reads them as ``nnUNetResEncUNetMPlans.json``). Both run as command-line
programs with the same worker count, end to end (process start, reading, cropping, normalisation,
resampling, foreground sampling, writing); the raw files are read once beforehand so both find them in
the page cache. The outputs are then compared case by case (data max abs difference, segmentation
agreement). Prints one markdown row and records the result with ``_record.record``.

    python benchmarks/compare_preprocess.py --cases 20 --workers 2
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from _record import record  # noqa: E402

DATASET_ID = 501
DATASET = f"Dataset{DATASET_ID}_SynthPancreas"
PLANS_NAME = "nnUNetResEncUNetMPlans"


def _run(cmd: list[str], env: dict[str, str] | None = None) -> float:
    """Wall time of a command; raises with its output when it fails."""
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    dt = time.perf_counter() - t0
    if proc.returncode != 0:
        raise RuntimeError(
            f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
        )
    return dt


def _warm_cache(folder: Path) -> None:
    for f in folder.rglob("*"):
        if f.is_file():
            f.read_bytes()


def build_inputs(work: Path, cases: int, seed: int, workers: int) -> tuple[Path, Path, dict]:
    """Synthetic cohort -> raw dataset -> fingerprint and plans; returns (raw, plans file, plans)."""
    from fastpanc.data.convert import convert
    from fastpanc.data.fingerprint import extract_fingerprint
    from fastpanc.data.plan import plan_from_fingerprint
    from fastpanc.data.synth import write_cohort

    challenge = work / "challenge"
    write_cohort(challenge, cases, seed, workers=workers)
    raw = work / "nnUNet_raw" / DATASET
    convert(challenge, raw)
    fp = extract_fingerprint(raw, workers=workers)
    plans = plan_from_fingerprint(fp, json.loads((raw / "dataset.json").read_text()), dataset_name=DATASET)
    plans = json.loads(json.dumps(plans))
    pre = work / "nnUNet_preprocessed" / DATASET
    pre.mkdir(parents=True)
    plans_file = pre / f"{PLANS_NAME}.json"
    plans_file.write_text(json.dumps(plans, indent=2))
    shutil.copyfile(raw / "dataset.json", pre / "dataset.json")
    (pre / "dataset_fingerprint.json").write_text(json.dumps(fp))
    return raw, plans_file, plans


def compare_outputs(ours: Path, theirs: Path) -> dict[str, float]:
    """Max abs data difference and the lowest per-case segmentation agreement over all cases."""
    from nnunetv2.training.dataloading.nnunet_dataset import nnUNetDatasetBlosc2

    ds = nnUNetDatasetBlosc2(str(theirs))
    max_diff, min_agree, voxels = 0.0, 1.0, 0
    for case in ds.identifiers:
        data, seg, _, _ = ds.load_case(case)
        mine = np.load(ours / f"{case}.npy", mmap_mode="r")
        mine_seg = np.load(ours / f"{case}_seg.npy", mmap_mode="r")
        if mine.shape != data.shape:
            raise RuntimeError(f"{case}: fastpanc shape {mine.shape} != nnU-Net {data.shape}")
        max_diff = max(max_diff, float(np.abs(np.asarray(mine) - np.asarray(data)).max()))
        min_agree = min(min_agree, float((np.asarray(mine_seg) == np.asarray(seg)).mean()))
        voxels += int(np.prod(data.shape[1:]))
    return {
        "cases_compared": len(ds.identifiers),
        "max_abs_data_diff": max_diff,
        "min_seg_agreement": min_agree,
        "mean_voxels_per_case": voxels / max(len(ds.identifiers), 1),
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cases", type=int, default=20)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument(
        "--keep",
        help="work in this folder and keep it (default: a temporary folder); a folder kept "
        "by an earlier run is reused: same cohort and plans, both tools timed again",
    )
    args = ap.parse_args(argv)
    nnunet_cli = shutil.which("nnUNetv2_preprocess")
    if nnunet_cli is None:
        raise SystemExit(
            "nnUNetv2_preprocess not found: pip install nnunetv2 (it is in fastpanc's test extra)"
        )
    work = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="fastpanc-bench-pre-"))
    work.mkdir(parents=True, exist_ok=True)
    try:
        plans_file = work / "nnUNet_preprocessed" / DATASET / f"{PLANS_NAME}.json"
        if args.keep and plans_file.is_file():  # reuse the cohort and plans of an earlier --keep run
            raw, plans = work / "nnUNet_raw" / DATASET, json.loads(plans_file.read_text())
            kept = json.loads((raw / "dataset.json").read_text()).get("numTraining")
            if kept != args.cases:
                raise SystemExit(
                    f"{work} holds a cohort of {kept} cases, not {args.cases}; use another --keep folder"
                )
        else:
            raw, plans_file, plans = build_inputs(work, args.cases, args.seed, args.workers)
        _warm_cache(raw)
        env = dict(
            os.environ,
            nnUNet_raw=str(work / "nnUNet_raw"),
            nnUNet_preprocessed=str(work / "nnUNet_preprocessed"),
            nnUNet_results=str(work / "nnUNet_results"),
        )
        ours = work / "fastpanc_preprocessed"
        shutil.rmtree(ours, ignore_errors=True)  # a leftover output would be skipped as finished
        t_ours = _run(
            [
                sys.executable,
                "-m",
                "fastpanc.cli",
                "preprocess",
                str(raw),
                "--plans",
                str(plans_file),
                "-o",
                str(ours),
                "-j",
                str(args.workers),
            ]
        )
        t_nnunet = _run(
            [
                nnunet_cli,
                "-d",
                str(DATASET_ID),
                "-plans_name",
                PLANS_NAME,
                "-c",
                "3d_fullres",
                "-np",
                str(args.workers),
            ],
            env=env,
        )
        theirs = (
            work / "nnUNet_preprocessed" / DATASET / plans["configurations"]["3d_fullres"]["data_identifier"]
        )
        check = compare_outputs(ours, theirs)
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    command = f"python benchmarks/compare_preprocess.py --cases {args.cases} --workers {args.workers} --seed {args.seed}"
    full = plans["configurations"]["3d_fullres"]
    extra = {
        "group": "preprocessing",
        "cases": args.cases,
        "workers": args.workers,
        "seed": args.seed,
        "patch_size": full["patch_size"],
        "spacing": full["spacing"],
        **check,
    }
    row = record("preprocess-synth", t_nnunet, t_ours, command, device="cpu", extra=extra)
    print(
        "| cases | workers | nnUNetv2_preprocess (s) | fastpanc preprocess (s) | ratio | max abs data diff | "
        "min seg agreement |"
    )
    print("| ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    print(
        f"| {args.cases} | {args.workers} | {t_nnunet:.1f} | {t_ours:.1f} | {row['ratio']:.2f}x | "
        f"{check['max_abs_data_diff']:.2e} | {check['min_seg_agreement']:.5f} |"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
