"""'Same'-padded, stride-1 3x3x3 and 1x3x3 convolutions on the CPU by Winograd's minimal filtering F(m, 3).

Most of a ResEnc U-Net's time on the CPU goes into its 3x3x3 convolutions. Winograd's F(m, 3) needs fewer
multiplications than the direct convolution: along each 3-tap axis, ``m`` outputs come from ``alpha = m + 2``
transformed inputs, so a 3x3x3 convolution costs ``alpha^3`` products per ``m^3`` outputs and input channel instead
of ``27 m^3``: 64 per 8 outputs for F(2, 3) (3.4x fewer), 216 per 64 for F(4, 3) (8x fewer). The work becomes

1. an input transform (C++, :func:`fastpanc._C.winograd_input_cl_cpu`): the volume cut into tiles of ``m^3``
   outputs, read as ``alpha^3`` inputs with one voxel of zero padding around the volume, ``V = B^T d B`` along
   every axis, written as ``P = alpha^3`` planes of ``(tiles, C)`` (``alpha^2`` for 1x3x3 kernels);
2. ``P`` matrix products ``M[p] = V[p] @ U[p]`` (``torch.bmm``), ``U = G g G^T`` the transformed weight
   (computed once per weight and cached: ``P / 27`` times the weight's own memory, 8x for F(4, 3));
3. an output transform (C++): ``A^T M A`` back to the tile's outputs, plus the bias, into a channels-last result.

Tiles go through in chunks whose planes fit in the cache. The result equals the direct convolution up to float32
rounding, in another order and through the transforms' larger coefficients: about 1e-6 of the output's scale for
F(2, 3) and 2e-5 to 5e-5 for F(4, 3) (points 0, +-1, +-1/2), tested against ``F.conv3d``.

``backend="auto"`` takes Winograd F(:data:`TILE`, 3) for float32 CPU tensors without autograd or autocast, with at
least :data:`MIN_CHANNELS` input channels and :data:`MIN_TILES` tiles (the layers where it beat oneDNN's direct
convolution one at a time on a 2-core AVX-512 CPU; benchmarks/RESULTS.md), and ``F.conv3d`` (the ``reference``)
otherwise: on CUDA cuDNN picks its own algorithms, and training or bfloat16 take torch's kernels. On that CPU a
whole ResEnc M window still ran slower with it (``benchmarks/bench_winograd.py``), so the network only uses it
when asked (``MultitaskResEncUNet.fuse_inference(..., winograd=True)``).
"""

from __future__ import annotations

import torch
from torch.utils.weak import WeakIdKeyDictionary

from fastpanc.ops import _backend as B
from fastpanc.ops._conv import check_same_conv, choose_same_conv, float32_cpu_reason, same_conv_reference

# auto takes Winograd from this many input channels on (one layer at a time it beat oneDNN's kernel from 256 on)
MIN_CHANNELS = 256
# ... and from this many tiles: below it the transformed weight (P x C x Co floats, 88 MB for 320 -> 320 channels in
# F(4, 3)) costs more to stream through the products than the few tiles save
MIN_TILES = 8
# outputs per tile and axis of auto and of the cpu backend by default: F(2, 3) or F(4, 3)
TILE = 4
# bytes of the V and M planes of one chunk of tiles (float32): they stay in this CPU's caches between the passes
CHUNK_BYTES = 8 << 20
# floats between the end of one transform plane and the start of the next (one cache line)
PLANE_PAD = 16

# G of F(m, 3) for m = 2 (points 0, 1, -1, infinity) and m = 4 (0, 1, -1, 1/2, -1/2, infinity), as the C++
# transforms' B^T and A^T (csrc/cpu/winograd.cpp)
_G = {
    2: torch.tensor(
        [[1.0, 0.0, 0.0], [0.5, 0.5, 0.5], [0.5, -0.5, 0.5], [0.0, 0.0, 1.0]], dtype=torch.float64
    ),
    4: torch.tensor(
        [
            [4.0, 0.0, 0.0],
            [2 / 3, 2 / 3, 2 / 3],
            [2 / 3, -2 / 3, 2 / 3],
            [-8 / 3, -4 / 3, -2 / 3],
            [-8 / 3, 4 / 3, -2 / 3],
            [0.0, 0.0, 1.0],
        ],
        dtype=torch.float64,
    ),
}
_ONE = torch.ones(1, 1, dtype=torch.float64)
# keyed by the weight tensor's identity (tensors compare elementwise, so a plain WeakKeyDictionary cannot hold them)
_transformed: WeakIdKeyDictionary = WeakIdKeyDictionary()


conv3d_same_reference = same_conv_reference  # the definition: F.conv3d with padding kernel // 2


def winograd_weight(weight: torch.Tensor, tile: int = 2) -> torch.Tensor:
    """``U = G g G^T`` of F(``tile``, 3) along every 3-tap axis of a ``(Co, C, kz, 3, 3)`` weight (``kz`` 1 or 3),
    computed in float64: ``(P, C, Co)`` float32 with ``P = alpha^3`` (``alpha^2`` for ``kz`` 1), ``alpha = tile +
    2``, the point index ``(a * alpha + b) * alpha + c`` for z, y, x."""
    _check_weight(weight)
    _check_tile(tile)
    g = _G[tile]
    gz = g if weight.shape[2] == 3 else _ONE
    u = torch.einsum("ai,bj,ck,oxijk->abcxo", gz, g, g, weight.detach().to("cpu", torch.float64))
    return u.reshape(-1, weight.shape[1], weight.shape[0]).to(torch.float32).contiguous()


