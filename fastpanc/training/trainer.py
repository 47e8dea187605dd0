"""The multitask training loop (segmentation with deep supervision + subtype classification).

One :class:`Trainer` per run: it builds the network from the plans as used, samples and prefetches patches,
augments them on the training device, trains with SGD/AdamW and poly LR, validates every epoch, keeps an EMA
of the validation score for the best checkpoint, and writes checkpoints atomically. ``--resume`` restores
everything that decides the rest of the run, so 1 + 1 epochs give the weights of 2 epochs in one go.
"""

from __future__ import annotations

import contextlib
import copy
import logging
import math
import random
import time
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from fastpanc.model.losses import LossConfig, MultitaskLoss
from fastpanc.model.network import MultitaskResEncUNet
from fastpanc.model.plans_arch import configuration_dict
from fastpanc.training import checkpoint as ckpt
from fastpanc.training.augment import Augmenter
from fastpanc.training.config import TrainConfig
from fastpanc.training.distributed import (
    DistInfo,
    barrier,
    broadcast_bool,
    distributed_device,
    init_distributed,
)
from fastpanc.training.loader import PrefetchLoader
from fastpanc.training.logs import TrainLog
from fastpanc.training.model_dir import plans_as_used, read_json, write_model_dir
from fastpanc.training.sampling import PatchSampler, load_case, read_split
from fastpanc.training.validation import validate

log = logging.getLogger(__name__)

TRAINER_NAME = "fastpanc.MultitaskTrainer"


def batch_seed(*keys: int) -> int:
    """A 62-bit seed from integer keys (seed, rank, epoch, iteration, stream)."""
    return int(
        np.random.SeedSequence([int(k) for k in keys]).generate_state(1, dtype=np.uint64)[0] >> np.uint64(2)
    )


def poly_lr(initial: float, progress: float, exponent: float) -> float:
    """nnU-Net's poly schedule: ``initial * (1 - progress) ** exponent``, progress in [0, 1]."""
    return initial * (1.0 - min(max(progress, 0.0), 1.0)) ** exponent


