#include "cpu/norm_act_cl.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <string>
#include <vector>

#ifdef _OPENMP
#include <omp.h>
#endif

#include "half.h"

namespace fastpanc::cpu {
namespace {

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
// compiled for AVX-512, AVX2 and the x86-64 baseline; the loader picks the best one this CPU runs
#define FASTPANC_SIMD_CLONES __attribute__((target_clones("avx512f", "avx2", "default")))
#else
#define FASTPANC_SIMD_CLONES
#endif

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

FASTPANC_SIMD_CLONES
void bf16_to_f32(const uint16_t* __restrict in, float* __restrict out, int64_t n) {
  for (int64_t i = 0; i < n; ++i) {
    uint32_t bits = static_cast<uint32_t>(in[i]) << 16;
    float f;
    std::memcpy(&f, &bits, 4);
    out[i] = f;
  }
}

FASTPANC_SIMD_CLONES
void f32_to_bf16(const float* __restrict in, uint16_t* __restrict out, int64_t n) {
  for (int64_t i = 0; i < n; ++i) {
    uint32_t x;
    std::memcpy(&x, &in[i], 4);
    const uint32_t rounded = (x + 0x7fffu + ((x >> 16) & 1u)) >> 16;  // round to nearest even
    const uint32_t quiet_nan = (x >> 16) | 0x40u;
    out[i] = static_cast<uint16_t>((x & 0x7fffffffu) > 0x7f800000u ? quiet_nan : rounded);
  }
}

// Elements [b, b + len) as float: a pointer into the data for float32, else widened into buf.
const float* load(std::uintptr_t base, DType dt, int64_t b, int64_t len, float* buf) {
  switch (dt) {
    case DType::f32:
      return reinterpret_cast<const float*>(base) + b;
    case DType::bf16:
      bf16_to_f32(reinterpret_cast<const uint16_t*>(base) + b, buf, len);
      return buf;
    case DType::f16: {
      const uint16_t* p = reinterpret_cast<const uint16_t*>(base) + b;
      for (int64_t i = 0; i < len; ++i) buf[i] = half_to_float(p[i]);
      return buf;
    }
    default:
      return nullptr;  // rejected before any thread starts
  }
}

void store(const float* y, std::uintptr_t base, DType dt, int64_t b, int64_t len) {
  switch (dt) {
    case DType::f32:
      return;  // computed in place in the output
    case DType::bf16:
      f32_to_bf16(y, reinterpret_cast<uint16_t*>(base) + b, len);
      return;
    case DType::f16: {
      uint16_t* p = reinterpret_cast<uint16_t*>(base) + b;
      for (int64_t i = 0; i < len; ++i) p[i] = float_to_half(y[i]);
      return;
    }
    default:
      return;
  }
}

// One tile of (rows, C): per channel its sum and the squared deviations from its own (float) mean.
FASTPANC_SIMD_CLONES
void tile_stats(const float* __restrict p, int64_t rows, int64_t C, float* __restrict sum, float* __restrict mean,
                float* __restrict m2) {
  for (int64_t c = 0; c < C; ++c) sum[c] = 0.0f;
  for (int64_t r = 0; r < rows; ++r) {
    const float* row = p + r * C;
#pragma omp simd
    for (int64_t c = 0; c < C; ++c) sum[c] += row[c];
  }
  const float inv = 1.0f / static_cast<float>(rows);
  for (int64_t c = 0; c < C; ++c) {
    mean[c] = sum[c] * inv;
    m2[c] = 0.0f;
  }
  for (int64_t r = 0; r < rows; ++r) {
    const float* row = p + r * C;
#pragma omp simd
    for (int64_t c = 0; c < C; ++c) {
      const float d = row[c] - mean[c];
      m2[c] += d * d;
    }
  }
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
  for (int64_t i = 0; i < rows; ++i) {
    const float* xi = x + i * C;
    const float* ri = kRes ? r + i * C : nullptr;
    float* yi = y + i * C;
#pragma omp simd
    for (int64_t c = 0; c < C; ++c) {
      float v = (xi[c] - mean[c]) * scale[c] + beta[c];
      if (kRes) v += ri[c];
      if (kAct) v = v > 0.0f ? v : v * slope;
      yi[c] = v;
    }
  }
}

using ApplyFn = void (*)(const float*, const float*, float*, int64_t, int64_t, const float*, const float*,
                         const float*, float);

ApplyFn pick_apply(bool res, bool act) {
  if (res) return act ? tile_apply<true, true> : tile_apply<true, false>;
  return act ? tile_apply<false, true> : tile_apply<false, false>;
}

void check_dtype(DType dt, const char* what) {
  if (dt != DType::f32 && dt != DType::bf16 && dt != DType::f16) {
    fail(std::string("instance_norm_act_cl: ") + what + " must be float32, float16 or bfloat16, got " +
         dtype_name(dt));
  }
}

size_t elem_size(DType dt) { return dt == DType::f32 ? 4 : 2; }

}  // namespace

void instance_norm_act_cl(std::uintptr_t x, DType x_dtype, std::uintptr_t residual, DType residual_dtype,
                          std::uintptr_t out, DType out_dtype, int64_t batch, int64_t channels, int64_t n,
                          std::uintptr_t gamma, std::uintptr_t beta, float eps, bool act, float negative_slope) {
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

  const size_t xs = elem_size(x_dtype);
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
        const float* p = load(xb, x_dtype, r0 * C, len * C, buf.data());
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
      mean[b * C + c] = static_cast<float>(all.mean[c]);
      scale[b * C + c] = static_cast<float>(static_cast<double>(gc) / std::sqrt(var + static_cast<double>(eps)));
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
      const float* xt = load(x, x_dtype, e0, elems, xbuf.data());
      const float* rt = residual ? load(residual, residual_dtype, e0, elems, rbuf.data()) : nullptr;
      float* yt = out_dtype == DType::f32 ? reinterpret_cast<float*>(out) + e0 : ybuf.data();
      apply(xt, rt, yt, len, C, mean.data() + b * C, scale.data() + b * C, shift.data(), negative_slope);
      store(yt, out, out_dtype, e0, elems);
    }
  }
}

}  // namespace fastpanc::cpu
