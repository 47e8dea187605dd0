"""Training throughput: fastpanc's ``Trainer.train_step`` against nnU-Net v2's ``nnUNetTrainer.train_step``.

Both train the same plans (network topology, patch and batch size) on the same batches in the same process:
nnU-Net's trainer is built and ``initialize()``d as ``nnUNetv2_train`` does (its network, DC+CE deep-supervision
loss, SGD + poly LR, grad clipping, AMP and ``torch.compile`` on CUDA as its defaults), then its ``train_step``
is timed on batches whose deep-supervision targets were made beforehand (its data loader does that in worker
processes, with its augmentation). fastpanc's timed step does more: the on-device augmentation (all of nnU-Net's
default transforms) and the deep-supervision targets happen inside it, and the network carries the subtype head.

On the CPU two more steps are timed: fastpanc's with bf16 autocast (``cpu_bf16``; nnU-Net has no such option and
trains in float32 there), and fastpanc's float32 step with torch's InstanceNorm + LeakyReLU modules instead of the
fused ``instance_norm_act`` and its C++ backward (``fused_norm=False``; the fused path is the CPU default). The
recorded ratio stays the float32 one with the defaults; the other rates are listed beside it.

The data side is measured too: the batches per second the patch sampler makes from memory-mapped cases, which
must exceed the training iterations per second (the loader runs ahead in background threads).

Configurations: on the CPU a small ResEnc (4 stages, 8..64 features, 1-1-2-2 blocks, patch 16 x 64 x 64, batch 2); on CUDA the
real ResEnc M plans (patch 64 x 128 x 192, batch 2), read from ../shared/data/real/plans when present.

    pytest benchmarks/bench_train_throughput.py --benchmark-enable -s
"""

from __future__ import annotations

import copy
import json
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent))
from _record import record  # noqa: E402
from conftest import shared_data_dir  # noqa: E402

from fastpanc.model.seg_loss import downsample_seg  # noqa: E402
from fastpanc.training.config import AugmentConfig, TrainConfig  # noqa: E402
from fastpanc.training.sampling import PatchSampler, load_case  # noqa: E402
from fastpanc.training.trainer import Trainer  # noqa: E402

