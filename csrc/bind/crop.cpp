#include <array>

#include "bind/view.h"
#include "cpu/crop.h"
#include "registry.h"
#ifdef FASTPANC_WITH_CUDA
#include "cuda/crop.h"
#endif

namespace py = pybind11;
using namespace fastpanc;

namespace {
std::array<int64_t, 3> three(const std::vector<int64_t>& v, const char* what) {
  if (v.size() != 3) fail(std::string("crop_pad: ") + what + " must have 3 values (z, y, x)");
  return {v[0], v[1], v[2]};
}
}  // namespace

FASTPANC_BIND(crop) {
  m.def(
      "bounding_box_cpu",
      [](std::uintptr_t x, std::vector<int64_t> shape, std::vector<int64_t> strides, int dtype, bool use_threshold,
         double threshold) {
        View4 v = make_view(x, shape, strides, dtype);
        int64_t box[6];
        bool found;
        {
          py::gil_scoped_release nogil;
          found = cpu::bounding_box(v, use_threshold, threshold, box);
        }
        std::vector<int64_t> out;
        if (found) out.assign(box, box + 6);
        return out;
      },
      "Half-open (zlo, zhi, ylo, yhi, xlo, xhi) of the selected voxels, or [] when none (CPU, OpenMP).");
  m.def(
      "crop_pad_cpu",
      [](std::uintptr_t x, std::vector<int64_t> shape, std::vector<int64_t> strides, int dtype, std::uintptr_t out,
         int out_dtype, std::vector<int64_t> out_shape, std::vector<int64_t> lo, double pad_value) {
        View4 v = make_view(x, shape, strides, dtype);
        auto os = three(out_shape, "out_shape");
        auto l = three(lo, "lo");
        py::gil_scoped_release nogil;
        cpu::crop_pad(v, out, static_cast<DType>(out_dtype), os.data(), l.data(), pad_value);
      },
      "Crop a box that may reach outside the volume, pad the outside, cast (CPU, OpenMP).");
#ifdef FASTPANC_WITH_CUDA
  m.def(
      "bounding_box_cuda",
      [](std::uintptr_t x, std::vector<int64_t> shape, std::vector<int64_t> strides, int dtype, bool use_threshold,
         double threshold, std::uintptr_t result, std::uintptr_t stream) {
        View4 v = make_view(x, shape, strides, dtype);
        py::gil_scoped_release nogil;
        cuda::bounding_box(v, use_threshold, threshold, result, stream);
      },
      "Bounding box into six device int32 (zlo, ylo, xlo, zhi, yhi, xhi inclusive) (CUDA).");
  m.def(
      "crop_pad_cuda",
      [](std::uintptr_t x, std::vector<int64_t> shape, std::vector<int64_t> strides, int dtype, std::uintptr_t out,
         int out_dtype, std::vector<int64_t> out_shape, std::vector<int64_t> lo, double pad_value,
         std::uintptr_t stream) {
        View4 v = make_view(x, shape, strides, dtype);
        auto os = three(out_shape, "out_shape");
        auto l = three(lo, "lo");
        py::gil_scoped_release nogil;
        cuda::crop_pad(v, out, static_cast<DType>(out_dtype), os.data(), l.data(), pad_value, stream);
      },
      "Crop a box that may reach outside the volume, pad the outside, cast (CUDA, on the given stream).");
#endif
}
