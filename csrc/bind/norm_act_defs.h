// The pybind11 definitions that the contiguous and channels-last instance_norm_act kernels share: the same argument
// lists (data pointers, dtype codes, sizes), one template per direction.
#pragma once
#include <cstdint>

#include "common.h"
#include "registry.h"

namespace fastpanc::bind {

using NormForward = void (*)(std::uintptr_t, DType, std::uintptr_t, DType, std::uintptr_t, DType, int64_t, int64_t,
                             int64_t, std::uintptr_t, std::uintptr_t, float, bool, float, std::uintptr_t,
                             std::uintptr_t);
using NormBackward = void (*)(std::uintptr_t, DType, std::uintptr_t, DType, std::uintptr_t, DType, std::uintptr_t,
                              DType, std::uintptr_t, DType, int64_t, int64_t, int64_t, std::uintptr_t, std::uintptr_t,
                              std::uintptr_t, std::uintptr_t, std::uintptr_t, bool, float);

// forward: `groups` is planes (contiguous) or batch (channels-last); mean_out / rstd_out default to 0 (not written)
template <NormForward Fn>
void def_norm_forward(pybind11::module_& m, const char* name, const char* groups, const char* doc) {
  namespace py = pybind11;
  m.def(
      name,
      [](std::uintptr_t x, int x_dtype, std::uintptr_t residual, int residual_dtype, std::uintptr_t out,
         int out_dtype, int64_t g, int64_t channels, int64_t n, std::uintptr_t gamma, std::uintptr_t beta, float eps,
         bool act, float negative_slope, std::uintptr_t mean_out, std::uintptr_t rstd_out) {
        py::gil_scoped_release nogil;
        Fn(x, static_cast<DType>(x_dtype), residual, static_cast<DType>(residual_dtype), out,
           static_cast<DType>(out_dtype), g, channels, n, gamma, beta, eps, act, negative_slope, mean_out, rstd_out);
      },
      py::arg("x"), py::arg("x_dtype"), py::arg("residual"), py::arg("residual_dtype"), py::arg("out"),
      py::arg("out_dtype"), py::arg(groups), py::arg("channels"), py::arg("n"), py::arg("gamma"), py::arg("beta"),
      py::arg("eps"), py::arg("act"), py::arg("negative_slope"), py::arg("mean_out") = 0, py::arg("rstd_out") = 0, doc);
}

template <NormBackward Fn>
void def_norm_backward(pybind11::module_& m, const char* name, const char* doc) {
  namespace py = pybind11;
  m.def(
      name,
      [](std::uintptr_t grad_out, int grad_out_dtype, std::uintptr_t x, int x_dtype, std::uintptr_t y, int y_dtype,
         std::uintptr_t grad_x, int grad_x_dtype, std::uintptr_t grad_residual, int grad_residual_dtype, int64_t g,
         int64_t channels, int64_t n, std::uintptr_t mean, std::uintptr_t rstd, std::uintptr_t gamma,
         std::uintptr_t sum_dz, std::uintptr_t sum_dz_xhat, bool act, float negative_slope) {
        py::gil_scoped_release nogil;
        Fn(grad_out, static_cast<DType>(grad_out_dtype), x, static_cast<DType>(x_dtype), y, static_cast<DType>(y_dtype),
           grad_x, static_cast<DType>(grad_x_dtype), grad_residual, static_cast<DType>(grad_residual_dtype), g,
           channels, n, mean, rstd, gamma, sum_dz, sum_dz_xhat, act, negative_slope);
      },
      doc);
}

}  // namespace fastpanc::bind