COMMAND = "pytest benchmarks/bench_train_throughput.py --benchmark-enable -s"
DEVICES = [
    "cpu",
    pytest.param("cuda", marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA GPU")),
]
DATASET = {
    "channel_names": {"0": "CT"},
    "labels": {"background": 0, "pancreas": 1, "lesion": 2},
    "numTraining": 6,
    "file_ending": ".nii.gz",
}


def small_plans() -> dict:
    """A small ResEnc plan for CPU runs, in nnU-Net v2's schema."""
    n = 4
    return {
        "dataset_name": "Dataset901_Throughput",
        "plans_name": "nnUNetResEncUNetMPlans",
        "original_median_spacing_after_transp": [2.0, 0.73, 0.73],
        "original_median_shape_after_transp": [64, 128, 128],
        "image_reader_writer": "SimpleITKIO",
        "transpose_forward": [0, 1, 2],
        "transpose_backward": [0, 1, 2],
        "experiment_planner_used": "nnUNetPlannerResEncM",
        "label_manager": "LabelManager",
        "foreground_intensity_properties_per_channel": {
            "0": {
                "mean": 80.0,
                "std": 40.0,
                "percentile_00_5": -56.0,
                "percentile_99_5": 180.0,
                "min": -100.0,
                "max": 300.0,
                "median": 80.0,
            }
        },
        "configurations": {
            "3d_fullres": {
                "data_identifier": "nnUNetPlans_3d_fullres",
                "preprocessor_name": "DefaultPreprocessor",
                "batch_size": 2,
                "patch_size": [16, 64, 64],
                "median_image_size_in_voxels": [64, 128, 128],
                "spacing": [2.0, 0.73, 0.73],
                "normalization_schemes": ["CTNormalization"],
                "use_mask_for_norm": [False],
                "resampling_fn_data": "resample_data_or_seg_to_shape",
                "resampling_fn_seg": "resample_data_or_seg_to_shape",
                "resampling_fn_data_kwargs": {
                    "is_seg": False,
                    "order": 3,
                    "order_z": 0,
                    "force_separate_z": None,
                },
                "resampling_fn_seg_kwargs": {
                    "is_seg": True,
                    "order": 1,
                    "order_z": 0,
                    "force_separate_z": None,
                },
                "resampling_fn_probabilities": "resample_data_or_seg_to_shape",
                "resampling_fn_probabilities_kwargs": {
                    "is_seg": False,
                    "order": 1,
                    "order_z": 0,
                    "force_separate_z": None,
                },
                "architecture": {
                    "network_class_name": "dynamic_network_architectures.architectures.unet.ResidualEncoderUNet",
                    "arch_kwargs": {
                        "n_stages": n,
                        "features_per_stage": [8, 16, 32, 64],
                        "conv_op": "torch.nn.modules.conv.Conv3d",
                        "kernel_sizes": [[1, 3, 3]] + [[3, 3, 3]] * (n - 1),
                        "strides": [[1, 1, 1], [1, 2, 2], [2, 2, 2], [2, 2, 2]],
                        "n_blocks_per_stage": [1, 1, 2, 2],
                        "n_conv_per_stage_decoder": [1] * (n - 1),
                        "conv_bias": True,
                        "norm_op": "torch.nn.modules.instancenorm.InstanceNorm3d",
                        "norm_op_kwargs": {"eps": 1e-05, "affine": True},
                        "dropout_op": None,
                        "dropout_op_kwargs": None,
                        "nonlin": "torch.nn.LeakyReLU",
                        "nonlin_kwargs": {"inplace": True},
                    },
                    "_kw_requires_import": ["conv_op", "norm_op", "dropout_op", "nonlin"],
                },
                "batch_dice": False,
            }
        },
    }


def plans_for(device: str) -> dict:
    if device == "cpu":
        return small_plans()
    d = shared_data_dir()
    if d is None:
        pytest.skip("the CUDA run uses the real ResEnc M plans in ../shared/data/real/plans (absent here)")
    return json.loads((d / "real/plans/nnUNetResEncUNetMPlans.json").read_text())


def write_cases(folder: Path, plans: dict, n: int = 6) -> None:
    """``n`` memory-mappable cases 1.5x the patch, in the preprocessed format, with a split and plans."""
    rng = np.random.default_rng(0)
    patch = plans["configurations"]["3d_fullres"]["patch_size"]
    shape = [int(p * 1.5) for p in patch]
    names = [f"case_{i}" for i in range(n)]
    for i, name in enumerate(names):
        seg = np.zeros([1, *shape], dtype=np.int8)
        c = [s // 2 for s in shape]
        seg[0, c[0] - 6 : c[0] + 6, c[1] - 16 : c[1] + 16, c[2] - 16 : c[2] + 16] = 1
        seg[0, c[0] - 3 : c[0] + 3, c[1] - 6 : c[1] + 6, c[2] - 6 : c[2] + 6] = 2
        np.save(folder / f"{name}.npy", (rng.normal(size=[1, *shape]) + seg).astype(np.float32))
        np.save(folder / f"{name}_seg.npy", seg)
        locs = {str(k): [[0, *map(int, v)] for v in np.argwhere(seg[0] == k)[::50]] for k in (1, 2)}
        (folder / f"{name}.json").write_text(json.dumps({"subtype": i % 3, "class_locations": locs}))
    (folder / "plans.json").write_text(json.dumps(plans))
    (folder / "dataset.json").write_text(json.dumps(DATASET))
    (folder / "splits_final.json").write_text(json.dumps([{"train": names[:-1], "val": names[-1:]}]))


def interleaved(
    steps: list[Callable[[int], object]], rounds: int, warmup: int, sync: bool
) -> list[list[float]]:
    """Wall times of each step function, run in turns (round i: step 0, step 1, ...) so that a change in the
    machine's load hits all of them alike."""
    out: list[list[float]] = [[] for _ in steps]
    for i in range(warmup + rounds):
        for k, step in enumerate(steps):
            if sync:
                torch.cuda.synchronize()
            t0 = time.perf_counter()
            step(i)
            if sync:
                torch.cuda.synchronize()
            if i >= warmup:
                out[k].append(time.perf_counter() - t0)
    return out


def nnunet_trainer(plans: dict, tmp: Path, device: torch.device):
    """nnU-Net's default trainer, initialised as ``nnUNetv2_train`` does (paths from the environment)."""
    for var, sub in (("nnUNet_raw", "raw"), ("nnUNet_preprocessed", "pre"), ("nnUNet_results", "results")):
        os.environ[var] = str(tmp / sub)
    conf = plans["configurations"]["3d_fullres"]
    # initialize() only looks at the file endings in the preprocessed folder to pick its dataset class;
    # train_step never reads from it
    data = tmp / "pre" / plans["dataset_name"] / conf["data_identifier"]
    data.mkdir(parents=True)
    (data / "case_0.b2nd").touch()
    from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer

    p = copy.deepcopy(plans)
    p.setdefault("continue_training", False)
    trainer = nnUNetTrainer(p, "3d_fullres", 0, DATASET, device=device)
    trainer.initialize()
    return trainer


@pytest.mark.nnunet
@pytest.mark.parametrize("device", DEVICES)
def test_train_throughput(device: str, tmp_path: Path) -> None:
    dev = torch.device(device)
    sync = dev.type == "cuda"
    rounds, warmup = (20, 5) if sync else (8, 2)
    plans = plans_for(device)
    pre = tmp_path / "fastpanc_pre"
    pre.mkdir()
    write_cases(pre, plans)
    cfg = TrainConfig(num_workers=1, lambda_ramp_epochs=0, amp_dtype="fp16")  # fp16 + GradScaler as nnU-Net
    tr = Trainer(pre, tmp_path / "model", cfg, dev)
    batches = [tr.sampler.sample(0, i) for i in range(rounds + warmup)]
    tensors = [{k: torch.from_numpy(v) for k, v in b.items()} for b in batches]

    nn_tr = nnunet_trainer(plans, tmp_path, dev)
    with torch.no_grad():
        shapes = [o.shape[2:] for o in tr.network(torch.zeros(1, 1, *tr.patch_size, device=dev)).seg]
    nn_batches = [{"data": t["image"], "target": downsample_seg(t["seg"].long(), shapes)} for t in tensors]
    nn_batches = [{"data": b["data"], "target": [s.float() for s in b["target"]]} for b in nn_batches]
    no_aug = Trainer(
        pre, tmp_path / "model_noaug", cfg.replace(augmentation=AugmentConfig(enabled=False)), dev
    )
    no_aug.network.load_state_dict(tr.network.state_dict())
    steps = [
        lambda i: nn_tr.train_step(nn_batches[i]),
        lambda i: tr.train_step(tensors[i], seed=i),
        lambda i: no_aug.train_step(tensors[i], seed=i),
    ]
    trainers = [tr, no_aug]
    if dev.type == "cpu":  # fastpanc's bf16 autocast on the CPU (nnU-Net trains in float32 there)
        bf16 = Trainer(pre, tmp_path / "model_bf16", cfg.replace(cpu_bf16=True), dev)
        bf16.network.load_state_dict(tr.network.state_dict())
        steps.append(lambda i: bf16.train_step(tensors[i], seed=i))
        trainers.append(bf16)
        torch_norm = Trainer(pre, tmp_path / "model_torch_norm", cfg.replace(fused_norm=False), dev)
        torch_norm.network.load_state_dict(tr.network.state_dict())
        steps.append(lambda i: torch_norm.train_step(tensors[i], seed=i))
        trainers.append(torch_norm)
    nn_tr.network.train()
    for t in trainers:
        t.model.train()
    t_nnunet, t_fast, t_fast_noaug, *t_cpu = interleaved(steps, rounds, warmup, sync)
    t_bf16, t_torch_norm = t_cpu or (None, None)

    sampler = PatchSampler([load_case(pre, f"case_{i}") for i in range(5)], tr.patch_size, tr.batch_size)
    (t_data,) = interleaved([lambda i: sampler.sample(1, i)], rounds, 1, False)

    nn_s, fp_s = statistics.median(t_nnunet), statistics.median(t_fast)
    extra = {
        "torch_threads": torch.get_num_threads(),
        "patch_size": list(tr.patch_size),
        "batch_size": tr.batch_size,
        "rounds": rounds,
        "nnunet_it_per_s": 1 / nn_s,
        "fastpanc_it_per_s": 1 / fp_s,
        "fastpanc_no_augmentation_it_per_s": 1 / statistics.median(t_fast_noaug),
        "fastpanc_cpu_bf16_it_per_s": 1 / statistics.median(t_bf16) if t_bf16 else None,
        "fastpanc_torch_norm_it_per_s": 1 / statistics.median(t_torch_norm) if t_torch_norm else None,
        "fused_norm": tr.config.fused_norm and dev.type == "cpu",
        "sampler_batches_per_s": 1 / statistics.median(t_data),
        "features_per_stage": plans["configurations"]["3d_fullres"]["architecture"]["arch_kwargs"][
            "features_per_stage"
        ],
    }
    print(json.dumps(extra, indent=2))
    record("train_step", nn_s, fp_s, COMMAND, device=device, extra=extra)
    assert extra["sampler_batches_per_s"] > extra["fastpanc_it_per_s"], (
        "the patch sampler is slower than training"
    )
