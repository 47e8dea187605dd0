"""Exact mode against nnU-Net v2's own predictor on the same model folder (tiny random-init ResEnc U-Net)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from fastpanc.inference import PredictConfig, Predictor

pytestmark = pytest.mark.nnunet


def _nnunet_predictor(model_dir, tta: bool):
    from nnunetv2.inference.predict_from_raw_data import nnUNetPredictor

    p = nnUNetPredictor(
        tile_step_size=0.5,
        use_gaussian=True,
        use_mirroring=tta,
        perform_everything_on_device=False,
        device=torch.device("cpu"),
        verbose=False,
        verbose_preprocessing=False,
        allow_tqdm=False,
    )
    p.initialize_from_trained_model_folder(
        str(model_dir), use_folds=(0,), checkpoint_name="checkpoint_final.pth"
    )
    return p


def _dice(a: np.ndarray, b: np.ndarray, label: int) -> float:
    x, y = a == label, b == label
    denom = x.sum() + y.sum()
    return 1.0 if denom == 0 else 2.0 * (x & y).sum() / denom


def _assert_agrees(labels: np.ndarray, ref: np.ndarray, shape: tuple[int, ...], what: str) -> None:
    """The issue's bar: labels equal to nnU-Net's on >= 99.9% of voxels, per-label Dice >= 0.995."""
    assert labels.shape == ref.shape == shape
    assert len(np.unique(ref)) > 1, "the reference predicts a single label: the comparison would be vacuous"
    agree = float((labels == ref).mean())
    assert agree >= 0.999, f"{what}: labels agree on {agree:.5f} of voxels"
    for label in (1, 2):
        assert _dice(labels, ref, label) >= 0.995, f"{what}: label {label}"


@pytest.mark.parametrize(
    ("shape", "spacing", "tta"),
    [
        ((20, 40, 36), (2.5, 0.9, 0.8), False),  # smaller than the patch after resampling: padded
        ((24, 40, 52), (1.5, 0.8, 0.9), False),  # several windows along z and x
        ((12, 30, 28), (2.5, 0.9, 0.8), True),  # one padded window, with all 8 mirrored passes
        ((8, 48, 40), (4.0, 1.0, 1.0), False),  # anisotropic: in-plane resize, nearest along z
    ],
)
def test_exact_mode_matches_nnunet(nnunet_model, builders, shape, spacing, tta):
    torch.set_num_threads(2)
    image = builders.synthetic_ct(shape, seed=3)
    image[:, :2] = 0.0  # a zero border the nonzero crop removes
    ref = _nnunet_predictor(nnunet_model, tta).predict_single_npy_array(
        image[None], {"spacing": list(spacing)}
    )
    ours = Predictor(nnunet_model, folds=[0], device="cpu", config=PredictConfig(mode="exact", tta=tta))
    _assert_agrees(ours.predict_array(image, spacing).labels, ref, image.shape, "synthetic")


# the three smallest of the 16 real test images (benchmarks/compare_predict.py runs all 16 with ResEnc M)
REAL_CASES = ("quiz_512", "quiz_157", "quiz_045")


@pytest.mark.real_data
@pytest.mark.parametrize("case", REAL_CASES)
def test_exact_mode_matches_nnunet_on_real_test_images(nnunet_model, shared_data, case):
    """The real CT, read as nnU-Net reads it (SimpleITK, float32), through both predictors with the tiny
    random-init model: the same masks on >= 99.9% of voxels, per-label Dice >= 0.995."""
    import SimpleITK as sitk

    torch.set_num_threads(2)
    path = shared_data / "real" / "test_images" / f"{case}_0000.nii.gz"
    if not path.is_file():
        pytest.skip(f"{path} not found")
    img = sitk.ReadImage(str(path), sitk.sitkFloat32)
    image = sitk.GetArrayFromImage(img)
    spacing = tuple(float(s) for s in img.GetSpacing()[::-1])
    ref = _nnunet_predictor(nnunet_model, tta=False).predict_single_npy_array(
        image[None], {"spacing": list(spacing)}
    )
    ours = Predictor(nnunet_model, folds=[0], device="cpu", config=PredictConfig(mode="exact", tta=False))
    _assert_agrees(ours.predict_array(image, spacing).labels, ref, image.shape, case)
