"""The training loop: both heads learn, checkpoints are plain data and atomic, resume is exact, the CLI."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from fastpanc.cli import main
from fastpanc.training.checkpoint import atomic_save
from fastpanc.training.config import AugmentConfig, NetworkOverrides, TrainConfig
from fastpanc.training.trainer import Trainer, poly_lr

QUICK = TrainConfig(
    epochs=2,
    iterations_per_epoch=2,
    val_iterations=1,
    num_workers=1,
    prefetch=2,
    patch_size=(8, 16, 16),
    lambda_ramp_epochs=0,
    augmentation=AugmentConfig(p_rotation=0.5, p_elastic=0.5),
)


# a config that learns the tiny dataset within a few dozen steps
LEARN = TrainConfig(
    optimizer="adamw",
    lr=3e-3,
    lambda_ramp_epochs=0,
    lambda_cls=1.0,
    num_workers=1,
    patch_size=(8, 16, 16),
    batch_size=4,
    augmentation=AugmentConfig(enabled=False),
    oversample_foreground=1.0,
)


def run_steps(tr: Trainer, steps: int) -> tuple[list[dict], list[tuple[float, float, float]]]:
    """``steps`` training steps cycling over 4 sampled batches; after the first, the subtype head, the decoder
    and the first encoder layer must all have non-zero gradients. Returns the batches and the losses."""
    batches = [tr.sampler.sample(0, it) for it in range(4)]
    losses = []
    for step in range(steps):
        b = {k: torch.from_numpy(v) for k, v in batches[step % 4].items()}
        losses.append(tr.train_step(b, seed=step))
        if step == 0:
            head = [p.grad for p in tr.network.head.parameters()]
            seg_out = [p.grad for p in tr.network.decoder.parameters()]
            assert all(g is not None for g in head) and any(float(g.abs().sum()) > 0 for g in head)
            assert any(g is not None and float(g.abs().sum()) > 0 for g in seg_out)
            first_enc = next(tr.network.encoder.parameters()).grad
            assert first_enc is not None and float(first_enc.abs().sum()) > 0
    return batches, losses


def test_loss_falls_and_both_heads_get_gradients(tiny_preprocessed: Path, tmp_path: Path) -> None:
    tr = Trainer(tiny_preprocessed, tmp_path / "m", LEARN, "cpu")
    batches, losses = run_steps(tr, 24)
    # the classification loss only counts patches that show the lesion
    no_lesion = {k: torch.from_numpy(v) for k, v in batches[0].items()}
    no_lesion["seg"] = torch.where(no_lesion["seg"] == 2, 1, no_lesion["seg"])
    assert tr.train_step(no_lesion, seed=0)[2] == 0.0
    seg = np.array([s for _, s, _ in losses])
    cls = np.array([c for _, _, c in losses])
    assert seg[-4:].mean() < 0.8 * seg[:4].mean(), seg
    assert cls[-4:].mean() < 0.8 * cls[:4].mean(), cls


@pytest.mark.parametrize("share", [0.0, 0.5, 1.0])
def test_label_attention_share_of_steps(tiny_preprocessed: Path, tmp_path: Path, share: float) -> None:
    """The attention head attends to the lesion labels in the configured share of training steps."""
    cfg = QUICK.replace(head="attention", label_attention=share, augmentation=AugmentConfig(enabled=False))
    tr = Trainer(tiny_preprocessed, tmp_path / "m", cfg, "cpu")
    batch = {k: torch.from_numpy(v) for k, v in tr.sampler.sample(0, 0).items()}
    seen: list[torch.Tensor | None] = []
    forward = tr.model.forward
    tr.model.forward = lambda x, attention=None: seen.append(attention) or forward(x, attention)
    for step in range(40):
        tr.train_step(batch, seed=step)
    with_labels = [a for a in seen if a is not None]
    assert len(seen) == 40 and len(with_labels) == pytest.approx(40 * share, abs=10)
    for a in with_labels:  # exactly the lesion voxels of the target
        assert torch.equal(a, (batch["seg"][:, :1] == 2).float())
    with pytest.raises(ValueError, match="label_attention"):
        QUICK.replace(label_attention=1.5)


def _step_grads(
    tr: Trainer, batch: dict, seed: int
) -> tuple[tuple[float, float, float], dict[str, torch.Tensor]]:
    torch.manual_seed(seed)  # the head's dropout draws from the global generator
    losses = tr.train_step(batch, seed=seed)
    return losses, {n: p.grad.clone() for n, p in tr.network.named_parameters() if p.grad is not None}


def _finite_step_grads(
    tr: Trainer, batch: dict[str, torch.Tensor], seed: int, tries: int = 4
) -> tuple[tuple[float, float, float], dict[str, torch.Tensor]]:
    """:func:`_step_grads` of the first try whose gradients are all finite. On the CPU a bf16 backward now and then
    gives a non-finite gradient, with torch's modules as with the fused op (seen in about one run in five of this
    test, not in float32); the trainer then skips the optimizer step (test_nonfinite_gradient_skips_the_step), so
    the weights are unchanged and the same step can be taken again."""
    for _ in range(tries):
        losses, grads = _step_grads(tr, batch, seed)
        if all(bool(torch.isfinite(g).all()) for g in grads.values()):
            return losses, grads
        assert tr.nonfinite_steps > 0
    raise AssertionError(f"{tries} tries of the same bf16 step all gave non-finite gradients")


def test_nonfinite_gradient_skips_the_step(tiny_preprocessed: Path, tmp_path: Path) -> None:
    """A step whose gradient norm is not finite leaves every weight as it was (float32 and bf16 on the CPU)."""
    for bf16 in (False, True):
        tr = Trainer(tiny_preprocessed, tmp_path / f"nan_{bf16}", QUICK.replace(cpu_bf16=bf16), "cpu")
        batch = {k: torch.from_numpy(v) for k, v in tr.sampler.sample(0, 0).items()}
        batch["image"] = batch["image"].clone()
        batch["image"][0, 0, 0, 0, 0] = float("nan")
        before = {k: v.clone() for k, v in tr.network.state_dict().items()}
        tr.train_step(batch, seed=0)
        assert tr.nonfinite_steps == 1
        for k, v in tr.network.state_dict().items():
            torch.testing.assert_close(v, before[k], rtol=0, atol=0, equal_nan=True, msg=k)


def _fused_and_plain(preprocessed: Path, tmp_path: Path, cfg: TrainConfig) -> tuple[Trainer, Trainer]:
    """Two CPU trainers from the same weights: with the fused norm + LeakyReLU (the default) and without."""
    from fastpanc.model.blocks import ConvNormAct

    fused = Trainer(preprocessed, tmp_path / "fused", cfg, "cpu")
    plain = Trainer(preprocessed, tmp_path / "plain", cfg.replace(fused_norm=False), "cpu")
    blocks = [m for m in fused.network.modules() if isinstance(m, ConvNormAct)]
    assert blocks and all(m.fused_norm == "auto" for m in blocks)
    assert all(m.fused_norm is None for m in plain.network.modules() if isinstance(m, ConvNormAct))
    assert list(fused.network.state_dict()) == list(plain.network.state_dict())  # checkpoints do not change
    plain.network.load_state_dict(fused.network.state_dict())
    return fused, plain


@pytest.mark.parametrize("channels_last", [True, False])
def test_fused_norm_trains_as_the_torch_modules(
    tiny_preprocessed: Path, tmp_path: Path, channels_last: bool
) -> None:
    """float32: three CPU steps with the fused norm + LeakyReLU (and its C++ backward), channels-last (the
    default) or contiguous, give the losses, gradients and weights of torch's InstanceNorm + LeakyReLU."""
    fused, plain = _fused_and_plain(tiny_preprocessed, tmp_path, QUICK.replace(channels_last=channels_last))
    convs = [m.weight for m in fused.network.modules() if isinstance(m, torch.nn.Conv3d)]
    fmt = torch.channels_last_3d if channels_last else torch.contiguous_format
    assert fused.network.channels_last is channels_last and not plain.network.channels_last
    assert all(w.is_contiguous(memory_format=fmt) for w in convs)
    batches = [{k: torch.from_numpy(v) for k, v in fused.sampler.sample(0, it).items()} for it in range(3)]
    for step, batch in enumerate(batches):
        (f_losses, f_grads), (p_losses, p_grads) = (
            _step_grads(fused, batch, step),
            _step_grads(plain, batch, step),
        )
        np.testing.assert_allclose(f_losses, p_losses, rtol=1e-4, atol=1e-4)
        assert f_grads.keys() == p_grads.keys()
        # relative to each tensor's largest gradient; the convolution biases before an instance norm get none
        # (the norm removes a per-channel constant), only rounding noise, which counts against the network's
        # largest gradient
        floor = 1e-3 * max(float(g.abs().max()) for g in p_grads.values())
        for name, g in p_grads.items():
            err = float((f_grads[name] - g).abs().max()) / max(float(g.abs().max()), floor)
            assert err < 2e-3 * (step + 1), (step, name, err)
    for (name, a), b in zip(fused.network.state_dict().items(), plain.network.state_dict().values()):
        torch.testing.assert_close(a, b, rtol=1e-3, atol=1e-4, msg=name)


