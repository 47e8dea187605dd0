"""1x1 convolutions as matrix products on the CPU.

oneDNN runs 1x1 (pointwise) convolutions of contiguous ``(B, C, *S)`` tensors slowly on the CPU when the channel
counts are small, and their backward far more slowly: the deep-supervision segmentation layers (8 -> 3 channels at
full resolution) took 4 ms forward and 22 ms backward for a batch of two 16 x 64 x 64 patches, against 0.6 ms and
1.4 ms for the same arithmetic as one ``(O, C) @ (C, Z*Y*X)`` product per sample (``benchmarks/RESULTS.md``,
training section). A 1x1 convolution of a contiguous tensor is exactly that product, so :class:`PointwiseConv3d`
(and its 2D twin) compute it with ``baddbmm`` on CPU tensors, forward and backward through autograd. Channels-last
inputs (where oneDNN's 1x1 kernels are fast) and CUDA tensors go through the ordinary convolution. Parameters and
state-dict keys are those of ``nn.Conv3d`` / ``nn.Conv2d``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def pointwise_conv(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    """A 1x1 convolution (stride 1, no padding, one group) of ``x`` ``(B, C, *S)`` with ``weight``
    ``(O, C, 1, ...)`` and ``bias`` ``(O,)`` or None; ``(B, O, *S)``.

    On a contiguous CPU tensor it is one matrix product per sample (``(O, C) @ (C, prod(S))``); otherwise
    the ordinary convolution.
    """
    if x.device.type != "cpu" or not x.is_contiguous() or x.dim() not in (4, 5):
        conv = F.conv3d if x.dim() == 5 else F.conv2d
        return conv(x, weight, bias)
    b, c = x.shape[:2]
    o = weight.shape[0]
    if weight.shape[1] != c or any(k != 1 for k in weight.shape[2:]):
        raise ValueError(
            f"pointwise_conv: expected a (O, {c}, 1, ...) weight for {c} input channels, got {tuple(weight.shape)}"
        )
    w = weight.reshape(o, c)
    flat = x.reshape(b, c, -1)  # (B, C, N), a view
    if bias is None:
        y = torch.matmul(w, flat)  # (B, O, N)
    else:
        y = torch.baddbmm(bias.view(1, o, 1), w.expand(b, o, c), flat)  # (B, O, N)
    return y.view(b, o, *x.shape[2:])


class _Pointwise:
    """``forward`` of a 1x1, stride-1, unpadded convolution module through :func:`pointwise_conv`."""

    weight: torch.Tensor
    bias: torch.Tensor | None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return pointwise_conv(x, self.weight, self.bias)


class PointwiseConv3d(_Pointwise, nn.Conv3d):
    """``nn.Conv3d(cin, cout, 1)`` (same parameters and state-dict keys), computed by :func:`pointwise_conv`."""

    def __init__(self, cin: int, cout: int, bias: bool = True) -> None:
        super().__init__(cin, cout, 1, 1, 0, bias=bias)


class PointwiseConv2d(_Pointwise, nn.Conv2d):
    """``nn.Conv2d(cin, cout, 1)`` (same parameters and state-dict keys), computed by :func:`pointwise_conv`."""

    def __init__(self, cin: int, cout: int, bias: bool = True) -> None:
        super().__init__(cin, cout, 1, 1, 0, bias=bias)


POINTWISE = {2: PointwiseConv2d, 3: PointwiseConv3d}
