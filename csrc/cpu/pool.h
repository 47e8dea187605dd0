#pragma once
#include "common.h"

namespace fastpanc::cpu {
// Average pooling with kernel == stride (no overlap, no padding; trailing voxels that do not fill a
// window are dropped, as torch's avg_pool with floor mode) over contiguous (planes, Z, Y, X) data.
// x and out are float32, float16 or bfloat16 (the same dtype); sums are taken in float32.
void avg_pool_down(std::uintptr_t x, std::uintptr_t out, DType dtype, int64_t planes, int64_t Z, int64_t Y, int64_t X,
                   int sz, int sy, int sx);
// The same over channels-last data: x contiguous (batch, Z, Y, X, channels), out (batch, Z/sz, Y/sy, X/sx,
// channels); the same float32 sums in the same order.
void avg_pool_down_cl(std::uintptr_t x, std::uintptr_t out, DType dtype, int64_t batch, int64_t channels, int64_t Z,
                      int64_t Y, int64_t X, int sz, int sy, int sx);
}  // namespace fastpanc::cpu