def test_fused_norm_with_cpu_bf16_is_as_close_to_float32(tiny_preprocessed: Path, tmp_path: Path) -> None:
    """bf16 autocast: torch's path normalises in bf16, the fused op in float32 (bf16 in and out), so the two
    differ by bf16 rounding. Against a float32 step from the same weights, the fused step's loss and gradient
    are as close as the torch modules' bf16 step."""
    fused, plain = _fused_and_plain(tiny_preprocessed, tmp_path, QUICK.replace(cpu_bf16=True))
    exact = Trainer(tiny_preprocessed, tmp_path / "f32", QUICK.replace(fused_norm=False), "cpu")
    exact.network.load_state_dict(fused.network.state_dict())
    batch = {k: torch.from_numpy(v) for k, v in fused.sampler.sample(0, 0).items()}
    (e_losses, e_grads), runs = (
        _step_grads(exact, batch, 0),
        [_finite_step_grads(t, batch, 0) for t in (fused, plain)],
    )
    want = torch.cat([g.flatten() for g in e_grads.values()])
    errors = []
    for losses, grads in runs:
        np.testing.assert_allclose(losses, e_losses, rtol=3e-2, atol=3e-2)
        got = torch.cat([grads[n].flatten() for n in e_grads])
        errors.append(float((got - want).norm() / want.norm()))
    fused_err, plain_err = errors
    assert fused_err < 0.1 and fused_err <= 1.5 * plain_err + 1e-3, errors


