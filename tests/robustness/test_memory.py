"""Peak memory of predicting a large CT (512 x 512 x 400 float32, 400 MiB) on the CPU, in a subprocess.

A tiny model and a coarse target spacing keep the network part short; what is measured is what the pipeline
holds around it: the image as read, the crop, its normalised copy, the resampled input, the logits resampled
back to the full grid (``mode exact``) or the argmax resized with nearest neighbours (``mode fast``), and
the mask. The peak RSS of the predicting process is printed and must stay under 8 GiB.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

REPO = Path(__file__).resolve().parents[2]
SHAPE = (400, 512, 512)  # (Z, Y, X)
SPACING = (1.0, 0.8, 0.8)  # (z, y, x) mm
LIMIT_GIB = 8.0

_MEASURE = """
import resource, subprocess, sys
rc = subprocess.run(sys.argv[1:]).returncode
print("PEAK_RSS_KIB", resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, "RC", rc)
"""


def _large_ct(path: Path) -> None:
    """A body-shaped cylinder of soft tissue with noise, zero outside (so the nonzero crop has work to do)."""
    z, y, x = SHAPE
    yy, xx = np.ogrid[:y, :x]
    body = ((yy - y / 2) / (0.42 * y)) ** 2 + ((xx - x / 2) / (0.46 * x)) ** 2 < 1.0
    rng = np.random.default_rng(0)
    slab = np.where(body, 40.0 + 30.0 * rng.standard_normal((y, x)), 0.0).astype(np.float32)
    vol = np.empty(SHAPE, np.float32)
    for k in range(z):  # slice by slice: no float64 temporaries of the whole volume
        vol[k] = np.roll(slab, k % 7, axis=1)
    vol[150:250, 200:300, 220:300] += 100.0
    img = sitk.GetImageFromArray(vol, isVector=False)
    del vol
    img.SetSpacing(tuple(reversed(SPACING)))
    sitk.WriteImage(img, str(path), useCompression=False)


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["exact", "fast"])
def test_predicting_a_512x512x400_volume_stays_under_8_gib(tmp_path: Path, inf, mode: str) -> None:
    model = inf.write_fastpanc_folder(tmp_path / "model", inf.tiny_plans(spacing=(8.0, 8.0, 8.0)), folds=(0,))
    inputs, out = tmp_path / "in", tmp_path / "out"
    inputs.mkdir()
    _large_ct(inputs / "large_0000.mha")
    cmd = [sys.executable, "-c", _MEASURE, sys.executable, "-m", "fastpanc.cli", "predict", "-i", str(inputs),
           "-o", str(out), "-m", str(model), "--device", "cpu", "--mode", mode, "--no-tta"]  # fmt: skip
    done = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=1800)
    line = next(ln for ln in done.stdout.splitlines() if ln.startswith("PEAK_RSS_KIB"))
    peak_gib = int(line.split()[1]) / 2**20
    assert line.endswith("RC 0"), done.stdout + done.stderr
    print(f"\npeak RSS predicting {SHAPE} float32 ({mode}): {peak_gib:.2f} GiB")
    mask = sitk.ReadImage(str(out / "large.mha"))
    assert mask.GetSize() == tuple(reversed(SHAPE))
    assert peak_gib < LIMIT_GIB
