#pragma once
#include "common.h"

namespace fastpanc::cpu {
// The second half of a transposed convolution whose kernel equals its stride (s = sz*sy*sx), followed by
// the U-Net decoder's concatenation with the skip:
//   y    (B, Co*s, Z, Y, X): a 1x1 convolution's output, channel co*s + (dz*sy + dy)*sx + dx
//   skip (B, Cs, Z*sz, Y*sy, X*sx)
//   out  (B, Co + Cs, Z*sz, Y*sy, X*sx): out[:, co, z*sz+dz, y*sy+dy, x*sx+dx] = y[:, co*s + ...] + bias[co],
//        out[:, Co:] = skip
// All contiguous and of one dtype (float32, float16 or bfloat16); bias is float32 (Co entries) or 0.
void depth_to_space_cat(std::uintptr_t y, std::uintptr_t skip, std::uintptr_t out, DType dtype, int64_t B,
                        int64_t Co, int64_t Cs, int64_t Z, int64_t Y, int64_t X, int sz, int sy, int sx,
                        std::uintptr_t bias);
// The same over channels-last data, with the same arithmetic: y (B, Z, Y, X, Co*s), skip (B, Z*sz, Y*sy, X*sx,
// Cs) and out (B, Z*sz, Y*sy, X*sx, Co + Cs), contiguous.
void depth_to_space_cat_cl(std::uintptr_t y, std::uintptr_t skip, std::uintptr_t out, DType dtype, int64_t B,
                           int64_t Co, int64_t Cs, int64_t Z, int64_t Y, int64_t X, int sz, int sy, int sx,
                           std::uintptr_t bias);
}  // namespace fastpanc::cpu
