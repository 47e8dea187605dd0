#pragma once
#include "common.h"

namespace fastpanc::cpu {
// Direct 'same'-padded, stride-1 convolution for few input channels (a network's stem), float32:
//   xp   (B, C, Z + kz - 1, Y + ky - 1, X + kx - 1) contiguous: the input already zero-padded by k // 2 on each side;
//   w    (kz, ky, kx, C, Cop) contiguous: the weight with its output channels last, zero-padded to Cop, a multiple
//        of 16;
//   bias Cop values (zero-padded);
//   out  (B, Z, Y, X, Co) contiguous: channels-last.
// Each output is the bias plus the taps summed in the order (dz, dy, dx, c), in float32.
void conv3d_direct_cl(std::uintptr_t xp, std::uintptr_t w, std::uintptr_t bias, std::uintptr_t out, int64_t B,
                      int64_t C, int64_t Z, int64_t Y, int64_t X, int64_t Co, int64_t Cop, int kz, int ky, int kx);
}  // namespace fastpanc::cpu
