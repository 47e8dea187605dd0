"""The predictor on a CUDA GPU (skipped without one): the same model and image give the labels of the CPU run.

Exact mode runs in float16 autocast on a GPU (as nnUNetPredictor does) and fast mode in bf16, with the CUDA
resampling and aggregation kernels and the Triton normalisation, so the labels may differ from the float32 CPU
run on the few voxels where two classes tie; everything else (shapes, dtypes, geometry) must agree.
"""

from __future__ import annotations

import numpy as np
import pytest

import fastpanc
from fastpanc.inference.config import PredictConfig

pytestmark = pytest.mark.cuda


@pytest.mark.parametrize("mode", ["exact", "fast"])
def test_cuda_labels_match_the_cpu(nnunet_model, builders, cuda_ok, mode):
    image = builders.synthetic_ct((18, 44, 40), seed=11)
    spacing = (2.5, 0.9, 0.8)
    # the same windows on both devices (fast mode's default padding differs: "cover" on a CPU, "patch" on a GPU)
    padding = "patch" if mode == "exact" else "cover"
    cfg = PredictConfig(mode=mode, tta=True, padding=padding, save_probabilities=mode == "exact")
    cpu = fastpanc.Predictor(nnunet_model, device="cpu", config=cfg).predict_array(image, spacing)
    gpu = fastpanc.Predictor(nnunet_model, device="cuda", config=cfg).predict_array(image, spacing)
    assert gpu.labels.shape == image.shape and gpu.labels.dtype == np.uint8
    agree = float((gpu.labels == cpu.labels).mean())
    assert agree >= 0.995, agree
    if mode == "exact":  # float16 on the GPU: a few voxels near a tie move by up to ~0.1
        diff = np.abs(gpu.probabilities - cpu.probabilities)
        assert diff.mean() < 2e-3, diff.mean()
        assert (diff > 2e-2).mean() < 1e-3, (diff > 2e-2).mean()


def test_cuda_subtype_output(fastpanc_model, builders, cuda_ok):
    image = builders.synthetic_ct((12, 28, 28), seed=6)
    cfg = PredictConfig(mode="fast")
    cpu = fastpanc.Predictor(fastpanc_model, device="cpu", config=cfg).predict_array(image, (2.0, 1.0, 1.0))
    gpu = fastpanc.Predictor(fastpanc_model, device="cuda", config=cfg).predict_array(image, (2.0, 1.0, 1.0))
    assert gpu.subtype_probs.shape == (3,)
    np.testing.assert_allclose(gpu.subtype_probs, cpu.subtype_probs, atol=5e-2)
