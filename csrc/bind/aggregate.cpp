#include "bind/view.h"
#include "cpu/aggregate.h"
#include "registry.h"
#ifdef FASTPANC_WITH_CUDA
#include "cuda/aggregate.h"
#endif

namespace py = pybind11;
using namespace fastpanc;

namespace {
// logits (B, K, pz, py, px): the view of window 0 and the batch stride in elements.
View4 window0(std::uintptr_t ptr, const std::vector<int64_t>& shape, const std::vector<int64_t>& strides, int dtype,
              int64_t* batch_stride) {
  if (shape.size() != 5 || strides.size() != 5) fail("accumulate: logits must be (B, K, pz, py, px)");
  *batch_stride = strides[0];
  return make_view(ptr, {shape.begin() + 1, shape.end()}, {strides.begin() + 1, strides.end()}, dtype);
}
}  // namespace

FASTPANC_BIND(aggregate) {
  m.def(
      "accumulate_cpu",
      [](std::uintptr_t acc, std::vector<int64_t> acc_shape, std::vector<int64_t> acc_strides, int acc_dtype,
         std::uintptr_t weight, std::vector<int64_t> w_shape, std::vector<int64_t> w_strides, int w_dtype,
         std::uintptr_t logits, std::vector<int64_t> l_shape, std::vector<int64_t> l_strides, int l_dtype,
         std::vector<int64_t> starts, std::uintptr_t gauss) {
        View4 a = make_view(acc, acc_shape, acc_strides, acc_dtype);
        View4 w = make_view(weight, w_shape, w_strides, w_dtype);
        int64_t bs = 0;
        View4 l = window0(logits, l_shape, l_strides, l_dtype, &bs);
        py::gil_scoped_release nogil;
        cpu::accumulate(a, w, l, bs, starts, reinterpret_cast<const float*>(gauss));
      },
      "acc[:, window] += logits * gauss and weight[window] += gauss for a batch of windows (CPU, OpenMP).");
  m.def(
      "finalize_cpu",
      [](std::uintptr_t acc, std::vector<int64_t> acc_shape, std::vector<int64_t> acc_strides, int acc_dtype,
         std::uintptr_t weight, std::vector<int64_t> w_shape, std::vector<int64_t> w_strides, int w_dtype,
         std::uintptr_t labels, std::uintptr_t probs) {
        View4 a = make_view(acc, acc_shape, acc_strides, acc_dtype);
        View4 w = make_view(weight, w_shape, w_strides, w_dtype);
        py::gil_scoped_release nogil;
        cpu::finalize(a, w, labels, probs);
      },
      "Divide, argmax to uint8 and optionally softmax to float16 in one pass (CPU, OpenMP).");
#ifdef FASTPANC_WITH_CUDA
  m.def(
      "accumulate_cuda",
      [](std::uintptr_t acc, std::vector<int64_t> acc_shape, std::vector<int64_t> acc_strides, int acc_dtype,
         std::uintptr_t weight, std::vector<int64_t> w_shape, std::vector<int64_t> w_strides, int w_dtype,
         std::uintptr_t logits, std::vector<int64_t> l_shape, std::vector<int64_t> l_strides, int l_dtype,
         std::vector<int64_t> starts, std::uintptr_t gauss, std::uintptr_t stream) {
        View4 a = make_view(acc, acc_shape, acc_strides, acc_dtype);
        View4 w = make_view(weight, w_shape, w_strides, w_dtype);
        int64_t bs = 0;
        View4 l = window0(logits, l_shape, l_strides, l_dtype, &bs);
        py::gil_scoped_release nogil;
        cuda::accumulate(a, w, l, bs, starts, reinterpret_cast<const float*>(gauss), stream);
      },
      "acc[:, window] += logits * gauss and weight[window] += gauss for a batch of windows (CUDA).");
  m.def(
      "finalize_cuda",
      [](std::uintptr_t acc, std::vector<int64_t> acc_shape, std::vector<int64_t> acc_strides, int acc_dtype,
         std::uintptr_t weight, std::vector<int64_t> w_shape, std::vector<int64_t> w_strides, int w_dtype,
         std::uintptr_t labels, std::uintptr_t probs, std::uintptr_t stream) {
        View4 a = make_view(acc, acc_shape, acc_strides, acc_dtype);
        View4 w = make_view(weight, w_shape, w_strides, w_dtype);
        py::gil_scoped_release nogil;
        cuda::finalize(a, w, labels, probs, stream);
      },
      "Divide, argmax to uint8 and optionally softmax to float16 in one pass (CUDA).");
#endif
}
