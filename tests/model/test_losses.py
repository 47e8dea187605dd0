"""Losses: nnU-Net's Dice+CE with deep supervision, classification CE, lambda schedule."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from fastpanc.model.losses import (
    ClassificationLoss,
    LossConfig,
    MultitaskLoss,
    class_weights_from_counts,
)
from fastpanc.model.network import NetOutput
from fastpanc.model.seg_loss import (
    DeepSupervisionLoss,
    DiceCELoss,
    SoftDiceLoss,
    deep_supervision_scales,
    deep_supervision_weights,
    downsample_seg,
)


def _seg_batch(seed: int, shape=(2, 3, 8, 12, 12)) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(shape, generator=g)
    target = torch.randint(0, shape[1], (shape[0], 1, *shape[2:]), generator=g)
    return logits, target


def test_deep_supervision_weights_match_nnunet_formula() -> None:
    w = deep_supervision_weights(5)
    expect = torch.tensor([1, 0.5, 0.25, 0.125, 0.0], dtype=torch.float64) / 1.875
    torch.testing.assert_close(w, expect)
    assert deep_supervision_weights(1).tolist() == [1.0]
    with pytest.raises(ValueError):
        deep_supervision_weights(0)


def test_deep_supervision_scales() -> None:
    scales = deep_supervision_scales([[1, 1, 1], [1, 2, 2], [2, 2, 2], [2, 2, 2]])
    assert scales == [(1.0, 1.0, 1.0), (1.0, 0.5, 0.5), (0.5, 0.25, 0.25)]


def test_soft_dice_perfect_and_independent_value() -> None:
    _, target = _seg_batch(0)
    onehot = F.one_hot(target[:, 0], 3).permute(0, 4, 1, 2, 3).float()
    perfect = onehot * 200 - 100  # softmax is one-hot to float precision
    assert SoftDiceLoss(smooth=0.0)(perfect, target).item() == pytest.approx(-1.0, abs=1e-6)
    # independent per-sample, per-foreground-class Dice on probabilities
    logits, target = _seg_batch(1)
    p = torch.softmax(logits, 1)
    y = F.one_hot(target[:, 0], 3).permute(0, 4, 1, 2, 3).float()
    dice = []
    for b in range(2):
        for c in (1, 2):
            i = (p[b, c] * y[b, c]).sum()
            dice.append((2 * i + 1e-5) / (p[b, c].sum() + y[b, c].sum() + 1e-5))
    expect = -torch.stack(dice).mean()
    torch.testing.assert_close(SoftDiceLoss()(logits, target), expect)


def test_downsample_seg_is_nearest_exact() -> None:
    seg = torch.arange(4 * 8 * 8).reshape(1, 1, 4, 8, 8) % 3
    out = downsample_seg(seg, [(4, 8, 8), (4, 4, 4), (2, 2, 2)])
    assert out[0] is seg
    assert out[1].dtype == seg.dtype
    # nearest-exact takes source index floor((i + 0.5) * factor): the centre-right voxel of each block
    torch.testing.assert_close(out[1], seg[:, :, :, 1::2, 1::2])
    torch.testing.assert_close(out[2], seg[:, :, 1::2, 2::4, 2::4])


@pytest.mark.nnunet
def test_downsample_matches_batchgeneratorsv2() -> None:
    from batchgeneratorsv2.transforms.utils.deep_supervision_downsampling import DownsampleSegForDSTransform

    seg = torch.randint(0, 3, (1, 6, 10, 14), dtype=torch.int16)  # (C, z, y, x) as nnU-Net's transform
    scales = [(1.0, 1.0, 1.0), (1.0, 0.5, 0.5), (0.5, 0.25, 0.25)]
    ref = DownsampleSegForDSTransform(scales)(segmentation=seg)["segmentation"]
    shapes = [[round(i * j) for i, j in zip(seg.shape[1:], s)] for s in scales]
    ours = downsample_seg(seg[None], shapes)
    for r, o in zip(ref, ours):
        torch.testing.assert_close(o[0], r)


@pytest.mark.nnunet
@pytest.mark.parametrize("batch_dice", [False, True])
@pytest.mark.parametrize("ignore_label", [None, 3])
def test_dice_ce_matches_nnunet(batch_dice: bool, ignore_label: int | None) -> None:
    from nnunetv2.training.loss.compound_losses import DC_and_CE_loss
    from nnunetv2.training.loss.deep_supervision import DeepSupervisionWrapper
    from nnunetv2.training.loss.dice import MemoryEfficientSoftDiceLoss

    def ref_loss() -> torch.nn.Module:
        return DC_and_CE_loss(
            {"batch_dice": batch_dice, "smooth": 1e-5, "do_bg": False, "ddp": False},
            {},
            weight_ce=1,
            weight_dice=1,
            ignore_label=ignore_label,
            dice_class=MemoryEfficientSoftDiceLoss,
        )

    logits, target = _seg_batch(2)
    if ignore_label is not None:
        target[:, :, :2] = ignore_label
    ours = DiceCELoss(batch_dice=batch_dice, ignore_label=ignore_label)
    torch.testing.assert_close(ours(logits, target), ref_loss()(logits, target.float()))

    # deep supervision: three outputs, targets downsampled, nnU-Net's weights
    outs = [logits, logits[:, :, :, ::2, ::2].contiguous(), logits[:, :, ::2, ::4, ::4].contiguous()]
    targets = downsample_seg(target, [o.shape[2:] for o in outs])
    ref = DeepSupervisionWrapper(ref_loss(), deep_supervision_weights(3).numpy())(
        outs, [t.float() for t in targets]
    )
    torch.testing.assert_close(DeepSupervisionLoss(ours)(outs, target), ref.float())


def test_class_weights_from_counts() -> None:
    w = class_weights_from_counts([62, 106, 84])
    torch.testing.assert_close(w, torch.tensor([252 / (3 * 62), 252 / (3 * 106), 252 / (3 * 84)]))
    with pytest.raises(ValueError, match="at least one training case"):
        class_weights_from_counts([3, 0, 2])


def test_classification_loss_matches_torch_and_skips_missing() -> None:
    g = torch.Generator().manual_seed(3)
    logits = torch.randn(6, 3, generator=g)
    target = torch.tensor([0, 2, -1, 1, 2, -1])
    w = class_weights_from_counts([62, 106, 84])
    keep = target >= 0
    torch.testing.assert_close(
        ClassificationLoss(w)(logits, target), F.cross_entropy(logits[keep], target[keep], weight=w)
    )
    torch.testing.assert_close(
        ClassificationLoss(None, label_smoothing=0.1)(logits, target),
        F.cross_entropy(logits[keep], target[keep], label_smoothing=0.1),
    )
    # focal: (1 - p_t)^gamma scaling, written out independently
    p = torch.softmax(logits[keep], 1).gather(1, target[keep][:, None])[:, 0]
    wt = w[target[keep]]
    expect = (wt * (1 - p) ** 2 * -torch.log(p)).sum() / wt.sum()
    torch.testing.assert_close(ClassificationLoss(w, focal_gamma=2.0)(logits, target), expect)
    # no labelled case: zero loss that still backpropagates
    lg = logits.clone().requires_grad_(True)
    zero = ClassificationLoss(w)(lg, torch.full((6,), -1))
    zero.backward()
    assert zero.item() == 0.0 and lg.grad is not None and lg.grad.abs().sum() == 0
    with pytest.raises(ValueError, match="< 3"):
        ClassificationLoss()(logits, torch.tensor([0, 1, 2, 3, 0, 0]))


def test_lambda_schedule() -> None:
    cfg = LossConfig(lambda_cls=0.4, warmup_epochs=3, ramp_epochs=4)
    values = [cfg.lambda_at(e) for e in range(9)]
    assert values == pytest.approx([0, 0, 0, 0.1, 0.2, 0.3, 0.4, 0.4, 0.4])
    assert LossConfig(lambda_cls=0.7, warmup_epochs=2).lambda_at(2) == 0.7
    assert LossConfig(lambda_cls=0.7).lambda_at(0) == 0.7
    with pytest.raises(ValueError, match="warmup_epochs"):
        LossConfig(warmup_epochs=-1)
    with pytest.raises(ValueError, match="label_smoothing"):
        LossConfig(label_smoothing=1.0)


def test_multitask_loss_combines_terms() -> None:
    logits, target = _seg_batch(4)
    outs = [logits, logits[:, :, :, ::2, ::2].contiguous()]
    cls_logits = torch.randn(2, 3)
    sub = torch.tensor([1, -1])
    cfg = LossConfig(lambda_cls=0.5, warmup_epochs=1, ramp_epochs=2)
    loss = MultitaskLoss(cfg, class_counts=[5, 5, 10])
    seg_only = DeepSupervisionLoss(DiceCELoss())(outs, target)
    cls_only = ClassificationLoss(class_weights_from_counts([5, 5, 10]))(cls_logits, sub)
    t0 = loss(NetOutput(outs, cls_logits), target, sub, epoch=0)
    assert t0.lam == 0.0
    torch.testing.assert_close(t0.total, seg_only)
    t2 = loss(NetOutput(outs, cls_logits), target, sub, epoch=2)
    assert t2.lam == 0.5
    torch.testing.assert_close(t2.total, seg_only + 0.5 * cls_only)
    torch.testing.assert_close(t2.cls, cls_only)
    no_head = loss(NetOutput(outs, None), target, None, epoch=5)
    assert no_head.cls is None
    torch.testing.assert_close(no_head.total, seg_only)
    with pytest.raises(ValueError, match="class_counts"):
        MultitaskLoss(LossConfig())
    with pytest.raises(ValueError, match="subtype targets"):
        loss(NetOutput(outs, cls_logits), target, None, epoch=0)
