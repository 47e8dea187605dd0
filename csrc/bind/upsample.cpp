#include "cpu/upsample.h"
#include "registry.h"

namespace py = pybind11;
using namespace fastpanc;

FASTPANC_BIND(depth_to_space_cat) {
  m.def(
      "depth_to_space_cat_cpu",
      [](std::uintptr_t y, std::uintptr_t skip, std::uintptr_t out, int dtype, int64_t B, int64_t Co, int64_t Cs,
         int64_t Z, int64_t Y, int64_t X, int sz, int sy, int sx, std::uintptr_t bias) {
        py::gil_scoped_release nogil;
        cpu::depth_to_space_cat(y, skip, out, static_cast<DType>(dtype), B, Co, Cs, Z, Y, X, sz, sy, sx, bias);
      },
      "Depth-to-space of a 1x1 convolution's output (+ bias) and concatenation with the skip (CPU, OpenMP).");
  m.def(
      "depth_to_space_cat_cl_cpu",
      [](std::uintptr_t y, std::uintptr_t skip, std::uintptr_t out, int dtype, int64_t B, int64_t Co, int64_t Cs,
         int64_t Z, int64_t Y, int64_t X, int sz, int sy, int sx, std::uintptr_t bias) {
        py::gil_scoped_release nogil;
        cpu::depth_to_space_cat_cl(y, skip, out, static_cast<DType>(dtype), B, Co, Cs, Z, Y, X, sz, sy, sx, bias);
      },
      "depth_to_space_cat over channels-last (B, Z, Y, X, C) data (CPU, OpenMP).");
}
