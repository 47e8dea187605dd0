#!/usr/bin/env bash
# Train the full ResEnc M multitask network on the real labeled CT cases for a fixed number of minutes, then
# predict held-out cases and report their Dice:
#   select cases -> stage raw dataset -> convert -> preprocess (real nnU-Net ResEnc M plans) -> train
#   -> predict held-out images -> evaluate -> OUT/train_real_summary.json
#
# Usage: bash benchmarks/train_real.sh OUT
#
# Environment (defaults in brackets):
#   DATA        folder with labeled/imagesTr/*_0000.nii.gz, labeled/labelsTr/*.nii.gz and
#               plans/nnUNetResEncUNetMPlans.json [<repo>/../shared/data/real]; only read, never written
#   MINUTES     training budget in minutes, may be fractional [3]
#   DEVICE      cuda, cuda:N or cpu [cuda]
#   HOLDOUT     number of held-out cases, spread evenly over the sorted case list [6]
#   VAL         cases of the remaining ones that form the trainer's validation split (checkpoint choice and
#               the pseudo-Dice in progress.png; not trained on) [3]
#   MAX_CASES   use only the first N cases in sorted order [all present]
#   JOBS        preprocessing threads [nproc]
#   BUDGET_S    wall-clock budget of the whole script in seconds [225]: training is shortened (and, at the
#               worst, stopped) so that prediction and evaluation still fit; MINUTES stays the upper bound.
#               BUDGET_S= (empty) trains the full MINUTES
#   RESERVE_S   seconds BUDGET_S keeps for training start-up (process, data, cuDNN autotuning), the final
#               checkpoint, prediction, evaluation and the summary [90]
#   KEEP_LARGE=1  keep the checkpoints (~1.2 GB each for ResEnc M), OUT/pre and OUT/raw; by default they are
#               deleted at the end, once the summary is written
#   ITERS       training iterations per epoch [100]       VAL_ITERS  validation batches per epoch [10]
#   OPTIMIZER   adamw or sgd [adamw]                        LR         initial learning rate [1e-3 adamw, 1e-2 sgd]
#   WORKERS     patch-loader threads [min(8, nproc)]
#   PREDICT_MODE  exact or fast [exact]   (always without mirroring TTA)
#   PYTHON      the interpreter [python3]
#   Small-model overrides, for a CPU smoke test only (unset: the plans' ResEnc M, patch and batch size):
#   PATCH="Z, Y, X"  BATCH  FEATURES_SCALE  N_STAGES  N_BLOCKS="1, 1, 1, 1"
#
# GPU run (defaults: the plans' ResEnc M, patch 64 x 128 x 192, batch 2, bf16 autocast):
#   bash benchmarks/train_real.sh /tmp/train_real
# CPU smoke test (a reduced network; the numbers mean nothing):
#   DEVICE=cpu MINUTES=0.5 MAX_CASES=6 HOLDOUT=2 VAL=1 JOBS=2 ITERS=10 VAL_ITERS=2 PATCH="32, 64, 64" \
#     FEATURES_SCALE=0.25 N_STAGES=4 N_BLOCKS="1, 1, 1, 1" OMP_NUM_THREADS=2 \
#     bash benchmarks/train_real.sh /tmp/train_real_smoke
#
# Every case is subtype 2, so the subtype macro-F1 is meaningless here: only Dice is reported (whole pancreas
# = label > 0, lesion = label 2, mean over the held-out cases). Outputs in OUT: train_real_summary.json,
# train_real_progress.png, timings.tsv, logs/<step>.log, cases.json, model/, pred/, eval/.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
OUT="${1:?usage: bash benchmarks/train_real.sh OUT}"
DATA="${DATA:-$REPO/../shared/data/real}"
MINUTES="${MINUTES:-3}"
DEVICE="${DEVICE:-cuda}"
HOLDOUT="${HOLDOUT:-6}"
VAL="${VAL:-3}"
MAX_CASES="${MAX_CASES:-}"
NPROC="$(nproc)"
JOBS="${JOBS:-$NPROC}"
BUDGET_S="${BUDGET_S-225}"
RESERVE_S="${RESERVE_S:-90}"
ITERS="${ITERS:-100}"
VAL_ITERS="${VAL_ITERS:-10}"
OPTIMIZER="${OPTIMIZER:-adamw}"
if [ "$OPTIMIZER" = adamw ]; then LR="${LR:-1e-3}"; else LR="${LR:-1e-2}"; fi
WORKERS="${WORKERS:-$((NPROC < 8 ? NPROC : 8))}"
PREDICT_MODE="${PREDICT_MODE:-exact}"
KEEP_LARGE="${KEEP_LARGE:-0}"
PYTHON="${PYTHON:-python3}"
PATCH="${PATCH:-}"
BATCH="${BATCH:-}"
FEATURES_SCALE="${FEATURES_SCALE:-}"
N_STAGES="${N_STAGES:-}"
N_BLOCKS="${N_BLOCKS:-}"

