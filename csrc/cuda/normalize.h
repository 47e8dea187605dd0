#pragma once
#include "common.h"

namespace fastpanc::cuda {
// Same contract as cpu::ct_normalize; pointers are device pointers, work is queued on `stream`.
void ct_normalize(const View4& x, std::uintptr_t out, DType out_dtype, float lo, float hi, float mean, float std,
                  std::uintptr_t stream);
}  // namespace fastpanc::cuda
