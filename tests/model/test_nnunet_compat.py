"""nnU-Net v2 weight compatibility: dynamic_network_architectures' ResidualEncoderUNet -> fastpanc."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from fastpanc.data.plan_rules import resenc_architecture
from fastpanc.model import HeadConfig, MultitaskResEncUNet
from fastpanc.model.nnunet_compat import (
    build_from_nnunet_folder,
    fastpanc_settings,
    load_nnunet_checkpoint,
    read_checkpoint,
)

PLANS = "real/plans/nnUNetResEncUNetMPlans.json"
DATASET_JSON = {
    "channel_names": {"0": "CT"},
    "labels": {"background": 0, "pancreas": 1, "lesion": 2},
    "numTraining": 4,
    "file_ending": ".nii.gz",
}


def tiny_plans(features: list[int] | None = None) -> dict:
    """A 3-stage ResEnc plans dict written by hand (no real data needed)."""
    arch = resenc_architecture(
        features or [4, 8, 8],
        [[1, 3, 3], [3, 3, 3], [3, 3, 3]],
        [[1, 1, 1], [1, 2, 2], [2, 2, 2]],
        [1, 1, 1],
        [1, 1],
    )
    return {"configurations": {"3d_fullres": {"architecture": arch}}}


def _small_plans(plans: dict) -> dict:
    """The real plans cut to 4 stages and narrow features: same code path, anisotropic kernels/strides."""
    plans = copy.deepcopy(plans)
    kw = plans["configurations"]["3d_fullres"]["architecture"]["arch_kwargs"]
    kw.update(
        n_stages=4,
        features_per_stage=[4, 8, 16, 16],
        kernel_sizes=kw["kernel_sizes"][:4],
        strides=kw["strides"][:4],
        n_blocks_per_stage=[1, 2, 2, 2],
        n_conv_per_stage_decoder=[1, 1, 1],
    )
    return plans


def _reference(plans: dict) -> torch.nn.Module:
    from nnunetv2.utilities.get_network_from_plans import get_network_from_plans

    arch = plans["configurations"]["3d_fullres"]["architecture"]
    net = get_network_from_plans(
        arch["network_class_name"],
        arch["arch_kwargs"],
        arch["_kw_requires_import"],
        1,
        3,
        deep_supervision=True,
    )
    torch.manual_seed(1)
    with torch.no_grad():  # nnU-Net zero-inits some norms; random values make every weight matter
        for p in net.parameters():
            p.add_(torch.randn_like(p) * 0.1)
    return net.eval()


def _write_nnunet_folder(root: Path, plans: dict, ref: torch.nn.Module) -> Path:
    (root / "fold_0").mkdir(parents=True)
    (root / "plans.json").write_text(json.dumps(plans))
    (root / "dataset.json").write_text(json.dumps(DATASET_JSON))
    ckpt = {  # the keys nnUNetTrainer.save_checkpoint writes, numpy scalars in logging as it has them
        "network_weights": ref.state_dict(),
        "optimizer_state": {"state": {}, "param_groups": [{"lr": 0.01, "momentum": 0.99, "params": [0]}]},
        "grad_scaler_state": None,
        "logging": {
            "mean_fg_dice": [np.float64(0.4), np.float64(0.5)],
            "ema_fg_dice": [np.float32(0.45)],
            "dice_per_class_or_region": [[np.float64(0.7), np.float64(0.2)]],
            "train_losses": [0.5, 0.4],
            "epoch_start_timestamps": [1.0, 2.0],
        },
        "_best_ema": np.float64(0.45),
        "current_epoch": 2,
        "init_args": {
            "plans": plans,
            "configuration": "3d_fullres",
            "fold": 0,
            "dataset_json": DATASET_JSON,
            "device": torch.device("cpu"),
        },
        "trainer_name": "nnUNetTrainer",
        "inference_allowed_mirroring_axes": (0, 1, 2),
    }
    torch.save(ckpt, root / "fold_0" / "checkpoint_final.pth")
    return root


def _assert_same(ref_out: list[torch.Tensor], ours: list[torch.Tensor]) -> None:
    assert len(ref_out) == len(ours)
    for r, o in zip(ref_out, ours):
        assert r.shape == o.shape
        assert (r - o).abs().max().item() <= 1e-4


@pytest.mark.nnunet
@pytest.mark.real_data
def test_nnunet_model_folder_loads_with_same_logits(shared_data: Path, tmp_path: Path) -> None:
    plans = _small_plans(json.loads((shared_data / PLANS).read_text()))
    ref = _reference(plans)
    folder = _write_nnunet_folder(tmp_path / "model", plans, ref)

    net, plans_read, ds = build_from_nnunet_folder(folder, 0, "checkpoint_final.pth", deep_supervision=True)
    assert plans_read == plans and ds == DATASET_JSON and net.head is None
    x = torch.randn(2, 1, 8, 32, 48)
    with torch.no_grad():
        ref_out = ref(x)
        out = net(x)
    assert out.cls is None
    _assert_same(ref_out, out.seg)  # every deep-supervision output
    net.deep_supervision = False
    with torch.no_grad():
        _assert_same([ref_out[0]], net(x).seg)
    net.fuse_inference("cpu")  # the predictor's fused inference pass: the same logits within 1e-4
    with torch.inference_mode():
        _assert_same([ref_out[0]], net(x).seg)
    net.fuse_inference(None)
    # the state dict is nnU-Net's key for key, so it also loads back into nnU-Net's module
    ref.load_state_dict(net.state_dict(), strict=True)


def _check_plans_topology(plans: dict) -> None:
    ref = _reference(plans)
    net = MultitaskResEncUNet.from_plans(plans, num_subtypes=3).eval()
    assert set(net.segmentation_state_dict()) == set(ref.state_dict())
    missing, unexpected = net.load_state_dict(ref.state_dict(), strict=False)
    assert unexpected == [] and all(k.startswith("head.") for k in missing) and missing
    x = torch.randn(1, 1, 16, 64, 64)  # small input: a 1x2x2 bottleneck for these strides
    with torch.no_grad():
        _assert_same(ref(x), net(x).seg)


@pytest.mark.nnunet
@pytest.mark.real_data
def test_resenc_m_topology_narrow(shared_data: Path) -> None:
    """The real ResEnc M plans (6 stages, blocks 1-3-4-6-6-6, anisotropic kernels and strides) with the
    features divided by 8, so the full structure is checked in a few seconds."""
    plans = json.loads((shared_data / PLANS).read_text())
    kw = plans["configurations"]["3d_fullres"]["architecture"]["arch_kwargs"]
    kw["features_per_stage"] = [f // 8 for f in kw["features_per_stage"]]
    _check_plans_topology(plans)


@pytest.mark.slow
@pytest.mark.nnunet
@pytest.mark.real_data
def test_resenc_m_exact_plans(shared_data: Path) -> None:
    """The exact ResEnc M plans (102 M parameters) at a small input."""
    _check_plans_topology(json.loads((shared_data / PLANS).read_text()))


def test_fastpanc_checkpoint_roundtrip_with_head(tmp_path: Path) -> None:
    plans = tiny_plans()
    torch.manual_seed(0)
    net = MultitaskResEncUNet.from_plans(plans, head=HeadConfig(kind="pool", hidden=8)).eval()
    plans_with_head = {**plans, "fastpanc": fastpanc_settings(net)}
    (tmp_path / "fold_1").mkdir()
    (tmp_path / "plans.json").write_text(json.dumps(plans_with_head))
    (tmp_path / "dataset.json").write_text(json.dumps(DATASET_JSON))
    torch.save(
        {"network_weights": net.state_dict(), "fastpanc": fastpanc_settings(net), "current_epoch": 1},
        tmp_path / "fold_1" / "checkpoint_best.pth",
    )
    loaded, _, _ = build_from_nnunet_folder(tmp_path, 1, "checkpoint_best.pth")
    assert loaded.head_config == net.head_config and not loaded.deep_supervision
    x = torch.randn(1, 1, 8, 16, 16)
    with torch.no_grad():
        a, b = net(x), loaded(x)
    torch.testing.assert_close(a.seg[0], b.seg[0])
    torch.testing.assert_close(a.cls, b.cls)


class _Evil:
    def __reduce__(self):  # what a malicious checkpoint does: call a function on load
        return (Path.touch, (Path(_Evil.marker),))

    marker = ""


def test_checkpoint_needing_arbitrary_unpickling_is_refused(tmp_path: Path) -> None:
    _Evil.marker = str(tmp_path / "executed")
    path = tmp_path / "evil.pth"
    torch.save({"network_weights": {}, "payload": _Evil()}, path)
    with pytest.raises(ValueError, match="arbitrary unpickling"):
        read_checkpoint(path)
    assert not (tmp_path / "executed").exists()


def test_loader_errors(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="does not exist"):
        read_checkpoint(tmp_path / "nope.pth")
    net = MultitaskResEncUNet.from_plans(tiny_plans(), num_subtypes=0)
    other = MultitaskResEncUNet.from_plans(tiny_plans(features=[6, 8, 8]), num_subtypes=0)
    torch.save({"network_weights": other.state_dict()}, tmp_path / "c.pth")
    with pytest.raises(ValueError, match="shape mismatch"):
        load_nnunet_checkpoint(net, tmp_path / "c.pth")
    sd = net.state_dict()
    sd["extra.weight"] = torch.zeros(1)
    torch.save({"network_weights": sd}, tmp_path / "d.pth")
    with pytest.raises(ValueError, match="unexpected"):
        load_nnunet_checkpoint(net, tmp_path / "d.pth")
    torch.save([1, 2], tmp_path / "e.pth")
    with pytest.raises(ValueError, match="expected a checkpoint dict"):
        read_checkpoint(tmp_path / "e.pth")
    with pytest.raises(FileNotFoundError, match="plans.json"):
        build_from_nnunet_folder(tmp_path)
