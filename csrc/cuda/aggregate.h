#pragma once
#include <cstdint>
#include <vector>

#include "common.h"

namespace fastpanc::cuda {

// Same contracts as cpu::accumulate / cpu::finalize; pointers are device pointers (gauss too), work is
// queued on `stream`. accumulate launches one kernel per window in order on the stream, so windows that
// overlap within a batch add up exactly as in sequential code, without atomics and deterministically.
void accumulate(const View4& acc, const View4& weight, const View4& logits0, int64_t batch_stride,
                const std::vector<int64_t>& starts, const float* gauss, std::uintptr_t stream);
void finalize(const View4& acc, const View4& weight, std::uintptr_t labels, std::uintptr_t probs,
              std::uintptr_t stream);

}  // namespace fastpanc::cuda
