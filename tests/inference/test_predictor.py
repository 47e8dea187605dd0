"""``fastpanc.Predictor`` from arrays: modes, folds, ROI, probabilities; model-folder and input discovery."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import fastpanc
from fastpanc.inference import PredictConfig
from fastpanc.inference.inputs import find_cases, shard
from fastpanc.inference.model_folder import load_model_folder


def test_predictor_is_exported():
    from fastpanc.inference.predictor import Predictor

    assert fastpanc.Predictor is Predictor


def test_fast_mode_settings():
    c = PredictConfig(mode="fast").resolved()
    assert (c.tta, c.step, c.autocast, c.padding, c.export) == (
        False,
        0.75,
        True,
        "cover",
        "argmax_nearest",
    )
    e = PredictConfig(mode="exact").resolved()
    assert (e.tta, e.step, e.autocast, e.padding, e.export) == (True, 0.5, False, "patch", "resample_logits")
    assert PredictConfig(mode="fast", tta=True).resolved().tta is True
    # on a GPU, fast mode keeps every window patch-sized (cuDNN tunes its algorithms once per shape)
    assert PredictConfig(mode="fast").resolved("cuda").padding == "patch"
    assert PredictConfig(mode="fast", padding="cover").resolved("cuda").padding == "cover"
    assert PredictConfig(mode="exact").resolved("cuda").padding == "patch"
    with pytest.raises(ValueError, match="step must be in"):
        PredictConfig(step=1.5)
    with pytest.raises(ValueError, match="mode must be one of"):
        PredictConfig(mode="quick")
    assert PredictConfig().subtype_from == "lesion_window"
    with pytest.raises(ValueError, match="subtype_from must be one of"):
        PredictConfig(subtype_from="centre")


def test_arrays_in_both_modes_and_probabilities(nnunet_model, builders):
    image = builders.synthetic_ct((16, 30, 34), seed=5)
    spacing = (2.5, 0.9, 0.8)
    exact = fastpanc.Predictor(
        nnunet_model, device="cpu", config=PredictConfig(tta=False, save_probabilities=True)
    )
    r = exact.predict_array(image, spacing)
    assert r.labels.shape == image.shape and r.labels.dtype == np.uint8
    assert r.probabilities.shape == (3, *image.shape)
    np.testing.assert_allclose(r.probabilities.sum(0), 1.0, atol=1e-5)
    np.testing.assert_array_equal(r.probabilities.argmax(0), r.labels)
    assert r.subtype is None and r.subtype_probs is None
    fast = fastpanc.Predictor(nnunet_model, device="cpu", config=PredictConfig(mode="fast"))
    f = fast.predict_array(image[None], spacing)
    assert f.labels.shape == image.shape
    assert set(f.timings) >= {"preprocess", "network", "aggregate", "export"}


def test_fold_ensemble_averages_subtype_probabilities(fastpanc_model, builders):
    image = builders.synthetic_ct((12, 28, 28), seed=6)
    cfg = PredictConfig(mode="fast")
    both = fastpanc.Predictor(fastpanc_model, device="cpu", config=cfg).predict_array(image, (2.0, 1.0, 1.0))
    singles = [
        fastpanc.Predictor(fastpanc_model, folds=[f], device="cpu", config=cfg).predict_array(
            image, (2.0, 1.0, 1.0)
        )
        for f in (0, 1)
    ]
    assert both.subtype_probs.shape == (3,)
    np.testing.assert_allclose(
        both.subtype_probs, (singles[0].subtype_probs + singles[1].subtype_probs) / 2, rtol=1e-5
    )
    assert not np.allclose(singles[0].subtype_probs, singles[1].subtype_probs)


def test_roi_runs_only_inside_the_region(nnunet_model, builders):
    from fastpanc.inference.roi import find_roi

    image = builders.synthetic_ct((16, 44, 44), seed=7)
    p = fastpanc.Predictor(
        nnunet_model, device="cpu", config=PredictConfig(mode="fast", roi=True, roi_margin_mm=2.0)
    )
    prep = p.preprocess(image, (2.0, 1.0, 1.0))
    region = find_roi(p, prep.data, {})
    assert region is not None  # the biased random network predicts foreground somewhere
    assert all(0 <= r.start < r.stop <= s for r, s in zip(region, prep.data.shape[1:]))
    region = (slice(2, 14), slice(5, 30), slice(10, 40))  # a region that leaves voxels outside
    with torch.inference_mode():
        logits, _, _ = p._roi_run(prep.data, region, {}, "logits")
        inner, _, _ = p._run_network(prep.data[(slice(None), *region)], {})
        labels, _, _ = p._roi_run(prep.data, region, {}, "labels")
    torch.testing.assert_close(logits[(slice(None), *region)], inner)
    outside = torch.ones(prep.data.shape[1:], dtype=torch.bool)
    outside[region] = False
    assert outside.any() and (logits.argmax(0)[outside] == 0).all()
    assert labels.dtype == torch.uint8 and (labels[outside] == 0).all()
    assert torch.equal(labels[region], inner.argmax(0).to(torch.uint8))


def test_fast_mode_fuses_the_argmax_into_the_aggregation(nnunet_model, builders):
    """One fold, argmax-then-nearest, no probabilities: labels come from the fused finalize kernel and equal
    the argmax of the averaged logits; asking for probabilities keeps the logits path."""
    image = builders.synthetic_ct((16, 44, 44), seed=3)
    fast = fastpanc.Predictor(nnunet_model, folds=[0], device="cpu", config=PredictConfig(mode="fast"))
    assert fast.fused_labels
    prep = fast.preprocess(image, (2.0, 1.0, 1.0))
    with torch.inference_mode():
        labels, _, _ = fast._run_network(prep.data, {}, "labels")
        logits, _, _ = fast._run_network(prep.data, {}, "logits")
    assert labels.dtype == torch.uint8 and labels.shape == logits.shape[1:]
    assert torch.equal(labels, logits.argmax(0).to(torch.uint8))
    with_probs = PredictConfig(mode="fast", save_probabilities=True)
    assert not fastpanc.Predictor(nnunet_model, folds=[0], device="cpu", config=with_probs).fused_labels
    assert not fastpanc.Predictor(nnunet_model, device="cpu", config=PredictConfig(mode="exact")).fused_labels
    result = fast.predict_array(image, (2.0, 1.0, 1.0))
    assert result.labels.shape == image.shape and result.labels.dtype == np.uint8


def test_bad_inputs_raise_clear_errors(nnunet_model, tmp_path):
    p = fastpanc.Predictor(nnunet_model, device="cpu", config=PredictConfig(mode="fast"))
    with pytest.raises(ValueError, match="spacing must be 3 positive"):
        p.predict_array(np.ones((8, 8, 8), np.float32), (1.0, 0.0, 1.0))
    with pytest.raises(ValueError, match="zero everywhere"):
        p.predict_array(np.zeros((8, 8, 8), np.float32), (1.0, 1.0, 1.0))
    with pytest.raises(ValueError, match=r"expected an image \(Z, Y, X\) or \(1, Z, Y, X\)"):
        p.predict_array(np.ones((2, 8, 8, 8), np.float32), (1.0, 1.0, 1.0))


def test_model_folder_checkpoint_choice(tmp_path, builders):
    folder = builders.write_nnunet_folder(tmp_path / "m", builders.tiny_plans(), folds=(0, 3))
    (folder / "fold_3" / "checkpoint_final.pth").rename(folder / "fold_3" / "checkpoint_best.pth")
    m = load_model_folder(folder)
    assert m.kind == "nnunet" and m.folds == ["0", "3"] and not m.multitask
    assert [c.name for c in m.checkpoints] == ["checkpoint_final.pth", "checkpoint_best.pth"]
    assert m.mirror_axes == (0, 1, 2)
    with pytest.raises(FileNotFoundError, match="no checkpoint_latest.pth"):
        load_model_folder(folder, checkpoint="checkpoint_latest.pth")
    torch.save({"network_weights": {}, "evil": object()}, folder / "fold_0" / "checkpoint_final.pth")
    with pytest.raises(ValueError, match="refusing to load"):
        load_model_folder(folder, folds=["0"])


def test_input_discovery(tmp_path):
    d = tmp_path / "in"
    d.mkdir()
    for name in ("b_0000.nii.gz", "a_0000.nii.gz", "a_0001.nii.gz", "notes.txt"):
        (d / name).write_bytes(b"")
    cases = find_cases([d])
    assert [(c.name, [f.name for f in c.files]) for c in cases] == [
        ("a", ["a_0000.nii.gz", "a_0001.nii.gz"]),
        ("b", ["b_0000.nii.gz"]),
    ]
    assert [c.name for c in find_cases([str(d / "b_*.nii.gz")])] == ["b"]
    assert [c.output_name for c in find_cases([d / "b_0000.nii.gz"])] == ["b.nii.gz"]
    with pytest.raises(ValueError, match="expects 1"):
        find_cases([d], num_channels=1)
    (d / "c_0001.nii.gz").write_bytes(b"")
    with pytest.raises(ValueError, match="without gaps"):
        find_cases([d])
    with pytest.raises(FileNotFoundError, match="matches no file"):
        find_cases([str(tmp_path / "*.mha")])
    items = list(range(7))
    assert sorted(shard(items, 3, 0) + shard(items, 3, 1) + shard(items, 3, 2)) == items


@pytest.mark.parametrize("mode", ["exact", "fast"])
def test_fused_inference_passes_give_the_same_masks(nnunet_model, fastpanc_model, builders, mode):
    """The CPU default (fused norm, pooling and upsampling passes) against torch's modules, for an nnU-Net
    ResEnc folder (rebuilt as fastpanc's network) and a multitask fastpanc folder."""
    from fastpanc.model.network import MultitaskResEncUNet

    image = builders.synthetic_ct((16, 30, 34), seed=6)
    spacing = (2.5, 0.9, 0.8)
    for folder in (nnunet_model, fastpanc_model):
        fused = fastpanc.Predictor(folder, device="cpu", config=PredictConfig(mode=mode, tta=False))
        plain = fastpanc.Predictor(
            folder, device="cpu", config=PredictConfig(mode=mode, tta=False, fused_inference=False)
        )
        assert fused.config.fused_inference and not plain.config.fused_inference
        net = fused.networks[0]
        assert isinstance(net, MultitaskResEncUNet) and net.decoder.fused_upsample == "auto"
        a, b = fused.predict_array(image, spacing), plain.predict_array(image, spacing)
        # float32 (exact): statistics summed in another order; bf16 (fast): bf16 roundings in other places
        # (statistics in float32 from bf16 values, pooling rounded to bf16; random weights: many near-ties)
        assert (a.labels == b.labels).mean() >= (0.999 if mode == "exact" else 0.99)
        if a.subtype_probs is not None:
            np.testing.assert_allclose(
                a.subtype_probs, b.subtype_probs, atol=1e-3 if mode == "exact" else 0.05
            )
    assert PredictConfig().resolved("cuda").fused_inference is False
    assert PredictConfig().resolved("cpu").fused_inference is True


@pytest.mark.parametrize("mode", ["exact", "fast"])
def test_channels_last_gives_the_same_masks(nnunet_model, fastpanc_model, builders, mode):
    """The CPU default (every layer channels-last) against the contiguous fused network: the same masks."""
    image = builders.synthetic_ct((16, 30, 34), seed=7)
    spacing = (2.5, 0.9, 0.8)
    for folder in (nnunet_model, fastpanc_model):
        cl = fastpanc.Predictor(folder, device="cpu", config=PredictConfig(mode=mode, tta=False))
        contiguous = fastpanc.Predictor(
            folder, device="cpu", config=PredictConfig(mode=mode, tta=False, channels_last=False)
        )
        assert cl.config.channels_last and cl.networks[0].channels_last
        assert contiguous.config.fused_inference and not contiguous.networks[0].channels_last
        a, b = cl.predict_array(image, spacing), contiguous.predict_array(image, spacing)
        if mode == "exact":  # float32: the same logits to rounding
            np.testing.assert_array_equal(a.labels, b.labels)
        else:  # bf16 autocast: the convolutions round in other places
            assert (a.labels == b.labels).mean() >= 0.99
        if a.subtype_probs is not None:
            np.testing.assert_allclose(
                a.subtype_probs, b.subtype_probs, atol=1e-4 if mode == "exact" else 0.05
            )
    assert PredictConfig().resolved("cuda").channels_last is False
    assert PredictConfig().resolved("cpu").channels_last is True
    assert PredictConfig(fused_inference=False).resolved("cpu").channels_last is False
    with pytest.raises(ValueError, match="needs the fused passes"):
        PredictConfig(channels_last=True, fused_inference=False)
    with pytest.raises(ValueError, match="needs the fused passes"):
        PredictConfig(channels_last=True).resolved("cuda")
