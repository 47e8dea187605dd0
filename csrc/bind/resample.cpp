#include <array>

#include "bind/view.h"
#include "cpu/resample.h"
#include "registry.h"
#ifdef FASTPANC_WITH_CUDA
#include "cuda/resample.h"
#endif

namespace py = pybind11;
using namespace fastpanc;

namespace {
std::array<int64_t, 3> shape3(const std::vector<int64_t>& s) {
  if (s.size() != 3) fail("resample: out_shape must have 3 entries (Z, Y, X)");
  return {s[0], s[1], s[2]};
}
}  // namespace

FASTPANC_BIND(resample) {
  m.def(
      "resample_axis_cpu",
      [](std::uintptr_t x, std::vector<int64_t> shape, std::vector<int64_t> strides, int dtype, std::uintptr_t out,
         int out_dtype, int dim, int64_t n_out, int order, int clip_mode, int clip_dim, std::uintptr_t lo,
         std::uintptr_t hi) {
        View4 v = make_view(x, shape, strides, dtype);
        py::gil_scoped_release nogil;
        cpu::resample_axis(v, out, static_cast<DType>(out_dtype), dim, n_out, order, clip_mode, clip_dim,
                           reinterpret_cast<const float*>(lo), reinterpret_cast<const float*>(hi));
      },
      "Resample a (C, Z, Y, X) view along one axis (CPU, OpenMP).");
  m.def(
      "resample_minmax_cpu",
      [](std::uintptr_t x, std::vector<int64_t> shape, std::vector<int64_t> strides, int dtype, std::uintptr_t lo,
         std::uintptr_t hi, int dim) {
        View4 v = make_view(x, shape, strides, dtype);
        py::gil_scoped_release nogil;
        cpu::minmax(v, reinterpret_cast<float*>(lo), reinterpret_cast<float*>(hi), dim);
      },
      "Per-channel (dim 0) or per-slice (dim 1..3) minimum and maximum of a (C, Z, Y, X) view, as float32.");
  m.def(
      "resample_lowres_cpu",
      [](std::uintptr_t x, std::vector<int64_t> shape, std::vector<int64_t> strides, int dtype, std::uintptr_t out,
         int out_dtype, std::vector<int64_t> out_shape, std::vector<int> orders) {
        View4 v = make_view(x, shape, strides, dtype);
        const auto os = shape3(out_shape);
        if (orders.size() != 3) fail("resample: orders must have 3 entries (Z, Y, X)");
        py::gil_scoped_release nogil;
        cpu::resample_lowres(v, out, static_cast<DType>(out_dtype), os.data(), orders.data());
      },
      "Resample a (C, Z, Y, X) view with order 0/1 per axis in one pass (CPU, OpenMP).");
  m.def(
      "resample_labels_cpu",
      [](std::uintptr_t x, std::vector<int64_t> shape, std::vector<int64_t> strides, int dtype, std::uintptr_t out,
         std::vector<int64_t> out_shape, int kind, int axis) {
        View4 v = make_view(x, shape, strides, dtype);
        const auto os = shape3(out_shape);
        py::gil_scoped_release nogil;
        cpu::resample_labels(v, out, os.data(), kind, axis);
      },
      "Resample a (C, Z, Y, X) label map (CPU, OpenMP).");
#ifdef FASTPANC_WITH_CUDA
  m.def(
      "resample_axis_cuda",
      [](std::uintptr_t x, std::vector<int64_t> shape, std::vector<int64_t> strides, int dtype, std::uintptr_t out,
         int out_dtype, int dim, int64_t n_out, int order, int clip_mode, int clip_dim, std::uintptr_t lo,
         std::uintptr_t hi, std::uintptr_t scratch, std::uintptr_t stream) {
        View4 v = make_view(x, shape, strides, dtype);
        py::gil_scoped_release nogil;
        cuda::resample_axis(v, out, static_cast<DType>(out_dtype), dim, n_out, order, clip_mode, clip_dim,
                            reinterpret_cast<const float*>(lo), reinterpret_cast<const float*>(hi),
                            reinterpret_cast<float*>(scratch), stream);
      },
      "Resample a (C, Z, Y, X) view along one axis (CUDA, on the given stream; order 3 needs a scratch buffer).");
  m.def(
      "resample_labels_cuda",
      [](std::uintptr_t x, std::vector<int64_t> shape, std::vector<int64_t> strides, int dtype, std::uintptr_t out,
         std::vector<int64_t> out_shape, int kind, int axis, std::uintptr_t stream) {
        View4 v = make_view(x, shape, strides, dtype);
        const auto os = shape3(out_shape);
        py::gil_scoped_release nogil;
        cuda::resample_labels(v, out, os.data(), kind, axis, stream);
      },
      "Resample a (C, Z, Y, X) label map (CUDA, on the given stream).");
#endif
}
