#include "bind/norm_act_defs.h"
#include "cpu/norm_act_cl.h"

using namespace fastpanc;

FASTPANC_BIND(instance_norm_act_cl) {
  bind::def_norm_forward<cpu::instance_norm_act_cl>(
      m, "instance_norm_act_cl_cpu", "batch",
      "Instance norm + residual + LeakyReLU over channels-last (batch, n, channels) data (CPU, OpenMP); "
      "optionally writes each (b, c)'s mean and rstd (float32) for the backward.");
  bind::def_norm_backward<cpu::instance_norm_act_cl_backward>(
      m, "instance_norm_act_cl_backward_cpu",
      "Backward of instance_norm_act_cl over channels-last (batch, n, channels) data (CPU, OpenMP): grad_x, "
      "grad_residual and the per-(b, c) sums of dz and dz * xhat.");
}
