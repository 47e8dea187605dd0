"""Pure-torch definition of the resampling ops (the reference every compiled backend is tested against).

Semantics are those of nnU-Net v2's ``resample_data_or_seg`` with the packages it installs:
``skimage.transform.resize(order, mode="edge", anti_aliasing=False)`` for images, i.e.
``scipy.ndimage.zoom(grid_mode=True, mode="nearest")`` followed by clipping to the input's range, and
batchgenerators' ``resize_segmentation`` for labels (per-label indicator interpolation, argmax over labels,
exact ties settled by the nearest-neighbour label).

Along one axis of ``n`` input and ``m`` output samples, output ``k`` samples input coordinate
``cc = (k + 0.5) * (n / m) - 0.5`` (float64, in this operation order). Order 0 takes sample
``floor(cc + 0.5)``, order 1 the two samples ``floor(cc) + {0, 1}``, order 3 the cubic B-spline of the
signal padded by 12 edge values on each side and prefiltered with scipy's "nearest" boundary
(half-sample symmetric initialisation); sample indices outside the (padded) signal are clamped.
Everything is computed in float64; the tensor-product interpolation is applied one axis at a time,
which is the same linear operator.
"""

from __future__ import annotations

import torch

# the pole of the cubic B-spline prefilter (scipy.ndimage: sqrt(3) - 2)
POLE = -0.267949192431122706472553658494127633
NPAD = 12  # scipy pads by this many edge values before the spline prefilter in "nearest" mode


def axis_taps(n_in: int, n_out: int, order: int, device: torch.device | str = "cpu"):
    """Interpolation taps of one axis.

    Returns:
        ``(idx, w)``: ``idx`` int64 ``(n_out, order + 1)`` sample indices, clamped into the signal
        (the 12-padded signal for order 3, i.e. indices into ``n_in + 24`` samples), and ``w`` float64
        ``(n_out, order + 1)`` weights computed exactly as scipy's ``get_spline_interpolation_weights``.
    """
    zoom = float(n_in) / float(n_out)
    npad = NPAD if order == 3 else 0
    length = n_in + 2 * npad
    cc = torch.arange(n_out, dtype=torch.float64, device=device)
    cc = ((cc + 0.5) * zoom - 0.5) + float(npad)
    if order == 0:
        start = torch.floor(cc + 0.5)
        idx = start.long().clamp(0, length - 1)[:, None]
        return idx, torch.ones_like(cc)[:, None]
    fl = torch.floor(cc)
    start = fl.long() - order // 2
    x = cc - fl
    if order == 1:
        w0 = 1.0 - x
        ws = [w0]
    elif order == 3:
        y, z = x, 1.0 - x
        ws = [z * z * z / 6.0, (y * y * (y - 2.0) * 3.0 + 4.0) / 6.0, (z * z * (z - 2.0) * 3.0 + 4.0) / 6.0]
    else:
        raise ValueError(f"interpolation order must be 0, 1 or 3, got {order}")
    last = torch.ones_like(x)
    for w in ws:
        last = last - w
    w = torch.stack([*ws, last], dim=1)
    idx = (start[:, None] + torch.arange(order + 1, device=device)[None, :]).clamp(0, length - 1)
    return idx, w


def spline_prefilter(c: torch.Tensor) -> torch.Tensor:
    """Cubic B-spline coefficients along dim 0 of ``c`` (float64), scipy's "reflect" initialisation.

    ``c``: ``(L, ...)``; returns a new tensor of the same shape.
    """
    c = c * ((1.0 - POLE) * (1.0 - 1.0 / POLE))
    n = c.shape[0]
    if n == 1:
        return c
    z = POLE
    zn = z**n
    powers = torch.tensor([z**i for i in range(n)], dtype=torch.float64, device=c.device)
    shape = (n,) + (1,) * (c.dim() - 1)
    # causal initialisation (scipy _init_causal_reflect)
    s = (powers.view(shape) * (c + zn * c.flip(0))).sum(0)
    out = [c[0] + s * (z / (1 - zn * zn))]
    for i in range(1, n):
        out.append(c[i] + z * out[i - 1])
    # anticausal
    out[n - 1] = out[n - 1] * (z / (z - 1))
    for i in range(n - 2, -1, -1):
        out[i] = z * (out[i + 1] - out[i])
    return torch.stack(out, 0)


def resample_axis_reference(x: torch.Tensor, dim: int, n_out: int, order: int) -> torch.Tensor:
    """Resample float64 ``x`` along ``dim`` to ``n_out`` samples (no clipping)."""
    n_in = x.shape[dim]
    y = x.movedim(dim, 0)
    if order == 3:
        pad_idx = (torch.arange(n_in + 2 * NPAD, device=x.device) - NPAD).clamp(0, n_in - 1)
        y = spline_prefilter(y.index_select(0, pad_idx))
    idx, w = axis_taps(n_in, n_out, order, x.device)
    shape = (n_out,) + (1,) * (y.dim() - 1)
    out = torch.zeros((n_out, *y.shape[1:]), dtype=torch.float64, device=x.device)
    for h in range(idx.shape[1]):
        out = out + y.index_select(0, idx[:, h]) * w[:, h].view(shape)
    return out.movedim(0, dim)


