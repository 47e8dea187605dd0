#include "cpu/norm_act.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "cpu/float_tiles.h"
#include "cpu/simd_clones.h"

namespace fastpanc::cpu {
namespace {

// A plane is processed in tiles of kTile elements: half-precision tiles are widened into a float
// buffer on the stack once per pass, so every arithmetic loop below runs on float arrays.
constexpr int64_t kTile = 2048;

FASTPANC_SIMD_CLONES
float tile_sum(const float* __restrict p, int64_t n) {
  float s = 0.0f;
#pragma omp simd reduction(+ : s)
  for (int64_t i = 0; i < n; ++i) s += p[i];
  return s;
}

FASTPANC_SIMD_CLONES
float tile_sq_dev(const float* __restrict p, int64_t n, float mean) {
  float s = 0.0f;
#pragma omp simd reduction(+ : s)
  for (int64_t i = 0; i < n; ++i) {
    const float d = p[i] - mean;
    s += d * d;
  }
  return s;
}

// LeakyReLU as torch computes it (x > 0 ? x : x * slope), or identity without act
inline float act_one(float v, bool act, float slope) { return act ? (v > 0.0f ? v : v * slope) : v; }

// One tile: y = act((x - mean) * scale + beta (+ r)); x, r and y never overlap (restrict lets the compiler
// vectorise without a runtime alias check).
FASTPANC_SIMD_CLONES
void tile_apply(const float* __restrict x, const float* __restrict r, float* __restrict y, int64_t n, float mean,
                float scale, float beta, bool act, float slope) {
  if (r != nullptr) {
    for (int64_t i = 0; i < n; ++i) y[i] = act_one((x[i] - mean) * scale + beta + r[i], act, slope);
  } else {
    for (int64_t i = 0; i < n; ++i) y[i] = act_one((x[i] - mean) * scale + beta, act, slope);
  }
}

// the same with the output written over x (float32 in place)
FASTPANC_SIMD_CLONES
void tile_apply_inplace(float* __restrict xy, const float* __restrict r, int64_t n, float mean, float scale,
                        float beta, bool act, float slope) {
  if (r != nullptr) {
    for (int64_t i = 0; i < n; ++i) xy[i] = act_one((xy[i] - mean) * scale + beta + r[i], act, slope);
  } else {
    for (int64_t i = 0; i < n; ++i) xy[i] = act_one((xy[i] - mean) * scale + beta, act, slope);
  }
}

void check_dtype(DType dt, const char* what) { check_float_dtype(dt, "instance_norm_act", what); }

void one_plane(std::uintptr_t x, DType xd, std::uintptr_t r, DType rd, std::uintptr_t out, DType od, int64_t n,
               float gamma, float beta, float eps, bool act, float slope, float* mean_out, float* rstd_out) {
  alignas(64) float xbuf[kTile];
  alignas(64) float rbuf[kTile];
  alignas(64) float ybuf[kTile];
  // two passes for the statistics (mean, then squared deviations), as torch's CPU batch norm does;
  // float within a tile, double across tiles
  double sum = 0.0;
  for (int64_t b = 0; b < n; b += kTile) {
    const int64_t len = std::min(kTile, n - b);
    sum += tile_sum(load_tile(x, xd, b, len, xbuf), len);
  }
  const float mean = static_cast<float>(sum / static_cast<double>(n));
  double sq = 0.0;
  for (int64_t b = 0; b < n; b += kTile) {
    const int64_t len = std::min(kTile, n - b);
    sq += tile_sq_dev(load_tile(x, xd, b, len, xbuf), len, mean);
  }
  const double var = sq / static_cast<double>(n);
  const double rstd = 1.0 / std::sqrt(var + static_cast<double>(eps));
  const float scale = static_cast<float>(static_cast<double>(gamma) * rstd);
  if (mean_out != nullptr) *mean_out = mean;
  if (rstd_out != nullptr) *rstd_out = static_cast<float>(rstd);
  for (int64_t b = 0; b < n; b += kTile) {
    const int64_t len = std::min(kTile, n - b);
    const float* xt = load_tile(x, xd, b, len, xbuf);
    const float* rt = r ? load_tile(r, rd, b, len, rbuf) : nullptr;
    float* yt = od == DType::f32 ? reinterpret_cast<float*>(out) + b : ybuf;
    if (yt == xt) {
      tile_apply_inplace(yt, rt, len, mean, scale, beta, act, slope);
    } else {
      tile_apply(xt, rt, yt, len, mean, scale, beta, act, slope);
    }
    store_tile(yt, out, od, b, len);
  }
}

// ---- backward

// dz = y > 0 ? dy : dy * slope (the LeakyReLU's derivative read from its output)
FASTPANC_SIMD_CLONES
void tile_dz(const float* __restrict dy, const float* __restrict y, float* __restrict dz, int64_t n, float slope) {
  for (int64_t i = 0; i < n; ++i) dz[i] = y[i] > 0.0f ? dy[i] : dy[i] * slope;
}

// sum(dz) and sum(dz * (x - mean)) of one tile
FASTPANC_SIMD_CLONES
void tile_dz_sums(const float* __restrict dz, const float* __restrict x, int64_t n, float mean, float* s_dz,
                  float* s_dzx) {
  float a = 0.0f, b = 0.0f;
#pragma omp simd reduction(+ : a, b)
  for (int64_t i = 0; i < n; ++i) {
    a += dz[i];
    b += dz[i] * (x[i] - mean);
  }
  *s_dz = a;
  *s_dzx = b;
}

// grad_x = k * dz - c - d * (x - mean)
FASTPANC_SIMD_CLONES
void tile_grad_x(const float* __restrict dz, const float* __restrict x, float* __restrict gx, int64_t n, float mean,
                 float k, float c, float d) {
  for (int64_t i = 0; i < n; ++i) gx[i] = k * dz[i] - c - d * (x[i] - mean);
}

struct BackwardPlane {  // one plane's arrays (0: absent) and their dtypes
  std::uintptr_t dy;
  DType dyd;
  std::uintptr_t x;
  DType xd;
  std::uintptr_t y;
  DType yd;
  std::uintptr_t gx;
  DType gxd;
  std::uintptr_t gr;
  DType grd;
};

// dz of one tile: dy itself without act, else written to dz_out
const float* dz_tile(const BackwardPlane& a, int64_t b, int64_t len, bool act, float slope, float* dz_out,
                     float* dybuf, float* ybuf) {
  const float* dy = load_tile(a.dy, a.dyd, b, len, dybuf);
  if (!act) return dy;
  tile_dz(dy, load_tile(a.y, a.yd, b, len, ybuf), dz_out, len, slope);
  return dz_out;
}

void one_plane_backward(const BackwardPlane& a, int64_t n, float mean, float rstd, float gamma, bool act, float slope,
                        float* sum_dz, float* sum_dz_xhat) {
  alignas(64) float dybuf[kTile];
  alignas(64) float ybuf[kTile];
  alignas(64) float xbuf[kTile];
  alignas(64) float dzbuf[kTile];
  alignas(64) float gxbuf[kTile];
  // a float32 grad_residual holds dz itself: pass 1 writes it there, pass 2 reads it back
  const bool gr_f32 = a.gr && a.grd == DType::f32;
  // pass 1: the two sums (float within a tile, double across tiles, as the forward's statistics) and
  // grad_residual = dz
  double s1 = 0.0, s2 = 0.0;
  for (int64_t b = 0; b < n; b += kTile) {
    const int64_t len = std::min(kTile, n - b);
    float* dz_out = gr_f32 ? reinterpret_cast<float*>(a.gr) + b : dzbuf;
    const float* dz = dz_tile(a, b, len, act, slope, dz_out, dybuf, ybuf);
    float t1, t2;
    tile_dz_sums(dz, load_tile(a.x, a.xd, b, len, xbuf), len, mean, &t1, &t2);
    s1 += t1;
    s2 += t2;
    if (gr_f32 && dz != dz_out) {
      std::memcpy(dz_out, dz, sizeof(float) * len);
    } else if (a.gr && !gr_f32) {
      store_tile(dz, a.gr, a.grd, b, len);
    }
  }
  *sum_dz = static_cast<float>(s1);
  *sum_dz_xhat = static_cast<float>(s2 * rstd);  // sum(dz * xhat)
  if (!a.gx) return;
  // pass 2: grad_x = k * (dz - mean(dz)) - k * rstd^2 * mean(dz * (x - mean)) * (x - mean), k = rstd * gamma
  const double k = static_cast<double>(rstd) * gamma;
  const double inv_n = 1.0 / static_cast<double>(n);
  const float kf = static_cast<float>(k);
  const float c = static_cast<float>(k * s1 * inv_n);
  const float d = static_cast<float>(k * rstd * rstd * s2 * inv_n);
  for (int64_t b = 0; b < n; b += kTile) {
    const int64_t len = std::min(kTile, n - b);
    const float* dz =
        gr_f32 ? reinterpret_cast<const float*>(a.gr) + b : dz_tile(a, b, len, act, slope, dzbuf, dybuf, ybuf);
    float* gx = a.gxd == DType::f32 ? reinterpret_cast<float*>(a.gx) + b : gxbuf;
    tile_grad_x(dz, load_tile(a.x, a.xd, b, len, xbuf), gx, len, mean, kf, c, d);
    store_tile(gx, a.gx, a.gxd, b, len);
  }
}

}  // namespace

void instance_norm_act(std::uintptr_t x, DType x_dtype, std::uintptr_t residual, DType residual_dtype,
                       std::uintptr_t out, DType out_dtype, int64_t planes, int64_t channels, int64_t n,
                       std::uintptr_t gamma, std::uintptr_t beta, float eps, bool act, float negative_slope,
                       std::uintptr_t mean_out, std::uintptr_t rstd_out) {
  check_dtype(x_dtype, "x");
  check_dtype(out_dtype, "out");
  if (residual) check_dtype(residual_dtype, "residual");
  if (planes < 0 || n < 0 || channels <= 0 || planes % channels != 0) {
    fail("instance_norm_act: planes must be a non-negative multiple of channels and n >= 0");
  }
  if (!(eps > 0.0f)) fail("instance_norm_act: eps must be > 0");
  if (planes == 0 || n == 0) return;
  const float* g = reinterpret_cast<const float*>(gamma);
  const float* bt = reinterpret_cast<const float*>(beta);
  float* mo = reinterpret_cast<float*>(mean_out);
  float* ro = reinterpret_cast<float*>(rstd_out);
  const size_t xs = float_elem_size(x_dtype), rs = float_elem_size(residual_dtype), os = float_elem_size(out_dtype);
#pragma omp parallel for schedule(dynamic, 1) if (planes > 1)
  for (int64_t p = 0; p < planes; ++p) {
    const int64_t c = p % channels;
    const std::uintptr_t off = static_cast<std::uintptr_t>(p * n);
    one_plane(x + off * xs, x_dtype, residual ? residual + off * rs : 0, residual_dtype, out + off * os, out_dtype, n,
              g ? g[c] : 1.0f, bt ? bt[c] : 0.0f, eps, act, negative_slope, mo ? mo + p : nullptr,
              ro ? ro + p : nullptr);
  }
}

void instance_norm_act_backward(std::uintptr_t grad_out, DType grad_out_dtype, std::uintptr_t x, DType x_dtype,
                                std::uintptr_t y, DType y_dtype, std::uintptr_t grad_x, DType grad_x_dtype,
                                std::uintptr_t grad_residual, DType grad_residual_dtype, int64_t planes,
                                int64_t channels, int64_t n, std::uintptr_t mean, std::uintptr_t rstd,
                                std::uintptr_t gamma, std::uintptr_t sum_dz, std::uintptr_t sum_dz_xhat, bool act,
                                float negative_slope) {
  check_backward_dtypes("instance_norm_act_backward", grad_out_dtype, x_dtype, act ? &y_dtype : nullptr,
                        grad_x ? &grad_x_dtype : nullptr, grad_residual ? &grad_residual_dtype : nullptr);
  if (planes < 0 || n < 0 || channels <= 0 || planes % channels != 0) {
    fail("instance_norm_act_backward: planes must be a non-negative multiple of channels and n >= 0");
  }
  if (planes == 0 || n == 0) return;
  if (!mean || !rstd || !sum_dz || !sum_dz_xhat || (act && !y)) {
    fail("instance_norm_act_backward: mean, rstd, sum_dz, sum_dz_xhat (and y with act) are required");
  }
  const float* g = reinterpret_cast<const float*>(gamma);
  const float* mu = reinterpret_cast<const float*>(mean);
  const float* rs = reinterpret_cast<const float*>(rstd);
  float* s1 = reinterpret_cast<float*>(sum_dz);
  float* s2 = reinterpret_cast<float*>(sum_dz_xhat);
  const size_t dys = float_elem_size(grad_out_dtype), xs = float_elem_size(x_dtype), ys = float_elem_size(y_dtype);
  const size_t gxs = float_elem_size(grad_x_dtype), grs = float_elem_size(grad_residual_dtype);
#pragma omp parallel for schedule(dynamic, 1) if (planes > 1)
  for (int64_t p = 0; p < planes; ++p) {
    const std::uintptr_t off = static_cast<std::uintptr_t>(p * n);
    const BackwardPlane bp{grad_out + off * dys,  grad_out_dtype, x + off * xs, x_dtype,
                           act ? y + off * ys : 0, y_dtype,        grad_x ? grad_x + off * gxs : 0,
                           grad_x_dtype,          grad_residual ? grad_residual + off * grs : 0,
                           grad_residual_dtype};
    one_plane_backward(bp, n, mu[p], rs[p], g ? g[p % channels] : 1.0f, act, negative_slope, s1 + p, s2 + p);
  }
}

}  // namespace fastpanc::cpu
