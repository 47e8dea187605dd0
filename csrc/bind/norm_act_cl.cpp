#include "cpu/norm_act_cl.h"
#include "registry.h"

namespace py = pybind11;
using namespace fastpanc;

FASTPANC_BIND(instance_norm_act_cl) {
  m.def(
      "instance_norm_act_cl_cpu",
      [](std::uintptr_t x, int x_dtype, std::uintptr_t residual, int residual_dtype, std::uintptr_t out,
         int out_dtype, int64_t batch, int64_t channels, int64_t n, std::uintptr_t gamma, std::uintptr_t beta,
         float eps, bool act, float negative_slope, std::uintptr_t mean_out, std::uintptr_t rstd_out) {
        py::gil_scoped_release nogil;
        cpu::instance_norm_act_cl(x, static_cast<DType>(x_dtype), residual, static_cast<DType>(residual_dtype), out,
                                  static_cast<DType>(out_dtype), batch, channels, n, gamma, beta, eps, act,
                                  negative_slope, mean_out, rstd_out);
      },
      py::arg("x"), py::arg("x_dtype"), py::arg("residual"), py::arg("residual_dtype"), py::arg("out"),
      py::arg("out_dtype"), py::arg("batch"), py::arg("channels"), py::arg("n"), py::arg("gamma"), py::arg("beta"),
      py::arg("eps"), py::arg("act"), py::arg("negative_slope"), py::arg("mean_out") = 0, py::arg("rstd_out") = 0,
      "Instance norm + residual + LeakyReLU over channels-last (batch, n, channels) data (CPU, OpenMP); "
      "optionally writes each (b, c)'s mean and rstd (float32) for the backward.");
  m.def(
      "instance_norm_act_cl_backward_cpu",
      [](std::uintptr_t grad_out, int grad_out_dtype, std::uintptr_t x, int x_dtype, std::uintptr_t y, int y_dtype,
         std::uintptr_t grad_x, int grad_x_dtype, std::uintptr_t grad_residual, int grad_residual_dtype,
         int64_t batch, int64_t channels, int64_t n, std::uintptr_t mean, std::uintptr_t rstd, std::uintptr_t gamma,
         std::uintptr_t sum_dz, std::uintptr_t sum_dz_xhat, bool act, float negative_slope) {
        py::gil_scoped_release nogil;
        cpu::instance_norm_act_cl_backward(
            grad_out, static_cast<DType>(grad_out_dtype), x, static_cast<DType>(x_dtype), y,
            static_cast<DType>(y_dtype), grad_x, static_cast<DType>(grad_x_dtype), grad_residual,
            static_cast<DType>(grad_residual_dtype), batch, channels, n, mean, rstd, gamma, sum_dz, sum_dz_xhat, act,
            negative_slope);
      },
      "Backward of instance_norm_act_cl over channels-last (batch, n, channels) data (CPU, OpenMP): grad_x, "
      "grad_residual and the per-(b, c) sums of dz and dz * xhat.");
}
