#include "cpu/crop.h"

#include <algorithm>

#include "cpu/dispatch.h"

namespace fastpanc::cpu {
namespace {

template <class T, class Sel>
bool bbox_impl(const View4& x, Sel sel, int64_t box[6]) {
  const T* base = reinterpret_cast<const T*>(x.ptr);
  const int64_t C = x.shape[0], Z = x.shape[1], Y = x.shape[2], X = x.shape[3];
  const int64_t s0 = x.stride[0], s1 = x.stride[1], s2 = x.stride[2], s3 = x.stride[3];
  int64_t zlo = Z, zhi = -1, ylo = Y, yhi = -1, xlo = X, xhi = -1;
#pragma omp parallel for schedule(dynamic, 1) reduction(min : zlo, ylo, xlo) reduction(max : zhi, yhi, xhi)
  for (int64_t z = 0; z < Z; ++z) {
    for (int64_t y = 0; y < Y; ++y) {
      // first/last selected x of this row over all channels; each scan stops at what is already known,
      // so a row costs at most about X reads whatever C is, and a full row costs two reads.
      int64_t first = X, last = -1;
      for (int64_t c = 0; c < C; ++c) {
        const T* row = base + c * s0 + z * s1 + y * s2;
        for (int64_t i = 0; i < first; ++i)
          if (sel(row[i * s3])) {
            first = i;
            break;
          }
        if (first == X) continue;  // nothing selected in this row so far
        for (int64_t j = X - 1; j > last; --j)
          if (sel(row[j * s3])) {
            last = j;
            break;
          }
      }
      if (last >= 0) {
        zlo = std::min(zlo, z);
        zhi = std::max(zhi, z);
        ylo = std::min(ylo, y);
        yhi = std::max(yhi, y);
        xlo = std::min(xlo, first);
        xhi = std::max(xhi, last);
      }
    }
  }
  if (zhi < 0) return false;
  box[0] = zlo;
  box[1] = zhi + 1;
  box[2] = ylo;
  box[3] = yhi + 1;
  box[4] = xlo;
  box[5] = xhi + 1;
  return true;
}

template <class In, class Out>
void crop_impl(const View4& x, Out* out, const int64_t os[3], const int64_t lo[3], Out pad) {
  const In* in = reinterpret_cast<const In*>(x.ptr);
  const int64_t C = x.shape[0], Z = x.shape[1], Y = x.shape[2], X = x.shape[3];
  const int64_t s0 = x.stride[0], s1 = x.stride[1], s2 = x.stride[2], s3 = x.stride[3];
  const int64_t oz = os[0], oy = os[1], ox = os[2];
  // the output columns [k0, k1) read x[.., lo2 + k]; the rest is padding
  const int64_t k0 = std::clamp<int64_t>(-lo[2], 0, ox);
  const int64_t k1 = std::max(k0, std::clamp<int64_t>(X - lo[2], 0, ox));
  const int64_t planes = C * oz;
#pragma omp parallel for schedule(static)
  for (int64_t p = 0; p < planes; ++p) {
    const int64_t c = p / oz, i = p % oz;
    const int64_t sz = lo[0] + i;
    Out* plane = out + p * oy * ox;
    for (int64_t j = 0; j < oy; ++j) {
      Out* row = plane + j * ox;
      const int64_t sy = lo[1] + j;
      if (sz < 0 || sz >= Z || sy < 0 || sy >= Y) {
        std::fill(row, row + ox, pad);
        continue;
      }
      std::fill(row, row + k0, pad);
      const In* src = in + c * s0 + sz * s1 + sy * s2 + (lo[2] + k0) * s3;
      if (s3 == 1) {
        for (int64_t k = k0; k < k1; ++k) row[k] = cast<Out>(src[k - k0]);
      } else {
        for (int64_t k = k0; k < k1; ++k) row[k] = cast<Out>(src[(k - k0) * s3]);
      }
      std::fill(row + k1, row + ox, pad);
    }
  }
}

}  // namespace

bool bounding_box(const View4& x, bool use_threshold, double threshold, int64_t box[6]) {
  bool found = false;
  dispatch_dtype(x.dtype, [&](auto tag) {
    using T = typename decltype(tag)::type;
    if (use_threshold) {
      found = bbox_impl<T>(x, [threshold](T v) { return to_double(v) > threshold; }, box);
    } else {
      found = bbox_impl<T>(x, [](T v) { return to_double(v) != 0.0; }, box);
    }
  });
  return found;
}

void crop_pad(const View4& x, std::uintptr_t out, DType out_dtype, const int64_t out_shape[3], const int64_t lo[3],
              double pad_value) {
  for (int d = 0; d < 3; ++d)
    if (out_shape[d] < 0) fail("crop_pad: negative output size");
  dispatch_dtype(x.dtype, [&](auto in_tag) {
    using In = typename decltype(in_tag)::type;
    dispatch_dtype(out_dtype, [&](auto out_tag) {
      using Out = typename decltype(out_tag)::type;
      crop_impl<In, Out>(x, reinterpret_cast<Out*>(out), out_shape, lo, cast<Out>(pad_value));
    });
  });
}

}  // namespace fastpanc::cpu