PLANS="$DATA/plans/nnUNetResEncUNetMPlans.json"
for need in "$DATA/labeled/imagesTr" "$DATA/labeled/labelsTr" "$PLANS"; do
  [ -e "$need" ] || { echo "train_real: $need not found (set DATA)" >&2; exit 2; }
done
DATA="$(cd "$DATA" && pwd)"
PLANS="$DATA/plans/nnUNetResEncUNetMPlans.json"
rm -rf "$OUT"
mkdir -p "$OUT/logs"
OUT="$(cd "$OUT" && pwd)"
T0="$(date +%s.%N)"
: > "$OUT/timings.tsv"

elapsed() { awk -v a="$T0" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }'; }

# run_step NAME TIMEOUT_S CMD...: runs CMD under `timeout`, its output in OUT/logs/NAME.log; records the step's
# seconds and exit status in OUT/timings.tsv; never aborts the script (the caller checks $STEP_RC).
run_step() {
  local name="$1" limit="$2"
  shift 2
  local t
  t="$(date +%s.%N)"
  echo "[$(elapsed) s] $name: start (limit ${limit} s)"
  set +e
  timeout --kill-after=15 "$limit" "$@" > "$OUT/logs/$name.log" 2>&1
  STEP_RC=$?
  set -e
  local dt
  dt="$(awk -v a="$t" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }')"
  printf '%s\t%s\t%s\n' "$name" "$dt" "$STEP_RC" >> "$OUT/timings.tsv"
  if [ "$STEP_RC" -eq 0 ]; then
    echo "[$(elapsed) s] $name: done in $dt s"
  else
    echo "[$(elapsed) s] $name: FAILED (exit $STEP_RC$([ "$STEP_RC" -ge 124 ] && echo ', timed out?')) after $dt s;" \
      "last lines of $OUT/logs/$name.log:"
    tail -c 20000 "$OUT/logs/$name.log" | tr '\r' '\n' | grep -av '^\s*$\|%|' | tail -n 12 | sed 's/^/    /' || true
  fi
}

