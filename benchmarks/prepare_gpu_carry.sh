#!/usr/bin/env bash
# Prepare what benchmarks/gpu_check.sh needs on a GPU machine that has no internet and lacks some packages
# (it has Python 3.12, torch, Triton, nvcc, pybind11, scikit-build-core, numpy, scipy, scikit-image, pytest,
# pytest-benchmark, hypothesis, pandas, matplotlib; not SimpleITK, nibabel, blosc2, nnunetv2 and its small
# dependencies). Run it here, with internet:
#
#     bash benchmarks/prepare_gpu_carry.sh
#
# A remote run carries at most 64 MiB (working tree included). SimpleITK alone is a 53 MB wheel, so everything
# travels xz-compressed (SimpleITK's library shrinks from 53 MB to 28 MB) and gpu_check.sh unpacks it there. It fills
# .carry/ (ignored by git, so it travels only when named in `carry`):
#   site.tar.xz         the packages below installed for cp312 manylinux x86_64 (no dependencies resolved:
#                       each one is listed on purpose; gpu_check.sh unpacks it into /tmp/site)
#   test_images.tar.xz  the 16 real test images as uncompressed .nii (xz beats gzip on float32 CT: 28 MB
#                       instead of 39); gpu_check.sh gzips them back to .nii.gz (same voxels and header)
#   labeled.tar.xz      the first LABELED_CASES (default 40) of the 59 real labeled cases, the same way
#                       (all 59 would take 45 MB and do not fit beside SimpleITK), for the real-data training
#   plans/              nnU-Net's plans, fingerprint and splits of the real dataset
# Carry [".carry/site.tar.xz", ".carry/test_images.tar.xz", ".carry/plans"] for `gpu_check.sh checks` and
# [".carry/site.tar.xz", ".carry/labeled.tar.xz", ".carry/plans"] for `gpu_check.sh train`.
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$PWD
DATA="${FASTPANC_SHARED_DATA:-$REPO/../shared/data}"
PY="${PYTHON:-python3}"
LABELED_CASES="${LABELED_CASES:-40}"
PARTS="${PARTS:-site test_images labeled}"  # rebuild only some, e.g. PARTS=labeled
part() { [[ " $PARTS " == *" $1 "* ]]; }
LIMIT_MIB=63  # what one call may carry (64 MiB) less a margin; the working tree comes on top of each set

if [ ! -d "$DATA/real/test_images" ]; then
  echo "error: real CT data not found at $DATA (set FASTPANC_SHARED_DATA)" >&2
  exit 1
fi
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
mkdir -p .carry/plans

# ---- packages -------------------------------------------------------------------------------------------
if part site; then
  PLATFORM=(--python-version 3.12 --implementation cp --platform manylinux2014_x86_64
            --platform manylinux_2_17_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_28_x86_64)
  # compiled: SimpleITK reads the CT; the rest are imported by nnU-Net's predictor and trainer
  BINARY=(SimpleITK nibabel blosc2 ndindex numexpr connected-components-3d)
  # pure Python: nnU-Net v2 (the baseline) and what its predictor, trainer and functions import
  PURE=(nnunetv2==2.8.1 acvl-utils dynamic-network-architectures batchgenerators batchgeneratorsv2)
  echo "== packages for cp312 manylinux x86_64"
  "$PY" -m pip download -q -d "$WORK/whl" --only-binary=:all: --no-deps "${PLATFORM[@]}" "${BINARY[@]}"
  for pkg in "${PURE[@]}"; do
    # a py3 wheel when PyPI has one, else one built from the sdist (acvl-utils has no wheel)
    if ! "$PY" -m pip download -q -d "$WORK/whl" --only-binary=:all: --no-deps --python-version 3.12 "$pkg" 2>/dev/null; then
      echo "   $pkg has no wheel on PyPI; building one from its sdist"
      "$PY" -m pip wheel -q --no-deps -w "$WORK/whl" "$pkg"
    fi
  done
  "$PY" -m pip install -q --no-deps --no-compile --only-binary=:all: "${PLATFORM[@]}" --target "$WORK/site" \
    "$WORK"/whl/*.whl
  rm -rf "$WORK/site/bin"
  # what a run never loads: test suites, byte code; and the extensions' debug symbols (connected-components-3d's
  # library is 19 MB with them, 2.4 MB without; --strip-unneeded keeps what the dynamic linker needs)
  find "$WORK/site" -depth -type d \( -name tests -o -name __pycache__ \) -exec rm -rf {} +
  find "$WORK/site" -type f -name '*.so*' -exec strip --strip-unneeded {} +
  du -sh "$WORK/site"
  echo "== site.tar.xz (xz -9e: about 2-3 minutes)"
  tar -C "$WORK/site" -cf - . | xz -9e -T2 >.carry/site.tar.xz
fi

# ---- real data --------------------------------------------------------------------------------------------
cp "$DATA"/real/plans/*.json .carry/plans/
pack() {  # pack NAME FILE...: the .nii.gz files, uncompressed, into .carry/NAME.tar.xz (paths kept from real/)
  local name=$1
  shift
  rm -rf "$WORK/pack" && mkdir -p "$WORK/pack"
  for f in "$@"; do
    rel=${f#"$DATA/real/"}
    mkdir -p "$WORK/pack/$(dirname "$rel")"
    gzip -dc "$f" >"$WORK/pack/${rel%.gz}"
  done
  tar -C "$WORK/pack" -cf - . | xz -6 -T2 >".carry/$name.tar.xz"
}
if part test_images; then
  echo "== test_images.tar.xz"
  pack test_images "$DATA"/real/test_images/*_0000.nii.gz
fi
if part labeled; then
  echo "== labeled.tar.xz ($LABELED_CASES cases)"
  mapfile -t CASES < <(find "$DATA/real/labeled/labelsTr" -name '*.nii.gz' -printf '%f\n' | sort | head -n "$LABELED_CASES")
  FILES=()
  for c in "${CASES[@]}"; do
    FILES+=("$DATA/real/labeled/labelsTr/$c" "$DATA/real/labeled/imagesTr/${c%.nii.gz}_0000.nii.gz")
  done
  pack labeled "${FILES[@]}"
fi

ls -la .carry
tree_b=$(git ls-files -z -co --exclude-standard | du -cb --files0-from=- | tail -1 | cut -f1)
for set in "test_images" "labeled"; do
  total=$(du -cb .carry/site.tar.xz ".carry/$set.tar.xz" .carry/plans | tail -1 | cut -f1)
  total=$((total + tree_b))
  echo "== carry set with $set.tar.xz: $((total / 1024 / 1024)) MiB with the working tree"
  if [ "$total" -gt $((LIMIT_MIB * 1024 * 1024)) ]; then
    echo "error: more than $LIMIT_MIB MiB; a remote GPU run carries 64 MiB in all" >&2
    exit 1
  fi
done