def _weights(path: Path) -> dict[str, torch.Tensor]:
    return torch.load(path, map_location="cpu", weights_only=True)["network_weights"]


def test_exact_resume_and_checkpoint_contents(tiny_preprocessed: Path, tmp_path: Path) -> None:
    Trainer(tiny_preprocessed, tmp_path / "a", QUICK, "cpu").fit()
    Trainer(tiny_preprocessed, tmp_path / "b", QUICK, "cpu").fit(stop_after=1)
    fold_b = tmp_path / "b" / "fold_0"
    assert not (fold_b / "checkpoint_final.pth").exists()
    assert torch.load(fold_b / "checkpoint_latest.pth", weights_only=True)["current_epoch"] == 1
    Trainer(tiny_preprocessed, tmp_path / "b", None, "cpu", resume=True).fit()

    wa, wb = _weights(tmp_path / "a/fold_0/checkpoint_final.pth"), _weights(fold_b / "checkpoint_final.pth")
    assert wa.keys() == wb.keys()
    for k in wa:
        torch.testing.assert_close(wa[k], wb[k], rtol=0, atol=0, msg=k)
    # the resumed run also continued the optimiser and the logs
    sa = torch.load(tmp_path / "a/fold_0/checkpoint_final.pth", weights_only=True)
    sb = torch.load(fold_b / "checkpoint_final.pth", weights_only=True)
    assert sa["logging"]["train_loss"] == sb["logging"]["train_loss"]
    assert sa["logging"]["lr"] == sb["logging"]["lr"] == [1e-2, poly_lr(1e-2, 0.5, 0.9)]

    for key in (
        "network_weights",
        "optimizer_state",
        "grad_scaler_state",
        "current_epoch",
        "logging",
        "inference_allowed_mirroring_axes",
        "trainer_name",
        "config",
        "fastpanc",
    ):
        assert key in sa, key
    assert sa["current_epoch"] == 2 and sa["config"] == QUICK.to_dict()
    assert sa["fastpanc"]["head"] == "attention" and sa["fastpanc"]["num_subtypes"] == 3
    folder = tmp_path / "a"
    for name in (
        "plans.json",
        "dataset.json",
        "train_config.json",
        "subtype_mapping.json",
        "splits_final.json",
        "fold_0/checkpoint_best.pth",
        "fold_0/checkpoint_latest.pth",
        "fold_0/progress.png",
        "fold_0/training_log.csv",
    ):
        assert (folder / name).is_file(), name
    assert TrainConfig.load(folder / "train_config.json") == QUICK
    assert len((folder / "fold_0/training_log.csv").read_text().strip().splitlines()) == 3
    assert list((folder / "fold_0").glob("*.tmp*")) == []


