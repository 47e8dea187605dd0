"""Subtype classification heads on the shared encoder/decoder features.

Two designs (compared in ``benchmarks/ablate_head.py``, results in ``docs/model.md``):

- ``"pool"``: global average and max pooling of the bottleneck and the next-higher encoder outputs,
  concatenated into an MLP.
- ``"attention"``: lesion-attention pooling: decoder features at the highest resolutions are averaged
  with weights given by the predicted lesion probability (softmax of the full-resolution segmentation
  logits, lesion channel, area-downsampled to each scale, normalised to sum 1), concatenated with a global
  context vector (average of the bottleneck) and the log predicted lesion fraction, into an MLP.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

HEAD_KINDS = ("attention", "pool")


@dataclass(frozen=True)
class HeadConfig:
    """Classification head settings.

    ``n_scales``: how many feature scales are pooled (encoder outputs from the bottleneck up for
    ``pool``; decoder outputs from full resolution down for ``attention``). ``lesion_channel``: the
    segmentation channel whose probability weights the attention. ``detach_attention``: stop the
    classification loss from flowing into the segmentation logits through the attention map.
    ``intensity_stats``: the ``attention`` head also reads the CT inside and around the attended lesion
    (:func:`lesion_intensity_stats`).
    """

    kind: str = "attention"  # see docs/model.md (head comparison)
    hidden: int = 128
    dropout: float = 0.2
    n_scales: int = 3
    lesion_channel: int = 2
    detach_attention: bool = True
    intensity_stats: bool = True

    def __post_init__(self) -> None:
        if self.kind not in HEAD_KINDS:
            raise ValueError(f"head kind must be one of {HEAD_KINDS}, got {self.kind!r}")
        if self.hidden < 1:
            raise ValueError(f"head hidden size must be >= 1, got {self.hidden}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"head dropout must be in [0, 1), got {self.dropout}")
        if self.n_scales < 1:
            raise ValueError(f"head n_scales must be >= 1, got {self.n_scales}")
        if self.lesion_channel < 1:
            raise ValueError(f"lesion_channel must be a foreground channel (>= 1), got {self.lesion_channel}")


def _mlp(cin: int, hidden: int, cout: int, dropout: float) -> nn.Sequential:
    return nn.Sequential(
        nn.LayerNorm(cin), nn.Linear(cin, hidden), nn.GELU(), nn.Dropout(dropout), nn.Linear(hidden, cout)
    )


def _spatial_dims(x: torch.Tensor) -> tuple[int, ...]:
    return tuple(range(2, x.ndim))


class PoolHead(nn.Module):
    """Global avg+max pooling of the last ``n_scales`` encoder outputs -> MLP -> ``(B, num_subtypes)``."""

    def __init__(self, cfg: HeadConfig, encoder_channels: Sequence[int], num_subtypes: int) -> None:
        super().__init__()
        self.n_scales = min(cfg.n_scales, len(encoder_channels))
        cin = 2 * sum(encoder_channels[-self.n_scales :])
        self.mlp = _mlp(cin, cfg.hidden, num_subtypes, cfg.dropout)

    def forward(
        self,
        skips: list[torch.Tensor],
        decoder_features: list[torch.Tensor],
        seg_logits: torch.Tensor,
        image: torch.Tensor | None = None,
        attention: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """``image`` and ``attention`` are accepted for a common signature; global pooling uses neither."""
        pooled = []
        for f in skips[-self.n_scales :]:
            dims = _spatial_dims(f)
            pooled.append(f.mean(dim=dims))  # (B, C)
            pooled.append(f.amax(dim=dims))  # (B, C)
        return self.mlp(torch.cat(pooled, dim=1))


class LesionAttentionHead(nn.Module):
    """Lesion-probability-weighted pooling of decoder features + global context (+ the lesion's intensity
    statistics) -> MLP.

    Inputs: encoder outputs ``skips`` (bottleneck last), decoder outputs (lowest resolution first), the
    full-resolution segmentation logits ``(B, K, *S)`` and the network input. Output ``(B, num_subtypes)``.
    The statistics use the predicted lesion probability above 0.5 (rescaled to [0, 1]), or the
    ``attention`` given (the lesion labels while training).
    """

    def __init__(
        self,
        cfg: HeadConfig,
        encoder_channels: Sequence[int],
        decoder_channels: Sequence[int],
        num_subtypes: int,
    ) -> None:
        super().__init__()
        self.cfg = cfg
        self.n_scales = min(cfg.n_scales, len(decoder_channels))
        cin = sum(decoder_channels[-self.n_scales :]) + encoder_channels[-1] + 1
        if cfg.intensity_stats:
            cin += N_INTENSITY_STATS
        self.mlp = _mlp(cin, cfg.hidden, num_subtypes, cfg.dropout)

    def forward(
        self,
        skips: list[torch.Tensor],
        decoder_features: list[torch.Tensor],
        seg_logits: torch.Tensor,
        image: torch.Tensor | None = None,
        attention: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """``image``: the network input (needed for ``intensity_stats``). ``attention``: ``(B, 1, *S)`` weights
        to use instead of the predicted lesion probability (training on the lesion labels)."""
        if seg_logits.shape[1] <= self.cfg.lesion_channel:
            raise ValueError(
                f"lesion_channel {self.cfg.lesion_channel} is out of range for {seg_logits.shape[1]} seg classes"
            )
        if attention is None:
            prob = torch.softmax(seg_logits.float(), dim=1)[
                :, self.cfg.lesion_channel : self.cfg.lesion_channel + 1
            ]
            if self.cfg.detach_attention:
                prob = prob.detach()
        else:
            if attention.shape != (seg_logits.shape[0], 1, *seg_logits.shape[2:]):
                raise ValueError(
                    f"attention must be (B, 1, *S) = {(seg_logits.shape[0], 1, *seg_logits.shape[2:])}, "
                    f"got {tuple(attention.shape)}"
                )
            prob = attention.float()
        pool = F.adaptive_avg_pool3d if prob.ndim == 5 else F.adaptive_avg_pool2d
        pooled = []
        for f in decoder_features[-self.n_scales :]:
            w = pool(prob, f.shape[2:]).to(f.dtype)  # (B, 1, *S_k), area-downsampled lesion probability
            dims = _spatial_dims(f)
            w = w / (w.sum(dim=dims, keepdim=True) + 1e-6)  # normalised attention, sums to ~1
            pooled.append((f * w).sum(dim=dims))  # (B, C_k)
        bottleneck = skips[-1]
        pooled.append(bottleneck.mean(dim=_spatial_dims(bottleneck)))  # (B, C_bottleneck) global context
        frac = prob.mean(dim=_spatial_dims(prob)).to(bottleneck.dtype)  # (B, 1) predicted lesion fraction
        pooled.append(torch.log(frac + 1e-6) / math.log(1e6))  # roughly in [-1, 0]
        if self.cfg.intensity_stats:
            if image is None:
                raise ValueError("this head reads the lesion's intensities: pass the network input as image")
            weight = prob if attention is not None else (2.0 * prob - 1.0).clamp_min(0.0)  # p > 0.5 only
            pooled.append(lesion_intensity_stats(image, weight).to(bottleneck.dtype))
        return self.mlp(torch.cat(pooled, dim=1))


N_INTENSITY_STATS = 6


@torch.no_grad()
def lesion_intensity_stats(image: torch.Tensor, weight: torch.Tensor, band: int = 2) -> torch.Tensor:
    """Six statistics of the (normalised) CT in and around a lesion given by soft weights, ``(B, 6)``.

    The lesion's core is its weight map eroded in-plane by ``band`` voxels (a minimum filter), its shell
    the weight the erosion removed, and the ring around it the in-plane dilation minus the lesion. With
    weighted means ``m_*`` and standard deviations ``s_*``: ``m_lesion - m_ring`` (attenuation against the
    surroundings), ``s_lesion`` (heterogeneity), ``m_shell - m_core`` (rim or capsule against the
    interior), ``s_core`` (septa, locules, necrosis), ``m_shell - m_ring`` and ``m_core - m_ring``. Ratios of
    weighted sums, so they do not depend on the lesion's size; 0 where the weights are all 0.
    """
    x = image[:, :1].float()
    w = weight.float()
    # erosion / dilation by a 3x3 in-plane square, `band` times = by a (2 band + 1)^2 square
    core = -_inplane_max_filter(-w, band)
    grown = _inplane_max_filter(w, band)
    shell = (w - core).clamp_min(0.0)
    ring = (grown - w).clamp_min(0.0)
    dims = _spatial_dims(x)

    def mean_std(wt: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        total = wt.sum(dim=dims) + 1e-6
        m = (x * wt).sum(dim=dims) / total
        var = (torch.square(x - m.view(*m.shape, *[1] * len(dims))) * wt).sum(dim=dims) / total
        return m, var.clamp_min(0.0).sqrt()

    m_les, s_les = mean_std(w)
    m_core, s_core = mean_std(core)
    m_shell, _ = mean_std(shell)
    m_ring, _ = mean_std(ring)
    return torch.cat(
        [m_les - m_ring, s_les, m_shell - m_core, s_core, m_shell - m_ring, m_core - m_ring], dim=1
    )


def _inplane_max_filter(x: torch.Tensor, r: int) -> torch.Tensor:
    """Maximum over the ``(2r + 1) x (2r + 1)`` square in the last two axes, voxels outside the image ignored
    (``max_pool`` with stride 1 and padding ``r``), as two separable passes of shifted maxima: ten times
    faster than ``max_pool3d`` with a (1, 3, 3) kernel on the CPU, which also computes indices."""
    if r < 1:
        return x
    out = x
    for axis in (-1, -2):
        n = out.shape[axis]
        pad = (r, r, 0, 0) if axis == -1 else (0, 0, r, r)
        padded = F.pad(out, pad, value=float("-inf"))
        acc = padded.narrow(axis, 0, n)
        for k in range(1, 2 * r + 1):
            acc = torch.maximum(acc, padded.narrow(axis, k, n))
        out = acc
    return out


def build_head(
    cfg: HeadConfig, encoder_channels: Sequence[int], decoder_channels: Sequence[int], num_subtypes: int
) -> nn.Module:
    """Build the head ``cfg.kind`` for an encoder/decoder with the given channel lists."""
    if cfg.kind == "pool":
        return PoolHead(cfg, encoder_channels, num_subtypes)
    return LesionAttentionHead(cfg, encoder_channels, decoder_channels, num_subtypes)
