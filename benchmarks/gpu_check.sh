#!/usr/bin/env bash
# Every GPU check of fastpanc in one go, for a lent GPU machine (no internet; Python 3.12, torch, Triton,
# nvcc, pybind11, scikit-build-core, numpy, scipy, scikit-image installed). Run from anywhere:
#
#     OUT=/some/empty/folder bash benchmarks/gpu_check.sh
#
# Before: `bash benchmarks/prepare_gpu_carry.sh` here fills .whl/ (SimpleITK, nnunetv2, pytest, ...)
# and .carry/ (real CT test images and plans); carry both with the working tree.
#
# Steps (each logged, its exit code and time written to $OUT/summary.txt; a failed step does not stop
# the others): environment, wheels, build (CUDA for sm_90, into a folder on PYTHONPATH), `fastpanc info
# --json`, the CUDA tests (`pytest -m cuda`), the Triton tests on the GPU (TRITON_INTERPRET unset), and
# the benchmarks on cuda. Files in $OUT (at most 8): summary.txt, env.log, build.log, info.json,
# test_cuda.log, test_triton.log, bench.log, bench_results.json. Whole run bounded to ~7.5 minutes.
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
echo "fastpanc gpu_check $(date -u +%Y-%m-%dT%H:%M:%SZ) on $(hostname)" >"$SUMMARY"

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

# ---- wheels carried in .whl/ (no internet on the GPU machine) -------------------------------------
INSTALL=/tmp/fastpanc-install  # the build goes here, the carried wheels to /tmp/site
export PYTHONPATH="$INSTALL:/tmp/site${PYTHONPATH:+:$PYTHONPATH}"
if compgen -G ".whl/*.whl" >/dev/null; then
  run_step "wheels" 90 "$ENVLOG" $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir \
    --upgrade --target /tmp/site .whl/*.whl
else
  echo "wheels: none in .whl/ (run benchmarks/prepare_gpu_carry.sh and carry .whl); nnU-Net baselines," \
    "SimpleITK and pytest must then already be installed" | tee -a "$SUMMARY"
fi
if [ -d .carry/real ]; then
  export FASTPANC_SHARED_DATA="$REPO/.carry"
  echo "data: FASTPANC_SHARED_DATA=$FASTPANC_SHARED_DATA ($(ls .carry/real/test_images | wc -l) test images)" \
    | tee -a "$SUMMARY"
elif [ -d ../shared/data/real ]; then
  echo "data: ../shared/data" | tee -a "$SUMMARY"
else
  echo "data: none (.carry/ absent): the real-data benchmarks will be skipped" | tee -a "$SUMMARY"
fi

# ---- build: the CUDA kernels are required here (FASTPANC_CUDA=ON fails loudly without nvcc) --------
rm -rf "$INSTALL" && mkdir -p "$INSTALL"
run_step "build" 270 "$OUT/build.log" env CUDAARCHS="${CUDAARCHS:-90}" FASTPANC_CUDA=ON \
  CMAKE_BUILD_PARALLEL_LEVEL="$(nproc)" $PY -m pip install -v --no-build-isolation --no-deps --no-cache-dir \
  -C build-dir="${FASTPANC_GPU_BUILD_DIR:-/tmp/fastpanc-gpu-build}" --target "$INSTALL" .

# -P: do not put the working directory on sys.path, so `import fastpanc` finds the build, not the sources
CHECK_IMPORT="import fastpanc, sys; f = fastpanc.__file__; print('fastpanc from', f); \
sys.exit(0 if f.startswith('$INSTALL/') else 'fastpanc was imported from ' + f + ', not from the build in $INSTALL')"
run_step "info" 60 "$OUT/build.log" sh -c "$PY -P -c \"$CHECK_IMPORT\" && $PY -P -m fastpanc.cli info --json >'$OUT/info.json'"
cat "$OUT/info.json" 2>/dev/null

# ---- tests ------------------------------------------------------------------------------------------
unset TRITON_INTERPRET
PYTEST=($PY -P -m pytest -q -rs -p no:cacheprovider --continue-on-collection-errors)
# the last line pytest printed ("N passed, M skipped in T s") goes into the summary too
pytest_tail() { echo "    $(grep -E '(passed|failed|skipped|error|no tests ran)' "$1" | tail -1)" >>"$SUMMARY"; }
run_step "test_cuda" 150 "$OUT/test_cuda.log" "${PYTEST[@]}" tests -m cuda
pytest_tail "$OUT/test_cuda.log"
run_step "test_triton" 90 "$OUT/test_triton.log" "${PYTEST[@]}" tests/ops/test_normalize.py -k triton
pytest_tail "$OUT/test_triton.log"

# ---- benchmarks on cuda -------------------------------------------------------------------------------
BENCH_START=$(date +%s)
# bench_*.py files are named explicitly: pytest collects only test_*.py from a folder
run_step "bench_cuda" 180 "$OUT/bench.log" "${PYTEST[@]}" -s --benchmark-enable benchmarks/bench_*.py -k cuda
pytest_tail "$OUT/bench.log"

# ---- prediction (fastpanc-predict owner: edit only inside this section) -----------------------------
# nnUNetv2_predict vs fastpanc exact vs fast on the 16 real test images, ResEnc M, TTA on; appends its
# markdown table to bench.log and writes benchmarks/results/predict_{exact,fast}-cuda.json (collected below).
run_step "predict_cuda" 200 "$OUT/bench.log" $PY -P benchmarks/compare_predict.py --cases 16 --device cuda --tta
# ---- end of prediction section ----------------------------------------------------------------------
# the cuda results written by this run (older files, e.g. copied back from another machine, are left out)
$PY - "$OUT/bench_results.json" "$BENCH_START" <<'EOF' || echo "bench_results: could not collect" | tee -a "$SUMMARY"
import json, sys
from pathlib import Path

since = float(sys.argv[2])
files = [p for p in sorted(Path("benchmarks/results").glob("*-cuda.json")) if p.stat().st_mtime >= since]
rows = [json.loads(p.read_text()) for p in files]
Path(sys.argv[1]).write_text(json.dumps(rows, indent=2) + "\n")
for r in rows:
    print(f"bench {r['name']} on {r['device']}: nnU-Net {r['baseline_s']:.5f} s, fastpanc {r['fastpanc_s']:.5f} s, "
          f"{r['ratio']:.2f}x")
EOF
$PY - "$OUT/bench_results.json" >>"$SUMMARY" 2>/dev/null <<'EOF'
import json, sys
for r in json.load(open(sys.argv[1])):
    print(f"bench {r['name']}: {r['ratio']:.2f}x (nnU-Net {r['baseline_s']:.5f} s, fastpanc {r['fastpanc_s']:.5f} s)")
EOF

echo "total: $(($(date +%s) - START)) s; $([ "$FAILED" -eq 0 ] && echo PASSED || echo 'SOME STEPS FAILED')" \
  | tee -a "$SUMMARY"
exit "$FAILED"
