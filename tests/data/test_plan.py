"""The ResEnc M planner: equal to nnU-Net's plans for the real fingerprint, readable by nnunetv2."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from fastpanc.cli import main
from fastpanc.data.plan import PlanSettings, plan_from_fingerprint
from fastpanc.data.topology import pad_shape, pool_and_conv_props, resenc_feature_map_size


def _fingerprint(spacings, shapes, rel=1.0):
    return {
        "spacings": spacings,
        "shapes_after_crop": shapes,
        "foreground_intensity_properties_per_channel": {
            "0": {
                "max": 300.0,
                "mean": 80.0,
                "median": 82.0,
                "min": -100.0,
                "percentile_00_5": -50.0,
                "percentile_99_5": 200.0,
                "std": 40.0,
            }
        },
        "median_relative_size_after_cropping": rel,
    }


def _diff(a, b, path=""):
    if isinstance(a, dict) and isinstance(b, dict):
        out = [f"{path}/{k}: only in one" for k in set(a) ^ set(b)]
        for k in set(a) & set(b):
            out += _diff(a[k], b[k], f"{path}/{k}")
        return out
    return [] if a == b else [f"{path}: {a!r} != {b!r}"]


def test_real_fingerprint_gives_nnunet_resenc_m_plans(shared_data: Path):
    folder = shared_data / "real" / "plans"
    fp = json.loads((folder / "dataset_fingerprint.json").read_text())
    ref = json.loads((folder / "nnUNetResEncUNetMPlans.json").read_text())
    plans = json.loads(json.dumps(plan_from_fingerprint(fp, dataset_name=ref["dataset_name"])))
    full = plans["configurations"]["3d_fullres"]
    assert full["patch_size"] == [64, 128, 192]
    assert full["batch_size"] == 2
    assert full["spacing"] == [2.0, 0.732421875, 0.732421875]
    assert plans.pop("fastpanc") == {
        "num_subtypes": 3,
        "head": "attention",
        "head_hidden": 128,
        "subtype_names": ["0", "1", "2"],
    }
    assert _diff(plans, ref) == []
    assert list(plans["configurations"]) == list(ref["configurations"])


def test_smaller_memory_target_shrinks_the_patch(shared_data: Path):
    fp = json.loads((shared_data / "real" / "plans" / "dataset_fingerprint.json").read_text())
    small = plan_from_fingerprint(fp, settings=PlanSettings(gpu_memory_gb=1.0))["configurations"][
        "3d_fullres"
    ]
    assert 0 < small["patch_size"][0] * small["patch_size"][1] * small["patch_size"][2] < 64 * 128 * 192
    strides = small["architecture"]["arch_kwargs"]["strides"]
    for axis, size in enumerate(small["patch_size"]):
        total = 1
        for s in strides:
            total *= s[axis]
        assert size % total == 0


def test_anisotropic_dataset_gets_lowres_free_aniso_plan():
    # thick slices and few of them: the target z spacing becomes the 10th percentile, kernels start 1x3x3
    spacings = [[5.0, 0.8, 0.8]] * 8 + [[4.0, 0.8, 0.8]] * 2
    shapes = [[30, 400, 400]] * 10
    plans = plan_from_fingerprint(_fingerprint(spacings, shapes))
    full = plans["configurations"]["3d_fullres"]
    assert full["spacing"][0] == 4.0
    assert full["architecture"]["arch_kwargs"]["kernel_sizes"][0] == [1, 3, 3]
    assert plans["transpose_forward"] == [0, 1, 2]


def test_target_spacing_overrides_the_planners(tmp_path: Path, capsys):
    spacings = [[5.0, 0.8, 0.8]] * 8 + [[4.0, 0.8, 0.8]] * 2
    shapes = [[30, 400, 400]] * 10
    plans = plan_from_fingerprint(
        _fingerprint(spacings, shapes), settings=PlanSettings(target_spacing=(3.0, 1.0, 1.0))
    )
    full = plans["configurations"]["3d_fullres"]
    assert full["spacing"] == [3.0, 1.0, 1.0]
    # the image sizes follow the new grid: 30 x 400 x 400 voxels at 5 x 0.8 x 0.8 mm are 50 x 320 x 320 at 3 x 1 x 1
    assert full["median_image_size_in_voxels"] == pytest.approx([50, 320, 320], abs=1)
    fp = tmp_path / "fingerprint.json"
    fp.write_text(json.dumps(_fingerprint(spacings, shapes)))
    out = tmp_path / "plans.json"
    assert (
        main(["plan", "--from-fingerprint", str(fp), "-o", str(out), "--target-spacing", "2", "1", "1"]) == 0
    )
    assert json.loads(out.read_text())["configurations"]["3d_fullres"]["spacing"] == [2.0, 1.0, 1.0]
    with pytest.raises(ValueError, match="target_spacing must be three positive"):
        PlanSettings(target_spacing=(2.0, 0.0, 1.0))


def test_large_images_add_a_lowres_cascade():
    spacings = [[1.0, 1.0, 1.0]] * 4
    shapes = [[400, 400, 400]] * 4
    plans = plan_from_fingerprint(_fingerprint(spacings, shapes))
    cfg = plans["configurations"]
    assert set(cfg) == {"2d", "3d_lowres", "3d_fullres", "3d_cascade_fullres"}
    assert cfg["3d_lowres"]["next_stage"] == "3d_cascade_fullres"
    assert cfg["3d_fullres"]["batch_dice"] is True and cfg["3d_lowres"]["batch_dice"] is False
    assert cfg["3d_lowres"]["spacing"][0] > 1.0


def test_transpose_puts_the_coarsest_axis_first():
    spacings = [[0.8, 0.8, 4.0]] * 3
    shapes = [[300, 300, 40]] * 3
    plans = plan_from_fingerprint(_fingerprint(spacings, shapes))
    assert plans["transpose_forward"] == [2, 0, 1]
    assert plans["transpose_backward"] == [1, 2, 0]
    assert plans["configurations"]["3d_fullres"]["spacing"][0] == 4.0


def test_mask_for_norm_follows_nnunet_rule():
    fp = _fingerprint([[1.0, 1.0, 1.0]] * 2, [[64, 64, 64]] * 2, rel=0.5)
    dj = {"channel_names": {"0": "CT", "1": "T2"}, "labels": {"background": 0, "a": 1}, "numTraining": 2}
    fp["foreground_intensity_properties_per_channel"]["1"] = fp[
        "foreground_intensity_properties_per_channel"
    ]["0"]
    cfg = plan_from_fingerprint(fp, dj)["configurations"]["3d_fullres"]
    assert cfg["normalization_schemes"] == ["CTNormalization", "ZScoreNormalization"]
    assert cfg["use_mask_for_norm"] == [False, True]


def test_pad_shape_truncates_fractional_shapes_as_nnunet():
    assert pad_shape([180.5, 117.0], [64, 32]) == (192, 128)
    assert pad_shape([128.5], [64]) == (192,)
    assert pad_shape([128], [64]) == (128,)


@pytest.mark.nnunet
@pytest.mark.parametrize(
    "spacing,patch",
    [
        ((2.0, 0.73, 0.73), (64, 128, 192)),
        ((3.0, 0.7, 0.7), (40, 150, 190)),
        ((1.0, 1.0, 1.0), (96, 96, 96)),
        ((0.73, 0.73), (117, 180.5)),
        ((5.0, 1.0, 1.0), (20, 256, 256)),
    ],
)
def test_topology_and_estimate_match_nnunet(spacing, patch):
    from dynamic_network_architectures.architectures.unet import ResidualEncoderUNet
    from nnunetv2.experiment_planning.experiment_planners.network_topology import get_pool_and_conv_props
    from torch import nn

    t = pool_and_conv_props(spacing, patch)
    r = get_pool_and_conv_props(spacing, patch, 4, 999999)
    assert (list(t.num_pool_per_axis), t.strides, t.kernel_sizes) == (list(r[0]), r[1], r[2])
    assert t.patch_size == tuple(int(x) for x in r[3])
    n = t.n_stages
    feats = [min(320, 32 * 2**i) for i in range(n)]
    blocks = (1, 3, 4, 6, 6, 6, 6, 6)[:n]
    conv = nn.Conv3d if len(spacing) == 3 else nn.Conv2d
    for ds in (False, True):
        net = ResidualEncoderUNet(
            1, n, feats, conv, t.kernel_sizes, t.strides, blocks, 3, [1] * (n - 1), True, deep_supervision=ds
        )
        ours = resenc_feature_map_size(t.patch_size, 1, 3, feats, t.strides, blocks, [1] * (n - 1), ds)
        assert ours == int(net.compute_conv_feature_map_size(t.patch_size))


@pytest.mark.nnunet
def test_nnunet_plans_manager_reads_fastpanc_plans(shared_data: Path, tmp_path: Path):
    from nnunetv2.utilities.plans_handling.plans_handler import PlansManager

    out = tmp_path / "plans.json"
    fp = shared_data / "real" / "plans" / "dataset_fingerprint.json"
    assert main(["plan", "--from-fingerprint", str(fp), "-o", str(out)]) == 0
    pm = PlansManager(str(out))
    cm = pm.get_configuration("3d_fullres")
    assert cm.patch_size == [64, 128, 192]
    assert cm.batch_size == 2
    assert pm.transpose_forward == [0, 1, 2]
    net = cm.network_arch_init_kwargs
    assert net["n_blocks_per_stage"] == [1, 3, 4, 6, 6, 6]
    assert json.loads(out.read_text())["fastpanc"]["head"] == "attention"


def test_cli_needs_dataset_or_fingerprint(tmp_path: Path, capsys):
    assert main(["plan"]) == 2
    assert "--from-fingerprint" in capsys.readouterr().err
    assert (
        main(["plan", "--from-fingerprint", str(tmp_path / "nope.json"), "-o", str(tmp_path / "p.json")]) == 2
    )
    assert "nope.json" in capsys.readouterr().err


@pytest.mark.nnunet
@pytest.mark.slow
@pytest.mark.parametrize(
    "spacings,shapes",
    [
        ([[5.0, 0.8, 0.8]] * 8 + [[4.0, 0.8, 0.8]] * 2, [[30, 400, 400]] * 10),  # anisotropic
        pytest.param(
            [[1.0, 1.0, 1.0]] * 4, [[400, 400, 400]] * 4, marks=pytest.mark.slow
        ),  # 3d_lowres cascade
        pytest.param(
            [[0.8, 0.8, 4.0], [0.7, 0.7, 3.0], [0.9, 0.9, 2.5]],
            [[300, 300, 40], [250, 260, 50], [280, 300, 60]],
        ),  # transposed
    ],
)
def test_synthetic_fingerprints_give_nnunet_plans(spacings, shapes, tmp_path: Path, monkeypatch):
    import numpy as np
    import SimpleITK as sitk
    from nnunetv2.experiment_planning.experiment_planners import default_experiment_planner as dep
    from nnunetv2.experiment_planning.experiment_planners.residual_unets.residual_encoder_unet_planners import (
        nnUNetPlannerResEncM,
    )

    name = "Dataset998_PlanCheck"
    raw, pre = tmp_path / "raw" / name, tmp_path / "pre" / name
    (raw / "imagesTr").mkdir(parents=True)
    pre.mkdir(parents=True)
    sitk.WriteImage(
        sitk.GetImageFromArray(np.zeros((4, 4, 4), np.int16)), str(raw / "imagesTr" / "a_0000.nii.gz")
    )
    dj = {
        "channel_names": {"0": "CT"},
        "labels": {"background": 0, "pancreas": 1, "lesion": 2},
        "numTraining": len(spacings),
        "file_ending": ".nii.gz",
    }
    (raw / "dataset.json").write_text(json.dumps(dj))
    fp = _fingerprint(spacings, shapes)
    (pre / "dataset_fingerprint.json").write_text(json.dumps(fp))
    monkeypatch.setattr(dep, "nnUNet_raw", str(tmp_path / "raw"))
    monkeypatch.setattr(dep, "nnUNet_preprocessed", str(tmp_path / "pre"))
    nnUNetPlannerResEncM(name).plan_experiment()
    ref = json.loads((pre / "nnUNetResEncUNetMPlans.json").read_text())
    ours = json.loads(json.dumps(plan_from_fingerprint(fp, dj, dataset_name=name)))
    ours.pop("fastpanc")
    assert _diff(ours, ref) == []
