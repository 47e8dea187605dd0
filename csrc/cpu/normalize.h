#pragma once
#include "common.h"

namespace fastpanc::cpu {
// out = cast((clip(x, lo, hi) - mean) / std); `out` is contiguous with x's shape, dtype f32, f16 or bf16.
void ct_normalize(const View4& x, std::uintptr_t out, DType out_dtype, float lo, float hi, float mean, float std);
}  // namespace fastpanc::cpu
