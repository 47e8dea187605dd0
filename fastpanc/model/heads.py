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
    """

    kind: str = "pool"  # chosen by benchmarks/ablate_head.py, see docs/model.md
    hidden: int = 128
    dropout: float = 0.2
    n_scales: int = 3
    lesion_channel: int = 2
    detach_attention: bool = True

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
        self, skips: list[torch.Tensor], decoder_features: list[torch.Tensor], seg_logits: torch.Tensor
    ) -> torch.Tensor:
        pooled = []
        for f in skips[-self.n_scales :]:
            dims = _spatial_dims(f)
            pooled.append(f.mean(dim=dims))  # (B, C)
            pooled.append(f.amax(dim=dims))  # (B, C)
        return self.mlp(torch.cat(pooled, dim=1))


class LesionAttentionHead(nn.Module):
    """Lesion-probability-weighted pooling of decoder features + global context -> MLP.

    Inputs: encoder outputs ``skips`` (bottleneck last), decoder outputs (lowest resolution first) and
    the full-resolution segmentation logits ``(B, K, *S)``. Output ``(B, num_subtypes)``.
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
        self.mlp = _mlp(cin, cfg.hidden, num_subtypes, cfg.dropout)

    def forward(
        self, skips: list[torch.Tensor], decoder_features: list[torch.Tensor], seg_logits: torch.Tensor
    ) -> torch.Tensor:
        if seg_logits.shape[1] <= self.cfg.lesion_channel:
            raise ValueError(
                f"lesion_channel {self.cfg.lesion_channel} is out of range for {seg_logits.shape[1]} seg classes"
            )
        prob = torch.softmax(seg_logits.float(), dim=1)[
            :, self.cfg.lesion_channel : self.cfg.lesion_channel + 1
        ]
        if self.cfg.detach_attention:
            prob = prob.detach()
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
        return self.mlp(torch.cat(pooled, dim=1))


def build_head(
    cfg: HeadConfig, encoder_channels: Sequence[int], decoder_channels: Sequence[int], num_subtypes: int
) -> nn.Module:
    """Build the head ``cfg.kind`` for an encoder/decoder with the given channel lists."""
    if cfg.kind == "pool":
        return PoolHead(cfg, encoder_channels, num_subtypes)
    return LesionAttentionHead(cfg, encoder_channels, decoder_channels, num_subtypes)
