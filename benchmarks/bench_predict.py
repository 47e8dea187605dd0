"""End-to-end prediction on the real test images: ``nnUNetv2_predict`` vs ``fastpanc-predict`` exact and fast,
in one run (see compare_predict.py, which does the work and prints the markdown table).

ResEnc M on CPU takes over a minute per window on 2 shared cores, so the CPU row uses the first
``FASTPANC_BENCH_PREDICT_CASES`` images (default 3) without TTA; the cuda row uses all 16 with TTA.

    pytest benchmarks/bench_predict.py --benchmark-enable -s
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent))
import compare_predict  # noqa: E402

DEVICES = [
    "cpu",
    # id "gpu", not "cuda": gpu_check.sh selects `-k cuda` for the short benchmarks and runs this long one
    # as its own step (compare_predict.py, in its "prediction" section)
    pytest.param(
        "cuda", id="gpu", marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA GPU")
    ),
]


@pytest.mark.parametrize("device", DEVICES)
def test_predict_vs_nnunet(benchmark, shared_data, tmp_path, device):
    cpu = device == "cpu"
    n = int(os.environ.get("FASTPANC_BENCH_PREDICT_CASES", "3" if cpu else "16"))
    argv = ["--cases", str(n), "--device", device, "--work", str(tmp_path)] + ([] if cpu else ["--tta"])
    result = benchmark.pedantic(compare_predict.main, args=(argv,), rounds=1, iterations=1)
    assert result == 0
