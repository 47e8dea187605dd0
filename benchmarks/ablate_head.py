"""Head ablation on synthetic data: "pool" vs "attention" subtype heads on the same small network.

Each head trains the same tiny residual-encoder U-Net (4 stages, 8 base features) from the same seed,
on the same synthetic cases and the same number of iterations, with fastpanc's MultitaskLoss and a
plain loop; held-out synthetic cases give whole-pancreas Dice, lesion Dice and subtype macro-F1.

Cases come from ``fastpanc.data.synth.generate_case``: each is cropped to the pancreas bounding box
(plus a margin) and resized to one small fixed shape, so that a whole pancreas fits one patch and the
CPU cost stays small. This is a relative comparison of the heads under a tight CPU budget, not an
accuracy claim for real data.

    python benchmarks/ablate_head.py --train-cases 60 --test-cases 30 --iters 500 --seeds 0 1
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import logging
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.metrics import f1_score
from tqdm import tqdm

from fastpanc.model import HeadConfig, MultitaskResEncUNet
from fastpanc.model.losses import LossConfig, MultitaskLoss

log = logging.getLogger("ablate_head")

ARCH = dict(
    n_stages=4,
    features_per_stage=[8, 16, 32, 32],
    kernel_sizes=3,
    strides=[[1, 1, 1], [2, 2, 2], [2, 2, 2], [2, 2, 2]],
    n_blocks_per_stage=[1, 1, 2, 2],
    n_conv_per_stage_decoder=1,
)
HU_WINDOW = (-56.0, 180.0)  # the real data's CT-normalisation window


def prepare_case(image: np.ndarray, labels: np.ndarray, shape: tuple[int, int, int], margin: int = 4):
    """Crop to the pancreas box (+margin voxels) and resize: image ``(1, *shape)`` float32, labels ``(1, *shape)``."""
    fg = np.argwhere(labels > 0)
    lo = np.maximum(fg.min(0) - margin, 0)
    hi = np.minimum(fg.max(0) + 1 + margin, labels.shape)
    img = image[lo[0] : hi[0], lo[1] : hi[1], lo[2] : hi[2]].astype(np.float32)
    lab = labels[lo[0] : hi[0], lo[1] : hi[1], lo[2] : hi[2]]
    img = (np.clip(img, *HU_WINDOW) - 62.0) / 60.0
    x = F.interpolate(torch.from_numpy(img)[None, None], size=shape, mode="trilinear", align_corners=False)
    y = F.interpolate(torch.from_numpy(lab.astype(np.float32))[None, None], size=shape, mode="nearest-exact")
    return x[0], y[0].to(torch.int64)


def make_split(n: int, seed: int, shape: tuple[int, int, int], size_scale: float):
    """``n`` cases with subtypes cycling 0, 1, 2; returns images (N,1,*shape), labels, subtypes (N,)."""
    from fastpanc.data.synth import generate_case

    xs, ys, subs = [], [], []
    for i in tqdm(range(n), desc=f"synth seed {seed}", leave=False):
        sub = i % 3
        case = generate_case(sub, seed * 100_003 + i, size_scale=size_scale)
        x, y = prepare_case(np.asarray(case.image), np.asarray(case.labels), shape)
        xs.append(x)
        ys.append(y)
        subs.append(sub)
    return torch.stack(xs), torch.stack(ys), torch.tensor(subs)


def dice(pred: torch.Tensor, ref: torch.Tensor) -> float:
    """Dice of two boolean volumes; 1.0 when both are empty."""
    s = pred.sum() + ref.sum()
    return 1.0 if s == 0 else float(2 * (pred & ref).sum() / s)


def evaluate(
    net: MultitaskResEncUNet, x: torch.Tensor, y: torch.Tensor, sub: torch.Tensor
) -> dict[str, float]:
    net.eval()
    net.deep_supervision = False
    preds, cls = [], []
    with torch.no_grad():
        for i in range(0, len(x), 4):
            out = net(x[i : i + 4])
            preds.append(out.seg[0].argmax(1))
            cls.append(out.cls.argmax(1))
    net.deep_supervision = True
    pred, pcls = torch.cat(preds), torch.cat(cls)
    lab = y[:, 0]
    return {
        "dice_pancreas": float(np.mean([dice(p > 0, t > 0) for p, t in zip(pred, lab)])),
        "dice_lesion": float(np.mean([dice(p == 2, t == 2) for p, t in zip(pred, lab)])),
        "macro_f1": float(f1_score(sub.numpy(), pcls.numpy(), average="macro")),
        "accuracy": float((pcls == sub).float().mean()),
    }


def train_one(head: str, seed: int, data, args) -> dict[str, float]:
    xtr, ytr, str_, xte, yte, ste = data
    torch.manual_seed(seed)
    net = MultitaskResEncUNet(**ARCH, head=HeadConfig(kind=head, hidden=64, dropout=0.2))
    counts = torch.bincount(str_, minlength=3).tolist()
    loss_fn = MultitaskLoss(
        LossConfig(lambda_cls=args.lambda_cls, warmup_epochs=args.warmup, ramp_epochs=args.ramp), counts
    )
    opt = torch.optim.AdamW(net.parameters(), lr=args.lr, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=args.lr, total_steps=args.iters, pct_start=0.1)
    gen = torch.Generator().manual_seed(seed)
    net.train()
    t0 = time.perf_counter()
    for it in tqdm(range(args.iters), desc=f"{head} seed {seed}", leave=False):
        idx = torch.randint(0, len(xtr), (args.batch,), generator=gen)
        x, y = xtr[idx].clone(), ytr[idx].clone()
        for ax in (2, 3, 4):  # random mirroring, the same for image and labels
            if torch.rand((), generator=gen) < 0.5:
                x, y = x.flip(ax), y.flip(ax)
        x = x * (1 + 0.1 * torch.randn((), generator=gen)) + 0.1 * torch.randn((), generator=gen)
        if head == "attention" and torch.rand((), generator=gen) < args.label_attention:
            out = net(
                x, (y[:, :1] == 2).to(x.dtype)
            )  # attend to the lesion labels (the trainer's label_attention)
        else:
            out = net(x)
        terms = loss_fn(out, y, str_[idx], epoch=it / args.iters_per_epoch)
        opt.zero_grad(set_to_none=True)
        terms.total.backward()
        torch.nn.utils.clip_grad_norm_(net.parameters(), 12.0)
        opt.step()
        sched.step()
    train_s = time.perf_counter() - t0
    res = evaluate(net, xte, yte, ste)
    res["train_s"] = train_s
    log.info("%s seed %d: %s", head, seed, res)
    return res


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--train-cases", type=int, default=60)
    p.add_argument("--test-cases", type=int, default=30)
    p.add_argument("--shape", type=int, nargs=3, default=[16, 32, 48], help="patch (z y x) after crop+resize")
    p.add_argument(
        "--size-scale", type=float, default=0.5, help="generate_case size_scale (smaller = faster)"
    )
    p.add_argument("--iters", type=int, default=500)
    p.add_argument("--iters-per-epoch", type=int, default=50, help="for the lambda warm-up schedule")
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--lr", type=float, default=3e-3)
    p.add_argument("--lambda-cls", type=float, default=0.5)
    p.add_argument("--warmup", type=int, default=2, help="epochs with lambda 0")
    p.add_argument("--ramp", type=int, default=2, help="epochs of linear lambda ramp")
    p.add_argument("--heads", nargs="+", default=["pool", "attention"])
    p.add_argument(
        "--label-attention",
        type=float,
        default=0.5,
        help="share of steps the attention head attends to the labels",
    )
    p.add_argument("--seeds", type=int, nargs="+", default=[0])
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", type=Path, default=None, help="write the raw results as JSON here")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    torch.set_num_threads(args.threads)
    shape = tuple(args.shape)
    t0 = time.perf_counter()
    train = make_split(args.train_cases, 1, shape, args.size_scale)
    test = make_split(args.test_cases, 2, shape, args.size_scale)
    log.info(
        "data: %d train, %d test cases %s in %.0f s",
        args.train_cases,
        args.test_cases,
        shape,
        time.perf_counter() - t0,
    )
    data = (*train, *test)
    results = {h: [train_one(h, s, data, args) for s in args.seeds] for h in args.heads}

    print(f"\nHead ablation, {dt.date.today().isoformat()}, {platform.machine()} CPU, {args.threads} threads")
    print("command: python benchmarks/ablate_head.py " + " ".join(sys.argv[1:] if argv is None else argv))
    print("\n| head | pancreas Dice | lesion Dice | macro-F1 | accuracy | train s/run |")
    print("| --- | --- | --- | --- | --- | --- |")
    for h, runs in results.items():
        cells = []
        for k in ("dice_pancreas", "dice_lesion", "macro_f1", "accuracy", "train_s"):
            v = np.array([r[k] for r in runs])
            cells.append(f"{v.mean():.3f} ± {v.std():.3f}" if len(v) > 1 else f"{v[0]:.3f}")
        print(f"| {h} | " + " | ".join(cells) + " |")
    if args.out is not None:
        args.out.write_text(
            json.dumps({"args": vars(args) | {"out": str(args.out)}, "results": results}, indent=2)
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
