#include "cpu/normalize.h"

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <string>
#include <type_traits>

#include "half.h"

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <immintrin.h>
#endif

namespace fastpanc::cpu {
namespace {

template <typename T>
inline float load(const T* p) { return static_cast<float>(*p); }
template <>
inline float load<uint16_t>(const uint16_t* p) { return half_to_float(*p); }

struct Bf16 { uint16_t v; };
template <>
inline float load<Bf16>(const Bf16* p) { return bf16_to_float(p->v); }

template <typename In, typename Store>
void run(const View4& x, std::uintptr_t out, float lo, float hi, float mean, float inv_std, Store store) {
  const In* in = reinterpret_cast<const In*>(x.ptr);
  const int64_t C = x.shape[0], Z = x.shape[1], Y = x.shape[2], X = x.shape[3];
  const int64_t planes = C * Z, sx = x.stride[3];
#pragma omp parallel for schedule(static)
  for (int64_t cz = 0; cz < planes; ++cz) {
    const int64_t c = cz / Z, z = cz % Z;
    const In* base = in + c * x.stride[0] + z * x.stride[1];
    int64_t o = cz * Y * X;
    for (int64_t y = 0; y < Y; ++y) {
      const In* row = base + y * x.stride[2];
      if (sx == 1) {  // unit stride: a plain loop the compiler vectorises
        for (int64_t i = 0; i < X; ++i) {
          float v = load<In>(row + i);
          v = std::min(std::max(v, lo), hi);  // NaN stays NaN through min/max order below
          store(out, o + i, (v - mean) * inv_std);
        }
        o += X;
        continue;
      }
      for (int64_t i = 0; i < X; ++i, ++o) {
        float v = load<In>(row + i * sx);
        v = std::min(std::max(v, lo), hi);  // NaN stays NaN through min/max order below
        store(out, o, (v - mean) * inv_std);
      }
    }
  }
}

// clip with comparisons so that NaN propagates (v < lo and v > hi are both false for NaN), then scale
inline float clip_scale_one(float v, float lo, float hi, float mean, float inv_std) {
  v = v < lo ? lo : v;
  v = v > hi ? hi : v;
  return (v - mean) * inv_std;
}

// Contiguous input, float32 output: one flat loop over chunks that the compiler vectorises.
template <typename In>
void run_flat_f32(const In* in, float* out, int64_t n, float lo, float hi, float mean, float inv_std) {
  constexpr int64_t kChunk = 1 << 15;
  const int64_t chunks = (n + kChunk - 1) / kChunk;
#pragma omp parallel for schedule(static) if (chunks > 8)
  for (int64_t c = 0; c < chunks; ++c) {
    const int64_t b = c * kChunk, e = std::min(n, b + kChunk);
    for (int64_t i = b; i < e; ++i) {
      out[i] = clip_scale_one(static_cast<float>(in[i]), lo, hi, mean, inv_std);
    }
  }
}

bool is_contiguous(const View4& x) {
  int64_t expected = 1;
  for (int d = 3; d >= 0; --d) {
    if (x.shape[d] != 1 && x.stride[d] != expected) return false;
    expected *= x.shape[d];
  }
  return true;
}

// float32 -> float32, contiguous: explicit AVX-512 / AVX2 loops (four vectors per iteration) on x86-64, chosen
// at run time, and a plain loop elsewhere. The compiler's own vectorisation of the plain loop ran this
// memory-bound pass up to 2x slower depending on code placement; the explicit loops do not depend on it.
// max(lo, v) / min(hi, v) with v second return v when v is NaN, so NaN propagates as in the plain loop.
// `in` and `out` are either the same buffer or do not overlap.
void clip_scale_plain(const float* in, float* out, int64_t n, float lo, float hi, float mean, float inv_std) {
  for (int64_t i = 0; i < n; ++i) out[i] = clip_scale_one(in[i], lo, hi, mean, inv_std);
}

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define FASTPANC_HAVE_X86_SIMD 1
__attribute__((target("avx512f"))) void clip_scale_avx512(const float* in, float* out, int64_t n, float lo, float hi,
                                                          float mean, float inv_std) {
  const __m512 vlo = _mm512_set1_ps(lo), vhi = _mm512_set1_ps(hi), vm = _mm512_set1_ps(mean),
               vs = _mm512_set1_ps(inv_std);
#define f(v) _mm512_mul_ps(_mm512_sub_ps(_mm512_min_ps(vhi, _mm512_max_ps(vlo, (v))), vm), vs)
  int64_t i = 0;
  for (; i + 64 <= n; i += 64) {
    const __m512 a = _mm512_loadu_ps(in + i), b = _mm512_loadu_ps(in + i + 16), c = _mm512_loadu_ps(in + i + 32),
                 d = _mm512_loadu_ps(in + i + 48);
    _mm512_storeu_ps(out + i, f(a));
    _mm512_storeu_ps(out + i + 16, f(b));
    _mm512_storeu_ps(out + i + 32, f(c));
    _mm512_storeu_ps(out + i + 48, f(d));
  }
  for (; i + 16 <= n; i += 16) _mm512_storeu_ps(out + i, f(_mm512_loadu_ps(in + i)));
  if (i < n) {  // the tail through a mask: no scalar loop
    const __mmask16 m = static_cast<__mmask16>((1u << (n - i)) - 1u);
    _mm512_mask_storeu_ps(out + i, m, f(_mm512_maskz_loadu_ps(m, in + i)));
  }
#undef f
}

__attribute__((target("avx2"))) void clip_scale_avx2(const float* in, float* out, int64_t n, float lo, float hi,
                                                     float mean, float inv_std) {
  const __m256 vlo = _mm256_set1_ps(lo), vhi = _mm256_set1_ps(hi), vm = _mm256_set1_ps(mean),
               vs = _mm256_set1_ps(inv_std);
#define f(v) _mm256_mul_ps(_mm256_sub_ps(_mm256_min_ps(vhi, _mm256_max_ps(vlo, (v))), vm), vs)
  int64_t i = 0;
  for (; i + 32 <= n; i += 32) {
    const __m256 a = _mm256_loadu_ps(in + i), b = _mm256_loadu_ps(in + i + 8), c = _mm256_loadu_ps(in + i + 16),
                 d = _mm256_loadu_ps(in + i + 24);
    _mm256_storeu_ps(out + i, f(a));
    _mm256_storeu_ps(out + i + 8, f(b));
    _mm256_storeu_ps(out + i + 16, f(c));
    _mm256_storeu_ps(out + i + 24, f(d));
  }
  for (; i + 8 <= n; i += 8) _mm256_storeu_ps(out + i, f(_mm256_loadu_ps(in + i)));
  for (; i < n; ++i) out[i] = clip_scale_one(in[i], lo, hi, mean, inv_std);
#undef f
}
#endif

using ClipScaleFn = void (*)(const float*, float*, int64_t, float, float, float, float);

// The widest loop this CPU runs, capped by the environment variable FASTPANC_SIMD ("avx2" or "none"), which
// tests use to run every loop on one machine.
ClipScaleFn pick_clip_scale() {
#ifdef FASTPANC_HAVE_X86_SIMD
  const char* cap = std::getenv("FASTPANC_SIMD");
  const std::string level = cap == nullptr ? "" : cap;
  __builtin_cpu_init();
  if (level != "none" && level != "avx2" && __builtin_cpu_supports("avx512f")) return clip_scale_avx512;
  if (level != "none" && __builtin_cpu_supports("avx2")) return clip_scale_avx2;
#endif
  return clip_scale_plain;
}

// Contiguous float32 in and out: chunks over threads, each through the loop pick_clip_scale chose. Buffers
// that overlap other than exactly (never made by the Python API) take the generic loop.
bool run_f32_simd(const float* in, float* out, int64_t n, float lo, float hi, float mean, float inv_std) {
  const bool inplace = in == out;
  if (!inplace && in < out + n && out < in + n) return false;
  static const ClipScaleFn kernel = pick_clip_scale();
  constexpr int64_t kChunk = 1 << 15;
  const int64_t chunks = (n + kChunk - 1) / kChunk;
#pragma omp parallel for schedule(static) if (chunks > 8)
  for (int64_t c = 0; c < chunks; ++c) {
    const int64_t b = c * kChunk, len = std::min(n, b + kChunk) - b;
    kernel(in + b, out + b, len, lo, hi, mean, inv_std);
  }
  return true;
}

template <typename In>
void dispatch_out(const View4& x, std::uintptr_t out, DType od, float lo, float hi, float mean, float inv_std) {
  if constexpr (!std::is_same<In, uint16_t>::value && !std::is_same<In, Bf16>::value) {  // not half types
    if (od == DType::f32 && is_contiguous(x)) {
      if constexpr (std::is_same<In, float>::value) {
        if (run_f32_simd(reinterpret_cast<const float*>(x.ptr), reinterpret_cast<float*>(out), x.numel(), lo, hi,
                         mean, inv_std)) {
          return;
        }
      }
      run_flat_f32<In>(reinterpret_cast<const In*>(x.ptr), reinterpret_cast<float*>(out), x.numel(), lo, hi, mean,
                       inv_std);
      return;
    }
  }
  switch (od) {
    case DType::f32:
      run<In>(x, out, lo, hi, mean, inv_std,
              [](std::uintptr_t p, int64_t i, float v) { reinterpret_cast<float*>(p)[i] = v; });
      break;
    case DType::f16:
      run<In>(x, out, lo, hi, mean, inv_std,
              [](std::uintptr_t p, int64_t i, float v) { reinterpret_cast<uint16_t*>(p)[i] = float_to_half(v); });
      break;
    case DType::bf16:
      run<In>(x, out, lo, hi, mean, inv_std,
              [](std::uintptr_t p, int64_t i, float v) { reinterpret_cast<uint16_t*>(p)[i] = float_to_bf16(v); });
      break;
    default:
      fail(std::string("ct_normalize: output dtype must be float32, float16 or bfloat16, got ") + dtype_name(od));
  }
}
}  // namespace

void ct_normalize(const View4& x, std::uintptr_t out, DType od, float lo, float hi, float mean, float std) {
  if (!(std > 0.f)) fail("ct_normalize: std must be > 0");
  const float inv = 1.0f / std;
  switch (x.dtype) {
    case DType::f32: dispatch_out<float>(x, out, od, lo, hi, mean, inv); break;
    case DType::f64: dispatch_out<double>(x, out, od, lo, hi, mean, inv); break;
    case DType::f16: dispatch_out<uint16_t>(x, out, od, lo, hi, mean, inv); break;
    case DType::bf16: dispatch_out<Bf16>(x, out, od, lo, hi, mean, inv); break;
    case DType::i16: dispatch_out<int16_t>(x, out, od, lo, hi, mean, inv); break;
    case DType::i32: dispatch_out<int32_t>(x, out, od, lo, hi, mean, inv); break;
    case DType::u8: dispatch_out<uint8_t>(x, out, od, lo, hi, mean, inv); break;
    case DType::i8: dispatch_out<int8_t>(x, out, od, lo, hi, mean, inv); break;
    default: fail(std::string("ct_normalize: unsupported input dtype ") + dtype_name(x.dtype));
  }
}

}  // namespace fastpanc::cpu
