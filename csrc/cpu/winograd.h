#pragma once
#include "common.h"

namespace fastpanc::cpu {
// Winograd F(m, 3) transforms (m = 2 or 4 outputs per tile and axis) for 'same'-padded, stride-1 convolutions with
// kernels (kz, 3, 3), kz 1 or 3, over channels-last float32 data (x: (B, Z, Y, X, C) contiguous). Each axis with a
// 3-tap kernel is cut into tiles of m outputs, read as alpha = m + 2 inputs (one voxel of zero padding on each side
// of the volume); an axis with a 1-tap kernel (z when kz == 1) has tiles of one voxel. Tiles are numbered
// t = ((b * TZ + iz) * TY + iy) * TX + ix with TZ = ceil(Z / m) (or Z), TY = ceil(Y / m), TX = ceil(X / m), and
// P = alpha^3 (alpha^2 when kz == 1) transform points each, point p = (a * alpha + r) * alpha + q for z, y, x.
//
// winograd_input_cl writes tiles [t0, t0 + nt) as V (P, nt, C), plane p starting at p * ld floats (ld >= nt * C; a
// stride that is not a multiple of 4 KiB keeps the P rows of one tile out of one cache set): V[p] = B^T d B along
// every 3-tap axis. winograd_output_cl reads M (P, nt, Co) laid out the same way (ld >= nt * Co; M[p] = V[p] @ U[p],
// the matrix products done by the caller) and writes the tiles' outputs A^T M A plus bias (Co values, or 0 for
// none) into out (B, Z, Y, X, Co) contiguous.
void winograd_input_cl(std::uintptr_t x, std::uintptr_t v, int64_t B, int64_t Z, int64_t Y, int64_t X, int64_t C,
                       int kz, int m, int64_t t0, int64_t nt, int64_t ld);
void winograd_output_cl(std::uintptr_t mm, std::uintptr_t bias, std::uintptr_t out, int64_t B, int64_t Z, int64_t Y,
                        int64_t X, int64_t Co, int kz, int m, int64_t t0, int64_t nt, int64_t ld);
}  // namespace fastpanc::cpu