# ---------------------------------------------------------------- summary (also written after a failure)
write_summary() {
  "$PYTHON" -P - "$OUT" "$DATA" "$DEVICE" "$MINUTES" "${TRAIN_MINUTES:-}" "$ITERS" "$PREDICT_MODE" "$(elapsed)" \
    "$BUDGET_S" "$KEEP_LARGE" <<'PY'
import csv, json, math, os, platform, re, subprocess, sys
from pathlib import Path

out, data, device, minutes, train_minutes, iters, mode, total_s, budget_s, keep = sys.argv[1:]
out = Path(out)

def load(p):
    try:
        return json.loads(Path(p).read_text())
    except (OSError, ValueError):
        return None

def device_name():
    if device.startswith("cuda"):
        idx = device.split(":")[1] if ":" in device else "0"
        try:
            r = subprocess.run(["nvidia-smi", "-i", idx, "--query-gpu=name", "--format=csv,noheader"],
                               capture_output=True, text=True, timeout=15)
            if r.returncode == 0 and r.stdout.strip():
                return r.stdout.strip().splitlines()[0]
        except (OSError, subprocess.SubprocessError):
            pass
        try:
            import torch
            return torch.cuda.get_device_name(int(idx))
        except Exception as exc:  # noqa: BLE001 - a name is only informative
            return f"cuda (name unknown: {exc})"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return f"cpu: {line.split(':', 1)[1].strip()} ({os.cpu_count()} cores)"
    except OSError:
        pass
    return f"cpu: {platform.processor() or platform.machine()}"

def num(v):
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(f) else f

cases = load(out / "cases.json") or {}
rows = []
log_csv = out / "model" / "fold_0" / "training_log.csv"
if log_csv.is_file():
    with log_csv.open() as f:
        rows = list(csv.DictReader(f))
train_cfg = load(out / "model" / "train_config.json") or {}
plans = load(out / "model" / "plans.json") or {}
conf = plans.get("configurations", {}).get("3d_fullres", {})
arch = conf.get("architecture", {}).get("arch_kwargs", {})
ev = load(out / "eval" / "summary.json")
timings = {}
if (out / "timings.tsv").is_file():
    for line in (out / "timings.tsv").read_text().splitlines():
        name, secs, rc = line.split("\t")
        timings[name] = {"seconds": float(secs), "exit": int(rc)}
seg = (ev or {}).get("segmentation", {})
dice = {r: num(seg.get(r, {}).get("dice", {}).get("mean")) for r in ("whole", "lesion")}
per_case = [
    {"case": c["case"], "whole_dice": num(c.get("whole_dice")), "lesion_dice": num(c.get("lesion_dice"))}
    for c in (ev or {}).get("cases", [])
]
ckpts = sorted(p.name for p in (out / "model" / "fold_0").glob("checkpoint_*.pth"))
used = None
if (out / "logs" / "predict.log").is_file():
    m = re.search(r"checkpoints \[([^\]]*)\]", (out / "logs" / "predict.log").read_text(errors="replace"))
    used = m[1].replace("'", "") if m else None
last = rows[-1] if rows else {}
summary = {
    "device": device,
    "device_name": device_name(),
    "data": data,
    "minutes_requested": float(minutes),
    "minutes_given_to_trainer": num(train_minutes),
    "script_budget_s": num(budget_s),
    "train_epoch_seconds": sum(num(r["epoch_time_s"]) or 0.0 for r in rows),
    "epochs": len(rows),
    "iterations_per_epoch": int(iters),
    "iterations": len(rows) * int(iters),
    "iterations_per_s_last_epoch": num(last.get("iterations_per_s")),
    "data_wait_s": sum(num(r["data_wait_s"]) or 0.0 for r in rows),
    "last_val_pseudo_dice": {"pancreas": num(last.get("dice_pancreas")), "lesion": num(last.get("dice_lesion"))},
    "checkpoints": ckpts,
    "checkpoints_kept": keep == "1",
    "network": {
        "features_per_stage": arch.get("features_per_stage"),
        "n_blocks_per_stage": arch.get("n_blocks_per_stage"),
        "patch_size": conf.get("patch_size"),
        "batch_size": conf.get("batch_size"),
        "optimizer": train_cfg.get("optimizer"),
        "lr": train_cfg.get("lr"),
        "amp_dtype": train_cfg.get("amp_dtype") if device.startswith("cuda") else None,
    },
    "num_train_cases": len(cases.get("train", [])),
    "train_cases": cases.get("train", []),
    "val_cases": cases.get("val", []),
    "holdout_cases": cases.get("holdout", []),
    "predict": {"mode": mode, "tta": False, "checkpoint": used},
    "holdout_dice_mean": {"whole_pancreas": dice["whole"], "lesion": dice["lesion"]},
    "holdout_dice_per_case": per_case,
    "missing_predictions": (ev or {}).get("missing_predictions"),
    "note": "all cases are subtype 2, so the subtype macro-F1 is meaningless and not reported; "
    "whole_pancreas = Dice of label > 0, lesion = Dice of label 2",
    "timings_s": timings,
    "total_s": float(total_s),
}
(out / "train_real_summary.json").write_text(json.dumps(summary, indent=2) + "\n")
fmt = lambda v: "n/a" if v is None else f"{v:.3f}"
print(
    f"train_real: {summary['num_train_cases']} train + {len(summary['val_cases'])} val cases, "
    f"{summary['epochs']} epochs ({summary['iterations']} iterations, {summary['train_epoch_seconds']:.0f} s) on "
    f"{summary['device_name']}; {len(summary['holdout_cases'])} held-out cases: Dice whole pancreas "
    f"{fmt(dice['whole'])}, lesion {fmt(dice['lesion'])} (subtype F1 not reported: all subtype 2); "
    f"total {float(total_s):.0f} s"
)
PY
}

