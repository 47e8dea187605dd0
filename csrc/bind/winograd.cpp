#include "cpu/winograd.h"
#include "registry.h"

namespace py = pybind11;
using namespace fastpanc;

FASTPANC_BIND(winograd) {
  m.def(
      "winograd_input_cl_cpu",
      [](std::uintptr_t x, std::uintptr_t v, int64_t B, int64_t Z, int64_t Y, int64_t X, int64_t C, int kz, int m,
         int64_t t0, int64_t nt, int64_t ld) {
        py::gil_scoped_release nogil;
        cpu::winograd_input_cl(x, v, B, Z, Y, X, C, kz, m, t0, nt, ld);
      },
      "Winograd F(m, 3) input transform of tiles [t0, t0 + nt) of channels-last float32 data into (P, nt, C) "
      "(CPU, OpenMP).");
  m.def(
      "winograd_output_cl_cpu",
      [](std::uintptr_t mm, std::uintptr_t bias, std::uintptr_t out, int64_t B, int64_t Z, int64_t Y, int64_t X,
         int64_t Co, int kz, int m, int64_t t0, int64_t nt, int64_t ld) {
        py::gil_scoped_release nogil;
        cpu::winograd_output_cl(mm, bias, out, B, Z, Y, X, Co, kz, m, t0, nt, ld);
      },
      "Winograd F(m, 3) output transform of (P, nt, Co) products into channels-last float32 output, plus bias "
      "(CPU, OpenMP).");
}