def test_weight_ema_follows_the_trained_weights(tiny_preprocessed: Path, tmp_path: Path) -> None:
    cfg = LEARN.replace(weight_ema=0.5)
    tr = Trainer(tiny_preprocessed, tmp_path / "m", cfg, "cpu")
    assert tr.evaluated is tr.averaged and tr.averaged is not tr.network
    expected = [p.detach().clone() for p in tr.network.parameters()]
    batches = [tr.sampler.sample(0, it) for it in range(3)]
    for step, b in enumerate(batches, start=1):
        tr.train_step({k: torch.from_numpy(v) for k, v in b.items()}, seed=step)
        decay = min(0.5, (1 + step) / (10 + step))  # the warm-up: 0.18, 0.25, 0.31, then 0.5
        for e, p in zip(expected, tr.network.parameters(), strict=True):
            e.mul_(decay).add_(p.detach(), alpha=1 - decay)
    assert tr.weight_ema_steps == 3
    averaged = list(tr.averaged.parameters())
    for e, a in zip(expected, averaged, strict=True):
        torch.testing.assert_close(a, e, rtol=1e-6, atol=1e-7)
    assert any(not torch.equal(a, p) for a, p in zip(averaged, tr.network.parameters(), strict=True))
    assert not any(a.requires_grad for a in averaged)
    # the checkpoint predicts with the average and keeps the trained weights for --resume
    state = tr.state()
    for k, v in tr.averaged.state_dict().items():
        assert torch.equal(state["network_weights"][k], v), k
    for k, v in tr.network.state_dict().items():
        assert torch.equal(state["trainer_state"]["trained_weights"][k], v), k


def test_weight_ema_resume_is_exact(tiny_preprocessed: Path, tmp_path: Path) -> None:
    cfg = QUICK.replace(weight_ema=0.9)
    Trainer(tiny_preprocessed, tmp_path / "a", cfg, "cpu").fit()
    Trainer(tiny_preprocessed, tmp_path / "b", cfg, "cpu").fit(stop_after=1)
    Trainer(tiny_preprocessed, tmp_path / "b", None, "cpu", resume=True).fit()
    sa, sb = (torch.load(tmp_path / f"{r}/fold_0/checkpoint_final.pth", weights_only=True) for r in "ab")
    assert sa["trainer_state"]["weight_ema_steps"] == sb["trainer_state"]["weight_ema_steps"] == 4
    for wa, wb in (
        (sa["network_weights"], sb["network_weights"]),
        (sa["trainer_state"]["trained_weights"], sb["trainer_state"]["trained_weights"]),
    ):
        assert wa.keys() == wb.keys()
        for k in wa:
            torch.testing.assert_close(wa[k], wb[k], rtol=0, atol=0, msg=k)
    assert sa["logging"]["macro_f1"] == sb["logging"]["macro_f1"]


def test_network_overrides_are_written_to_plans(tiny_preprocessed: Path, tmp_path: Path) -> None:
    cfg = QUICK.replace(
        epochs=1,
        iterations_per_epoch=1,
        batch_size=1,
        network=NetworkOverrides(features_scale=0.5, n_stages=2),
        head="pool",
    )
    Trainer(tiny_preprocessed, tmp_path / "m", cfg, "cpu").fit()
    plans = json.loads((tmp_path / "m/plans.json").read_text())
    conf = plans["configurations"]["3d_fullres"]
    assert conf["patch_size"] == [8, 16, 16] and conf["batch_size"] == 1
    assert conf["architecture"]["arch_kwargs"]["features_per_stage"] == [2, 4]
    assert plans["fastpanc"]["head"] == "pool"
    # the checkpoint rebuilds exactly from the folder's plans
    from fastpanc.model.network import MultitaskResEncUNet

    net = MultitaskResEncUNet.from_plans(plans, "3d_fullres", 1, head=plans["fastpanc"]["head"])
    net.load_state_dict(_weights(tmp_path / "m/fold_0/checkpoint_final.pth"))
    with pytest.raises(ValueError, match="must be divisible by"):
        Trainer(tiny_preprocessed, tmp_path / "n", QUICK.replace(patch_size=(8, 10, 16)), "cpu")


