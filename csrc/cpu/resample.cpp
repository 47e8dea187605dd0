// CPU (OpenMP) resampling: one pass per axis, each pass prefilters (order 3) and interpolates tiles of lines.
#if defined(__clang__)
#pragma clang fp contract(off)
#elif defined(__GNUC__)
#pragma GCC optimize("fp-contract=off")
#endif

#include "cpu/resample.h"

#include <algorithm>
#include <limits>
#include <string>
#include <vector>

#include "half.h"

namespace fastpanc::cpu {
namespace {

struct Bf16 {
  uint16_t v;
};
struct F16 {
  uint16_t v;
};

inline float load(const float* p) { return *p; }
inline float load(const double* p) { return static_cast<float>(*p); }
inline float load(const int16_t* p) { return static_cast<float>(*p); }
inline float load(const int32_t* p) { return static_cast<float>(*p); }
inline float load(const uint8_t* p) { return static_cast<float>(*p); }
inline float load(const int8_t* p) { return static_cast<float>(*p); }
inline float load(const F16* p) { return half_to_float(p->v); }
inline float load(const Bf16* p) { return bf16_to_float(p->v); }

inline void store(float* p, float v) { *p = v; }
inline void store(F16* p, float v) { p->v = float_to_half(v); }
inline void store(Bf16* p, float v) { p->v = float_to_bf16(v); }

// Per-axis tap table: n_out x (order + 1) indices (into the padded line for order 3) and float32 weights.
struct TapTable {
  int ntap = 0;
  std::vector<int64_t> idx;
  std::vector<float> w;
};

TapTable make_taps(int64_t n_in, int64_t n_out, int order) {
  TapTable t;
  t.ntap = order + 1;
  t.idx.resize(n_out * t.ntap);
  t.w.resize(n_out * t.ntap);
  int64_t idx[4];
  double w[4];
  for (int64_t k = 0; k < n_out; ++k) {
    rs::axis_taps(k, n_in, n_out, order, idx, w);
    for (int h = 0; h < t.ntap; ++h) {
      t.idx[k * t.ntap + h] = idx[h];
      t.w[k * t.ntap + h] = static_cast<float>(w[h]);
    }
  }
  return t;
}

constexpr int64_t kLanes = 256;  // lanes of a tile of contiguous lines
constexpr int64_t kGather = 64;  // lanes of a tile of gathered (transposed) lines
constexpr int64_t kMinLanes = 16;

// Cubic B-spline prefilter of `len` rows of T lanes (row r at buf + r * T), scipy's "reflect" initialisation.
// Terms of the initial sum below |pole|^40 (~1e-23) are dropped.
void prefilter_rows(float* buf, int64_t len, int64_t T, int64_t nt) {
  const float z = static_cast<float>(rs::kPole);
  const float gain = static_cast<float>((1.0 - rs::kPole) * (1.0 - 1.0 / rs::kPole));
  for (int64_t r = 0; r < len; ++r)
    for (int64_t t = 0; t < nt; ++t) buf[r * T + t] *= gain;
  if (len == 1) return;
  const int64_t K = std::min<int64_t>(len, 40);
  const double zn_d = len <= 40 ? std::pow(rs::kPole, static_cast<double>(len)) : 0.0;
  const float zn = static_cast<float>(zn_d);
  const float scale = static_cast<float>(rs::kPole / (1.0 - zn_d * zn_d));
  float acc[kLanes];
  for (int64_t t = 0; t < nt; ++t) acc[t] = 0.f;
  double zi = 1.0;
  for (int64_t i = 0; i < K; ++i) {
    const float zf = static_cast<float>(zi);
    const float* a = buf + i * T;
    const float* b = buf + (len - 1 - i) * T;
    for (int64_t t = 0; t < nt; ++t) acc[t] += zf * (a[t] + zn * b[t]);
    zi *= rs::kPole;
  }
  for (int64_t t = 0; t < nt; ++t) buf[t] += acc[t] * scale;
  for (int64_t r = 1; r < len; ++r) {
    float* c = buf + r * T;
    const float* p = c - T;
    for (int64_t t = 0; t < nt; ++t) c[t] += z * p[t];
  }
  const float last = z / (z - 1.f);
  for (int64_t t = 0; t < nt; ++t) buf[(len - 1) * T + t] *= last;
  for (int64_t r = len - 2; r >= 0; --r) {
    float* c = buf + r * T;
    const float* nx = c + T;
    for (int64_t t = 0; t < nt; ++t) c[t] = z * (nx[t] - c[t]);
  }
}

// A pass resamples "lines" (all samples along `dim` at one position of the other dims), T lines ("lanes") at a
// time so that the recursions and the interpolation run as vector operations across lanes. When the lines of
// one outer index are contiguous and many (B >= kMinLanes) a tile takes T of them; otherwise (the X pass) a
// tile takes T consecutive lines and loads/stores them transposed.
template <typename In, typename Out>
void axis_pass(const View4& in, Out* out, int dim, int64_t m, int order, int clip_mode, int clip_dim,
               const float* lo, const float* hi) {
  const In* src = reinterpret_cast<const In*>(in.ptr);
  const int64_t n = in.shape[dim];
  int64_t A = 1, B = 1;
  for (int d = 0; d < dim; ++d) A *= in.shape[d];
  for (int d = dim + 1; d < 4; ++d) B *= in.shape[d];
  const TapTable taps = make_taps(n, m, order);
  const int ntap = taps.ntap;
  const int64_t pad = order == 3 ? rs::kPad : 0;
  const int64_t len = n + 2 * pad;
  const bool per_outer = B >= kMinLanes;
  const int64_t T = per_outer ? kLanes : kGather;
  const int64_t tiles_per_a = per_outer ? (B + T - 1) / T : 0;
  const int64_t tasks = per_outer ? A * tiles_per_a : (A * B + T - 1) / T;
  const int64_t s_axis = in.stride[dim];

#pragma omp parallel
  {
    std::vector<float> buf(len * T);
    int64_t ioff[kLanes], ooff[kLanes];
    float clo[kLanes], chi[kLanes], acc[kLanes];
#pragma omp for schedule(dynamic)
    for (int64_t task = 0; task < tasks; ++task) {
      int64_t l0, nt;
      if (per_outer) {
        const int64_t a = task / tiles_per_a, b0 = (task % tiles_per_a) * T;
        l0 = a * B + b0;
        nt = std::min(T, B - b0);
      } else {
        l0 = task * T;
        nt = std::min(T, A * B - l0);
      }
      // offsets of each lane's line in the input (at sample 0) and the output (at sample 0), clip bounds
      for (int64_t t = 0; t < nt; ++t) {
        const int64_t l = l0 + t;
        int64_t a = l / B, b = l % B;
        int64_t idx[4] = {0, 0, 0, 0};
        for (int d = 3; d > dim; --d) {
          idx[d] = b % in.shape[d];
          b /= in.shape[d];
        }
        for (int d = dim - 1; d >= 0; --d) {
          idx[d] = a % in.shape[d];
          a /= in.shape[d];
        }
        ioff[t] = idx[0] * in.stride[0] + idx[1] * in.stride[1] + idx[2] * in.stride[2] + idx[3] * in.stride[3];
        ooff[t] = (l / B) * m * B + l % B;
        if (clip_mode == 1) {
          clo[t] = lo[idx[0]];
          chi[t] = hi[idx[0]];
        } else if (clip_mode == 2) {
          const int64_t k = idx[0] * in.shape[clip_dim] + idx[clip_dim];
          clo[t] = lo[k];
          chi[t] = hi[k];
        }
      }
      bool in_contig = true, out_contig = true;
      for (int64_t t = 1; t < nt; ++t) {
        in_contig = in_contig && ioff[t] == ioff[0] + t;
        out_contig = out_contig && ooff[t] == ooff[0] + t;
      }
      // load (row k + pad of the buffer holds sample k of every lane)
      for (int64_t k = 0; k < n; ++k) {
        const In* row = src + k * s_axis;
        float* dst = buf.data() + (k + pad) * T;
        if (in_contig) {
          row += ioff[0];
          for (int64_t t = 0; t < nt; ++t) dst[t] = load(row + t);
        } else {
          for (int64_t t = 0; t < nt; ++t) dst[t] = load(row + ioff[t]);
        }
      }
      if (order == 3) {
        for (int64_t k = 0; k < pad; ++k) {
          std::copy_n(buf.data() + pad * T, nt, buf.data() + k * T);
          std::copy_n(buf.data() + (pad + n - 1) * T, nt, buf.data() + (pad + n + k) * T);
        }
        prefilter_rows(buf.data(), len, T, nt);
      }
      for (int64_t j = 0; j < m; ++j) {
        for (int64_t t = 0; t < nt; ++t) acc[t] = 0.f;
        for (int h = 0; h < ntap; ++h) {
          const float w = taps.w[j * ntap + h];
          const float* s = buf.data() + taps.idx[j * ntap + h] * T;
          for (int64_t t = 0; t < nt; ++t) acc[t] += w * s[t];
        }
        if (clip_mode != 0)
          for (int64_t t = 0; t < nt; ++t) acc[t] = std::min(std::max(acc[t], clo[t]), chi[t]);
        if (out_contig) {
          Out* o = out + ooff[0] + j * B;
          for (int64_t t = 0; t < nt; ++t) store(o + t, acc[t]);
        } else {
          for (int64_t t = 0; t < nt; ++t) store(out + ooff[t] + j * B, acc[t]);
        }
      }
    }
  }
}

template <typename In>
void by_out(const View4& in, std::uintptr_t out, DType od, int dim, int64_t m, int order, int clip_mode,
            int clip_dim, const float* lo, const float* hi) {
  switch (od) {
    case DType::f32:
      axis_pass<In>(in, reinterpret_cast<float*>(out), dim, m, order, clip_mode, clip_dim, lo, hi);
      break;
    case DType::f16:
      axis_pass<In>(in, reinterpret_cast<F16*>(out), dim, m, order, clip_mode, clip_dim, lo, hi);
      break;
    case DType::bf16:
      axis_pass<In>(in, reinterpret_cast<Bf16*>(out), dim, m, order, clip_mode, clip_dim, lo, hi);
      break;
    default:
      fail(std::string("resample: output dtype must be float32, float16 or bfloat16, got ") + dtype_name(od));
  }
}

// Orders 0 and 1 in one pass (the tensor product of 1- or 2-tap axes): each output row blends its (up to 4)
// input rows into a row of the input's width, then interpolates along X. No intermediate volume.
template <typename In, typename Out>
void lowres_pass(const View4& in, Out* out, const int64_t os[3], const int orders[3]) {
  const In* src = reinterpret_cast<const In*>(in.ptr);
  const int64_t C = in.shape[0], xin = in.shape[3];
  std::vector<int64_t> idx[3];
  std::vector<float> wt[3];
  int ntap[3];
  for (int d = 0; d < 3; ++d) {
    const int64_t n = in.shape[d + 1], m = os[d];
    const int order = n == m ? 0 : orders[d];  // an unchanged axis is the identity
    ntap[d] = order + 1;
    idx[d].resize(m * ntap[d]);
    wt[d].resize(m * ntap[d]);
    int64_t ii[2];
    double ww[2];
    for (int64_t k = 0; k < m; ++k) {
      rs::axis_taps(k, n, m, order, ii, ww);
      for (int h = 0; h < ntap[d]; ++h) {
        idx[d][k * ntap[d] + h] = ii[h];
        wt[d][k * ntap[d] + h] = static_cast<float>(ww[h]);
      }
    }
  }
  const int64_t s0 = in.stride[0], s1 = in.stride[1], s2 = in.stride[2], s3 = in.stride[3];
  const bool x_identity = ntap[2] == 1 && xin == os[2];
#pragma omp parallel
  {
    std::vector<float> row(xin);
#pragma omp for collapse(3) schedule(dynamic, 16)
    for (int64_t c = 0; c < C; ++c)
      for (int64_t z = 0; z < os[0]; ++z)
        for (int64_t y = 0; y < os[1]; ++y) {
          bool first = true;
          for (int a = 0; a < ntap[0]; ++a)
            for (int b = 0; b < ntap[1]; ++b) {
              const float w = wt[0][z * ntap[0] + a] * wt[1][y * ntap[1] + b];
              const In* r = src + c * s0 + idx[0][z * ntap[0] + a] * s1 + idx[1][y * ntap[1] + b] * s2;
              float* t = row.data();
              if (s3 == 1) {
                if (first)
                  for (int64_t x = 0; x < xin; ++x) t[x] = w * load(r + x);
                else
                  for (int64_t x = 0; x < xin; ++x) t[x] += w * load(r + x);
              } else {
                if (first)
                  for (int64_t x = 0; x < xin; ++x) t[x] = w * load(r + x * s3);
                else
                  for (int64_t x = 0; x < xin; ++x) t[x] += w * load(r + x * s3);
              }
              first = false;
            }
          Out* o = out + ((c * os[0] + z) * os[1] + y) * os[2];
          const float* t = row.data();
          if (x_identity) {
            for (int64_t x = 0; x < os[2]; ++x) store(o + x, t[x]);
          } else if (ntap[2] == 1) {
            const int64_t* xi = idx[2].data();
            for (int64_t x = 0; x < os[2]; ++x) store(o + x, t[xi[x]]);
          } else {
            const int64_t* xi = idx[2].data();
            const float* xw = wt[2].data();
            for (int64_t x = 0; x < os[2]; ++x)
              store(o + x, xw[2 * x] * t[xi[2 * x]] + xw[2 * x + 1] * t[xi[2 * x + 1]]);
          }
        }
  }
}

template <typename In>
void lowres_by_out(const View4& in, std::uintptr_t out, DType od, const int64_t os[3], const int orders[3]) {
  switch (od) {
    case DType::f32: lowres_pass<In>(in, reinterpret_cast<float*>(out), os, orders); break;
    case DType::f16: lowres_pass<In>(in, reinterpret_cast<F16*>(out), os, orders); break;
    case DType::bf16: lowres_pass<In>(in, reinterpret_cast<Bf16*>(out), os, orders); break;
    default:
      fail(std::string("resample: output dtype must be float32, float16 or bfloat16, got ") + dtype_name(od));
  }
}

template <typename In>
void minmax_impl(const View4& in, float* lo, float* hi, int dim) {
  const In* src = reinterpret_cast<const In*>(in.ptr);
  const int64_t C = in.shape[0], Z = in.shape[1], Y = in.shape[2], X = in.shape[3];
  const int64_t S = dim >= 2 ? in.shape[dim] : 1;  // per-plane entries
  std::vector<float> tlo(C * Z * S), thi(C * Z * S);
#pragma omp parallel for collapse(2) schedule(dynamic)
  for (int64_t c = 0; c < C; ++c)
    for (int64_t z = 0; z < Z; ++z) {
      float* l = tlo.data() + (c * Z + z) * S;
      float* h = thi.data() + (c * Z + z) * S;
      for (int64_t s = 0; s < S; ++s) {
        l[s] = std::numeric_limits<float>::infinity();
        h[s] = -std::numeric_limits<float>::infinity();
      }
      for (int64_t y = 0; y < Y; ++y) {
        const In* row = src + c * in.stride[0] + z * in.stride[1] + y * in.stride[2];
        if (dim == 2) {
          float a = l[y], b = h[y];
          for (int64_t x = 0; x < X; ++x) {
            const float v = load(row + x * in.stride[3]);
            a = std::min(a, v);
            b = std::max(b, v);
          }
          l[y] = a, h[y] = b;
        } else if (dim == 3) {
          for (int64_t x = 0; x < X; ++x) {
            const float v = load(row + x * in.stride[3]);
            l[x] = std::min(l[x], v);
            h[x] = std::max(h[x], v);
          }
        } else {
          float a = l[0], b = h[0];
          for (int64_t x = 0; x < X; ++x) {
            const float v = load(row + x * in.stride[3]);
            a = std::min(a, v);
            b = std::max(b, v);
          }
          l[0] = a, h[0] = b;
        }
      }
    }
  if (dim == 1) {
    std::copy(tlo.begin(), tlo.end(), lo);
    std::copy(thi.begin(), thi.end(), hi);
    return;
  }
  for (int64_t c = 0; c < C; ++c)
    for (int64_t s = 0; s < S; ++s) {
      float a = tlo[c * Z * S + s], b = thi[c * Z * S + s];
      for (int64_t z = 1; z < Z; ++z) {
        a = std::min(a, tlo[(c * Z + z) * S + s]);
        b = std::max(b, thi[(c * Z + z) * S + s]);
      }
      lo[c * S + s] = a;
      hi[c * S + s] = b;
    }
}

}  // namespace

void resample_axis(const View4& in, std::uintptr_t out, DType od, int dim, int64_t m, int order, int clip_mode,
                   int clip_dim, const float* lo, const float* hi) {
  if (dim < 1 || dim > 3) fail("resample: dim must be 1, 2 or 3 (Z, Y, X)");
  if (order != 0 && order != 1 && order != 3) fail("resample: order must be 0, 1 or 3");
  if (m < 1 || in.shape[dim] < 1) fail("resample: sizes must be >= 1");
  if (clip_mode == 2 && (clip_dim < 1 || clip_dim > 3 || clip_dim == dim)) fail("resample: bad clip_dim");
  switch (in.dtype) {
    case DType::f32: by_out<float>(in, out, od, dim, m, order, clip_mode, clip_dim, lo, hi); break;
    case DType::f64: by_out<double>(in, out, od, dim, m, order, clip_mode, clip_dim, lo, hi); break;
    case DType::f16: by_out<F16>(in, out, od, dim, m, order, clip_mode, clip_dim, lo, hi); break;
    case DType::bf16: by_out<Bf16>(in, out, od, dim, m, order, clip_mode, clip_dim, lo, hi); break;
    case DType::i16: by_out<int16_t>(in, out, od, dim, m, order, clip_mode, clip_dim, lo, hi); break;
    case DType::i32: by_out<int32_t>(in, out, od, dim, m, order, clip_mode, clip_dim, lo, hi); break;
    case DType::u8: by_out<uint8_t>(in, out, od, dim, m, order, clip_mode, clip_dim, lo, hi); break;
    case DType::i8: by_out<int8_t>(in, out, od, dim, m, order, clip_mode, clip_dim, lo, hi); break;
    default: fail(std::string("resample: unsupported input dtype ") + dtype_name(in.dtype));
  }
}

void minmax(const View4& in, float* lo, float* hi, int dim) {
  if (dim < 0 || dim > 3) fail("resample: minmax dim must be 0 (per channel) or 1..3 (per slice)");
  if (in.numel() == 0) fail("resample: minmax of an empty tensor");
  switch (in.dtype) {
    case DType::f32: minmax_impl<float>(in, lo, hi, dim); break;
    case DType::f64: minmax_impl<double>(in, lo, hi, dim); break;
    case DType::f16: minmax_impl<F16>(in, lo, hi, dim); break;
    case DType::bf16: minmax_impl<Bf16>(in, lo, hi, dim); break;
    case DType::i16: minmax_impl<int16_t>(in, lo, hi, dim); break;
    case DType::i32: minmax_impl<int32_t>(in, lo, hi, dim); break;
    case DType::u8: minmax_impl<uint8_t>(in, lo, hi, dim); break;
    case DType::i8: minmax_impl<int8_t>(in, lo, hi, dim); break;
    default: fail(std::string("resample: unsupported input dtype ") + dtype_name(in.dtype));
  }
}

void resample_lowres(const View4& in, std::uintptr_t out, DType od, const int64_t os[3], const int orders[3]) {
  for (int d = 0; d < 3; ++d) {
    if (orders[d] != 0 && orders[d] != 1) fail("resample: the one-pass kernel takes orders 0 and 1 only");
    if (os[d] < 1 || in.shape[d + 1] < 1) fail("resample: sizes must be >= 1");
  }
  switch (in.dtype) {
    case DType::f32: lowres_by_out<float>(in, out, od, os, orders); break;
    case DType::f64: lowres_by_out<double>(in, out, od, os, orders); break;
    case DType::f16: lowres_by_out<F16>(in, out, od, os, orders); break;
    case DType::bf16: lowres_by_out<Bf16>(in, out, od, os, orders); break;
    case DType::i16: lowres_by_out<int16_t>(in, out, od, os, orders); break;
    case DType::i32: lowres_by_out<int32_t>(in, out, od, os, orders); break;
    case DType::u8: lowres_by_out<uint8_t>(in, out, od, os, orders); break;
    case DType::i8: lowres_by_out<int8_t>(in, out, od, os, orders); break;
    default: fail(std::string("resample: unsupported input dtype ") + dtype_name(in.dtype));
  }
}

}  // namespace fastpanc::cpu
