"""Prediction on the real test images: ``nnUNetv2_predict`` vs ``fastpanc-predict --mode exact`` vs
``--mode fast``, one run, the same model folder, one fold, the same TTA setting.

The model folder is ResEnc M with the real dataset's plans (``../shared/data/real/plans``) and a fixed
random initialisation (``torch.manual_seed(0)``), saved in nnU-Net v2's format: no trained weights are
available here. Each tool runs as its own command-line program (process start, reading, preprocessing,
network, export, writing); peak memory is the largest resident set of any one process of the command
(``getrusage(RUSAGE_CHILDREN)`` in a wrapper process; worker processes are not summed); on cuda fastpanc
also prints its peak GPU memory.
nnU-Net runs with its default worker counts (3 preprocessing, 3 export processes).
Agreement with nnU-Net: fraction of equal voxels and per-label Dice of the masks.

    python benchmarks/compare_predict.py --cases 3 --device cpu          # CPU: no TTA (time)
    python benchmarks/compare_predict.py --cases 16 --device cuda --tta  # GPU
    python benchmarks/compare_predict.py --images A.nii.gz B.nii.gz      # other images (printed, not recorded)
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _record import record  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
# the console script nnUNetv2_predict_from_modelfolder, run by the same interpreter
_NNUNET_ENTRY = (
    "import sys; from nnunetv2.inference.predict_from_raw_data import predict_entry_point_modelfolder as main; "
    "sys.argv[0] = 'nnUNetv2_predict_from_modelfolder'; main()"
)
PLANS = "nnUNetResEncUNetMPlans.json"
_WRAP = (
    "import resource, subprocess, sys; rc = subprocess.run(sys.argv[1:]).returncode; "
    "print('MAXRSS_KB', resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, file=sys.stderr); sys.exit(rc)"
)


def shared_data(need_test_images: bool = True) -> Path:
    """The shared data folder (its plans give the model; its test images are the default inputs)."""
    env = os.environ.get("FASTPANC_SHARED_DATA")
    want = "test_images" if need_test_images else "plans"
    for c in ([Path(env)] if env else []) + [REPO.parent / "shared" / "data"]:
        if (c / "real" / want).is_dir():
            return c
    raise FileNotFoundError(
        f"real CT data not found: expected ../shared/data/real/{want} (or set FASTPANC_SHARED_DATA)"
    )


def make_model_folder(path: Path, plans_file: Path, seed: int = 0) -> Path:
    """ResEnc M (the plans' 3d_fullres) with seeded random weights, as an nnU-Net v2 trainer folder."""
    import torch

    from fastpanc.inference.model_folder import build_nnunet_network

    plans = json.loads(plans_file.read_text())
    dataset = {
        "channel_names": {"0": "CT"},
        "labels": {"background": 0, "pancreas": 1, "lesion": 2},
        "numTraining": 288,
        "file_ending": ".nii.gz",
    }
    path.mkdir(parents=True, exist_ok=True)
    (path / "plans.json").write_text(json.dumps(plans, indent=1))
    (path / "dataset.json").write_text(json.dumps(dataset, indent=1))
    torch.manual_seed(seed)
    net = build_nnunet_network(plans, "3d_fullres", 1, 3)
    (path / "fold_0").mkdir(exist_ok=True)
    ckpt = {
        "network_weights": net.state_dict(),
        "optimizer_state": {},
        "grad_scaler_state": None,
        "current_epoch": 0,
        "logging": {},
        "_best_ema": None,
        "inference_allowed_mirroring_axes": (0, 1, 2),
        "trainer_name": "nnUNetTrainer",
        "init_args": {"plans": plans, "configuration": "3d_fullres", "fold": 0, "dataset_json": dataset},
    }
    torch.save(ckpt, path / "fold_0" / "checkpoint_final.pth")
    return path


def timed(cmd: list[str], env: dict[str, str]) -> tuple[float, float, str]:
    """(wall seconds, largest peak RSS in GiB of any one process of the command, stdout)."""
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", _WRAP, *cmd], capture_output=True, text=True, env=env)
    dt = time.perf_counter() - t0
    if proc.returncode not in (0,):
        raise RuntimeError(
            f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
        )
    kb = [int(line.split()[1]) for line in proc.stderr.splitlines() if line.startswith("MAXRSS_KB")]
    return dt, kb[-1] / 2**20 if kb else float("nan"), proc.stdout


def agreement(ref_dir: Path, dirs: dict[str, Path], cases: list[str]) -> dict[str, dict]:
    """Per tool: fraction of equal voxels (pooled), the minimum over cases, the number of voxels that differ, and
    per-label Dice (pooled voxels)."""
    import SimpleITK as sitk

    out = {}
    for name, d in dirs.items():
        equal, total, worst = 0, 0, 1.0
        inter, sums = {1: 0, 2: 0}, {1: 0, 2: 0}
        for c in cases:
            a = sitk.GetArrayFromImage(sitk.ReadImage(str(ref_dir / f"{c}.nii.gz")))
            b = sitk.GetArrayFromImage(sitk.ReadImage(str(d / f"{c}.nii.gz")))
            if a.shape != b.shape:
                raise RuntimeError(f"{name}: {c} has shape {b.shape}, nnU-Net {a.shape}")
            eq = int((a == b).sum())
            equal, total, worst = equal + eq, total + a.size, min(worst, eq / a.size)
            for k in (1, 2):
                inter[k] += int(((a == k) & (b == k)).sum())
                sums[k] += int((a == k).sum() + (b == k).sum())
        dice = {k: (2 * inter[k] / sums[k] if sums[k] else float("nan")) for k in (1, 2)}
        out[name] = {
            "agree": equal / total,
            "agree_min_case": worst,
            "differ": total - equal,
            "voxels": total,
            "dice_1": dice[1],
            "dice_2": dice[2],
            "ref_voxels": {k: sums[k] for k in (1, 2)},
        }
    return out


def input_name(path: Path) -> str:
    """The file's name in the input folder: ``{CASE}_0000.nii.gz`` (a name without the channel gets one)."""
    name = path.name
    if not name.endswith(".nii.gz"):
        raise ValueError(f"{path}: expected a .nii.gz image")
    return name if name.endswith("_0000.nii.gz") else name[: -len(".nii.gz")] + "_0000.nii.gz"


def run(n_cases: int, device: str, tta: bool, work: Path, images: list[Path] | None = None) -> dict:
    """Predict ``images`` (default: the first ``n_cases`` real test images) with the three tools."""
    data = shared_data(need_test_images=images is None)
    if images is None:
        images = sorted((data / "real" / "test_images").glob("*_0000.nii.gz"))[:n_cases]
    names = [input_name(p) for p in images]
    if len(set(names)) != len(names):
        raise ValueError(f"two images would have the same case name: {names}")
    cases = [n[: -len("_0000.nii.gz")] for n in names]
    inp = work / "input"
    inp.mkdir(parents=True, exist_ok=True)
    for p, name in zip(images, names):
        (inp / name).unlink(missing_ok=True)
        (inp / name).symlink_to(p.resolve())
        p.read_bytes()  # page cache warm for every tool alike
    model = make_model_folder(work / "model", data / "real" / "plans" / PLANS)
    env = dict(os.environ, nnUNet_raw=str(work), nnUNet_preprocessed=str(work), nnUNet_results=str(work))
    nn_cmd = [
        sys.executable,
        "-c",
        _NNUNET_ENTRY,
        "-i",
        str(inp),
        "-o",
        str(work / "nnunet"),
        "-m",
        str(model),
        "-f",
        "0",
        "-chk",
        "checkpoint_final.pth",
        "-device",
        device,
    ]
    fp = [
        sys.executable,
        "-P",  # the installed fastpanc (with its compiled extension), not the source tree in the cwd
        "-m",
        "fastpanc.cli",
        "predict",
        "-i",
        str(inp),
        "-m",
        str(model),
        "--folds",
        "0",
        "--device",
        device,
        "--profile",
        "--tta" if tta else "--no-tta",
    ]
    results: dict = {"cases": cases, "device": device, "tta": tta}
    t, rss, _ = timed(nn_cmd + ([] if tta else ["--disable_tta"]), env)
    results["nnunet"] = {"seconds": t, "peak_rss_gib": rss}
    for mode in ("exact", "fast"):
        t, rss, out = timed(fp + ["-o", str(work / mode), "--mode", mode], env)
        results[mode] = {"seconds": t, "peak_rss_gib": rss, "profile": out}
    results["agreement"] = agreement(work / "nnunet", {"exact": work / "exact", "fast": work / "fast"}, cases)
    return results


def markdown(r: dict) -> str:
    n = len(r["cases"])
    lines = [
        f"{n} {r.get('inputs', 'real test images')}, device {r['device']}, TTA {'on' if r['tta'] else 'off'}, "
        "ResEnc M, 1 fold",
        "",
        "| tool | total s | s / case | speed-up | peak RSS GiB | voxels equal to nnU-Net (all / worst case) "
        "| voxels that differ | Dice vs nnU-Net (pancreas / lesion) |",
        "| --- | ---: | ---: | ---: | ---: | --- | ---: | --- |",
    ]
    base = r["nnunet"]["seconds"]
    for name in ("nnunet", "exact", "fast"):
        x = r[name]
        ag = r["agreement"].get(name)
        # seven decimals: a few voxels in millions differ even in exact mode (float32 sums in another order)
        agree = f"{ag['agree']:.7f} / {ag['agree_min_case']:.7f}" if ag else "-"
        differ = f"{ag['differ']:,} of {ag['voxels']:,}" if ag else "-"
        dice = f"{ag['dice_1']:.4f} / {ag['dice_2']:.4f}" if ag else "-"
        label = {"nnunet": "nnUNetv2_predict", "exact": "fastpanc exact", "fast": "fastpanc fast"}[name]
        lines.append(
            f"| {label} | {x['seconds']:.1f} | {x['seconds'] / n:.1f} | {base / x['seconds']:.2f}x "
            f"| {x['peak_rss_gib']:.2f} | {agree} | {differ} | {dice} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cases", type=int, default=16, help="first N of the 16 test images (default all)")
    ap.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    ap.add_argument("--tta", action="store_true", help="mirroring TTA for every tool (default off)")
    ap.add_argument("--work", help="working folder (default: a temporary one)")
    ap.add_argument(
        "--images",
        nargs="+",
        type=Path,
        help="other .nii.gz images instead of the test images (printed only: benchmarks/results keeps the "
        "rows of the 16 test images)",
    )
    args = ap.parse_args(argv)
    for p in args.images or []:
        if not p.is_file():
            ap.error(f"--images: {p} is not a file")
    with tempfile.TemporaryDirectory(prefix="fastpanc-predict-bench-") as tmp:
        r = run(args.cases, args.device, args.tta, Path(args.work or tmp), args.images)
    if args.images:
        r["inputs"] = "image(s): " + ", ".join(p.name for p in args.images)
    print(markdown(r))
    for mode in ("exact", "fast"):
        print(f"\nfastpanc {mode} --profile:\n{r[mode]['profile']}")
    if args.images:
        print("\n--images: not recorded in benchmarks/results (those rows are the 16 test images')")
        return 0
    shown = [a for a in (argv if argv is not None else sys.argv[1:])]
    if "--work" in shown:  # a temporary folder: not part of the command to rerun
        i = shown.index("--work")
        del shown[i : i + 2]
    command = "python benchmarks/compare_predict.py " + " ".join(shown)
    for mode in ("exact", "fast"):
        ag = r["agreement"][mode]
        record(
            f"predict_{mode}",
            r["nnunet"]["seconds"],
            r[mode]["seconds"],
            command,
            device=args.device,
            extra={
                "cases": r["cases"],
                "tta": r["tta"],
                "nnunet_peak_rss_gib": r["nnunet"]["peak_rss_gib"],
                "fastpanc_peak_rss_gib": r[mode]["peak_rss_gib"],
                **{k: ag[k] for k in ("agree", "agree_min_case", "differ", "voxels", "dice_1", "dice_2")},
            },
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
