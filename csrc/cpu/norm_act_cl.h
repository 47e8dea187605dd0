#pragma once
#include "common.h"

namespace fastpanc::cpu {
// instance_norm_act (cpu/norm_act.h) over channels-last data: x, residual and out are contiguous
// (batch, n, channels) arrays (NDHWC / NHWC tensors), statistics per (batch, channel) over the n voxels:
//   y = act((x - mean_bc) / sqrt(var_bc + eps) * gamma_c + beta_c + residual)
// Every loop runs along the channels (contiguous in memory). The statistics are taken per tile of voxels
// (a tile's sums and squared deviations from its own mean in float32, as instance_norm_act's tiles) and
// the tiles are merged in double with Chan's pairwise formula, so x is read twice (statistics, output)
// instead of three times. Dtypes, gamma/beta and in-place use as instance_norm_act.
void instance_norm_act_cl(std::uintptr_t x, DType x_dtype, std::uintptr_t residual, DType residual_dtype,
                          std::uintptr_t out, DType out_dtype, int64_t batch, int64_t channels, int64_t n,
                          std::uintptr_t gamma, std::uintptr_t beta, float eps, bool act, float negative_slope,
                          std::uintptr_t mean_out = 0, std::uintptr_t rstd_out = 0);
// mean_out / rstd_out (float32 arrays of batch * channels entries in (b, c) order, or 0): each (b, c)'s mean and
// 1 / sqrt(var + eps), for the backward below.

// The backward of instance_norm_act_cl: instance_norm_act_backward (cpu/norm_act.h) over channels-last
// (batch, n, channels) arrays, every loop along the channels. sum_dz / sum_dz_xhat are (b, c)-ordered float32
// arrays of batch * channels entries; grad_x and grad_residual are 0 when not wanted.
void instance_norm_act_cl_backward(std::uintptr_t grad_out, DType grad_out_dtype, std::uintptr_t x, DType x_dtype,
                                   std::uintptr_t y, DType y_dtype, std::uintptr_t grad_x, DType grad_x_dtype,
                                   std::uintptr_t grad_residual, DType grad_residual_dtype, int64_t batch,
                                   int64_t channels, int64_t n, std::uintptr_t mean, std::uintptr_t rstd,
                                   std::uintptr_t gamma, std::uintptr_t sum_dz, std::uintptr_t sum_dz_xhat, bool act,
                                   float negative_slope);
}  // namespace fastpanc::cpu
