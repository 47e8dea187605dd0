"""Segmentation metrics on hand-built volumes whose answers are known, and against DeepMind's package."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest

from fastpanc.evaluation.metrics import RegionMetrics, case_metrics, dice, region_metrics, volume_ml
from fastpanc.evaluation.surface import robust_hausdorff, surface_dice, surface_distances, surfel_area_table


def _voxel(shape: tuple[int, int, int], *where: tuple[int, int, int]) -> np.ndarray:
    m = np.zeros(shape, dtype=bool)
    for z, y, x in where:
        m[z, y, x] = True
    return m


def test_dice_by_hand():
    gt = np.zeros((4, 4, 4), bool)
    gt[0, 0, :4] = True  # 4 voxels
    pred = np.zeros_like(gt)
    pred[0, 0, 2:4] = True  # 2 voxels, both inside
    pred[3, 3, 3] = True  # 1 outside
    assert dice(gt, pred) == pytest.approx(2 * 2 / (4 + 3))
    assert dice(gt, gt) == 1.0
    assert dice(gt, np.zeros_like(gt)) == 0.0
    assert dice(np.zeros_like(gt), np.zeros_like(gt)) == 1.0


def test_volume_uses_spacing():
    m = np.zeros((10, 10, 10), bool)
    m[:, :, :] = True  # 1000 voxels of 2 x 0.5 x 0.5 = 0.5 mm^3
    assert volume_ml(m, (2.0, 0.5, 0.5)) == pytest.approx(0.5)


def test_flat_face_surfel_area_is_the_face_area():
    # Code 0b00001111: the lower 4 voxels (one z-plane) inside: a flat face normal to z of area sy * sx.
    table = surfel_area_table((3.0, 0.7, 0.4))
    assert table[0b00001111] == pytest.approx(0.7 * 0.4)
    assert table[0] == 0.0 and table[255] == 0.0


@pytest.mark.parametrize(
    ("axis", "spacing", "hd95", "nsd_2mm"),
    [
        (0, (3.0, 1.0, 0.5), 3.0, 0.5),  # shift by one 3 mm slice: half the corners move beyond 2 mm
        (2, (3.0, 1.0, 0.5), 0.5, 1.0),  # shift by one 0.5 mm column: every corner within 2 mm
        (1, (1.0, 1.0, 1.0), 1.0, 1.0),
    ],
)
def test_single_voxel_shift_by_hand(axis, spacing, hd95, nsd_2mm):
    # A single voxel's surface is its 8 corners, all of one area. Shifting by one voxel along an axis
    # leaves 4 corners shared (distance 0) and moves 4 by the spacing of that axis, in both directions.
    shift = [0, 0, 0]
    shift[axis] = 1
    gt = _voxel((5, 5, 5), (2, 2, 2))
    pred = _voxel((5, 5, 5), (2 + shift[0], 2 + shift[1], 2 + shift[2]))
    sd = surface_distances(gt, pred, spacing)
    assert sd.areas_gt.size == 8 and np.allclose(sd.areas_gt, sd.areas_gt[0])
    assert np.allclose(np.sort(sd.gt_to_pred), [0, 0, 0, 0] + [spacing[axis]] * 4)
    assert robust_hausdorff(sd) == pytest.approx(hd95)
    assert surface_dice(sd, 2.0) == pytest.approx(nsd_2mm)
    assert surface_dice(sd, spacing[axis]) == pytest.approx(1.0)  # tolerance is inclusive


def test_far_apart_boxes_by_hand():
    # Two 2x2x2 boxes 6 voxels apart along z with 2 mm slices: the nearest corners are (6 - 2) * 2 = 8 mm
    # apart, no surface is within 2 mm (NSD 0), and every directed 95th percentile is a far corner.
    gt = np.zeros((12, 4, 4), bool)
    pred = np.zeros_like(gt)
    gt[1:3, 1:3, 1:3] = True
    pred[7:9, 1:3, 1:3] = True
    sd = surface_distances(gt, pred, (2.0, 1.0, 1.0))
    assert sd.gt_to_pred.min() == pytest.approx(8.0)
    assert sd.gt_to_pred.max() == pytest.approx(12.0)  # the far face of gt to the near face of pred
    assert surface_dice(sd, 2.0) == 0.0
    hd = robust_hausdorff(sd)
    assert 8.0 < hd <= 12.0 + 1e-9


def test_identical_masks():
    m = np.zeros((6, 7, 8), bool)
    m[1:5, 2:6, 1:7] = True
    r = region_metrics(m, m, (2.0, 0.8, 0.8))
    assert (r.dice, r.nsd, r.hd95) == (1.0, 1.0, 0.0)
    assert r.volume_gt_ml == r.volume_pred_ml == pytest.approx(4 * 4 * 6 * 2.0 * 0.64 / 1000)


def test_empty_cases():
    full = np.zeros((5, 5, 5), bool)
    full[1:4, 1:4, 1:4] = True
    empty = np.zeros_like(full)
    both = region_metrics(empty, empty, (1.0, 1.0, 1.0))
    assert (both.dice, both.nsd, both.hd95) == (1.0, 1.0, 0.0)
    for gt, pred in ((full, empty), (empty, full)):  # empty prediction, then empty reference
        r = region_metrics(gt, pred, (1.0, 1.0, 1.0))
        assert r.dice == 0.0 and r.nsd == 0.0 and math.isnan(r.hd95)
        assert r.as_dict()["hd95"] is None  # valid JSON: null, not NaN


def test_case_metrics_regions():
    gt = np.zeros((6, 6, 6), np.uint8)
    gt[1:5, 1:5, 1:5] = 1
    gt[2:4, 2:4, 2:4] = 2
    pred = gt.copy()
    pred[pred == 2] = 1  # lesion missed, pancreas perfect
    m = case_metrics(gt, pred, (1.0, 1.0, 1.0))
    assert m["whole"].dice == 1.0
    assert m["lesion"].dice == 0.0 and math.isnan(m["lesion"].hd95)
    assert isinstance(m["whole"], RegionMetrics)
    with pytest.raises(ValueError, match="shape"):
        case_metrics(gt, pred[:5], (1.0, 1.0, 1.0))


def test_bad_spacing_is_a_user_error():
    m = np.ones((2, 2, 2), bool)
    with pytest.raises(ValueError, match="spacing"):
        surface_distances(m, m, (1.0, 0.0, 1.0))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_agrees_with_deepmind_surface_distance(seed):
    import surface_distance as sd_ref  # DeepMind's package, in the test extra
    from scipy import ndimage

    rng = np.random.default_rng(seed)
    spacing = (2.5, 0.8, 0.6)
    gt = ndimage.binary_opening(ndimage.gaussian_filter(rng.random((14, 18, 16)), 2) > 0.5)
    pred = ndimage.binary_dilation(gt, iterations=1) ^ (rng.random(gt.shape) > 0.97)
    assert gt.any() and pred.any()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the package uses deprecated scipy.ndimage namespaces
        ref = sd_ref.compute_surface_distances(gt, pred, spacing)
        ref_nsd = sd_ref.compute_surface_dice_at_tolerance(ref, 2.0)
        ref_hd = sd_ref.compute_robust_hausdorff(ref, 95)
    ours = surface_distances(gt, pred, spacing)
    assert surface_dice(ours, 2.0) == pytest.approx(ref_nsd, abs=1e-12)
    assert robust_hausdorff(ours) == pytest.approx(ref_hd, abs=1e-12)
    assert ours.areas_gt.sum() == pytest.approx(ref["surfel_areas_gt"].sum())


@pytest.mark.real_data
def test_real_mask_against_deepmind(shared_data):
    """A real pancreas mask (2.0 x 0.73 x 0.73 mm) against itself shifted by one slice and dilated in-plane."""
    import surface_distance as sd_ref
    from scipy import ndimage

    from fastpanc.data.io import read_labels

    labels, geom = read_labels(shared_data / "real" / "labeled" / "labelsTr" / "quiz_2_044.nii.gz")
    gt = labels > 0
    pred = ndimage.binary_dilation(np.roll(gt, 1, axis=0), structure=np.ones((1, 3, 3), bool))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = sd_ref.compute_surface_distances(gt, pred, geom.spacing)
        ref_nsd = sd_ref.compute_surface_dice_at_tolerance(ref, 2.0)
        ref_hd = sd_ref.compute_robust_hausdorff(ref, 95)
    m = region_metrics(gt, pred, geom.spacing, 2.0)
    assert m.nsd == pytest.approx(ref_nsd, abs=1e-12) and m.hd95 == pytest.approx(ref_hd, abs=1e-12)
    assert 0.5 < m.dice < 1.0 and 0.5 < m.nsd < 1.0
    assert m.volume_gt_ml == pytest.approx(gt.sum() * 2.0 * geom.spacing[1] * geom.spacing[2] / 1000)
