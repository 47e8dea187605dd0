"""Multitask loss: nnU-Net's Dice + CE with deep supervision plus subtype classification.

``total = seg_loss + lambda_at(epoch) * cls_loss``; ``lambda_at`` is 0 for ``warmup_epochs`` epochs, then
ramps linearly to ``lambda_cls`` over ``ramp_epochs`` epochs. Cases without a subtype (target < 0) add no
classification loss.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from fastpanc.model.network import NetOutput
from fastpanc.model.seg_loss import DeepSupervisionLoss, DiceCELoss

__all__ = [
    "ClassificationLoss",
    "LossConfig",
    "LossTerms",
    "MultitaskLoss",
    "class_weights_from_counts",
]


def class_weights_from_counts(counts: Sequence[int] | torch.Tensor) -> torch.Tensor:
    """Inverse-frequency class weights ``N / (K * n_c)`` (mean 1 over samples), float32 ``(K,)``.

    ``counts[c]`` is the number of training cases of subtype ``c``; every class needs at least one case.
    """
    c = torch.as_tensor(counts, dtype=torch.float64).flatten()
    if c.numel() < 2:
        raise ValueError(f"need counts for at least 2 classes, got {c.tolist()}")
    if bool((c <= 0).any()):
        raise ValueError(
            f"every subtype needs at least one training case to weight it, got counts {c.tolist()}; "
            "fix the split or drop the empty class"
        )
    return (c.sum() / (c.numel() * c)).float()


class ClassificationLoss(nn.Module):
    """Class-weighted cross-entropy with optional label smoothing and focal modulation.

    ``logits (B, K)``, ``target (B,)`` long; entries < 0 (no subtype) are skipped. Per sample
    ``l_i = w_{y_i} (1 - p_{y_i})^gamma [(1 - eps)(-log p_{y_i}) + eps/K sum_c(-log p_c)]`` and the loss is
    ``sum_i l_i / sum_i w_{y_i}`` (with ``gamma = 0`` exactly ``F.cross_entropy(weight=, label_smoothing=)``
    for unweighted smoothing, and the weighted mean of torch for ``eps = 0``). Returns a zero that keeps
    the graph when no sample has a subtype.
    """

    def __init__(
        self,
        class_weights: torch.Tensor | None = None,
        label_smoothing: float = 0.0,
        focal_gamma: float = 0.0,
    ) -> None:
        super().__init__()
        if not 0.0 <= label_smoothing < 1.0:
            raise ValueError(f"label_smoothing must be in [0, 1), got {label_smoothing}")
        if focal_gamma < 0:
            raise ValueError(f"focal_gamma must be >= 0, got {focal_gamma}")
        self.register_buffer(
            "class_weights", None if class_weights is None else class_weights.float().clone()
        )
        self.label_smoothing = label_smoothing
        self.focal_gamma = focal_gamma

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        if logits.ndim != 2 or target.shape != logits.shape[:1]:
            raise ValueError(
                f"expected logits (B, K) and target (B,), got {tuple(logits.shape)}, {tuple(target.shape)}"
            )
        k = logits.shape[1]
        if bool((target >= k).any()):
            raise ValueError(f"subtype targets must be < {k} (or < 0 for none), got {target.tolist()}")
        valid = target >= 0
        if not bool(valid.any()):
            return logits.sum() * 0.0
        lg = logits[valid].float()
        y = target[valid].long()
        logp = F.log_softmax(lg, dim=1)  # (N, K)
        nll = -logp.gather(1, y[:, None])[:, 0]  # (N,)
        per = (1 - self.label_smoothing) * nll + self.label_smoothing * (-logp.mean(dim=1))
        if self.focal_gamma > 0:
            per = per * (1 - nll.neg().exp()).pow(self.focal_gamma)
        w = self.class_weights[y] if self.class_weights is not None else torch.ones_like(per)
        return (w * per).sum() / w.sum()


@dataclass(frozen=True)
class LossConfig:
    """Loss settings.

    Segmentation: nnU-Net's ``DC_and_CE_loss`` (``batch_dice``, Dice smooth 1e-5, no background, CE and
    Dice weight 1) over the deep-supervision outputs. Classification: weight ``lambda_cls`` reached after
    ``warmup_epochs`` epochs at 0 and a ``ramp_epochs`` linear ramp; ``label_smoothing``/``focal_gamma``
    as in :class:`ClassificationLoss`; ``class_weighted`` uses :func:`class_weights_from_counts`.
    """

    lambda_cls: float = 0.5
    warmup_epochs: int = 0
    ramp_epochs: int = 0
    label_smoothing: float = 0.0
    focal_gamma: float = 0.0
    class_weighted: bool = True
    batch_dice: bool = False
    dice_smooth: float = 1e-5
    weight_ce: float = 1.0
    weight_dice: float = 1.0
    ignore_label: int | None = None

    def __post_init__(self) -> None:
        if self.lambda_cls < 0:
            raise ValueError(f"lambda_cls must be >= 0, got {self.lambda_cls}")
        if self.warmup_epochs < 0 or self.ramp_epochs < 0:
            raise ValueError(
                f"warmup_epochs and ramp_epochs must be >= 0, got {self.warmup_epochs}, {self.ramp_epochs}"
            )
        if not 0.0 <= self.label_smoothing < 1.0:
            raise ValueError(f"label_smoothing must be in [0, 1), got {self.label_smoothing}")
        if self.focal_gamma < 0:
            raise ValueError(f"focal_gamma must be >= 0, got {self.focal_gamma}")
        if self.dice_smooth < 0 or self.weight_ce < 0 or self.weight_dice < 0:
            raise ValueError("dice_smooth, weight_ce and weight_dice must be >= 0")
        if self.weight_ce == 0 and self.weight_dice == 0:
            raise ValueError("weight_ce and weight_dice cannot both be 0")

    def lambda_at(self, epoch: float) -> float:
        """Classification weight at ``epoch`` (0-based; fractions allowed).

        0 while ``epoch < warmup_epochs``; then ``lambda_cls * min(1, (epoch - warmup + 1) / ramp)``
        (``lambda_cls`` at once when ``ramp_epochs == 0``).
        """
        if epoch < 0:
            raise ValueError(f"epoch must be >= 0, got {epoch}")
        if epoch < self.warmup_epochs:
            return 0.0
        if self.ramp_epochs == 0:
            return self.lambda_cls
        return self.lambda_cls * min(1.0, (epoch - self.warmup_epochs + 1) / self.ramp_epochs)


class LossTerms(NamedTuple):
    """``total`` (backpropagate this), the ``seg`` and ``cls`` parts (cls None without a head), ``lam``."""

    total: torch.Tensor
    seg: torch.Tensor
    cls: torch.Tensor | None
    lam: float


class MultitaskLoss(nn.Module):
    """``seg_loss(out.seg, seg_target) + lambda_at(epoch) * cls_loss(out.cls, subtype)``.

    ``seg_target``: ``(B, 1, *S)`` labels (downsampled per output here) or a list, one per output.
    ``subtype``: ``(B,)`` long, -1 where a case has no subtype; may be None for a network without head.
    """

    def __init__(self, config: LossConfig, class_counts: Sequence[int] | None = None) -> None:
        super().__init__()
        self.config = config
        self.seg_loss = DeepSupervisionLoss(
            DiceCELoss(
                batch_dice=config.batch_dice,
                smooth=config.dice_smooth,
                weight_ce=config.weight_ce,
                weight_dice=config.weight_dice,
                ignore_label=config.ignore_label,
            )
        )
        weights = None
        if config.class_weighted and class_counts is not None:
            weights = class_weights_from_counts(class_counts)
        elif config.class_weighted:
            raise ValueError("class_weighted=True needs class_counts (subtype counts of the training split)")
        self.cls_loss = ClassificationLoss(weights, config.label_smoothing, config.focal_gamma)

    def forward(
        self,
        out: NetOutput,
        seg_target: torch.Tensor | Sequence[torch.Tensor],
        subtype: torch.Tensor | None,
        epoch: float,
    ) -> LossTerms:
        seg = self.seg_loss(out.seg, seg_target)
        lam = self.config.lambda_at(epoch)
        if out.cls is None:
            return LossTerms(seg, seg.detach(), None, lam)
        if subtype is None:
            raise ValueError("the network has a classification head: pass subtype targets (-1 for none)")
        cls = self.cls_loss(out.cls, subtype.to(out.cls.device))
        total = seg + lam * cls if lam > 0 else seg + 0.0 * cls
        return LossTerms(total, seg.detach(), cls.detach(), lam)
