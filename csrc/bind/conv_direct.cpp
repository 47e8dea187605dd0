#include "cpu/conv_direct.h"
#include "registry.h"

namespace py = pybind11;
using namespace fastpanc;

FASTPANC_BIND(conv_direct) {
  m.def(
      "conv3d_direct_cl_cpu",
      [](std::uintptr_t xp, std::uintptr_t w, std::uintptr_t bias, std::uintptr_t out, int64_t B, int64_t C, int64_t Z,
         int64_t Y, int64_t X, int64_t Co, int64_t Cop, int kz, int ky, int kx) {
        py::gil_scoped_release nogil;
        cpu::conv3d_direct_cl(xp, w, bias, out, B, C, Z, Y, X, Co, Cop, kz, ky, kx);
      },
      "Direct 'same'-padded stride-1 float32 convolution of a zero-padded (B, C, Z+kz-1, Y+ky-1, X+kx-1) input with "
      "a (kz, ky, kx, C, Cop) weight into channels-last (B, Z, Y, X, Co) output (CPU, OpenMP).");
}