def resample_image_reference(
    x: torch.Tensor,
    out_shape: tuple[int, int, int],
    order: int,
    separate_z: int | None,
    order_z: int,
) -> torch.Tensor:
    """``(C, Z, Y, X)`` -> float64 ``(C, *out_shape)``; see :func:`fastpanc.ops.resample`."""
    v = x.to(torch.float64)
    if tuple(v.shape[1:]) == tuple(out_shape):
        return v.clone()
    if separate_z is None:
        for d in range(3):
            v = resample_axis_reference(v, d + 1, out_shape[d], order)
        lo = x.to(torch.float64).amin(dim=(1, 2, 3), keepdim=True)
        hi = x.to(torch.float64).amax(dim=(1, 2, 3), keepdim=True)
        return torch.minimum(torch.maximum(v, lo), hi)
    zd = separate_z + 1
    plane = [d for d in (1, 2, 3) if d != zd]
    for d in plane:
        v = resample_axis_reference(v, d, out_shape[d - 1], order)
    # skimage clips every 2D slice to that slice's range
    src = x.to(torch.float64)
    lo = src.amin(dim=tuple(plane), keepdim=True)
    hi = src.amax(dim=tuple(plane), keepdim=True)
    v = torch.minimum(torch.maximum(v, lo), hi)
    if v.shape[zd] != out_shape[separate_z]:
        v = resample_axis_reference(v, zd, out_shape[separate_z], order_z)
    return v


def _tap_tables(in_shape, out_shape, device):
    """Per axis: order-1 taps/weights and the order-0 (nearest) index."""
    tables = []
    for n_in, n_out in zip(in_shape, out_shape):
        idx, w = axis_taps(n_in, n_out, 1, device)
        nn, _ = axis_taps(n_in, n_out, 0, device)
        tables.append((idx, w, nn[:, 0]))
    return tables


def _gather3(lab: torch.Tensor, i0, i1, i2) -> torch.Tensor:
    """``lab[i0[:, None, None], i1[None, :, None], i2[None, None, :]]``."""
    return lab[i0[:, None, None], i1[None, :, None], i2[None, None, :]]


def resample_labels_linear_reference(lab: torch.Tensor, out_shape: tuple[int, int, int]) -> torch.Tensor:
    """Per-label linear interpolation of a ``(Z, Y, X)`` label map, argmax with nearest tie-break.

    Scores are float64 sums over the 8 taps in scipy's order, each term ``(w0 * w1) * w2``; the winner
    is the nearest-neighbour label where it attains the top score, else the smallest top-scoring label.
    Axes whose size does not change sample with weights (1, 0), i.e. they are left alone.
    """
    (i0, w0, n0), (i1, w1, n1), (i2, w2, n2) = _tap_tables(lab.shape, out_shape, lab.device)
    labels = torch.unique(lab)
    if labels.numel() == 1:
        return torch.full(out_shape, int(labels[0]), dtype=lab.dtype, device=lab.device)
    taps = []
    for a in range(2):
        for b in range(2):
            for c in range(2):
                val = _gather3(lab, i0[:, a], i1[:, b], i2[:, c])
                term = (w0[:, a, None, None] * w1[None, :, b, None]) * w2[None, None, :, c]
                taps.append((val, term))
    nn = _gather3(lab, n0, n1, n2)
    best = None
    win = None
    nn_score = None
    for lbl in labels.tolist():
        score = torch.zeros(out_shape, dtype=torch.float64, device=lab.device)
        for val, term in taps:
            score = score + torch.where(val == lbl, term, torch.zeros_like(term))
        if best is None:
            best, win = score, torch.full(out_shape, lbl, dtype=lab.dtype, device=lab.device)
        else:
            better = score > best
            win = torch.where(better, torch.full_like(win, lbl), win)
            best = torch.maximum(best, score)
        nn_score = torch.where(
            nn == lbl, score, nn_score if nn_score is not None else torch.zeros_like(score)
        )
    return torch.where(nn_score == best, nn, win)


def resample_labels_zlinear_reference(
    lab: torch.Tensor, out_shape: tuple[int, int, int], axis: int
) -> torch.Tensor:
    """nnU-Net's separate-z second pass for labels with ``order_z=1`` (only ``axis`` changes size).

    Each label's indicator is interpolated linearly along ``axis``; the largest label whose score is
    above 0.5 wins, voxels where none is above 0.5 become 0 (as ``resample_data_or_seg`` does).
    """
    idx, w = axis_taps(lab.shape[axis], out_shape[axis], 1, lab.device)
    y = lab.movedim(axis, 0)
    shape = (out_shape[axis],) + (1,) * (y.dim() - 1)
    out = torch.zeros((out_shape[axis], *y.shape[1:]), dtype=lab.dtype, device=lab.device)
    for lbl in torch.unique(lab).tolist():
        score = torch.zeros(out.shape, dtype=torch.float64, device=lab.device)
        for h in range(2):
            hit = (y.index_select(0, idx[:, h]) == lbl).to(torch.float64)
            score = score + hit * w[:, h].view(shape)
        out = torch.where(score > 0.5, torch.full_like(out, lbl), out)
    return out.movedim(0, axis)


def resample_labels_nearest_reference(lab: torch.Tensor, out_shape: tuple[int, int, int]) -> torch.Tensor:
    """Order-0 resampling of a ``(Z, Y, X)`` label map."""
    idx = [axis_taps(n, m, 0, lab.device)[0][:, 0] for n, m in zip(lab.shape, out_shape)]
    return _gather3(lab, *idx)
