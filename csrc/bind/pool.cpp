#include "cpu/pool.h"
#include "registry.h"

namespace py = pybind11;
using namespace fastpanc;

FASTPANC_BIND(avg_pool_down) {
  m.def(
      "avg_pool_down_cpu",
      [](std::uintptr_t x, std::uintptr_t out, int dtype, int64_t planes, int64_t Z, int64_t Y, int64_t X, int sz,
         int sy, int sx) {
        py::gil_scoped_release nogil;
        cpu::avg_pool_down(x, out, static_cast<DType>(dtype), planes, Z, Y, X, sz, sy, sx);
      },
      "Average pooling with kernel == stride over contiguous (planes, Z, Y, X) data, float32 sums (CPU, OpenMP).");
  m.def(
      "avg_pool_down_cl_cpu",
      [](std::uintptr_t x, std::uintptr_t out, int dtype, int64_t batch, int64_t channels, int64_t Z, int64_t Y,
         int64_t X, int sz, int sy, int sx) {
        py::gil_scoped_release nogil;
        cpu::avg_pool_down_cl(x, out, static_cast<DType>(dtype), batch, channels, Z, Y, X, sz, sy, sx);
      },
      "Average pooling with kernel == stride over channels-last (batch, Z, Y, X, C) data (CPU, OpenMP).");
}