FAILED=""
finish() {
  local rc=$?
  trap - EXIT
  set +e
  [ -f "$OUT/model/fold_0/progress.png" ] && cp "$OUT/model/fold_0/progress.png" "$OUT/train_real_progress.png"
  echo "[$(elapsed) s] summary -> $OUT/train_real_summary.json"
  write_summary || echo "train_real: writing the summary failed" >&2
  if [ "$KEEP_LARGE" != 1 ]; then
    rm -rf "$OUT/pre" "$OUT/raw"
    rm -f "$OUT"/model/fold_*/checkpoint_*.pth
  fi
  if [ -n "$FAILED" ]; then
    echo "train_real: failed steps:$FAILED"
    [ "$rc" -eq 0 ] && rc=1
  fi
  exit "$rc"
}
trap finish EXIT

echo "train_real: DATA=$DATA OUT=$OUT DEVICE=$DEVICE MINUTES=$MINUTES HOLDOUT=$HOLDOUT VAL=$VAL" \
  "MAX_CASES=${MAX_CASES:-all} JOBS=$JOBS WORKERS=$WORKERS BUDGET_S=${BUDGET_S:-none}"

# ---------------------------------------------------------------- 1. choose cases, stage an nnU-Net raw dataset
# The source folder has no dataset.json, so `fastpanc convert` cannot read it as it is: OUT/raw_src gets
# symlinks to the training cases (held-out cases left out entirely) plus dataset.json, subtype_mapping.json
# (subtype from the name quiz_<subtype>_<id>) and splits_final.json (the trainer's validation cases), and
# `fastpanc convert` checks every case and writes the dataset OUT/raw from it.
t="$(date +%s.%N)"
"$PYTHON" -P - "$DATA" "$OUT" "$HOLDOUT" "$VAL" "$MAX_CASES" <<'PY'
import json, os, re, sys
from pathlib import Path

