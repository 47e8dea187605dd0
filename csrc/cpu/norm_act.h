#pragma once
#include "common.h"

namespace fastpanc::cpu {
// Instance norm + optional residual + optional LeakyReLU, in float32 arithmetic, for contiguous
// (planes, n) data (planes = batch * channels; plane p uses channel p % channels):
//   y = act((x - mean_p) / sqrt(var_p + eps) * gamma_c + beta_c + residual)
// mean/var are the biased statistics of each plane. x, residual and out are float32, float16 or
// bfloat16 (independently); gamma/beta are float32 arrays of `channels` entries or 0 (1 and 0).
// `residual` is 0 when absent. `out` may be x itself (in place). When `mean_out` / `rstd_out` are not 0
// they receive each plane's mean and 1 / sqrt(var + eps) as float32 arrays of `planes` entries (training:
// the backward below takes them).
void instance_norm_act(std::uintptr_t x, DType x_dtype, std::uintptr_t residual, DType residual_dtype,
                       std::uintptr_t out, DType out_dtype, int64_t planes, int64_t channels, int64_t n,
                       std::uintptr_t gamma, std::uintptr_t beta, float eps, bool act, float negative_slope,
                       std::uintptr_t mean_out, std::uintptr_t rstd_out);

// The backward of instance_norm_act, from its input x, its output y (read only with `act`) and the per-plane
// mean and rstd the forward wrote; the same (planes, n) layout, every array contiguous:
//   dz = act ? (y > 0 ? dy : dy * slope) : dy      (y > 0 exactly where the pre-activation z > 0, slope >= 0)
//   xhat = (x - mean_p) * rstd_p
//   sum_dz[p] = sum(dz),  sum_dz_xhat[p] = sum(dz * xhat)          (float32 arrays of `planes` entries)
//   grad_x = rstd_p * gamma_c * (dz - sum_dz[p] / n - xhat * sum_dz_xhat[p] / n)
//   grad_residual = dz
// grad_x and grad_residual are 0 when not wanted; grad_gamma[c] and grad_beta[c] are the sums of sum_dz_xhat and
// sum_dz over the planes of channel c (left to the caller). grad_out, x, y, grad_x and grad_residual are
// float32, float16 or bfloat16 (independently); gamma is a float32 array of `channels` entries or 0 (1).
void instance_norm_act_backward(std::uintptr_t grad_out, DType grad_out_dtype, std::uintptr_t x, DType x_dtype,
                                std::uintptr_t y, DType y_dtype, std::uintptr_t grad_x, DType grad_x_dtype,
                                std::uintptr_t grad_residual, DType grad_residual_dtype, int64_t planes,
                                int64_t channels, int64_t n, std::uintptr_t mean, std::uintptr_t rstd,
                                std::uintptr_t gamma, std::uintptr_t sum_dz, std::uintptr_t sum_dz_xhat, bool act,
                                float negative_slope);
}  // namespace fastpanc::cpu
