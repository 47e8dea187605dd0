"""Network topology rules of nnU-Net v2's planners, reimplemented without importing nnunetv2.

``pool_and_conv_props`` is nnU-Net's ``get_pool_and_conv_props`` (how many times each axis is pooled, the
kernel sizes per stage, the patch size padded to a multiple of the total stride) and
``resenc_feature_map_size`` is ``ResidualEncoderUNet.compute_conv_feature_map_size`` of
dynamic-network-architectures: the number of feature-map voxels the planner uses as its VRAM estimate.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Topology:
    """Pooling topology for one patch size.

    Attributes:
        num_pool_per_axis: number of stride-2 poolings per axis, length ``ndim``.
        strides: per stage, the stride of each axis; ``strides[0]`` is all ones. ``n_stages`` entries.
        kernel_sizes: per stage, the conv kernel size of each axis (1 or 3). ``n_stages`` entries.
        patch_size: the patch size padded up to a multiple of ``shape_must_be_divisible_by``.
        shape_must_be_divisible_by: ``2 ** num_pool_per_axis``.
    """

    num_pool_per_axis: tuple[int, ...]
    strides: tuple[tuple[int, ...], ...]
    kernel_sizes: tuple[tuple[int, ...], ...]
    patch_size: tuple[int, ...]
    shape_must_be_divisible_by: tuple[int, ...]

    @property
    def n_stages(self) -> int:
        return len(self.strides)


def pad_shape(shape: Sequence[float], must_be_divisible_by: Sequence[int]) -> tuple[int, ...]:
    """Round each entry of ``shape`` up to a multiple of ``must_be_divisible_by`` (nnU-Net's ``pad_shape``).

    Entries may be fractional (a median shape such as 180.5); as in nnU-Net the result is then truncated
    to int, so 180.5 with divisor 64 gives 192 and 128.5 gives 192.
    """
    if len(shape) != len(must_be_divisible_by):
        raise ValueError(
            f"pad_shape: shape {tuple(shape)} and divisors {tuple(must_be_divisible_by)} differ in length"
        )
    out = []
    for s, d in zip(shape, must_be_divisible_by):
        new = s + d - s % d
        if s % d == 0:
            new -= d
        out.append(int(new))
    return tuple(out)


def pool_and_conv_props(
    spacing: Sequence[float],
    patch_size: Sequence[float],
    min_feature_map_size: int = 4,
    max_numpool: int = 999999,
) -> Topology:
    """Pool an axis while its feature map stays >= ``2 * min_feature_map_size`` and its spacing is within a
    factor 2 of the finest valid spacing; kernels become 3 once an axis' spacing is within a factor 2 of the finest.

    Args:
        spacing: ``(z, y, x)`` (or ``(y, x)``) spacing of the configuration in mm.
        patch_size: the candidate patch size, same length as ``spacing``.
        min_feature_map_size: smallest edge of the bottleneck feature map (nnU-Net: 4).
        max_numpool: cap on the poolings per axis.
    """
    dim = len(spacing)
    if len(patch_size) != dim:
        raise ValueError(
            f"pool_and_conv_props: spacing {tuple(spacing)} and patch size {tuple(patch_size)} differ "
            "in length"
        )
    current_spacing = [float(s) for s in spacing]
    current_size = [float(s) for s in patch_size]
    strides: list[list[int]] = [[1] * dim]
    kernels: list[list[int]] = []
    num_pool = [0] * dim
    kernel = [1] * dim
    while True:
        valid = [i for i in range(dim) if current_size[i] >= 2 * min_feature_map_size]
        if not valid:
            break
        min_spacing = min(current_spacing[i] for i in valid)
        valid = [i for i in valid if current_spacing[i] / min_spacing < 2]
        valid = [i for i in valid if num_pool[i] < max_numpool]
        if len(valid) == 1 and current_size[valid[0]] < 3 * min_feature_map_size:
            break
        if not valid:
            break
        finest = min(current_spacing)
        for d in range(dim):
            if kernel[d] != 3 and current_spacing[d] / finest < 2:
                kernel[d] = 3
        stage_stride = [1] * dim
        for v in valid:
            stage_stride[v] = 2
            num_pool[v] += 1
            current_spacing[v] *= 2
            current_size[v] = math.ceil(current_size[v] / 2)
        strides.append(stage_stride)
        kernels.append(list(kernel))
    divisible = tuple(2**n for n in num_pool)
    kernels.append([3] * dim)  # the bottleneck always uses 3x3(x3)
    return Topology(
        num_pool_per_axis=tuple(num_pool),
        strides=tuple(tuple(s) for s in strides),
        kernel_sizes=tuple(tuple(k) for k in kernels),
        patch_size=pad_shape(list(patch_size), divisible),
        shape_must_be_divisible_by=divisible,
    )


def resenc_feature_map_size(
    patch_size: Sequence[int],
    input_channels: int,
    num_classes: int,
    features_per_stage: Sequence[int],
    strides: Sequence[Sequence[int]],
    n_blocks_per_stage: Sequence[int],
    n_conv_per_stage_decoder: Sequence[int],
    deep_supervision: bool = False,
) -> int:
    """Feature-map voxels of a ``ResidualEncoderUNet`` (BasicBlockD, strided-conv pooling) on one patch.

    Mirrors ``compute_conv_feature_map_size`` of dynamic-network-architectures exactly (integer floor
    division of sizes by strides), which nnU-Net's planner compares against its reference value.
    """
    n = len(features_per_stage)
    if not (len(strides) == len(n_blocks_per_stage) == n and len(n_conv_per_stage_decoder) == n - 1):
        raise ValueError(
            f"resenc_feature_map_size: expected {n} strides and blocks and {n - 1} decoder convs, got "
            f"{len(strides)}, {len(n_blocks_per_stage)} and {len(n_conv_per_stage_decoder)}"
        )
    del input_channels  # the stem's input channels do not enter the estimate
    size = [int(s) for s in patch_size]
    # encoder: stem conv, then per stage the residual blocks (the first one strided, with a 1x1 skip projection)
    total = features_per_stage[0] * math.prod(size)
    in_ch = features_per_stage[0]
    for s in range(n):
        out = [i // j for i, j in zip(size, strides[s])]
        c = features_per_stage[s]
        total += 2 * c * math.prod(out)
        if in_ch != c or out != size:
            total += c * math.prod(out)
        total += (n_blocks_per_stage[s] - 1) * 2 * c * math.prod(out)
        in_ch = c
        size = out
    # decoder: per stage its convs, the transposed conv, and the segmentation output (last stage or deep supervision)
    skip_sizes = []
    size = [int(s) for s in patch_size]
    for s in range(n - 1):
        size = [i // j for i, j in zip(size, strides[s])]
        skip_sizes.append(size)
    for s in range(n - 1):
        sz = skip_sizes[-(s + 1)]
        c = features_per_stage[-(s + 2)]
        total += n_conv_per_stage_decoder[s] * c * math.prod(sz)
        total += c * math.prod(sz)
        if deep_supervision or s == n - 2:
            total += num_classes * math.prod(sz)
    return int(total)
