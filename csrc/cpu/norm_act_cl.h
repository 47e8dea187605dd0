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
                          std::uintptr_t gamma, std::uintptr_t beta, float eps, bool act, float negative_slope);
}  // namespace fastpanc::cpu
