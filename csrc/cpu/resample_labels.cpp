// CPU (OpenMP) label resampling: a thread team over output rows, float64 label scores as scipy computes them.
#if defined(__clang__)
#pragma clang fp contract(off)
#elif defined(__GNUC__)
#pragma GCC optimize("fp-contract=off")
#endif

#include <string>
#include <vector>

#include "cpu/resample.h"

namespace fastpanc::cpu {
namespace {

template <typename L>
void labels_pass(const View4& in, L* out, const int64_t os[3], int kind, int axis) {
  const L* src = reinterpret_cast<const L*>(in.ptr);
  const int64_t C = in.shape[0];
  // per axis: taps i0/i1 with float64 weights w0/w1 (order 1) and the nearest index
  std::vector<int64_t> i0[3], i1[3], nn[3];
  std::vector<double> w0[3], w1[3];
  for (int d = 0; d < 3; ++d) {
    const int64_t n = in.shape[d + 1], m = os[d];
    i0[d].resize(m), i1[d].resize(m), nn[d].resize(m), w0[d].resize(m), w1[d].resize(m);
    int64_t idx[2];
    double w[2];
    for (int64_t k = 0; k < m; ++k) {
      rs::axis_taps(k, n, m, 1, idx, w);
      i0[d][k] = idx[0], i1[d][k] = idx[1], w0[d][k] = w[0], w1[d][k] = w[1];
      rs::axis_taps(k, n, m, 0, idx, w);
      nn[d][k] = idx[0];
    }
  }
  const int64_t s0 = in.stride[0], s1 = in.stride[1], s2 = in.stride[2], s3 = in.stride[3];
#pragma omp parallel for collapse(3) schedule(dynamic, 16)
  for (int64_t c = 0; c < C; ++c)
    for (int64_t z = 0; z < os[0]; ++z)
      for (int64_t y = 0; y < os[1]; ++y) {
        const L* sc = src + c * s0;
        L* o = out + ((c * os[0] + z) * os[1] + y) * os[2];
        if (kind == rs::kNearest) {
          const L* row = sc + nn[0][z] * s1 + nn[1][y] * s2;
          for (int64_t x = 0; x < os[2]; ++x) o[x] = row[nn[2][x] * s3];
        } else if (kind == rs::kLinearArgmax) {
          const int64_t zi[2] = {i0[0][z] * s1, i1[0][z] * s1}, yi[2] = {i0[1][y] * s2, i1[1][y] * s2};
          const double zw[2] = {w0[0][z], w1[0][z]}, yw[2] = {w0[1][y], w1[1][y]};
          const L* nrow = sc + nn[0][z] * s1 + nn[1][y] * s2;
          for (int64_t x = 0; x < os[2]; ++x) {
            const int64_t xi[2] = {i0[2][x] * s3, i1[2][x] * s3};
            const double xw[2] = {w0[2][x], w1[2][x]};
            L v[8];
            double t[8];
            int q = 0;
            for (int a = 0; a < 2; ++a)
              for (int b = 0; b < 2; ++b)
                for (int e = 0; e < 2; ++e, ++q) {
                  v[q] = sc[zi[a] + yi[b] + xi[e]];
                  t[q] = rs::dmul(rs::dmul(zw[a], yw[b]), xw[e]);
                }
            o[x] = rs::label_argmax_nearest(v, t, 8, nrow[nn[2][x] * s3]);
          }
        } else {
          const int64_t pos[3] = {z, y, 0};
          for (int64_t x = 0; x < os[2]; ++x) {
            int64_t p[3] = {pos[0], pos[1], x};
            const int64_t k = p[axis];
            p[axis] = i0[axis][k];
            const L a = sc[p[0] * s1 + p[1] * s2 + p[2] * s3];
            p[axis] = i1[axis][k];
            const L b = sc[p[0] * s1 + p[1] * s2 + p[2] * s3];
            o[x] = rs::label_threshold_pair(a, b, w0[axis][k], w1[axis][k]);
          }
        }
      }
}

}  // namespace

void resample_labels(const View4& in, std::uintptr_t out, const int64_t os[3], int kind, int axis) {
  if (kind < 0 || kind > 2) fail("resample_labels: kind must be 0 (nearest), 1 (linear) or 2 (linear z threshold)");
  if (kind == rs::kLinearThreshold) {
    if (axis < 0 || axis > 2) fail("resample_labels: axis must be 0, 1 or 2");
    for (int d = 0; d < 3; ++d)
      if (d != axis && os[d] != in.shape[d + 1]) fail("resample_labels: the threshold pass may resize only `axis`");
  }
  for (int d = 0; d < 3; ++d)
    if (os[d] < 1 || in.shape[d + 1] < 1) fail("resample_labels: sizes must be >= 1");
  switch (in.dtype) {
    case DType::u8: labels_pass<uint8_t>(in, reinterpret_cast<uint8_t*>(out), os, kind, axis); break;
    case DType::i8: labels_pass<int8_t>(in, reinterpret_cast<int8_t*>(out), os, kind, axis); break;
    case DType::i16: labels_pass<int16_t>(in, reinterpret_cast<int16_t*>(out), os, kind, axis); break;
    case DType::i32: labels_pass<int32_t>(in, reinterpret_cast<int32_t*>(out), os, kind, axis); break;
    case DType::i64: labels_pass<int64_t>(in, reinterpret_cast<int64_t*>(out), os, kind, axis); break;
    default: fail(std::string("resample_labels: labels must be an integer dtype, got ") + dtype_name(in.dtype));
  }
}

}  // namespace fastpanc::cpu
