#pragma once
#include "common.h"

namespace fastpanc::cuda {
// Same contracts as cpu::resample_axis / cpu::resample_labels; pointers are device pointers (lo/hi too), work is
// queued on `stream`. Order-3 passes need `scratch`: (in.shape[dim] + 24) * (numel / in.shape[dim]) floats.
void resample_axis(const View4& in, std::uintptr_t out, DType out_dtype, int dim, int64_t n_out, int order,
                   int clip_mode, int clip_dim, const float* lo, const float* hi, float* scratch,
                   std::uintptr_t stream);
void resample_labels(const View4& in, std::uintptr_t out, const int64_t out_shape[3], int kind, int axis,
                     std::uintptr_t stream);
}  // namespace fastpanc::cuda
