"""Segmentation loss as nnU-Net v2: soft Dice + cross-entropy with deep supervision.

Mirrors ``nnunetv2.training.loss`` (``MemoryEfficientSoftDiceLoss``, ``DC_and_CE_loss``,
``DeepSupervisionWrapper``), the trainer's deep-supervision weights and batchgeneratorsv2's
``DownsampleSegForDSTransform`` (``nearest-exact`` interpolation of the label map).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn


def deep_supervision_weights(n_outputs: int) -> torch.Tensor:
    """nnU-Net's weights ``1/2^i`` (full resolution first), the lowest resolution set to 0, summing to 1.

    With one output the weight is ``[1.0]``.
    """
    if n_outputs < 1:
        raise ValueError(f"n_outputs must be >= 1, got {n_outputs}")
    if n_outputs == 1:
        return torch.ones(1, dtype=torch.float64)
    w = torch.tensor([1.0 / 2**i for i in range(n_outputs)], dtype=torch.float64)
    w[-1] = 0.0
    return w / w.sum()


def deep_supervision_scales(strides: Sequence[Sequence[int]]) -> list[tuple[float, ...]]:
    """Per-output scale factors ``1 / cumprod(strides)[:-1]`` (nnU-Net's ``_get_deep_supervision_scales``)."""
    scales: list[tuple[float, ...]] = []
    acc = [1] * len(strides[0])
    for s in strides[:-1]:
        acc = [a * int(v) for a, v in zip(acc, s)]
        scales.append(tuple(1.0 / a for a in acc))
    return scales


def downsample_seg(seg: torch.Tensor, shapes: Sequence[Sequence[int]]) -> list[torch.Tensor]:
    """Nearest-exact downsampling of a label map to each spatial shape (DownsampleSegForDSTransform).

    ``seg``: ``(B, 1, *S)`` integer labels. Returns one ``(B, 1, *shape)`` tensor per shape, same dtype;
    a shape equal to ``S`` returns ``seg`` itself.
    """
    out: list[torch.Tensor] = []
    seg_float: torch.Tensor | None = None
    for shape in shapes:
        if tuple(shape) == tuple(seg.shape[2:]):
            out.append(seg)
            continue
        if seg_float is None:
            seg_float = seg.float()
        out.append(
            F.interpolate(seg_float, size=tuple(int(s) for s in shape), mode="nearest-exact").to(seg.dtype)
        )
    return out


class SoftDiceLoss(nn.Module):
    """Negative soft Dice on softmax probabilities (nnU-Net's ``MemoryEfficientSoftDiceLoss``).

    ``logits (B, K, *S)``, ``target (B, 1, *S)`` labels; ``loss_mask (B, 1, *S)`` 1 where valid.
    ``batch_dice`` sums over the batch before the ratio; ``do_bg`` keeps the background channel.
    """

    def __init__(self, batch_dice: bool = False, do_bg: bool = False, smooth: float = 1e-5) -> None:
        super().__init__()
        self.batch_dice = batch_dice
        self.do_bg = do_bg
        self.smooth = smooth

    def forward(
        self, logits: torch.Tensor, target: torch.Tensor, loss_mask: torch.Tensor | None = None
    ) -> torch.Tensor:
        x = torch.softmax(logits, dim=1)
        axes = tuple(range(2, x.ndim))
        with torch.no_grad():
            onehot = torch.zeros(x.shape, device=x.device, dtype=torch.float32)
            onehot.scatter_(1, target.long(), 1)
            if not self.do_bg:
                onehot = onehot[:, 1:]
            sum_gt = (onehot if loss_mask is None else onehot * loss_mask).sum(axes, dtype=torch.float32)
        if not self.do_bg:
            x = x[:, 1:]
        if loss_mask is None:
            intersect = (x * onehot).sum(axes, dtype=torch.float32)  # (B, K')
            sum_pred = x.sum(axes, dtype=torch.float32)
        else:
            intersect = (x * onehot * loss_mask).sum(axes, dtype=torch.float32)
            sum_pred = (x * loss_mask).sum(axes, dtype=torch.float32)
        if self.batch_dice:
            intersect, sum_pred, sum_gt = intersect.sum(0), sum_pred.sum(0), sum_gt.sum(0)  # (K',)
        dc = (2 * intersect + self.smooth) / (sum_gt + sum_pred + self.smooth).clamp_min(1e-8)
        return -dc.mean()


class DiceCELoss(nn.Module):
    """``weight_ce * CE + weight_dice * SoftDice`` (nnU-Net's ``DC_and_CE_loss``).

    ``logits (B, K, *S)``, ``target (B, 1, *S)``; voxels equal to ``ignore_label`` are left out of both.
    """

    def __init__(
        self,
        batch_dice: bool = False,
        smooth: float = 1e-5,
        weight_ce: float = 1.0,
        weight_dice: float = 1.0,
        ignore_label: int | None = None,
    ) -> None:
        super().__init__()
        self.dice = SoftDiceLoss(batch_dice=batch_dice, do_bg=False, smooth=smooth)
        self.weight_ce = weight_ce
        self.weight_dice = weight_dice
        self.ignore_label = ignore_label

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        if target.ndim != logits.ndim or target.shape[1] != 1 or target.shape[2:] != logits.shape[2:]:
            raise ValueError(
                f"target must be (B, 1, *S) matching logits {tuple(logits.shape)}, got {tuple(target.shape)}"
            )
        if self.ignore_label is not None:
            mask = target != self.ignore_label
            target_dice = torch.where(mask, target, 0)
            num_fg = mask.sum()
        else:
            mask, target_dice, num_fg = None, target, None
        dc = self.dice(logits, target_dice, loss_mask=mask) if self.weight_dice != 0 else logits.new_zeros(())
        if self.weight_ce != 0 and (num_fg is None or num_fg > 0):
            ce = F.cross_entropy(
                logits,
                target[:, 0].long(),
                ignore_index=-100 if self.ignore_label is None else self.ignore_label,
            )
        else:
            ce = logits.new_zeros(())
        return self.weight_ce * ce + self.weight_dice * dc


class DeepSupervisionLoss(nn.Module):
    """Weighted sum of ``loss`` over the deep-supervision outputs (full resolution first).

    ``forward(outputs, target)``: ``outputs`` a list of ``(B, K, *S_i)``; ``target`` either a list of
    ``(B, 1, *S_i)`` or one full-resolution ``(B, 1, *S_0)`` downsampled here as nnU-Net does.
    """

    def __init__(self, loss: nn.Module) -> None:
        super().__init__()
        self.loss = loss

    def forward(
        self, outputs: Sequence[torch.Tensor], target: torch.Tensor | Sequence[torch.Tensor]
    ) -> torch.Tensor:
        if isinstance(target, torch.Tensor):
            target = downsample_seg(target, [o.shape[2:] for o in outputs])
        if len(target) != len(outputs):
            raise ValueError(f"got {len(outputs)} outputs but {len(target)} targets; pass one per output")
        weights = deep_supervision_weights(len(outputs)).tolist()
        terms = [w * self.loss(o, t) for w, o, t in zip(weights, outputs, target) if w != 0.0]
        return torch.stack(terms).sum()
