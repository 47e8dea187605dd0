"""Online validation metrics: pseudo-Dice counts and macro-F1 (checked against scikit-learn)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from sklearn.metrics import f1_score

from fastpanc.training.validation import dice_from_counts, macro_f1, region_counts


@pytest.mark.parametrize("seed", range(5))
def test_macro_f1_matches_sklearn(seed: int) -> None:
    rng = np.random.default_rng(seed)
    t, p = rng.integers(0, 3, 20), rng.integers(0, 3, 20)
    assert macro_f1(t, p) == pytest.approx(f1_score(t, p, average="macro"))
    assert macro_f1([0, 1, 2], [0, 1, 2]) == 1.0
    assert macro_f1([0, 0, 1], [0, 0, 0]) == pytest.approx(f1_score([0, 0, 1], [0, 0, 0], average="macro"))
    with pytest.raises(ValueError, match="equally long"):
        macro_f1([0, 1], [0])


def test_pseudo_dice_of_regions() -> None:
    target = torch.tensor([[0, 1, 1, 2, 2, 0]])
    pred = torch.tensor([[0, 1, 2, 2, 0, 1]])
    counts = region_counts(pred, target)
    # pancreas (label > 0): pred {1,2,3,5}, target {1,2,3,4} -> tp 3, fp 1, fn 1
    # lesion (label 2): pred {2,3}, target {3,4} -> tp 1, fp 1, fn 1
    assert counts.tolist() == [[3, 1, 1], [1, 1, 1]]
    pancreas, lesion = dice_from_counts(counts + region_counts(pred, target))  # sums over patches
    assert pancreas == pytest.approx(0.75) and lesion == pytest.approx(0.5)
    _, absent = dice_from_counts(
        region_counts(torch.zeros(1, 4, dtype=torch.long), torch.zeros(1, 4, dtype=torch.long))
    )
    assert math.isnan(absent)


def test_subtype_patches_run_in_batches_with_the_same_predictions(
    tiny_preprocessed, tmp_path, monkeypatch
) -> None:
    """The per-case subtype patches run batched; each case gets the prediction it gets alone."""
    from contextlib import nullcontext

    from fastpanc.training import validation
    from fastpanc.training.config import TrainConfig
    from fastpanc.training.trainer import Trainer

    cfg = TrainConfig(num_workers=1, patch_size=(8, 16, 16), batch_size=2, lambda_ramp_epochs=0)
    tr = Trainer(tiny_preprocessed, tmp_path / "m", cfg, "cpu")
    seen: list[list[int]] = []
    monkeypatch.setattr(validation, "macro_f1", lambda t, p: seen.append(list(p)) or 0.0)
    batches: list[int] = []
    forward = tr.network.forward
    monkeypatch.setattr(tr.network, "forward", lambda x, *a: batches.append(x.shape[0]) or forward(x, *a))

    def run(factor: int) -> None:
        monkeypatch.setattr(validation, "CLS_BATCH_FACTOR", factor)
        batches.clear()
        objective = lambda out, seg, sub: tr.objective(out, seg, sub, 0)  # noqa: E731
        validation.validate(tr.network, tr.val_sampler, 1, objective, tr.device, nullcontext)

    run(1)
    one = batches[1:]  # after the one pseudo-Dice batch
    run(10)
    assert one == [2, 1] and batches[1:] == [3]  # 3 validation cases
    assert seen[0] == seen[1] and len(seen[0]) == 3
