#!/usr/bin/env bash
# Prepare what benchmarks/gpu_check.sh needs on a lent GPU machine that has no internet and lacks
# some packages (it has Python 3.12, torch, Triton, nvcc, pybind11, scikit-build-core, numpy, scipy,
# scikit-image; not SimpleITK, nnunetv2, pytest and friends). Run it here, with internet:
#
#     bash benchmarks/prepare_gpu_carry.sh
#
# It fills two folders that .gitignore ignores, so they travel only when named explicitly:
#   .whl/    cp312 manylinux x86_64 wheels (no dependencies resolved: each is listed below on purpose)
#            - SimpleITK: reads the real CT images
#            - nnunetv2 and the small pure-Python packages the baseline functions import
#              (acvl-utils, dynamic-network-architectures, batchgenerators, tqdm)
#            - pytest, pytest-benchmark, pytest-timeout, hypothesis and their pure-Python deps
#   .carry/  real/test_images/: the largest real test image (the benchmarks take the largest) and the
#            smallest one, real/plans/: nnU-Net's plans and fingerprint. gpu_check.sh points
#            FASTPANC_SHARED_DATA here.
#
# A remote GPU run carries at most 64 MiB of files in all; the script prints the total and fails above 60 MiB.
# SimpleITK's wheel (53 MB) is most of it, which is why only two images go.
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$PWD
DATA="${FASTPANC_SHARED_DATA:-$REPO/../shared/data}"
PY="${PYTHON:-python3}"

PLATFORM_ARGS=(--only-binary=:all: --no-deps --python-version 3.12 --implementation cp --abi cp312
               --platform manylinux2014_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux_2_28_x86_64)
BINARY=(SimpleITK)
PURE=(
  nnunetv2==2.8.1 acvl-utils dynamic-network-architectures batchgenerators tqdm
  pytest pluggy iniconfig packaging pytest-benchmark py-cpuinfo pytest-timeout
  hypothesis attrs sortedcontainers
)

rm -rf .whl && mkdir -p .whl
echo "== wheels for cp312 manylinux x86_64 into .whl/"
"$PY" -m pip download -q -d .whl "${PLATFORM_ARGS[@]}" "${BINARY[@]}"
for pkg in "${PURE[@]}"; do
  # pure-Python packages: a py3 wheel when PyPI has one, else build one from the sdist (no deps)
  if ! "$PY" -m pip download -q -d .whl --only-binary=:all: --no-deps --python-version 3.12 "$pkg" 2>/dev/null; then
    echo "   $pkg has no wheel on PyPI; building one from its sdist"
    "$PY" -m pip wheel -q --no-deps -w .whl "$pkg"
  fi
done
rm -f .whl/*.tar.gz .whl/*.zip

echo "== real data into .carry/"
if [ ! -d "$DATA/real/test_images" ]; then
  echo "error: real CT data not found at $DATA (set FASTPANC_SHARED_DATA)" >&2
  exit 1
fi
rm -rf .carry && mkdir -p .carry/real/test_images .carry/real/plans
cp "$DATA"/real/plans/*.json .carry/real/plans/
# the largest and the smallest image by voxel count (reads only the headers)
"$PY" - "$DATA/real/test_images" <<'EOF' | while read -r f; do cp "$f" .carry/real/test_images/; done
import sys
from pathlib import Path

import SimpleITK as sitk

sizes = []
for p in sorted(Path(sys.argv[1]).glob("*_0000.nii.gz")):
    r = sitk.ImageFileReader()
    r.SetFileName(str(p))
    r.ReadImageInformation()
    n = 1
    for s in r.GetSize():
        n *= s
    sizes.append((n, str(p)))
sizes.sort()
for p in dict.fromkeys([sizes[-1][1], sizes[0][1]]):
    print(p)
EOF

ls -la .whl .carry/real/test_images
total=$(du -sbc .whl .carry | tail -1 | cut -f1)
echo "== total to carry: $((total / 1024 / 1024)) MiB (.whl + .carry; the working tree comes on top)"
if [ "$total" -gt $((60 * 1024 * 1024)) ]; then
  echo "error: more than 60 MiB; a remote GPU run carries 64 MiB in all" >&2
  exit 1
fi
echo "carry with: carry=[\".whl\", \".carry\"]; then run: OUT=\$OUT bash benchmarks/gpu_check.sh"
