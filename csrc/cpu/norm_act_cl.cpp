#include "cpu/norm_act_cl.h"

#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#ifdef _OPENMP
#include <omp.h>
#endif

#include "cpu/float_tiles.h"
#include "cpu/simd_clones.h"

namespace fastpanc::cpu {
namespace {

// A tile is `rows` voxels x all channels, about kTileElems floats (32 KiB: it stays in L1/L2 between the
// two loops over it); half-precision tiles are widened into a float buffer once per pass.
constexpr int64_t kTileElems = 8192;

int thread_count() {
#ifdef _OPENMP
  return omp_get_max_threads();
#else
  return 1;
#endif
}

int thread_id() {
#ifdef _OPENMP
  return omp_get_thread_num();
#else
  return 0;
#endif
}

// Every tile loop runs flat over W = k * C consecutive elements (k voxels of C channels) with per-channel
// arrays expanded to W entries: with few channels (8 at the full-resolution level) a loop over one voxel's C
// channels is too short to vectorise, and each per-channel sum would be one long chain of dependent adds.
constexpr int64_t kLanes = 64;  // W is the largest multiple of C <= 64, or C when C > 64

struct Lanes {
  int64_t C, W;
  explicit Lanes(int64_t channels) : C(channels), W(channels >= kLanes ? channels : (kLanes / channels) * channels) {}
  // a (C,) array as W entries: a[j % C] (the array itself when W == C); buf holds kLanes floats
  const float* expand(const float* a, float* buf) const {
    if (W == C) return a;
    for (int64_t j = 0; j < W; ++j) buf[j] = a[j % C];
    return buf;
  }
  // W lane sums (acc) folded into C channel sums; nothing to do when W == C (acc is the output)
  void fold(const float* acc, float* out) const {
    if (W == C) return;
    for (int64_t c = 0; c < C; ++c) {
      float t = 0.0f;
      for (int64_t j = c; j < W; j += C) t += acc[j];
      out[c] = t;
    }
  }
};

// One tile of (rows, C): per channel its sum and the squared deviations from its own (float) mean.
FASTPANC_SIMD_CLONES
void tile_stats(const float* __restrict p, int64_t rows, int64_t C, float* __restrict sum, float* __restrict mean,
                float* __restrict m2) {
  const Lanes L(C);
  const int64_t elems = rows * C;
  alignas(64) float lane[kLanes], mw[kLanes];
  float* acc = L.W == C ? sum : lane;
  for (int64_t j = 0; j < L.W; ++j) acc[j] = 0.0f;
  for (int64_t e0 = 0; e0 < elems; e0 += L.W) {
    const int64_t len = std::min(L.W, elems - e0);
    const float* q = p + e0;
#pragma omp simd
    for (int64_t j = 0; j < len; ++j) acc[j] += q[j];
  }
  L.fold(acc, sum);
  const float inv = 1.0f / static_cast<float>(rows);
  for (int64_t c = 0; c < C; ++c) mean[c] = sum[c] * inv;
  const float* m = L.expand(mean, mw);
  acc = L.W == C ? m2 : lane;
  for (int64_t j = 0; j < L.W; ++j) acc[j] = 0.0f;
  for (int64_t e0 = 0; e0 < elems; e0 += L.W) {
    const int64_t len = std::min(L.W, elems - e0);
    const float* q = p + e0;
#pragma omp simd
    for (int64_t j = 0; j < len; ++j) {
      const float d = q[j] - m[j];
      acc[j] += d * d;
    }
  }
  L.fold(acc, m2);
}

// Running per-channel statistics in double: count, mean, sum of squared deviations.
struct Moments {
  double count = 0.0;
  std::vector<double> mean, m2;
  explicit Moments(int64_t C) : mean(static_cast<size_t>(C), 0.0), m2(static_cast<size_t>(C), 0.0) {}