def test_cli_train_and_its_errors(tiny_preprocessed: Path, tmp_path: Path, capsys) -> None:
    cfg_file = tmp_path / "cfg.json"
    QUICK.save(cfg_file)
    out = tmp_path / "model"
    assert (
        main(
            [
                "train",
                str(tiny_preprocessed),
                "-o",
                str(out),
                "--config",
                str(cfg_file),
                "--epochs",
                "1",
                "--device",
                "cpu",
            ]
        )
        == 0
    )
    assert TrainConfig.load(out / "train_config.json").epochs == 1
    assert (out / "fold_0/checkpoint_final.pth").is_file()
    assert main(["train", str(tiny_preprocessed), "-o", str(out), "--config", str(cfg_file)]) == 2
    assert "pass --resume" in capsys.readouterr().err
    assert main(["train", str(tiny_preprocessed), "-o", str(out), "--resume", "--epochs", "5"]) == 2
    assert "given config differs" in capsys.readouterr().err
    assert main(["train", str(tmp_path / "nope"), "-o", str(tmp_path / "x")]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_atomic_save_leaves_no_partial_file(tmp_path: Path) -> None:
    target = tmp_path / "c.pth"
    atomic_save({"a": torch.ones(2)}, target)

    class Unpicklable:
        def __reduce__(self):
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        atomic_save({"a": Unpicklable()}, target)
    assert torch.equal(torch.load(target, weights_only=True)["a"], torch.ones(2))  # old file intact
    assert [p.name for p in tmp_path.iterdir()] == ["c.pth"]


def test_minutes_budget_counts_checkpoint_writes(
    tiny_preprocessed: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``minutes`` is wall-clock time: slow checkpoint writes (1.2 GB for ResEnc M) end the run sooner.

    The trainer's clock is replaced by one that checkpoint writes advance by 0.4 s each and every other reading
    by 0.1 ms, so the test does not depend on how fast this machine runs the epochs."""
    import fastpanc.training.trainer as trainer_module

    clock = [0.0]

    class FakeTime:
        @staticmethod
        def perf_counter() -> float:
            clock[0] += 1e-4
            return clock[0]

    monkeypatch.setattr(trainer_module, "time", FakeTime)
    cfg = QUICK.replace(epochs=200, minutes=4.0 / 60, iterations_per_epoch=1)
    tr = Trainer(tiny_preprocessed, tmp_path / "m", cfg, "cpu")
    save = tr.save

    def slow_save(name: str) -> None:
        clock[0] += 0.4
        save(name)

    tr.save = slow_save
    tr.fit()
    # the epochs themselves cost almost nothing on this clock: without counting the writes, 200 epochs would run
    assert 2 <= tr.epoch < 200, tr.epoch
    assert clock[0] <= 4.0 + 0.01, (clock[0], tr.epoch)  # the final checkpoint included
    assert tr.elapsed_s >= 0.4 * (tr.epoch - 1)
    assert (tmp_path / "m/fold_0/checkpoint_final.pth").is_file()


def test_minutes_budget_stops_and_schedules_by_time(tiny_preprocessed: Path, tmp_path: Path) -> None:
    cfg = QUICK.replace(epochs=50, minutes=1e-4, iterations_per_epoch=1)
    tr = Trainer(tiny_preprocessed, tmp_path / "m", cfg, "cpu")
    assert tr.progress() == 0.0
    tr.fit()
    assert tr.epoch == 1  # the first epoch already spent the budget
    assert tr.progress() > 1.0 and poly_lr(1e-2, tr.progress(), 0.9) == 0.0
    assert (tmp_path / "m/fold_0/checkpoint_final.pth").is_file()


@pytest.mark.cuda
@pytest.mark.parametrize("amp", ["bf16", "fp16"])
def test_cuda_training_steps_learn(tiny_preprocessed: Path, tmp_path: Path, amp: str) -> None:
    """On a GPU: augmentation on the device, bf16 or fp16 autocast (fp16 with a GradScaler), both heads learn."""
    cfg = LEARN.replace(amp_dtype=amp, augmentation=AugmentConfig(p_rotation=0.3, p_elastic=0.3))
    tr = Trainer(tiny_preprocessed, tmp_path / "m", cfg, "cuda")
    assert (tr.scaler is not None) == (amp == "fp16")
    assert next(tr.network.parameters()).device.type == "cuda"
    _, losses = run_steps(tr, 30)
    seg = np.array([s for _, s, _ in losses])
    assert np.isfinite(seg).all()
    assert seg[-4:].mean() < 0.9 * seg[:4].mean(), seg


@pytest.mark.cuda
def test_cuda_fit_writes_checkpoints(tiny_preprocessed: Path, tmp_path: Path) -> None:
    fold = Trainer(tiny_preprocessed, tmp_path / "m", QUICK.replace(iterations_per_epoch=3), "cuda").fit()
    for name in ("checkpoint_final.pth", "checkpoint_latest.pth", "checkpoint_best.pth"):
        assert (fold / name).is_file(), name
    ck = torch.load(fold / "checkpoint_final.pth", map_location="cpu", weights_only=True)
    assert ck["current_epoch"] == 2
    assert all(
        t.device.type == "cpu" and torch.isfinite(t.float()).all() for t in ck["network_weights"].values()
    )
