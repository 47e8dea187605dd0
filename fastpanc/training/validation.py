"""Online validation as nnU-Net's: pseudo-Dice summed over validation patches, plus per-case subtype macro-F1."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager

import numpy as np
import torch

from fastpanc.model.network import NetOutput
from fastpanc.training.sampling import Case, PatchSampler, crop_bbox, extract

CLS_BATCH_FACTOR = 4


def macro_f1(y_true: Sequence[int], y_pred: Sequence[int]) -> float:
    """Macro-averaged F1 over the labels present in ``y_true`` or ``y_pred`` (scikit-learn's definition)."""
    t, p = np.asarray(y_true), np.asarray(y_pred)
    if t.shape != p.shape or t.size == 0:
        raise ValueError(f"need two equally long non-empty label lists, got {t.shape} and {p.shape}")
    scores = []
    for c in np.union1d(t, p):
        tp = int(((t == c) & (p == c)).sum())
        fp = int(((t != c) & (p == c)).sum())
        fn = int(((t == c) & (p != c)).sum())
        scores.append(2 * tp / (2 * tp + fp + fn))
    return float(np.mean(scores))


def region_counts(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """(2, 3) tp, fp, fn of the regions pancreas (label > 0) and lesion (label == 2); labels (B, *S) int."""
    rows = []
    for p, t in ((pred > 0, target > 0), (pred == 2, target == 2)):
        rows.append(torch.stack([(p & t).sum(), (p & ~t).sum(), (~p & t).sum()]))
    return torch.stack(rows).double()


def dice_from_counts(counts: torch.Tensor) -> tuple[float, float]:
    """Pseudo-Dice (pancreas, lesion) from summed counts; NaN for a region absent from prediction and target."""
    tp, fp, fn = counts.unbind(1)
    denom = 2 * tp + fp + fn
    dice = torch.where(denom > 0, 2 * tp / denom.clamp_min(1), torch.full_like(tp, float("nan")))
    return float(dice[0]), float(dice[1])


def case_centre(case: Case) -> np.ndarray:
    """Centre (z, y, x) of a classification patch: the median sampled lesion voxel, else the pancreas, else the
    middle of the volume."""
    for label in (2, 1):
        if label in case.class_locations:
            return np.median(case.class_locations[label][:, 1:], axis=0).round().astype(np.int64)
    return np.asarray(case.image.shape[1:]) // 2


@torch.no_grad()
def validate(
    network: torch.nn.Module,
    sampler: PatchSampler,
    iterations: int,
    loss_fn: Callable[[NetOutput, torch.Tensor, torch.Tensor], Sequence[torch.Tensor]],
    device: torch.device,
    autocast: Callable[[], AbstractContextManager],
) -> dict[str, float]:
    """Pseudo-Dice over ``iterations`` fixed validation batches (the same patches every epoch) and macro-F1 of
    the subtype logits of one lesion-centred patch per validation case.

    ``loss_fn(output, seg, subtype)`` returns the losses, the total first;
    the network is put in eval mode and back in train mode afterwards.
    """
    was_training = network.training
    network.eval()
    counts = torch.zeros(2, 3, dtype=torch.float64)
    losses = []
    try:
        for it in range(iterations):
            b = sampler.sample(0, it)
            image = torch.from_numpy(b["image"]).to(device)
            seg = torch.from_numpy(b["seg"]).to(device)
            with autocast():
                out = network(image)
                total = loss_fn(out, seg, torch.from_numpy(b["subtype"]).to(device))[0]
            losses.append(float(total))
            counts += region_counts(out.seg[0].argmax(1), seg[:, 0].long()).cpu()
        # one lesion-centred patch per case, run in batches of CLS_BATCH_FACTOR training batches (no activations
        # are kept for a backward pass, and samples are independent in eval mode: instance norm, per-sample head)
        y_true = [case.subtype for case in sampler.cases]
        y_pred: list[int] = []
        step = CLS_BATCH_FACTOR * sampler.batch_size
        for first in range(0, len(sampler.cases), step):
            patches = []
            for case in sampler.cases[first : first + step]:
                lower = crop_bbox(
                    sampler.patch_size, case.image.shape[1:], np.random.default_rng(0), case_centre(case)
                )
                patches.append(extract(case.image, lower, sampler.patch_size, 0.0))
            x = torch.from_numpy(np.stack(patches)).to(device)
            with autocast():
                logits = network(x).cls
            y_pred.extend(int(v) for v in logits.float().argmax(1).cpu())
    finally:
        network.train(was_training)
    dice_p, dice_l = dice_from_counts(counts)
    return {
        "val_loss": float(np.mean(losses)),
        "dice_pancreas": dice_p,
        "dice_lesion": dice_l,
        "macro_f1": macro_f1(y_true, y_pred),
    }
