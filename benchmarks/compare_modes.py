"""What ``--mode fast`` and ``--roi`` cost against ``--mode exact``: Dice of their labels against exact's
labels and wall time, with one model folder on a set of images, through ``fastpanc.Predictor``.

    python benchmarks/compare_modes.py -m MODEL_DIR -i ../shared/data/uncropped/example_ct_sm.nii.gz \
        --device cpu
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np

VARIANTS = {
    "exact": {"mode": "exact"},
    "exact+roi": {"mode": "exact", "roi": True},
    "fast": {"mode": "fast"},
    "fast+roi": {"mode": "fast", "roi": True},
}


def dice(a: np.ndarray, b: np.ndarray, label: int) -> float:
    x, y = a == label, b == label
    s = int(x.sum() + y.sum())
    return float("nan") if s == 0 else 2.0 * int((x & y).sum()) / s


def main(argv: list[str] | None = None) -> int:
    from fastpanc.data.io import read_case
    from fastpanc.inference import PredictConfig, Predictor
    from fastpanc.inference.inputs import find_cases

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-m", "--model", required=True)
    ap.add_argument("-i", "--input", required=True, nargs="+")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--tta", action="store_true", help="TTA in every variant (default: none)")
    ap.add_argument(
        "--variants",
        nargs="+",
        default=list(VARIANTS),
        choices=list(VARIANTS),
        help="variants to run; Dice is against the first (default: all, exact first)",
    )
    args = ap.parse_args(argv)
    cases = find_cases(args.input)
    predictors = {
        k: Predictor(args.model, device=args.device, config=PredictConfig(tta=args.tta, **VARIANTS[k]))
        for k in args.variants
    }
    ref = args.variants[0]
    rows = {k: {"s": 0.0, "d1": [], "d2": [], "fg": []} for k in args.variants}
    for case in cases:
        image, geometry = read_case(list(case.files))
        labels = {}
        for name, p in predictors.items():
            t0 = time.perf_counter()
            labels[name] = p.predict_array(image, geometry.spacing).labels
            rows[name]["s"] += time.perf_counter() - t0
        for name in args.variants:
            rows[name]["d1"].append(dice(labels[ref], labels[name], 1))
            rows[name]["d2"].append(dice(labels[ref], labels[name], 2))
            rows[name]["fg"].append(int((labels[name] > 0).sum()))
            print(
                f"{case.name} {name}: Dice vs {ref} {rows[name]['d1'][-1]:.4f} / {rows[name]['d2'][-1]:.4f}",
                flush=True,
            )
    print(
        f"{len(cases)} image(s), model {args.model}, device {args.device}, TTA {'on' if args.tta else 'off'}\n"
    )
    print(
        f"| variant | total s | speed-up vs {ref} | Dice vs {ref}, pancreas | Dice vs {ref}, lesion "
        "| foreground voxels |"
    )
    print("| --- | ---: | ---: | ---: | ---: | ---: |")
    for name, r in rows.items():
        print(
            f"| {name} | {r['s']:.1f} | {rows[ref]['s'] / r['s']:.2f}x | {np.nanmean(r['d1']):.4f} "
            f"| {np.nanmean(r['d2']):.4f} | {sum(r['fg'])} |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