  // Chan et al.'s pairwise update with a part of `nb` voxels, its mean and squared deviations.
  template <class M, class Q>
  void merge(double nb, const M* mb, const Q* qb) {
    if (nb == 0.0) return;
    const double n = count + nb, wa = count * nb / n, fb = nb / n;
    for (size_t c = 0; c < mean.size(); ++c) {
      const double delta = static_cast<double>(mb[c]) - mean[c];
      mean[c] += delta * fb;
      m2[c] += static_cast<double>(qb[c]) + delta * delta * wa;
    }
    count = n;
  }
};

// One tile of the output: y = act((x - mean) * scale + beta (+ r)). y may be x (in place, element for element).
template <bool kRes, bool kAct>
FASTPANC_SIMD_CLONES void tile_apply(const float* x, const float* __restrict r, float* y, int64_t rows, int64_t C,
                                     const float* __restrict mean, const float* __restrict scale,
                                     const float* __restrict beta, float slope) {
  const Lanes L(C);
  alignas(64) float mb[kLanes], sb[kLanes], bb[kLanes];
  const float* m = L.expand(mean, mb);
  const float* sc = L.expand(scale, sb);
  const float* bt = L.expand(beta, bb);
  const int64_t elems = rows * C;
  for (int64_t e0 = 0; e0 < elems; e0 += L.W) {
    const int64_t len = std::min(L.W, elems - e0);
    const float* xi = x + e0;
    const float* ri = kRes ? r + e0 : nullptr;
    float* yi = y + e0;
#pragma omp simd
    for (int64_t j = 0; j < len; ++j) {
      float v = (xi[j] - m[j]) * sc[j] + bt[j];
      if (kRes) v += ri[j];
      if (kAct) v = v > 0.0f ? v : v * slope;
      yi[j] = v;
    }
  }
}

using ApplyFn = void (*)(const float*, const float*, float*, int64_t, int64_t, const float*, const float*,
                         const float*, float);

ApplyFn pick_apply(bool res, bool act) {
  if (res) return act ? tile_apply<true, true> : tile_apply<true, false>;
  return act ? tile_apply<false, true> : tile_apply<false, false>;
}

void check_dtype(DType dt, const char* what) { check_float_dtype(dt, "instance_norm_act_cl", what); }

}  // namespace

void instance_norm_act_cl(std::uintptr_t x, DType x_dtype, std::uintptr_t residual, DType residual_dtype,
                          std::uintptr_t out, DType out_dtype, int64_t batch, int64_t channels, int64_t n,
                          std::uintptr_t gamma, std::uintptr_t beta, float eps, bool act, float negative_slope,
                          std::uintptr_t mean_out, std::uintptr_t rstd_out) {
  check_dtype(x_dtype, "x");
  check_dtype(out_dtype, "out");
  if (residual) check_dtype(residual_dtype, "residual");
  if (batch < 0 || n < 0 || channels <= 0) fail("instance_norm_act_cl: batch >= 0, channels > 0 and n >= 0");
  if (!(eps > 0.0f)) fail("instance_norm_act_cl: eps must be > 0");
  if (batch == 0 || n == 0) return;
  const int64_t C = channels;
  const int64_t rows = std::max<int64_t>(1, kTileElems / C);
  const int64_t tiles = (n + rows - 1) / rows;
  const float* g = reinterpret_cast<const float*>(gamma);
  const float* bt = reinterpret_cast<const float*>(beta);
  const int threads = static_cast<int>(std::min<int64_t>(thread_count(), tiles));

  // per (b, c): mean, scale = gamma / sqrt(var + eps), beta
  std::vector<float> mean(static_cast<size_t>(batch * C)), scale(static_cast<size_t>(batch * C));
  std::vector<float> shift(static_cast<size_t>(C));
  for (int64_t c = 0; c < C; ++c) shift[c] = bt ? bt[c] : 0.0f;

  const size_t xs = float_elem_size(x_dtype);
  for (int64_t b = 0; b < batch; ++b) {
    const std::uintptr_t xb = x + static_cast<std::uintptr_t>(b * n * C) * xs;
    std::vector<Moments> part(static_cast<size_t>(threads), Moments(C));
#pragma omp parallel num_threads(threads) if (threads > 1)
    {
      std::vector<float> buf(static_cast<size_t>(rows * C)), sum(C), tmean(C), m2(C);  // per thread
      const int t = thread_id(), nt = threads;
      Moments& acc = part[static_cast<size_t>(t)];
      // each thread a contiguous run of tiles, merged in order: the result depends on the thread count only
      for (int64_t k = tiles * t / nt; k < tiles * (t + 1) / nt; ++k) {
        const int64_t r0 = k * rows, len = std::min(rows, n - r0);
        const float* p = load_tile(xb, x_dtype, r0 * C, len * C, buf.data());
        tile_stats(p, len, C, sum.data(), tmean.data(), m2.data());
        // squared deviations about the tile's float mean: they differ from those about its exact mean by
        // len * (rounding of the mean)^2
        acc.merge(static_cast<double>(len), tmean.data(), m2.data());
      }
    }
    Moments all(C);
    for (const Moments& m : part) all.merge(m.count, m.mean.data(), m.m2.data());
    for (int64_t c = 0; c < C; ++c) {
      const double var = all.m2[c] / static_cast<double>(n);
      const float gc = g ? g[c] : 1.0f;
      const double inv = 1.0 / std::sqrt(var + static_cast<double>(eps));
      mean[b * C + c] = static_cast<float>(all.mean[c]);
      scale[b * C + c] = static_cast<float>(static_cast<double>(gc) * inv);
      if (mean_out) reinterpret_cast<float*>(mean_out)[b * C + c] = static_cast<float>(all.mean[c]);
      if (rstd_out) reinterpret_cast<float*>(rstd_out)[b * C + c] = static_cast<float>(inv);
    }
  }

  const ApplyFn apply = pick_apply(residual != 0, act);
  const int apply_threads = static_cast<int>(std::min<int64_t>(thread_count(), batch * tiles));
#pragma omp parallel num_threads(apply_threads) if (apply_threads > 1)
  {
    std::vector<float> xbuf(static_cast<size_t>(rows * C)), rbuf(residual ? rows * C : 0), ybuf(rows * C);
#pragma omp for schedule(static)
    for (int64_t bk = 0; bk < batch * tiles; ++bk) {
      const int64_t b = bk / tiles, r0 = (bk % tiles) * rows, len = std::min(rows, n - r0);
      const int64_t e0 = (b * n + r0) * C, elems = len * C;
      const float* xt = load_tile(x, x_dtype, e0, elems, xbuf.data());
      const float* rt = residual ? load_tile(residual, residual_dtype, e0, elems, rbuf.data()) : nullptr;
      float* yt = out_dtype == DType::f32 ? reinterpret_cast<float*>(out) + e0 : ybuf.data();
      apply(xt, rt, yt, len, C, mean.data() + b * C, scale.data() + b * C, shift.data(), negative_slope);
      store_tile(yt, out, out_dtype, e0, elems);
    }
  }
}

namespace {

// One tile of the backward's first pass: dz = act ? (y > 0 ? dy : dy * slope) : dy into dz, and per channel the
// sums of dz and dz * xhat (xhat = (x - mean) * rstd) written to s1 and s2.
template <bool kAct>
FASTPANC_SIMD_CLONES void tile_grad_sums(const float* __restrict dy, const float* __restrict x,
                                         const float* __restrict y, float* __restrict dz, int64_t rows, int64_t C,
                                         const float* __restrict mean, const float* __restrict rstd,
                                         float* __restrict s1, float* __restrict s2, float slope) {
  const Lanes L(C);
  alignas(64) float mb[kLanes], rb[kLanes], l1[kLanes], l2[kLanes];
  const float* m = L.expand(mean, mb);
  const float* rs = L.expand(rstd, rb);
  float* a1 = L.W == C ? s1 : l1;
  float* a2 = L.W == C ? s2 : l2;
  for (int64_t j = 0; j < L.W; ++j) a1[j] = a2[j] = 0.0f;
  const int64_t elems = rows * C;
  for (int64_t e0 = 0; e0 < elems; e0 += L.W) {
    const int64_t len = std::min(L.W, elems - e0);
    const float* gi = dy + e0;
    const float* xi = x + e0;
    const float* yi = kAct ? y + e0 : nullptr;
    float* di = dz + e0;
#pragma omp simd
    for (int64_t j = 0; j < len; ++j) {
      const float d = kAct ? (yi[j] > 0.0f ? gi[j] : gi[j] * slope) : gi[j];
      di[j] = d;
      a1[j] += d;
      a2[j] += d * (xi[j] - m[j]) * rs[j];
    }
  }
  L.fold(a1, s1);
  L.fold(a2, s2);
}

// One tile of the second pass: grad_x = k * (dz - a - xhat * bcoef) with dz as in the first pass (recomputed from
// dy and y, not stored), k = rstd * gamma, a = sum_dz / n, bcoef = sum_dz_xhat / n.
template <bool kAct>
FASTPANC_SIMD_CLONES void tile_grad_x(const float* __restrict dy, const float* __restrict x,
                                      const float* __restrict y, float* __restrict gx, int64_t rows, int64_t C,
                                      const float* __restrict mean, const float* __restrict rstd,
                                      const float* __restrict k, const float* __restrict a,
                                      const float* __restrict bcoef, float slope) {
  const Lanes L(C);
  alignas(64) float mb[kLanes], rb[kLanes], kb[kLanes], ab[kLanes], bb[kLanes];
  const float* m = L.expand(mean, mb);
  const float* rs = L.expand(rstd, rb);
  const float* kw = L.expand(k, kb);
  const float* aw = L.expand(a, ab);
  const float* bw = L.expand(bcoef, bb);
  const int64_t elems = rows * C;
  for (int64_t e0 = 0; e0 < elems; e0 += L.W) {
    const int64_t len = std::min(L.W, elems - e0);
    const float* gi = dy + e0;
    const float* xi = x + e0;
    const float* yi = kAct ? y + e0 : nullptr;
    float* go = gx + e0;
#pragma omp simd
    for (int64_t j = 0; j < len; ++j) {
      const float d = kAct ? (yi[j] > 0.0f ? gi[j] : gi[j] * slope) : gi[j];
      const float xhat = (xi[j] - m[j]) * rs[j];
      go[j] = kw[j] * (d - aw[j] - xhat * bw[j]);
    }
  }
}

}  // namespace

void instance_norm_act_cl_backward(std::uintptr_t grad_out, DType grad_out_dtype, std::uintptr_t x, DType x_dtype,
                                   std::uintptr_t y, DType y_dtype, std::uintptr_t grad_x, DType grad_x_dtype,
                                   std::uintptr_t grad_residual, DType grad_residual_dtype, int64_t batch,
                                   int64_t channels, int64_t n, std::uintptr_t mean, std::uintptr_t rstd,
                                   std::uintptr_t gamma, std::uintptr_t sum_dz, std::uintptr_t sum_dz_xhat, bool act,
                                   float negative_slope) {
  check_backward_dtypes("instance_norm_act_cl_backward", grad_out_dtype, x_dtype, act ? &y_dtype : nullptr,
                        grad_x ? &grad_x_dtype : nullptr, grad_residual ? &grad_residual_dtype : nullptr);
  if (batch < 0 || n < 0 || channels <= 0) {
    fail("instance_norm_act_cl_backward: batch >= 0, channels > 0 and n >= 0");
  }
  if (act && !y) fail("instance_norm_act_cl_backward: the output y is needed with the activation");
  if (batch == 0 || n == 0) return;
  const int64_t C = channels;
  const int64_t rows = std::max<int64_t>(1, kTileElems / C);
  const int64_t tiles = (n + rows - 1) / rows;
  const float* mu = reinterpret_cast<const float*>(mean);
  const float* rs = reinterpret_cast<const float*>(rstd);
  const float* g = reinterpret_cast<const float*>(gamma);
  float* s1_out = reinterpret_cast<float*>(sum_dz);
  float* s2_out = reinterpret_cast<float*>(sum_dz_xhat);
  const int threads = static_cast<int>(std::min<int64_t>(thread_count(), tiles));
  auto sums_tile = act ? tile_grad_sums<true> : tile_grad_sums<false>;
  auto grad_x_tile = act ? tile_grad_x<true> : tile_grad_x<false>;

  // pass 1, per sample: dz (written as grad_residual when wanted) and the per-channel sums
  for (int64_t b = 0; b < batch; ++b) {
    const int64_t e_b = b * n * C;
    std::vector<std::vector<double>> part(static_cast<size_t>(threads), std::vector<double>(2 * C, 0.0));
#pragma omp parallel num_threads(threads) if (threads > 1)
    {
      std::vector<float> gbuf(rows * C), xbuf(rows * C), ybuf(act ? rows * C : 0), dz(rows * C), s1(C), s2(C);
      const int t = thread_id(), nt = threads;
      std::vector<double>& acc = part[static_cast<size_t>(t)];
      // each thread a contiguous run of tiles, added in order: the result depends on the thread count only
      for (int64_t k = tiles * t / nt; k < tiles * (t + 1) / nt; ++k) {
        const int64_t r0 = k * rows, len = std::min(rows, n - r0), e0 = e_b + r0 * C, elems = len * C;
        const float* gt = load_tile(grad_out, grad_out_dtype, e0, elems, gbuf.data());
        const float* xt = load_tile(x, x_dtype, e0, elems, xbuf.data());
        const float* yt = act ? load_tile(y, y_dtype, e0, elems, ybuf.data()) : nullptr;
        float* dzt = grad_residual && grad_residual_dtype == DType::f32 ? reinterpret_cast<float*>(grad_residual) + e0
                                                                          : dz.data();
        sums_tile(gt, xt, yt, dzt, len, C, mu + b * C, rs + b * C, s1.data(), s2.data(), negative_slope);
        if (grad_residual) store_tile(dzt, grad_residual, grad_residual_dtype, e0, elems);
        for (int64_t c = 0; c < C; ++c) {
          acc[c] += s1[c];
          acc[C + c] += s2[c];
        }
      }
    }
    for (int64_t c = 0; c < C; ++c) {
      double a1 = 0.0, a2 = 0.0;
      for (const auto& p : part) {
        a1 += p[c];
        a2 += p[C + c];
      }
      s1_out[b * C + c] = static_cast<float>(a1);
      s2_out[b * C + c] = static_cast<float>(a2);
    }
  }
  if (!grad_x) return;

  // per (b, c): k = rstd * gamma, a = sum_dz / n, bcoef = sum_dz_xhat / n
  std::vector<float> kk(batch * C), aa(batch * C), bb(batch * C);
  const float inv_n = 1.0f / static_cast<float>(n);
  for (int64_t i = 0; i < batch * C; ++i) {
    kk[i] = rs[i] * (g ? g[i % C] : 1.0f);
    aa[i] = s1_out[i] * inv_n;
    bb[i] = s2_out[i] * inv_n;
  }
  const int apply_threads = static_cast<int>(std::min<int64_t>(thread_count(), batch * tiles));
#pragma omp parallel num_threads(apply_threads) if (apply_threads > 1)
  {
    std::vector<float> gbuf(rows * C), xbuf(rows * C), ybuf(act ? rows * C : 0), gxbuf(rows * C);
#pragma omp for schedule(static)
    for (int64_t bk = 0; bk < batch * tiles; ++bk) {
      const int64_t b = bk / tiles, r0 = (bk % tiles) * rows, len = std::min(rows, n - r0);
      const int64_t e0 = (b * n + r0) * C, elems = len * C;
      const float* gt = load_tile(grad_out, grad_out_dtype, e0, elems, gbuf.data());
      const float* xt = load_tile(x, x_dtype, e0, elems, xbuf.data());
      const float* yt = act ? load_tile(y, y_dtype, e0, elems, ybuf.data()) : nullptr;
      float* gxt = grad_x_dtype == DType::f32 ? reinterpret_cast<float*>(grad_x) + e0 : gxbuf.data();
      grad_x_tile(gt, xt, yt, gxt, len, C, mu + b * C, rs + b * C, kk.data() + b * C, aa.data() + b * C,
                  bb.data() + b * C, negative_slope);
      store_tile(gxt, grad_x, grad_x_dtype, e0, elems);
    }
  }
}

}  // namespace fastpanc::cpu