data, out, holdout, nval, max_cases = Path(sys.argv[1]), Path(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
img_dir, lab_dir = data / "labeled" / "imagesTr", data / "labeled" / "labelsTr"
names = sorted(
    f.name[: -len("_0000.nii.gz")]
    for f in img_dir.iterdir()
    if f.name.endswith("_0000.nii.gz") and (lab_dir / (f.name[: -len("_0000.nii.gz")] + ".nii.gz")).is_file()
)
if max_cases:
    names = names[: int(max_cases)]
n = len(names)
if holdout < 1 or nval < 1:
    sys.exit(f"train_real: HOLDOUT ({holdout}) and VAL ({nval}) must be >= 1")
if n < 3:
    sys.exit(f"train_real: {n} case(s) found in {img_dir}; need at least 3 (held out, validation, training)")
if n < holdout + nval + 1:  # fewer cases present than asked for: shrink both, keep most for training
    h = max(1, min(holdout, (n - 1) // 3))
    v = max(1, min(nval, (n - h - 1) // 4))
    print(f"train_real: WARNING: only {n} case(s); HOLDOUT {holdout} -> {h}, VAL {nval} -> {v}")
    holdout, nval = h, v

def spread(items, k):
    """k items spread evenly over the list (the middle of each of k equal parts): deterministic."""
    return [items[(2 * i + 1) * len(items) // (2 * k)] for i in range(k)]

held = spread(names, holdout)
pool = [c for c in names if c not in held]
val = spread(pool, nval)
train = [c for c in pool if c not in val]
subtypes = {}
for c in pool:
    m = re.match(r"quiz_(\d)_", c)
    subtypes[c] = int(m[1]) if m else 2  # the real labeled cases are all subtype 2

src = out / "raw_src"
for sub in ("imagesTr", "labelsTr"):
    (src / sub).mkdir(parents=True)
for c in pool:
    os.symlink(img_dir / f"{c}_0000.nii.gz", src / "imagesTr" / f"{c}_0000.nii.gz")
    os.symlink(lab_dir / f"{c}.nii.gz", src / "labelsTr" / f"{c}.nii.gz")
dataset = {
    "name": "train_real",
    "channel_names": {"0": "CT"},
    "labels": {"background": 0, "pancreas": 1, "lesion": 2},
    "numTraining": len(pool),
    "file_ending": ".nii.gz",
}
(src / "dataset.json").write_text(json.dumps(dataset, indent=2) + "\n")
(src / "subtype_mapping.json").write_text(json.dumps(subtypes, indent=2) + "\n")
(src / "splits_final.json").write_text(json.dumps([{"train": train, "val": val}], indent=2) + "\n")
for sub in ("images", "labels"):
    (out / "holdout" / sub).mkdir(parents=True)
for c in held:
    os.symlink(img_dir / f"{c}_0000.nii.gz", out / "holdout" / "images" / f"{c}_0000.nii.gz")
    os.symlink(lab_dir / f"{c}.nii.gz", out / "holdout" / "labels" / f"{c}.nii.gz")
(out / "cases.json").write_text(json.dumps({"train": train, "val": val, "holdout": held}, indent=2) + "\n")
print(f"{n} cases: {len(train)} train, {len(val)} val (trainer's split), {len(held)} held out")
print("held out:", " ".join(held))
print("val:", " ".join(val))
PY
printf 'select\t%s\t0\n' "$(awk -v a="$t" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }')" >> "$OUT/timings.tsv"

run_step convert 300 fastpanc convert "$OUT/raw_src" "$OUT/raw" --subtypes "$OUT/raw_src/subtype_mapping.json"
[ "$STEP_RC" -eq 0 ] || { FAILED+=" convert"; exit 1; }
tail -n 1 "$OUT/logs/convert.log"

# ---------------------------------------------------------------- 2. preprocess with the real ResEnc M plans
# fastpanc reads nnU-Net v2's plans schema directly (the trainer adds its "fastpanc" head settings to the model
# folder's copy), so no `fastpanc plan` is needed: the images already lie on the plans' 2.0 x 0.732 x 0.732 mm
# grid and the plans' CT-normalisation statistics apply (resampling is then the identity).
run_step preprocess 600 fastpanc preprocess "$OUT/raw" --plans "$PLANS" -o "$OUT/pre" -j "$JOBS"
[ "$STEP_RC" -eq 0 ] || { FAILED+=" preprocess"; exit 1; }

# ---------------------------------------------------------------- 3. train
# Minutes of training: MINUTES, cut so that the rest fits BUDGET_S when that is set.
TRAIN_MINUTES="$MINUTES"
TRAIN_LIMIT="$(awk -v m="$MINUTES" 'BEGIN { printf "%d", m * 60 + 120 }')"  # start-up, last epoch, final save
if [ -n "$BUDGET_S" ]; then
  left="$(awk -v b="$BUDGET_S" -v e="$(elapsed)" 'BEGIN { printf "%.1f", b - e }')"
  TRAIN_MINUTES="$(awk -v m="$MINUTES" -v l="$left" -v r="$RESERVE_S" \
    'BEGIN { x = (l - r) / 60; if (x > m) x = m; if (x < 0.25) x = 0.25; printf "%.3f", x }')"
  # hard stop: leave ~40 s for prediction, evaluation and the summary
  TRAIN_LIMIT="$(awk -v l="$left" -v t="$TRAIN_LIMIT" 'BEGIN { x = int(l - 40); if (x > t) x = t; if (x < 30) x = 30; print x }')"
  echo "[$(elapsed) s] budget: ${left} s left of ${BUDGET_S} s -> training ${TRAIN_MINUTES} min, killed after ${TRAIN_LIMIT} s"
fi

parts=()
[ -n "$FEATURES_SCALE" ] && parts+=("\"features_scale\": $FEATURES_SCALE")
[ -n "$N_STAGES" ] && parts+=("\"n_stages\": $N_STAGES")
[ -n "$N_BLOCKS" ] && parts+=("\"n_blocks_per_stage\": [$N_BLOCKS]")
NETWORK="{$(IFS=,; echo "${parts[*]}")}"
OVERRIDES=""
[ -n "$PATCH" ] && OVERRIDES+="\"patch_size\": [$PATCH], "
[ -n "$BATCH" ] && OVERRIDES+="\"batch_size\": $BATCH, "
# Optimiser: AdamW (LR 1e-3, poly decay over the time budget) rather than nnU-Net's SGD (1e-2, Nesterov 0.99):
# a few minutes give only ~1000-2000 steps, and SGD with momentum 0.99 is tuned for 250,000; Adam's per-parameter
# step sizes get the segmentation off the ground in far fewer steps. OPTIMIZER=sgd restores nnU-Net's choice.
# class_balanced: every case is subtype 2, and the default inverse-frequency class weighting of the
# classification loss refuses empty subtypes; class-balanced sampling over one subtype is plain uniform sampling
# and turns that weighting off. 100 iterations per epoch: each epoch ends with a validation and up to two
# checkpoint saves of ~1.2 GB (102 M parameters plus AdamW's two moments), so 50 would spend too much of the
# budget on saving; 100 still gives a checkpoint every ~10-20 s on a GPU. oversample_foreground 0.5 instead of
# nnU-Net's 0.33: with so few steps, more patches on the pancreas and lesion. The subtype head trains as usual
# (lambda_cls 0.5), but with one subtype its loss is trivial and the summary ignores it.
cat > "$OUT/train_config.json" <<JSON
{
  "minutes": $TRAIN_MINUTES,
  "iterations_per_epoch": $ITERS,
  "val_iterations": $VAL_ITERS,
  $OVERRIDES
  "optimizer": "$OPTIMIZER",
  "lr": $LR,
  "weight_decay": 3e-5,
  "amp_dtype": "bf16",
  "class_balanced": true,
  "lambda_cls": 0.5,
  "oversample_foreground": 0.5,
  "num_workers": $WORKERS,
  "prefetch": $((2 * WORKERS)),
  "network": $NETWORK,
  "seed": 0
}
JSON
"$PYTHON" -P -c "from fastpanc.training.config import TrainConfig; TrainConfig.load('$OUT/train_config.json')" \
  || { echo "train_real: invalid $OUT/train_config.json" >&2; cat "$OUT/train_config.json" >&2; FAILED+=" config"; exit 1; }

TRAIN_CMD=(fastpanc -v train "$OUT/pre" -o "$OUT/model" --config "$OUT/train_config.json" --device "$DEVICE")
run_step train "$TRAIN_LIMIT" "${TRAIN_CMD[@]}"
TRAIN_RC="$STEP_RC"
grep -a -o 'fold [0-9]*: .*\|epoch [0-9]*: loss.*' "$OUT/logs/train.log" | sed 's/^/    /' || true
if [ "$TRAIN_RC" -ne 0 ]; then
  FAILED+=" train"
  if [ ! -f "$OUT/model/fold_0/checkpoint_best.pth" ]; then
    echo "train_real: no checkpoint to predict with"
    exit 1
  fi
  echo "train_real: training did not finish; predicting with checkpoint_best.pth"
fi

# ---------------------------------------------------------------- 4. predict the held-out images, evaluate
# No mirroring TTA. Exact mode by default (nnU-Net's predictor: step 0.5, float16 autocast on a GPU, logits
# resampled before the argmax): these cropped images are at most ~1.2 patches per axis, so exact costs only a few
# windows per case and keeps the numbers comparable with nnU-Net's; PREDICT_MODE=fast (step 0.75, argmax before
# a nearest-neighbour resize) cost 0.01-0.04 Dice in docs/inference.md and saves little here.
run_step predict 300 fastpanc predict -i "$OUT/holdout/images" -o "$OUT/pred" -m "$OUT/model" --device "$DEVICE" \
  --no-tta --mode "$PREDICT_MODE" --profile
[ "$STEP_RC" -eq 0 ] || FAILED+=" predict"
grep -a 'checkpoints \[\|^case \|^total ' "$OUT/logs/predict.log" | sed 's/^/    /' || true
if [ -d "$OUT/pred" ]; then
  run_step evaluate 300 fastpanc evaluate --pred "$OUT/pred" --gt "$OUT/holdout/labels" -o "$OUT/eval"
  [ "$STEP_RC" -eq 0 ] || FAILED+=" evaluate"
  grep -a 'case(s) evaluated\|Dice' "$OUT/logs/evaluate.log" | sed 's/^/    /' || true
fi
