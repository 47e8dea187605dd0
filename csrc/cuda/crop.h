#pragma once
#include <cstdint>

#include "common.h"

namespace fastpanc::cuda {

// Same contracts as cpu::bounding_box / cpu::crop_pad; pointers are device pointers, work is queued on
// `stream`. bounding_box writes {zlo, ylo, xlo, zhi, yhi, xhi} (inclusive maxima) into `result`, six
// int32 on the device that the caller set to {INT_MAX x3, -1 x3}; nothing selected leaves them unchanged.
void bounding_box(const View4& x, bool use_threshold, double threshold, std::uintptr_t result,
                  std::uintptr_t stream);
void crop_pad(const View4& x, std::uintptr_t out, DType out_dtype, const int64_t out_shape[3], const int64_t lo[3],
              double pad_value, std::uintptr_t stream);

}  // namespace fastpanc::cuda
