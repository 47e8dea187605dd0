"""Sliding-window prediction with Gaussian aggregation, batched windows and batched mirrored passes.

The windows, the Gaussian importance map and the padding follow nnU-Net v2 (``compute_steps_for_sliding_window``,
``compute_gaussian(sigma_scale=1/8, value_scaling_factor=10)``, centred constant-0 padding to the patch size),
so that ``padding="patch"`` reproduces ``nnUNetPredictor``'s logits. Aggregation runs on the device of the
network, in float32 with the fused ``fastpanc.ops.accumulate`` kernel, or in nnU-Net's float16.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from fastpanc.inference.config import PADDINGS, SUBTYPE_SOURCES
from fastpanc.ops import accumulate, argmax_labels, finalize, gaussian_map, sliding_window_starts

log = logging.getLogger("fastpanc.inference")

LESION, PANCREAS = 2, 1


@dataclass
class WindowPrediction:
    """Result of :func:`predict_logits`.

    ``logits``: ``(K, Z, Y, X)`` in the accumulation dtype, on the network's device; None when labels were
    asked for instead. ``labels``: ``(Z, Y, X)`` uint8 argmax from the fused ``finalize`` kernel (divide and
    argmax in one pass), or None. ``subtype_probs``: ``(S,)`` float32 on the
    CPU (aggregated over windows, see :func:`aggregate_subtype`) or None without a head. ``subtype_weighting``:
    ``"lesion_window"`` (one window centred on the largest predicted lesion), or ``"lesion"``, ``"pancreas"`` or
    ``"uniform"``: what weighted the sliding windows. ``num_windows``: sliding windows run.
    """

    logits: torch.Tensor | None
    subtype_probs: torch.Tensor | None
    subtype_weighting: str | None
    num_windows: int
    labels: torch.Tensor | None = None


# ``padding="cover"``: an axis up to this many patches long is covered by one window, and a window holds at
# most COVER_MAX_VOLUME patches' voxels (its activations, mirrored copies included, stay within 2x a patch's)
COVER_GROWTH = 1.5
COVER_MAX_VOLUME = 2.0


def padded_shape(
    shape: Sequence[int], patch: Sequence[int], padding: str, divisor: Sequence[int] | None
) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """(padded size, window size). ``patch``: pad up to the patch (nnU-Net). ``minimal``: windows shrink to
    the image rounded up to ``divisor`` (the product of the network's strides) where it is smaller than the patch.
    ``cover``: as ``minimal``, and along an axis where the image rounded up to ``divisor`` is at most
    ``COVER_GROWTH`` patches long, one window grows to cover it (the network is fully convolutional): an image a
    little larger than the patch then costs one pass instead of two overlapping ones per axis. The grown window
    holds at most ``COVER_MAX_VOLUME`` patches' voxels; beyond that the most grown axes keep the patch size.
    """
    if padding == "patch":
        window = tuple(int(p) for p in patch)
    elif padding in ("minimal", "cover"):
        if divisor is None:
            raise ValueError(f"padding={padding!r} needs the network's divisor (product of its strides)")
        rounded = [int(math.ceil(s / d)) * int(d) for s, d in zip(shape, divisor)]
        grow = COVER_GROWTH if padding == "cover" else 1.0
        win = [r if r <= grow * int(p) else int(p) for r, p in zip(rounded, patch)]
        # memory: a grown window holds at most COVER_MAX_VOLUME patches; the most grown axes go back first
        while math.prod(win) > COVER_MAX_VOLUME * math.prod(int(p) for p in patch):
            a = max(range(len(win)), key=lambda i: win[i] / int(patch[i]))
            win[a] = int(patch[a])
        window = tuple(win)
        if all(w <= int(d) for w, d in zip(window, divisor)):
            # one voxel at the bottleneck: instance norm cannot normalise it, so pad to the patch as nnU-Net
            window = tuple(int(p) for p in patch)
    else:
        raise ValueError(f"padding must be one of {PADDINGS}, got {padding!r}")
    return tuple(max(int(s), w) for s, w in zip(shape, window)), window


def network_outputs(network: torch.nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
    """``(seg logits (B, K, *S), subtype logits (B, S) or None)`` for fastpanc and nnU-Net networks."""
    out = network(x)
    if isinstance(out, torch.Tensor):
        return out, None
    if hasattr(out, "seg"):  # fastpanc NetOutput
        seg = out.seg[0] if isinstance(out.seg, (list, tuple)) else out.seg
        return seg, out.cls
    if (
        isinstance(out, (list, tuple)) and out and isinstance(out[0], torch.Tensor)
    ):  # deep supervision left on
        return out[0], None
    raise TypeError(f"network returned {type(out).__name__}; expected a tensor or NetOutput(seg, cls)")


def _mirrored_forward(
    network: torch.nn.Module, x: torch.Tensor, mirror_axes: Sequence[int] | None, autocast: torch.dtype | None
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Average over all mirror combinations (nnU-Net's TTA), run as one batch ``(B * M, C, *S)``."""
    combos: list[tuple[int, ...]] = [()]
    if mirror_axes:
        axes = [a + 2 for a in mirror_axes]
        combos += [c for i in range(len(axes)) for c in itertools.combinations(axes, i + 1)]
    batch = torch.cat([x] + [torch.flip(x, c) for c in combos[1:]]) if len(combos) > 1 else x
    ctx = torch.autocast(x.device.type, dtype=autocast) if autocast is not None else contextlib.nullcontext()
    with ctx:
        seg, cls = network_outputs(network, batch)
    seg = seg.float()
    b = x.shape[0]
    total = seg[:b].clone()
    for i, c in enumerate(combos[1:], start=1):
        total += torch.flip(seg[i * b : (i + 1) * b], c)
    total /= len(combos)
    probs = None
    if cls is not None:
        probs = torch.softmax(cls.float(), dim=1).view(len(combos), b, -1).mean(0)  # (B, S)
    return total, probs


def aggregate_subtype(
    probs: torch.Tensor, lesion: torch.Tensor, pancreas: torch.Tensor
) -> tuple[torch.Tensor, str]:
    """Weighted mean of per-window subtype probabilities ``(W, S)``.

    Weights: the predicted lesion voxels of each window; when no window has any, the pancreas voxels; when
    none has those either, uniform. Returns ``((S,), weighting)``.
    """
    for weights, name in ((lesion, "lesion"), (pancreas, "pancreas")):
        w = weights.double()
        if w.sum() > 0:
            return (probs.double() * w[:, None]).sum(0).div(w.sum()).float(), name
    return probs.mean(0).float(), "uniform"


def lesion_window_start(
    lesion: torch.Tensor, window: Sequence[int], full: Sequence[int], offset: Sequence[int]
) -> tuple[int, ...] | None:
    """Start of the window centred on the largest connected component of ``lesion`` (bool, unpadded grid);
    ``offset`` maps that grid into the padded one of size ``full``; None when there is no lesion."""
    import numpy as np
    from scipy import ndimage

    mask = lesion.cpu().numpy()
    if not mask.any():
        return None
    parts, _ = ndimage.label(mask)
    largest = 1 + int(np.argmax(np.bincount(parts.ravel())[1:]))
    where = np.argwhere(parts == largest)
    centre = (where.min(0) + where.max(0)) // 2 + np.asarray(offset)
    return tuple(int(np.clip(c - w // 2, 0, f - w)) for c, w, f in zip(centre, window, full))


def _now(device: torch.device) -> float:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter()


@torch.inference_mode()
def predict_logits(
    network: torch.nn.Module,
    data: torch.Tensor,
    patch_size: Sequence[int],
    step: float = 0.5,
    mirror_axes: Sequence[int] | None = None,
    batch_size: int = 1,
    use_gaussian: bool = True,
    device: torch.device | str = "cpu",
    autocast: torch.dtype | None = None,
    padding: str = "patch",
    divisor: Sequence[int] | None = None,
    progress: bool = False,
    timings: dict[str, float] | None = None,
    accumulate_dtype: torch.dtype = torch.float32,
    output: str = "logits",
    subtype_from: str = "windows",
) -> WindowPrediction:
    """Predict ``data`` ``(C, Z, Y, X)`` with overlapping windows.

    Args:
        network: in eval mode, already on ``device``; returns a tensor ``(B, K, *P)`` or ``NetOutput``.
        patch_size: ``(pz, py, px)`` window size of the plans.
        step: window step as a fraction of the window (nnU-Net: 0.5).
        mirror_axes: spatial axes (0, 1, 2) to mirror for test-time augmentation; None: no TTA.
        batch_size: windows per forward pass (each with all its mirrored copies).
        autocast: None (float32) or the autocast dtype (bfloat16 / float16).
        padding: ``"patch"`` (nnU-Net), ``"minimal"`` or ``"cover"`` (see :func:`padded_shape`).
        divisor: product of the network's strides per axis (needed for ``"minimal"``).
        accumulate_dtype: dtype of the Gaussian map and of the accumulators (nnU-Net: float16, which decides
            near-ties in its labels; ``mode="exact"`` uses it to reproduce them).
        output: ``"logits"`` (the averaged logits) or ``"labels"`` (their argmax as uint8 through the fused
            ``finalize`` kernel, without materialising the logits; float32 accumulation only).
        subtype_from: ``"windows"`` (see :func:`aggregate_subtype`) or ``"lesion_window"``: one more window,
            centred on the largest predicted lesion (as the head saw lesions in training), gives the subtype.
        timings: when given, seconds spent in the network (``"network"``) and in the Gaussian aggregation
            (``"aggregate"``) are added to it (the device is synchronised to attribute them).

    Returns:
        :class:`WindowPrediction` with logits ``(K, Z, Y, X)`` on ``device``.
    """
    if data.ndim != 4:
        raise ValueError(f"data must be (C, Z, Y, X), got shape {tuple(data.shape)}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if output not in ("logits", "labels"):
        raise ValueError(f"output must be 'logits' or 'labels', got {output!r}")
    if subtype_from not in SUBTYPE_SOURCES:
        raise ValueError(f"subtype_from must be one of {SUBTYPE_SOURCES}, got {subtype_from!r}")
    if output == "labels" and accumulate_dtype != torch.float32:
        raise ValueError("output='labels' needs float32 accumulation (the fused finalize kernel)")
    device = torch.device(device)
    shape = tuple(int(s) for s in data.shape[1:])
    full, window = padded_shape(shape, patch_size, padding, divisor)
    lo = [(f - s) // 2 for f, s in zip(full, shape)]
    if full != shape:  # centred constant-0 padding, as acvl_utils' pad_nd_image
        pad = []
        for f, s, lo_ in reversed(list(zip(full, shape, lo))):
            pad += [lo_, f - s - lo_]
        data = torch.nn.functional.pad(data, pad)
    data = data.to(device=device, dtype=torch.float32)
    starts = list(itertools.product(*sliding_window_starts(full, window, step)))
    if use_gaussian:
        gauss = gaussian_map(window, dtype=accumulate_dtype, device=device)
    else:
        gauss = torch.ones(window, device=device, dtype=accumulate_dtype)

    acc: torch.Tensor | None = None
    weight = torch.zeros(full, dtype=accumulate_dtype, device=device)
    cls_probs, lesion_vox, pancreas_vox = [], [], []
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=len(starts), desc="windows", leave=False)
    for b0 in range(0, len(starts), batch_size):
        group = starts[b0 : b0 + batch_size]
        slices = [tuple(slice(s, s + w) for s, w in zip(st, window)) for st in group]
        x = torch.stack([data[(slice(None), *sl)] for sl in slices])  # (B, C, *window)
        t0 = _now(device)
        seg, probs = _mirrored_forward(network, x, mirror_axes, autocast)  # (B, K, *window), (B, S)
        t1 = _now(device)
        if acc is None:
            acc = torch.zeros((seg.shape[1], *full), dtype=accumulate_dtype, device=device)
        if accumulate_dtype == torch.float32:  # the fused kernel (C++/CUDA), one call per batch
            accumulate(acc, weight, seg, group, gauss)
        else:  # nnU-Net's float16 accumulators, reproduced operation by operation
            for i, sl in enumerate(slices):
                acc[(slice(None), *sl)] += seg[i] * gauss
                weight[sl] += gauss
        if probs is not None:
            labels = torch.stack([argmax_labels(s) for s in seg])  # (B, *window) uint8
            cls_probs.append(probs.cpu())
            lesion_vox.append((labels == LESION).flatten(1).sum(1).cpu())
            pancreas_vox.append((labels == PANCREAS).flatten(1).sum(1).cpu())
        if timings is not None:
            t2 = _now(device)
            timings["network"] = timings.get("network", 0.0) + t1 - t0
            timings["aggregate"] = timings.get("aggregate", 0.0) + t2 - t1
        if bar is not None:
            bar.update(len(group))
    if bar is not None:
        bar.close()
    assert acc is not None
    t0 = _now(device)
    crop = tuple(slice(lo_, lo_ + s) for lo_, s in zip(lo, shape))
    logits, labels = None, None
    if output == "labels":
        labels, _ = finalize(acc[(slice(None), *crop)], weight[crop])
    else:
        acc /= weight
        logits = acc[(slice(None), *crop)].contiguous()
    if timings is not None:
        timings["aggregate"] = timings.get("aggregate", 0.0) + _now(device) - t0
    subtype, weighting = None, None
    if cls_probs:
        subtype, weighting = aggregate_subtype(
            torch.cat(cls_probs), torch.cat(lesion_vox), torch.cat(pancreas_vox)
        )
        if subtype_from == "lesion_window":  # the argmax is only needed here
            lesion = (labels if labels is not None else argmax_labels(logits)) == LESION
            # at most the patch, as in training: a window grown by padding="cover" would change what the head
            # pools over (its global context and the lesion's share of the window)
            lesion_window = tuple(min(int(p), w) for p, w in zip(patch_size, window))
            start = lesion_window_start(lesion, lesion_window, full, lo)
            if start is not None:
                t0 = _now(device)
                sl = tuple(slice(s, s + w) for s, w in zip(start, lesion_window))
                _, probs = _mirrored_forward(network, data[(slice(None), *sl)][None], mirror_axes, autocast)
                subtype, weighting = probs[0].cpu(), "lesion_window"
                if timings is not None:
                    timings["network"] = timings.get("network", 0.0) + _now(device) - t0
    return WindowPrediction(logits, subtype, weighting, len(starts), labels)
