#include "bind/norm_act_defs.h"
#include "cpu/norm_act.h"

using namespace fastpanc;

FASTPANC_BIND(instance_norm_act) {
  bind::def_norm_forward<cpu::instance_norm_act>(
      m, "instance_norm_act_cpu", "planes",
      "Instance norm + residual + LeakyReLU in one kernel over contiguous (planes, n) data (CPU, OpenMP); "
      "optionally writes each plane's mean and rstd (float32) for the backward.");
  bind::def_norm_backward<cpu::instance_norm_act_backward>(
      m, "instance_norm_act_backward_cpu",
      "Backward of instance_norm_act (CPU, OpenMP): grad_x, grad_residual and the per-plane sums of dz and "
      "dz * xhat that give grad_weight and grad_bias.");
}