class Trainer:
    """Train fold ``fold`` of ``preprocessed`` into the model folder ``output`` on ``device``."""

    def __init__(
        self,
        preprocessed: str | Path,
        output: str | Path,
        config: TrainConfig | None,
        device: torch.device | str,
        fold: int = 0,
        resume: bool = False,
    ) -> None:
        self.preprocessed, self.output = Path(preprocessed), Path(output)
        if not self.preprocessed.is_dir():
            raise FileNotFoundError(
                f"preprocessed folder {self.preprocessed} does not exist; run `fastpanc preprocess` first"
            )
        device = torch.device(device)
        self.dist: DistInfo = init_distributed(device)
        self.device = distributed_device(device, self.dist)
        if self.device.type == "cuda":
            # fixed patch and batch shapes: let cuDNN pick its fastest convolution algorithms, as nnU-Net does
            torch.backends.cudnn.benchmark = True
        self.fold_dir = self.output / f"fold_{fold}"
        latest = self.fold_dir / "checkpoint_latest.pth"
        if resume:
            saved = TrainConfig.load(self.output / "train_config.json")
            if config is not None and config != saved:
                raise ValueError(
                    f"--resume continues the run saved in {self.output / 'train_config.json'}; the "
                    "given config differs from it. Resume without --config/--epochs/--minutes"
                )
            self.config, self.plans = saved, read_json(self.output / "plans.json")
        else:
            if latest.exists():
                raise FileExistsError(
                    f"{latest} exists; pass --resume to continue it or choose another -o folder"
                )
            self.config = config or TrainConfig()
            self.plans = plans_as_used(read_json(self.preprocessed / "plans.json"), self.config)
            if self.dist.is_main:
                write_model_dir(self.output, self.preprocessed, self.plans, self.config)
        cfg = self.config
        self.fold_dir.mkdir(parents=True, exist_ok=True)
        conf = configuration_dict(self.plans, cfg.configuration)
        self.patch_size = tuple(int(p) for p in conf["patch_size"])
        self.batch_size = int(conf["batch_size"])
        dataset = read_json(self.preprocessed / "dataset.json")
        n_in, n_seg = len(dataset["channel_names"]), len(dataset["labels"])
        self.num_subtypes = int(self.plans["fastpanc"]["num_subtypes"])

        train_names, val_names = read_split(self.preprocessed, fold)
        if not val_names:
            raise ValueError(
                f"fold {fold} of splits_final.json has no val cases; validation needs at least one"
            )
        train_cases = [load_case(self.preprocessed, n) for n in train_names]
        val_cases = [load_case(self.preprocessed, n) for n in val_names]
        self.sampler = PatchSampler(
            train_cases,
            self.patch_size,
            self.batch_size,
            oversample_foreground=cfg.oversample_foreground,
            lesion_fraction=cfg.lesion_fraction,
            class_balanced=cfg.class_balanced,
            seed=cfg.seed,
            rank=self.dist.rank,
        )
        self.val_sampler = PatchSampler(
            val_cases,
            self.patch_size,
            self.batch_size,
            oversample_foreground=cfg.oversample_foreground,
            lesion_fraction=cfg.lesion_fraction,
            seed=cfg.seed + 1,
        )
        counts = np.bincount([c.subtype for c in train_cases], minlength=self.num_subtypes)
        log.info(
            "fold %d: %d train cases (subtypes %s), %d val cases; patch %s, batch %d",
            fold,
            len(train_cases),
            counts.tolist(),
            len(val_cases),
            self.patch_size,
            self.batch_size,
        )

        torch.manual_seed(cfg.seed)
        self.network = MultitaskResEncUNet.from_plans(
            self.plans,
            cfg.configuration,
            n_in,
            num_seg_classes=n_seg,
            num_subtypes=self.num_subtypes,
            head=self.plans["fastpanc"]["head"],  # as the predictor rebuilds it from the model folder's plans
            head_hidden=int(self.plans["fastpanc"].get("head_hidden", 128)),
            deep_supervision=True,
        ).to(self.device)
        if cfg.fused_norm and self.device.type == "cpu":
            self.network.fuse_training("auto", channels_last=cfg.channels_last)
        elif cfg.fused_norm:
            log.info(
                "fused_norm is for CPU training (the fused norm + LeakyReLU has no CUDA/Triton backward); "
                "this %s run trains with torch's InstanceNorm and LeakyReLU",
                self.device.type,
            )
        # the weight EMA (cfg.weight_ema): a copy of the (fused) network whose weights follow the trained ones
        self.averaged: torch.nn.Module | None = None
        if cfg.weight_ema > 0:
            self.averaged = copy.deepcopy(self.network).requires_grad_(False)
        self.weight_ema_steps = 0
        self.model: torch.nn.Module = self.network
        self.nonfinite_steps = 0  # optimizer steps skipped for a non-finite gradient norm (train_step)
        if self.dist.enabled:
            ids = [self.device.index] if self.device.type == "cuda" else None
            # the lowest-resolution output has deep-supervision weight 0 (nnU-Net), so its conv gets no gradient
            self.model = torch.nn.parallel.DistributedDataParallel(
                self.network, device_ids=ids, find_unused_parameters=True
            )
        # class-balanced sampling already evens the subtypes out: weighting the loss too would over-correct
        loss_cfg = LossConfig(
            lambda_cls=cfg.lambda_cls,
            warmup_epochs=cfg.lambda_warmup_epochs,
            ramp_epochs=cfg.lambda_ramp_epochs,
            label_smoothing=cfg.label_smoothing,
            focal_gamma=cfg.focal_gamma,
            class_weighted=not cfg.class_balanced,
        )
        self.objective = MultitaskLoss(loss_cfg, counts.tolist()).to(self.device)
        self.optimizer = self._make_optimizer()
        fp16 = self.device.type == "cuda" and cfg.amp_dtype == "fp16"
        self.scaler = torch.amp.GradScaler("cuda") if fp16 else None
        self.augment = Augmenter(cfg.augmentation)
        self.epoch, self.elapsed_s, self.ema, self.best_ema = 0, 0.0, None, -math.inf
        history = None
        if resume:
            history = self._load(latest)
        self.log = TrainLog(self.fold_dir, history, tensorboard=self.dist.is_main)

    # ------------------------------------------------------------------ set-up helpers
    def _make_optimizer(self) -> torch.optim.Optimizer:
        cfg, params = self.config, self.network.parameters()
        if cfg.optimizer == "sgd":
            return torch.optim.SGD(
                params, lr=cfg.initial_lr, momentum=cfg.momentum, nesterov=True, weight_decay=cfg.weight_decay
            )
        return torch.optim.AdamW(params, lr=cfg.initial_lr, weight_decay=cfg.weight_decay)

    def autocast(self) -> AbstractContextManager:
        """bf16/fp16 autocast on a GPU (``amp_dtype``), bf16 on the CPU when ``cpu_bf16``, else nothing."""
        cfg = self.config
        if self.device.type == "cuda" and cfg.amp_dtype is not None:
            dtype = torch.bfloat16 if cfg.amp_dtype == "bf16" else torch.float16
            return torch.autocast("cuda", dtype=dtype)
        if self.device.type == "cpu" and cfg.cpu_bf16:
            return torch.autocast("cpu", dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def progress(self) -> float:
        """Fraction of the schedule done: epochs, or elapsed time of a minutes budget."""
        if self.config.minutes is not None:
            return self.elapsed_s / (60.0 * self.config.minutes)
        return self.epoch / self.config.epochs

    @property
    def evaluated(self) -> torch.nn.Module:
        """The network that validation measures and checkpoints save as ``network_weights``: the weight EMA when
        ``weight_ema`` is on, else the trained network."""
        return self.network if self.averaged is None else self.averaged

    @torch.no_grad()
    def update_weight_ema(self) -> None:
        """After an optimiser step: ``avg = decay * avg + (1 - decay) * weights`` (buffers copied), with the decay
        warmed up as ``min(weight_ema, (1 + t) / (10 + t))``."""
        if self.averaged is None:
            return
        self.weight_ema_steps += 1
        t = self.weight_ema_steps
        decay = min(self.config.weight_ema, (1.0 + t) / (10.0 + t))
        averaged, live_params = list(self.averaged.parameters()), list(self.network.parameters())
        if len(averaged) != len(live_params):
            raise RuntimeError("the weight EMA's network no longer matches the trained one")
        # one fused pass over all tensors (a Python loop of lerp_ costs 4x more: 0.8 ms a step on the proof net)
        torch._foreach_lerp_(averaged, [p.detach() for p in live_params], 1.0 - decay)
        for avg, live in zip(self.averaged.buffers(), self.network.buffers(), strict=True):
            avg.copy_(live)

    # ------------------------------------------------------------------ checkpoints
    def state(self) -> dict[str, Any]:
        """The checkpoint dict (plain data; nnU-Net's keys plus ``config``, ``fastpanc`` and ``trainer_state``).

        ``network_weights`` are the weights to predict with (the weight EMA when on); the trained weights are
        then in ``trainer_state["trained_weights"]``."""
        aug = self.config.augmentation
        mirror = list(aug.mirror_axes) if aug.enabled and aug.p_mirror_axis > 0 else []
        trainer_state: dict[str, Any] = {
            "ema": self.ema,
            "best_ema": self.best_ema,
            "elapsed_s": self.elapsed_s,
            "rng": ckpt.rng_states(),
        }
        if self.averaged is not None:
            trainer_state["trained_weights"] = self.network.state_dict()
            trainer_state["weight_ema_steps"] = self.weight_ema_steps
        return {
            "network_weights": self.evaluated.state_dict(),
            "optimizer_state": self.optimizer.state_dict(),
            "grad_scaler_state": self.scaler.state_dict() if self.scaler is not None else None,
            "current_epoch": self.epoch,
            "logging": self.log.history,
            "_best_ema": None if self.best_ema == -math.inf else self.best_ema,
            "inference_allowed_mirroring_axes": mirror,
            "trainer_name": TRAINER_NAME,
            "config": self.config.to_dict(),
            "fastpanc": ckpt.to_plain(self.plans["fastpanc"]),
            "trainer_state": trainer_state,
        }

    def _load(self, path: Path) -> dict[str, list[float]]:
        state = ckpt.load_checkpoint(path)
        ts = state["trainer_state"]
        if self.averaged is not None:
            self.network.load_state_dict(ts["trained_weights"])
            self.averaged.load_state_dict(state["network_weights"])
            self.weight_ema_steps = int(ts["weight_ema_steps"])
        else:
            self.network.load_state_dict(state["network_weights"])
        self.optimizer.load_state_dict(state["optimizer_state"])
        if self.scaler is not None and state["grad_scaler_state"] is not None:
            self.scaler.load_state_dict(state["grad_scaler_state"])
        self.epoch, self.ema, self.best_ema, self.elapsed_s = (
            int(state["current_epoch"]),
            ts["ema"],
            float(ts["best_ema"]),
            float(ts["elapsed_s"]),
        )
        ckpt.set_rng_states(ts["rng"])
        log.info("resumed %s at epoch %d", path, self.epoch)
        return state["logging"]

    def save(self, name: str) -> None:
        if self.dist.is_main:
            ckpt.atomic_save(self.state(), self.fold_dir / name)

    # ------------------------------------------------------------------ the loop
    def train_step(self, batch: dict[str, torch.Tensor], seed: int) -> tuple[float, float, float]:
        """One optimiser step on a batch; returns (total, seg, cls) losses."""
        dev = self.device
        image = batch["image"].to(dev, non_blocking=True)
        seg = batch["seg"].to(dev, non_blocking=True)
        subtype = batch["subtype"].to(dev, non_blocking=True)
        image, seg = self.augment(image, seg, seed)
        if self.config.cls_requires_lesion:  # a patch that misses the lesion says nothing about its subtype
            subtype = torch.where((seg == 2).flatten(1).any(1), subtype, torch.full_like(subtype, -1))
        self.optimizer.zero_grad(set_to_none=True)
        attention = None
        if self.config.head == "attention" and random.Random(seed).random() < self.config.label_attention:
            # this step the head attends to the true lesion (early predictions of it are poor)
            attention = (seg[:, :1] == 2).to(image.dtype)
        with self.autocast():
            out = self.model(image, attention) if attention is not None else self.model(image)
            total, seg_loss, cls_loss, _ = self.objective(out, seg, subtype, self.epoch)
        if self.scaler is not None:
            self.scaler.scale(total).backward()
            self.scaler.unscale_(self.optimizer)
            torch.nn.utils.clip_grad_norm_(self.network.parameters(), self.config.grad_clip)
            self.scaler.step(self.optimizer)
            self.scaler.update()
            self.update_weight_ema()
        else:
            total.backward()
            norm = torch.nn.utils.clip_grad_norm_(self.network.parameters(), self.config.grad_clip)
            if torch.isfinite(norm):
                self.optimizer.step()
                self.update_weight_ema()
            else:
                # as a GradScaler skips an fp16 step with inf/NaN gradients: a non-finite gradient would turn every
                # weight into NaN through the clipping; bf16 on the CPU has no scaler, so skip the step here
                self.nonfinite_steps += 1
                log.warning(
                    "epoch %d: non-finite gradient norm (%s), optimizer step skipped (%d so far)",
                    self.epoch,
                    float(norm),
                    self.nonfinite_steps,
                )
        return float(total.detach()), float(seg_loss), math.nan if cls_loss is None else float(cls_loss)

    def run_epoch(self, loader: PrefetchLoader) -> dict[str, float]:
        cfg, t0, wait0 = self.config, time.perf_counter(), loader.wait_s
        lr = poly_lr(cfg.initial_lr, self.progress(), cfg.poly_exponent)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        lam = self.objective.config.lambda_at(self.epoch)
        self.model.train()
        sums = np.zeros(3)
        bar = tqdm(
            loader.epoch(self.epoch, cfg.iterations_per_epoch),
            total=cfg.iterations_per_epoch,
            desc=f"epoch {self.epoch}",
            disable=not self.dist.is_main,
            leave=False,
        )
        for it, batch in enumerate(bar):
            losses = self.train_step(batch, batch_seed(cfg.seed, self.dist.rank, self.epoch, it, 1))
            sums += losses
            bar.set_postfix(loss=f"{losses[0]:.3f}")
        train_s = time.perf_counter() - t0
        n = cfg.iterations_per_epoch
        row = {
            "epoch": self.epoch,
            "lr": lr,
            "lambda_cls": lam,
            "train_loss": sums[0] / n,
            "train_seg_loss": sums[1] / n,
            "train_cls_loss": sums[2] / n,
            "data_wait_s": loader.wait_s - wait0,
            "iterations_per_s": n / train_s,
        }
        if self.dist.is_main:
            row.update(
                validate(
                    self.evaluated,
                    self.val_sampler,
                    cfg.val_iterations,
                    lambda out, seg, sub: self.objective(out, seg, sub, self.epoch),
                    self.device,
                    self.autocast,
                )
            )
        barrier(self.dist)
        return row

    def fit(self, stop_after: int | None = None) -> Path:
        """Train until the epoch or time budget is spent; returns the fold folder.

        ``stop_after`` ends this session after that many epochs as an interruption would (no final checkpoint;
        continue with ``resume=True``), e.g. to fit a job time limit.
        """
        cfg, first, interrupted = self.config, self.epoch, False
        # a minutes budget is wall-clock time: since this run (re)started, on top of what a resumed run had
        # spent; epochs, validation and checkpoint writes (1.2 GB each for ResEnc M with its optimiser state)
        run_start, spent_before = time.perf_counter(), self.elapsed_s
        with PrefetchLoader(
            self.sampler.sample,
            num_workers=cfg.num_workers,
            prefetch=cfg.prefetch,
            pin_memory=self.device.type == "cuda",
        ) as loader:
            while self.epoch < cfg.epochs:
                t0 = time.perf_counter()
                row = self.run_epoch(loader)
                if self.dist.is_main:
                    score = float(np.nanmean([row["dice_pancreas"], row["dice_lesion"], row["macro_f1"]]))
                    self.ema = (
                        score if self.ema is None else cfg.ema_alpha * self.ema + (1 - cfg.ema_alpha) * score
                    )
                    row["ema_score"] = self.ema
                epoch_s = time.perf_counter() - t0
                self.elapsed_s = spent_before + time.perf_counter() - run_start
                row["epoch_time_s"] = epoch_s
                self.epoch += 1
                if self.dist.is_main:
                    self.log.append(row)
                    log.info(
                        "epoch %d: loss %.4f, val Dice pancreas %.3f lesion %.3f, F1 %.3f, %.1f s (data wait "
                        "%.1f s)",
                        row["epoch"],
                        row["train_loss"],
                        row["dice_pancreas"],
                        row["dice_lesion"],
                        row["macro_f1"],
                        epoch_s,
                        row["data_wait_s"],
                    )
                    if self.ema > self.best_ema:
                        self.best_ema = self.ema
                        self.save("checkpoint_best.pth")
                    self.save("checkpoint_latest.pth")
                # stop when one more epoch with its writes, and then the final checkpoint, would overrun the budget
                cycle_s = time.perf_counter() - t0  # this epoch and its writes
                now_s = spent_before + time.perf_counter() - run_start
                stop = cfg.minutes is not None and now_s + cycle_s + (cycle_s - epoch_s) > 60.0 * cfg.minutes
                if broadcast_bool(stop, self.dist, self.device):
                    break
                if stop_after is not None and self.epoch - first >= stop_after and self.epoch < cfg.epochs:
                    interrupted = True
                    break
        if not interrupted:
            self.save("checkpoint_final.pth")
        self.log.close()
        barrier(self.dist)
        log.info("data wait %.1f s in total over %d epochs", loader.wait_s, self.epoch)
        return self.fold_dir