def _cached_weight(weight: torch.Tensor, tile: int) -> torch.Tensor:
    """:func:`winograd_weight`, cached per weight tensor until it changes (its version counter moves); weights
    made under ``torch.inference_mode`` have no version counter and are transformed on every call."""
    if weight.is_inference():
        # made under torch.inference_mode: no version counter to tell an in-place change, so no cache
        return winograd_weight(weight, tile)
    hit = _transformed.get(weight)
    if hit is None or hit[0] != weight._version:
        hit = (weight._version, {})
        _transformed[weight] = hit
    u = hit[1].get(tile)
    if u is None:
        u = hit[1][tile] = winograd_weight(weight, tile)
    return u


def _weight_shape_ok(weight: torch.Tensor) -> bool:
    """A ``(Co, C, kz, 3, 3)`` weight with ``kz`` 1 or 3: the kernels the transforms take."""
    return weight.dim() == 5 and weight.shape[2] in (1, 3) and tuple(weight.shape[3:]) == (3, 3)


def _check_weight(weight: torch.Tensor) -> None:
    if not _weight_shape_ok(weight):
        raise ValueError(
            f"conv3d_same: Winograd takes (Co, C, kz, 3, 3) weights with kz 1 or 3, got {tuple(weight.shape)}"
        )


def _tile_count(shape: torch.Size, kz: int, tile: int) -> int:
    b, _, z, y, x = shape
    return b * (-(-z // tile) if kz == 3 else z) * (-(-y // tile)) * (-(-x // tile))


def _check_tile(tile: int) -> None:
    if tile not in _G:
        raise ValueError(f"conv3d_same: the Winograd output tile must be 2 or 4, got {tile!r}")


def _winograd_reason(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> str | None:
    why = float32_cpu_reason("Winograd", x, weight, bias)
    if why is not None:
        return why
    if not _weight_shape_ok(weight):
        return f"the Winograd kernel takes (Co, C, 1 or 3, 3, 3) weights, got {tuple(weight.shape)}"
    return None


def conv3d_same(
    x: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None = None,
    backend: str = "auto",
    chunk_tiles: int | None = None,
    tile: int | None = None,
) -> torch.Tensor:
    """A stride-1 convolution with 'same' zero padding, as ``nn.Conv3d(C, Co, kernel, padding=kernel // 2)``.

    Args:
        x: ``(B, C, Z, Y, X)``; the Winograd path reads it channels-last (``torch.channels_last_3d``; other
            layouts are converted first).
        weight: ``(Co, C, kz, ky, kx)``; Winograd takes ``(kz, ky, kx)`` = ``(3, 3, 3)`` or ``(1, 3, 3)``.
        bias: ``(Co,)`` or None.
        backend: ``auto``, ``reference`` (``F.conv3d``) or ``cpu`` (Winograd F(``tile``, 3): C++ transforms
            and ``torch.bmm``; float32, inference only).
        chunk_tiles: tiles per chunk (default: as many as fit :data:`CHUNK_BYTES`); tests use small ones.
        tile: Winograd's outputs per tile and axis, 2 (F(2, 3)) or 4 (F(4, 3)); default :data:`TILE`.

    Returns:
        ``(B, Co, Z, Y, X)``: channels-last from the ``cpu`` backend, as ``F.conv3d`` returns it otherwise.
    """
    check_same_conv("conv3d_same", x, weight, bias)
    tile = TILE if tile is None else tile
    _check_tile(tile)
    name = choose_same_conv(
        "conv3d_same",
        backend,
        # Winograd where it is the faster path; F.conv3d (oneDNN, cuDNN) is the right kernel everywhere else
        lambda: (
            x.shape[1] >= MIN_CHANNELS
            and _tile_count(x.shape, weight.shape[2], tile) >= MIN_TILES
            and _winograd_reason(x, weight, bias) is None
        ),
        lambda: _winograd_reason(x, weight, bias),
    )
    if name == "reference":
        return conv3d_same_reference(x, weight, bias)
    return _winograd(x, weight, bias, chunk_tiles, tile)


def _winograd(
    x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, chunk_tiles: int | None, tile: int
) -> torch.Tensor:
    b, c, z, y, xs = x.shape
    co, kz = weight.shape[0], weight.shape[2]
    out = torch.empty((b, co, z, y, xs), dtype=torch.float32, memory_format=torch.channels_last_3d)
    if out.numel() == 0:
        return out
    x = x.contiguous(memory_format=torch.channels_last_3d)
    u = _cached_weight(weight, tile)
    points = u.shape[0]
    tiles = _tile_count(x.shape, kz, tile)
    if chunk_tiles is None:
        chunk_tiles = max(32, CHUNK_BYTES // (4 * points * (c + co)))
    nt = max(1, min(int(chunk_tiles), tiles))
    # plane strides a cache line past nt * channels: power-of-two strides would put the P rows of a tile, which
    # both transforms touch together, into one cache set
    ld_v, ld_m = nt * c + PLANE_PAD, nt * co + PLANE_PAD
    v_buf = torch.empty(points * ld_v, dtype=torch.float32)
    m_buf = torch.empty(points * ld_m, dtype=torch.float32)
    bias_ptr = 0
    if bias is not None:
        bias = bias.detach().to(torch.float32).contiguous()
        bias_ptr = bias.data_ptr()
    ext = B.extension()
    for t0 in range(0, tiles, nt):
        n = min(nt, tiles - t0)
        v = v_buf.as_strided((points, n, c), (ld_v, c, 1))
        m = m_buf.as_strided((points, n, co), (ld_m, co, 1))
        ext.winograd_input_cl_cpu(x.data_ptr(), v.data_ptr(), b, z, y, xs, c, kz, tile, t0, n, ld_v)
        torch.bmm(v, u, out=m)
        ext.winograd_output_cl_cpu(
            m.data_ptr(), bias_ptr, out.data_ptr(), b, z, y, xs, co, kz, tile, t0, n, ld_m
        )
    return out
