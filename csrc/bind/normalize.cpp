#include "bind/view.h"
#include "cpu/normalize.h"
#include "registry.h"
#ifdef FASTPANC_WITH_CUDA
#include "cuda/normalize.h"
#endif

namespace py = pybind11;
using namespace fastpanc;

FASTPANC_BIND(ct_normalize) {
  m.def(
      "ct_normalize_cpu",
      [](std::uintptr_t x, std::vector<int64_t> shape, std::vector<int64_t> strides, int dtype, std::uintptr_t out,
         int out_dtype, float lo, float hi, float mean, float std) {
        View4 v = make_view(x, shape, strides, dtype);
        py::gil_scoped_release nogil;
        cpu::ct_normalize(v, out, static_cast<DType>(out_dtype), lo, hi, mean, std);
      },
      "Clip, subtract, divide and cast in one pass (CPU, OpenMP).");
#ifdef FASTPANC_WITH_CUDA
  m.def(
      "ct_normalize_cuda",
      [](std::uintptr_t x, std::vector<int64_t> shape, std::vector<int64_t> strides, int dtype, std::uintptr_t out,
         int out_dtype, float lo, float hi, float mean, float std, std::uintptr_t stream) {
        View4 v = make_view(x, shape, strides, dtype);
        py::gil_scoped_release nogil;
        cuda::ct_normalize(v, out, static_cast<DType>(out_dtype), lo, hi, mean, std, stream);
      },
      "Clip, subtract, divide and cast in one pass (CUDA, on the given stream).");
#endif
}
