#pragma once
#include "common.h"

namespace fastpanc::cpu {
// Instance norm + optional residual + optional LeakyReLU, in float32 arithmetic, for contiguous
// (planes, n) data (planes = batch * channels; plane p uses channel p % channels):
//   y = act((x - mean_p) / sqrt(var_p + eps) * gamma_c + beta_c + residual)
// mean/var are the biased statistics of each plane. x, residual and out are float32, float16 or
// bfloat16 (independently); gamma/beta are float32 arrays of `channels` entries or 0 (1 and 0).
// `residual` is 0 when absent. `out` may be x itself (in place).
void instance_norm_act(std::uintptr_t x, DType x_dtype, std::uintptr_t residual, DType residual_dtype,
                       std::uintptr_t out, DType out_dtype, int64_t planes, int64_t channels, int64_t n,
                       std::uintptr_t gamma, std::uintptr_t beta, float eps, bool act, float negative_slope);
}  // namespace fastpanc::cpu
