#!/usr/bin/env bash
# Every GPU check of fastpanc, for a lent GPU machine (no internet; Python 3.12, torch, Triton, nvcc,
# pybind11, scikit-build-core, numpy, scipy, scikit-image, pytest installed). Run from anywhere:
#
#     OUT=/some/empty/folder bash benchmarks/gpu_check.sh [checks|train|predict|all]
#
# Before: `bash benchmarks/prepare_gpu_carry.sh` here fills .carry/ (SimpleITK, nnunetv2 and friends as
# site.tar.xz; the real test images, labeled cases and plans); carry what the stage needs (see that script).
#
# Stages (default all; each step logged, its exit code and time written to $OUT/summary.txt; a failed step
# does not stop the others):
#   checks: environment, unpacking, build (CUDA for sm_90, into a folder on PYTHONPATH), `fastpanc info
#           --json`, the CUDA tests (`pytest -m cuda`), the Triton tests on the GPU (TRITON_INTERPRET unset),
#           the benchmarks on cuda (kernels and training throughput) and the prediction comparison on the 16
#           real test images. Files in $OUT: summary.txt, env.log, build.log, info.json, test_cuda.log,
#           test_triton.log, bench.log, bench_results.json.
#   predict: (a short rerun) environment, unpacking, build, the CUDA tests of the predictor and trainer, and
#           the prediction comparison. Files as checks, without test_triton.log.
#   train:  environment, unpacking, build, then benchmarks/train_real.sh (ResEnc M on the real labeled cases
#           for TRAIN_MINUTES, Dice on held-out cases). Files: summary.txt, env.log, build.log,
#           train_real.log, train_real_summary.json, train_real_progress.png.
# The whole run is bounded by FASTPANC_GPU_CHECK_BUDGET_S (default 450 s).
# Exit status: 0 when every step passed and a GPU was used, else 1.
set -u
cd "$(dirname "$0")/.."
REPO=$PWD
OUT="${OUT:-/tmp/fastpanc-gpu-check}"
mkdir -p "$OUT"
SUMMARY="$OUT/summary.txt"
START=$(date +%s)
BUDGET_S="${FASTPANC_GPU_CHECK_BUDGET_S:-450}"
FAILED=0
PY=python3
STAGE="${1:-all}"
case "$STAGE" in checks | train | predict | all) ;; *) echo "usage: gpu_check.sh [checks|train|predict|all]" >&2; exit 2 ;; esac
want() { [ "$STAGE" = all ] || [ "$STAGE" = "$1" ] || { [ "$1" = checks ] && [ "$STAGE" = predict ]; }; }
echo "fastpanc gpu_check ($STAGE) $(date -u +%Y-%m-%dT%H:%M:%SZ) on $(hostname)" >"$SUMMARY"

# run_step NAME MAX_SECONDS LOGFILE CMD...: runs CMD with a timeout capped by the remaining budget.
run_step() {
  local name=$1 max_s=$2 log=$3
  shift 3
  local left=$((BUDGET_S - ($(date +%s) - START)))
  local limit=$((max_s < left ? max_s : left))
  if [ "$limit" -lt 15 ]; then
    echo "$name: SKIPPED (time budget of ${BUDGET_S}s used up)" | tee -a "$SUMMARY"
    FAILED=1
    return 0
  fi
  local t0
  t0=$(date +%s)
  echo "===== $name (limit ${limit}s): $*" >>"$log"
  timeout --kill-after=10 "$limit" "$@" >>"$log" 2>&1
  local rc=$?
  local verdict=ok
  if [ "$rc" -ne 0 ]; then
    verdict=FAILED
    [ "$rc" -eq 124 ] && verdict="TIMED OUT"
    FAILED=1
  fi
  echo "$name: $verdict (exit $rc, $(($(date +%s) - t0)) s, log $(basename "$log"))" | tee -a "$SUMMARY"
  return 0
}

# ---- environment ---------------------------------------------------------------------------------
ENVLOG="$OUT/env.log"
{
  echo "repo: $REPO"
  $PY --version
  nvidia-smi -L || echo "nvidia-smi: not available"
  nvcc --version | tail -2 || echo "nvcc: not found"
  $PY -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda, 'gpu', torch.cuda.is_available())"
  $PY -c "import triton; print('triton', triton.__version__)" || echo "triton: not importable"
} >"$ENVLOG" 2>&1
GPU=$($PY -c "import torch; print(int(torch.cuda.is_available()))" 2>/dev/null || echo 0)
if [ "$GPU" != "1" ]; then
  echo "NO GPU: torch.cuda.is_available() is false here; the CUDA/Triton tests and GPU benchmarks will be" \
    "skipped, and this run cannot pass" | tee -a "$SUMMARY"
  FAILED=1
fi

