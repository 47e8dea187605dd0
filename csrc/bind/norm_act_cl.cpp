#include "cpu/norm_act_cl.h"
#include "registry.h"

namespace py = pybind11;
using namespace fastpanc;

FASTPANC_BIND(instance_norm_act_cl) {
  m.def(
      "instance_norm_act_cl_cpu",
      [](std::uintptr_t x, int x_dtype, std::uintptr_t residual, int residual_dtype, std::uintptr_t out,
         int out_dtype, int64_t batch, int64_t channels, int64_t n, std::uintptr_t gamma, std::uintptr_t beta,
         float eps, bool act, float negative_slope) {
        py::gil_scoped_release nogil;
        cpu::instance_norm_act_cl(x, static_cast<DType>(x_dtype), residual, static_cast<DType>(residual_dtype), out,
                                  static_cast<DType>(out_dtype), batch, channels, n, gamma, beta, eps, act,
                                  negative_slope);
      },
      "Instance norm + residual + LeakyReLU over channels-last (batch, n, channels) data (CPU, OpenMP).");
}
