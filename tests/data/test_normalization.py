"""Normalisation schemes against nnU-Net v2's classes."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from fastpanc.data.normalization import normalize_channel

PROPS = {
    "mean": 70.0,
    "std": 40.0,
    "percentile_00_5": -50.0,
    "percentile_99_5": 180.0,
    "median": 72.0,
    "min": -300.0,
    "max": 900.0,
}


@pytest.mark.nnunet
@pytest.mark.parametrize(
    "scheme",
    [
        "CTNormalization",
        "ZScoreNormalization",
        "NoNormalization",
        "RescaleTo01Normalization",
        "RGBTo01Normalization",
    ],
)
@pytest.mark.parametrize("use_mask", [False, True])
def test_schemes_equal_nnunet(scheme: str, use_mask: bool):
    from nnunetv2.preprocessing.normalization import default_normalization_schemes as S

    rng = np.random.default_rng(0)
    img = rng.normal(60, 80, size=(6, 7, 8)).astype(np.float32)
    if scheme == "RGBTo01Normalization":
        img = rng.integers(0, 256, size=(6, 7, 8)).astype(np.float32)
    seg = np.zeros((6, 7, 8), np.int8)
    seg[:, :2] = -1
    ref = getattr(S, scheme)(use_mask_for_norm=use_mask, intensityproperties=PROPS).run(img.copy(), seg)
    ours = normalize_channel(torch.from_numpy(img), scheme, PROPS, use_mask, torch.from_numpy(seg >= 0))
    assert ours.dtype == torch.float32
    np.testing.assert_allclose(ours.numpy(), ref, rtol=1e-5, atol=1e-5)


def test_unknown_scheme_and_missing_props_are_named():
    x = torch.zeros(2, 2, 2)
    with pytest.raises(ValueError, match="MyNorm"):
        normalize_channel(x, "MyNorm", PROPS, False, None)
    with pytest.raises(ValueError, match="intensity properties"):
        normalize_channel(x, "CTNormalization", None, False, None)
    with pytest.raises(ValueError, match="0, 255"):
        normalize_channel(x - 1, "RGBTo01Normalization", None, False, None)