# ---- packages and data carried in .carry/ (no internet on the GPU machine) -----------------------------
INSTALL=/tmp/fastpanc-install  # the build goes here
SITE="${FASTPANC_SITE_DIR:-/tmp/site}"  # the carried packages
export PYTHONPATH="$INSTALL:$SITE${PYTHONPATH:+:$PYTHONPATH}"
DATA_DIR="${FASTPANC_DATA_DIR:-/tmp/fastpanc-data}"
unpack() {
  set -e
  if [ -f .carry/site.tar.xz ] && [ ! -f "$SITE/.unpacked" ]; then
    mkdir -p "$SITE"
    tar -xJf .carry/site.tar.xz -C "$SITE"
    touch "$SITE/.unpacked"
  fi
  mkdir -p "$DATA_DIR/real/plans"
  [ -d .carry/plans ] && cp .carry/plans/*.json "$DATA_DIR/real/plans/"
  for set in test_images labeled; do
    if [ -f ".carry/$set.tar.xz" ]; then
      tar -xJf ".carry/$set.tar.xz" -C "$DATA_DIR/real"
    fi
  done
  # back to .nii.gz, as the files were (same voxels and header)
  find "$DATA_DIR/real" -name '*.nii' -print0 | xargs -0 -r -P "$(nproc)" -n 4 gzip -f -6
  $PY -c "import SimpleITK, nnunetv2; print('SimpleITK', SimpleITK.Version_VersionString(), 'nnunetv2 from', nnunetv2.__file__)"
}
if [ -d .carry ]; then
  export PY DATA_DIR SITE
  export -f unpack
  run_step "unpack" 90 "$ENVLOG" bash -c unpack
else
  echo "unpack: no .carry/ (run benchmarks/prepare_gpu_carry.sh and carry it); SimpleITK, nnU-Net and the" \
    "real data must then already be there" | tee -a "$SUMMARY"
fi
if [ -d "$DATA_DIR/real/test_images" ] || [ -d "$DATA_DIR/real/labeled" ]; then
  export FASTPANC_SHARED_DATA="$DATA_DIR"
  echo "data: FASTPANC_SHARED_DATA=$DATA_DIR ($(find "$DATA_DIR/real" -name '*.nii.gz' | wc -l) images and masks)" \
    | tee -a "$SUMMARY"
elif [ -d ../shared/data/real ]; then
  echo "data: ../shared/data" | tee -a "$SUMMARY"
else
  echo "data: none: the real-data benchmarks will be skipped" | tee -a "$SUMMARY"
fi

# ---- build: the CUDA kernels are required here (FASTPANC_CUDA=ON fails loudly without nvcc) --------
# On a machine still warm from an earlier call, FASTPANC_REUSE_BUILD=1 keeps the build of that call when the
# sources are the same (compared by a hash of csrc/, fastpanc/, CMakeLists.txt and pyproject.toml).
SRC_HASH=$(find csrc fastpanc CMakeLists.txt pyproject.toml -type f \( -name '*.py' -o -name '*.c*' -o -name '*.h' \
  -o -name '*.cuh' -o -name '*.txt' -o -name '*.toml' -o -name '*.json' \) -print0 | sort -z | xargs -0 sha1sum | sha1sum)
if [ "${FASTPANC_REUSE_BUILD:-0}" = 1 ] && [ -f "$INSTALL/.src_hash" ] && [ "$(cat "$INSTALL/.src_hash")" = "$SRC_HASH" ]; then
  echo "build: reused the build of an earlier call in $INSTALL (same sources)" | tee -a "$SUMMARY"
else
  rm -rf "$INSTALL" && mkdir -p "$INSTALL"
  run_step "build" 270 "$OUT/build.log" env CUDAARCHS="${CUDAARCHS:-90}" FASTPANC_CUDA="${FASTPANC_CUDA:-ON}" \
    CMAKE_BUILD_PARALLEL_LEVEL="$(nproc)" $PY -m pip install -v --no-build-isolation --no-deps --no-cache-dir \
    -C build-dir="${FASTPANC_GPU_BUILD_DIR:-/tmp/fastpanc-gpu-build}" --target "$INSTALL" .
  if compgen -G "$INSTALL/fastpanc/_C*.so" >/dev/null; then echo "$SRC_HASH" >"$INSTALL/.src_hash"; fi
fi

# -P: do not put the working directory on sys.path, so `import fastpanc` finds the build, not the sources
CHECK_IMPORT="import fastpanc, sys; f = fastpanc.__file__; print('fastpanc from', f); \
sys.exit(0 if f.startswith('$INSTALL/') else 'fastpanc was imported from ' + f + ', not from the build in $INSTALL')"
run_step "info" 60 "$OUT/build.log" sh -c "$PY -P -c \"$CHECK_IMPORT\" && $PY -P -m fastpanc.cli info --json >'$OUT/info.json'"
cat "$OUT/info.json" 2>/dev/null
want checks || rm -f "$OUT/info.json"  # the train stage keeps to its own files (8 come back at most)
unset TRITON_INTERPRET
PYTEST=($PY -P -m pytest -q -rs -p no:cacheprovider --continue-on-collection-errors)
# the last line pytest printed ("N passed, M skipped in T s") goes into the summary too
pytest_tail() { echo "    $(grep -E '(passed|failed|skipped|error|no tests ran)' "$1" | tail -1)" >>"$SUMMARY"; }

if want checks; then
  # ---- tests ----------------------------------------------------------------------------------------------
  if [ "$STAGE" = predict ]; then
    run_step "test_cuda" 150 "$OUT/test_cuda.log" "${PYTEST[@]}" tests/inference tests/training -m cuda
  else
    run_step "test_cuda" 150 "$OUT/test_cuda.log" "${PYTEST[@]}" tests -m cuda
  fi
  pytest_tail "$OUT/test_cuda.log"
  if [ "$STAGE" != predict ]; then
    run_step "test_triton" 90 "$OUT/test_triton.log" "${PYTEST[@]}" tests/ops -k triton
    pytest_tail "$OUT/test_triton.log"
  fi

  BENCH_START=$(date +%s)
  # ---- prediction (fastpanc-predict owner: edit only inside this section) -------------------------------
  # nnUNetv2_predict vs fastpanc exact vs fast on the 16 real test images, ResEnc M, TTA on; appends its
  # markdown table to bench.log and writes benchmarks/results/predict_{exact,fast}-cuda.json (collected below).
  run_step "predict_cuda" 240 "$OUT/bench.log" $PY -P benchmarks/compare_predict.py --cases 16 --device cuda --tta
  # ---- end of prediction section ------------------------------------------------------------------------
  # ---- benchmarks on cuda -------------------------------------------------------------------------------
  # bench_*.py files are named explicitly: pytest collects only test_*.py from a folder. nnU-Net's trainer
  # compiles its network on a GPU by default (minutes here): the throughput row compares both eager
  # (nnUNet_compile=f), as fastpanc does not compile either.
  if [ "$STAGE" != predict ]; then
    run_step "bench_cuda" 240 "$OUT/bench.log" env nnUNet_compile=f "${PYTEST[@]}" -s --benchmark-enable \
      benchmarks/bench_*.py -k cuda
    pytest_tail "$OUT/bench.log"
  fi

  # the cuda results written by this run (older files, e.g. copied back from another machine, are left out)
  $PY - "$OUT/bench_results.json" "$BENCH_START" <<'EOF2' || echo "bench_results: could not collect" | tee -a "$SUMMARY"
import json, sys
from pathlib import Path

since = float(sys.argv[2])
files = [p for p in sorted(Path("benchmarks/results").glob("*-cuda.json")) if p.stat().st_mtime >= since]
rows = [json.loads(p.read_text()) for p in files]
Path(sys.argv[1]).write_text(json.dumps(rows, indent=2) + "\n")
for r in rows:
    print(f"bench {r['name']} on {r['device']}: nnU-Net {r['baseline_s']:.5f} s, fastpanc {r['fastpanc_s']:.5f} s, "
          f"{r['ratio']:.2f}x")
EOF2
  $PY - "$OUT/bench_results.json" >>"$SUMMARY" 2>/dev/null <<'EOF2'
import json, sys
for r in json.load(open(sys.argv[1])):
    print(f"bench {r['name']}: {r['ratio']:.2f}x (nnU-Net {r['baseline_s']:.5f} s, fastpanc {r['fastpanc_s']:.5f} s)")
EOF2
fi

if want train; then
  # ---- ResEnc M on the real labeled cases ---------------------------------------------------------------
  TRAIN_DIR=/tmp/fastpanc-train-real
  left=$((BUDGET_S - ($(date +%s) - START)))
  echo "train_real: $left s of the budget left, TRAIN_MINUTES=${TRAIN_MINUTES:-3}" | tee -a "$SUMMARY"
  # the `fastpanc` command of the build is in $INSTALL/bin; train_real.sh fits its steps into BUDGET_S
  run_step "train_real" "$left" "$OUT/train_real.log" env PATH="$INSTALL/bin:$PATH" PYTHON="$PY" \
    DATA="$DATA_DIR/real" MINUTES="${TRAIN_MINUTES:-3}" BUDGET_S=$((left - 15)) DEVICE=cuda \
    bash benchmarks/train_real.sh "$TRAIN_DIR"
  cp "$TRAIN_DIR/train_real_summary.json" "$TRAIN_DIR/train_real_progress.png" "$OUT/" 2>/dev/null
  cat "$OUT/train_real_summary.json" >>"$SUMMARY" 2>/dev/null
fi

echo "total: $(($(date +%s) - START)) s; $([ "$FAILED" -eq 0 ] && echo PASSED || echo 'SOME STEPS FAILED')" \
  | tee -a "$SUMMARY"
exit "$FAILED"
