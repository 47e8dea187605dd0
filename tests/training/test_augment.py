"""Batched augmentation: labels stay labels, shapes, determinism, and each transform does what it says."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch

from fastpanc.training.augment import Augmenter, gaussian_blur, rotation_matrices, sampling_grid
from fastpanc.training.config import AugmentConfig

OFF = AugmentConfig(
    p_rotation=0,
    p_scaling=0,
    p_elastic=0,
    p_mirror_axis=0,
    p_noise=0,
    p_blur=0,
    p_brightness=0,
    p_contrast=0,
    p_lowres=0,
    p_gamma=0,
    p_gamma_inverted=0,
)


def only(**kw) -> Augmenter:
    return Augmenter(dataclasses.replace(OFF, **kw))


def _batch(shape=(12, 16, 20), b=3):
    g = torch.Generator().manual_seed(0)
    image = torch.randn(b, 1, *shape, generator=g)
    zz, yy, xx = torch.meshgrid(
        *[torch.arange(s, dtype=torch.float32) - (s - 1) / 2 for s in shape], indexing="ij"
    )
    r = torch.sqrt(zz**2 + yy**2 + xx**2)
    seg = torch.where(r < 3, 2, torch.where(r < 5, 1, 0)).to(torch.int8).expand(b, 1, *shape).clone()
    return image, seg


def test_all_on_keeps_shapes_labels_and_is_deterministic() -> None:
    aug = Augmenter(
        AugmentConfig(
            p_rotation=1,
            p_scaling=1,
            p_elastic=1,
            p_noise=1,
            p_blur=1,
            p_brightness=1,
            p_contrast=1,
            p_lowres=1,
            p_gamma=1,
            p_gamma_inverted=0.5,
        )
    )
    image, seg = _batch()
    a_img, a_seg = aug(image, seg, seed=11)
    b_img, b_seg = aug(image, seg, seed=11)
    c_img, _ = aug(image, seg, seed=12)
    assert a_img.shape == image.shape and a_seg.shape == seg.shape and a_seg.dtype == seg.dtype
    assert set(a_seg.unique().tolist()) <= {0, 1, 2}
    assert torch.equal(a_img, b_img) and torch.equal(a_seg, b_seg)
    assert not torch.equal(a_img, c_img)
    assert torch.isfinite(a_img).all()
    assert torch.equal(image, _batch()[0])  # inputs are not modified


def test_everything_off_is_identity() -> None:
    image, seg = _batch()
    out_img, out_seg = Augmenter(OFF)(image, seg, 0)
    assert torch.equal(out_img, image) and torch.equal(out_seg, seg)
    out_img, _ = Augmenter(dataclasses.replace(OFF, enabled=False, p_noise=1))(image, seg, 0)
    assert out_img is image


def test_mirroring_flips_image_and_labels_together() -> None:
    image, seg = _batch()
    out_img, out_seg = only(p_mirror_axis=1.0, mirror_axes=(2,))(image, seg, 0)
    assert torch.equal(out_img, image.flip(4)) and torch.equal(out_seg, seg.flip(4))


def test_rotation_by_90_degrees_permutes_voxels() -> None:
    image, seg = _batch(shape=(16, 16, 16))
    out_img, out_seg = only(p_rotation=1.0, rotation_deg=(90, 90))(image, seg, 0)
    for label in (0, 1, 2):
        assert int((out_seg == label).sum()) == int((seg == label).sum())
    torch.testing.assert_close(
        out_img.flatten(1).sort(1).values, image.flatten(1).sort(1).values, atol=1e-4, rtol=0
    )
    assert not torch.allclose(out_img, image)
    # a 90 degree rotation about every axis is a signed permutation of the axes
    m = rotation_matrices(torch.full((1, 3), math.pi / 2))[0]
    assert torch.allclose(m.abs().sum(0), torch.ones(3, dtype=m.dtype), atol=1e-6)


def test_scaling_zooms_out() -> None:
    image, seg = _batch(shape=(24, 24, 24), b=1)
    _, out_seg = only(p_scaling=1.0, scaling=(2.0, 2.0))(image, seg, 0)
    ratio = float((out_seg > 0).sum()) / float((seg > 0).sum())
    assert 0.08 < ratio < 0.2  # reading at twice the distance: the object shrinks by 2 per axis (1/8 volume)


def test_elastic_deforms_and_zero_magnitude_is_identity() -> None:
    image, seg = _batch()
    out_img, out_seg = only(p_elastic=1.0, elastic_magnitude=(0.1, 0.1))(image, seg, 0)
    assert not torch.equal(out_seg, seg) and set(out_seg.unique().tolist()) <= {0, 1, 2}
    same_img, same_seg = only(p_elastic=1.0, elastic_magnitude=(0.0, 0.0))(image, seg, 0)
    assert torch.equal(same_seg, seg)
    torch.testing.assert_close(same_img, image, atol=1e-4, rtol=0)


def test_identity_grid_samples_voxel_centres() -> None:
    grid = sampling_grid(torch.eye(3, dtype=torch.float64)[None], (4, 6, 8))
    x = torch.randn(1, 1, 4, 6, 8)
    torch.testing.assert_close(
        torch.nn.functional.grid_sample(x, grid, align_corners=False), x, atol=1e-5, rtol=0
    )


def test_intensity_transforms() -> None:
    image, seg = _batch()
    out, out_seg = only(p_brightness=1.0, brightness=(1.2, 1.2))(image, seg, 0)
    torch.testing.assert_close(out, image * 1.2)
    assert torch.equal(out_seg, seg)

    out, _ = only(p_noise=1.0, noise_variance=(0.5, 0.5))(image, seg, 0)
    assert abs(float((out - image).std()) - math.sqrt(0.5)) < 0.05

    out, _ = only(p_blur=1.0, blur_sigma=(1.0, 1.0))(image, seg, 0)
    assert float(out.std()) < 0.5 * float(image.std())  # white noise loses most of its variance
    torch.testing.assert_close(out, torch.cat([gaussian_blur(image[i : i + 1], 1.0) for i in range(3)]))

    out, _ = only(p_contrast=1.0, contrast=(0.5, 0.5))(image, seg, 0)
    assert float(out.std()) < 0.6 * float(image.std())
    torch.testing.assert_close(out.mean((1, 2, 3, 4)), image.mean((1, 2, 3, 4)), atol=1e-4, rtol=0)

    for kw in ({"p_gamma": 1.0}, {"p_gamma_inverted": 1.0}):
        out, _ = only(gamma=(1.5, 1.5), **kw)(image, seg, 0)
        assert not torch.allclose(out, image)
        torch.testing.assert_close(out.mean((1, 2, 3, 4)), image.mean((1, 2, 3, 4)), atol=1e-4, rtol=0)
        torch.testing.assert_close(out.std((1, 2, 3, 4)), image.std((1, 2, 3, 4)), atol=1e-4, rtol=0)

    out, _ = only(p_lowres=1.0, lowres_zoom=(0.5, 0.5))(image, seg, 0)
    assert float(out.std()) < float(image.std())  # nearest down, linear up: detail is lost
    out, _ = only(p_lowres=1.0, lowres_zoom=(1.0, 1.0))(image, seg, 0)
    torch.testing.assert_close(out, image)


def test_probabilities_are_per_sample() -> None:
    image, seg = _batch(b=400, shape=(2, 2, 2))
    out, _ = only(p_brightness=0.15, brightness=(2.0, 2.0))(image, seg, 5)
    changed = (out != image).flatten(1).any(1).float().mean()
    assert 0.08 < float(changed) < 0.22


def test_bad_shapes() -> None:
    with pytest.raises(ValueError, match="expected image"):
        Augmenter(OFF)(torch.zeros(1, 1, 4, 4), torch.zeros(1, 1, 4, 4), 0)
