// CUDA resampling: one kernel per axis pass (orders 0/1: a thread per output sample; order 3: a thread per line
// that prefilters into the scratch buffer and interpolates), and one kernel for labels (a thread per voxel).
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <string>

#include "cpu/resample.h"
#include "cuda/check.cuh"
#include "cuda/resample.h"

namespace fastpanc::cuda {
namespace {

struct Pass {
  long long shape[4];
  long long stride[4];
  int dim;
  long long n, m, A, B;  // samples in/out along dim, lines before/after it
  int clip_mode, clip_dim;
};

template <typename T>
__device__ __forceinline__ float ld(const T* p) { return static_cast<float>(*p); }
template <>
__device__ __forceinline__ float ld<__half>(const __half* p) { return __half2float(*p); }
template <>
__device__ __forceinline__ float ld<__nv_bfloat16>(const __nv_bfloat16* p) { return __bfloat162float(*p); }

template <typename O>
__device__ __forceinline__ void st(O* p, float v) { *p = v; }
template <>
__device__ __forceinline__ void st<__half>(__half* p, float v) { *p = __float2half_rn(v); }
template <>
__device__ __forceinline__ void st<__nv_bfloat16>(__nv_bfloat16* p, float v) { *p = __float2bfloat16_rn(v); }

// Input offset of line (a, b) at sample 0, and the clip bounds of that line.
__device__ __forceinline__ long long line_offset(const Pass& p, long long a, long long b, const float* lo,
                                                 const float* hi, float* clo, float* chi) {
  long long idx[4] = {0, 0, 0, 0};
  for (int d = p.dim - 1; d >= 0; --d) {
    idx[d] = a % p.shape[d];
    a /= p.shape[d];
  }
  for (int d = 3; d > p.dim; --d) {
    idx[d] = b % p.shape[d];
    b /= p.shape[d];
  }
  if (p.clip_mode == 1) {
    *clo = lo[idx[0]];
    *chi = hi[idx[0]];
  } else if (p.clip_mode == 2) {
    const long long k = idx[0] * p.shape[p.clip_dim] + idx[p.clip_dim];
    *clo = lo[k];
    *chi = hi[k];
  }
  return idx[0] * p.stride[0] + idx[1] * p.stride[1] + idx[2] * p.stride[2] + idx[3] * p.stride[3];
}

template <typename I, typename O>
__global__ void direct_kernel(const I* __restrict__ in, O* __restrict__ out, Pass p, int order, const float* lo,
                              const float* hi) {
  const long long total = p.A * p.m * p.B;
  for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < total;
       i += (long long)gridDim.x * blockDim.x) {
    const long long b = i % p.B, r = i / p.B, j = r % p.m, a = r / p.m;
    float clo = 0.f, chi = 0.f;
    const long long base = line_offset(p, a, b, lo, hi, &clo, &chi);
    int64_t idx[2];
    double w[2];
    const int nt = rs::axis_taps(j, p.n, p.m, order, idx, w);
    float acc = 0.f;
    for (int h = 0; h < nt; ++h) acc += static_cast<float>(w[h]) * ld(in + base + idx[h] * p.stride[p.dim]);
    if (p.clip_mode != 0) acc = fminf(fmaxf(acc, clo), chi);
    st(out + i, acc);
  }
}

template <typename I, typename O>
__global__ void spline_kernel(const I* __restrict__ in, O* __restrict__ out, float* __restrict__ scratch, Pass p,
                              const float* lo, const float* hi) {
  const long long lines = p.A * p.B;
  const long long len = p.n + 2 * rs::kPad;
  const float z = static_cast<float>(rs::kPole);
  const float gain = static_cast<float>((1.0 - rs::kPole) * (1.0 - 1.0 / rs::kPole));
  const double zn_d = len <= 40 ? pow(rs::kPole, static_cast<double>(len)) : 0.0;
  const float zn = static_cast<float>(zn_d);
  const float scale = static_cast<float>(rs::kPole / (1.0 - zn_d * zn_d));
  const long long K = len < 40 ? len : 40;
  for (long long l = blockIdx.x * (long long)blockDim.x + threadIdx.x; l < lines;
       l += (long long)gridDim.x * blockDim.x) {
    const long long a = l / p.B, b = l % p.B;
    float clo = 0.f, chi = 0.f;
    const long long base = line_offset(p, a, b, lo, hi, &clo, &chi);
    float* c = scratch + l;  // sample k of this line at c[k * lines]
    const long long s = p.stride[p.dim];
    const float first = ld(in + base) * gain, last = ld(in + base + (p.n - 1) * s) * gain;
    for (long long k = 0; k < rs::kPad; ++k) {
      c[k * lines] = first;
      c[(p.n + rs::kPad + k) * lines] = last;
    }
    for (long long k = 0; k < p.n; ++k) c[(k + rs::kPad) * lines] = ld(in + base + k * s) * gain;
    // causal initialisation (reflect), then the causal and anticausal recursions
    float acc = 0.f, zi = 1.f;
    for (long long i = 0; i < K; ++i) {
      acc += zi * (c[i * lines] + zn * c[(len - 1 - i) * lines]);
      zi *= z;
    }
    float prev = c[0] + acc * scale;
    c[0] = prev;
    for (long long k = 1; k < len; ++k) {
      prev = c[k * lines] + z * prev;
      c[k * lines] = prev;
    }
    prev *= z / (z - 1.f);
    c[(len - 1) * lines] = prev;
    for (long long k = len - 2; k >= 0; --k) {
      prev = z * (prev - c[k * lines]);
      c[k * lines] = prev;
    }
    for (long long j = 0; j < p.m; ++j) {
      int64_t idx[4];
      double w[4];
      rs::axis_taps(j, p.n, p.m, 3, idx, w);
      float v = 0.f;
      for (int h = 0; h < 4; ++h) v += static_cast<float>(w[h]) * c[idx[h] * lines];
      if (p.clip_mode != 0) v = fminf(fmaxf(v, clo), chi);
      st(out + (a * p.m + j) * p.B + b, v);
    }
  }
}

template <typename I, typename O>
void launch(const View4& in, std::uintptr_t out, const Pass& p, int order, const float* lo, const float* hi,
            float* scratch, cudaStream_t stream) {
  const int threads = 256;
  const I* src = reinterpret_cast<const I*>(in.ptr);
  O* dst = reinterpret_cast<O*>(out);
  if (order == 3) {
    if (scratch == nullptr) fail("resample: order 3 on CUDA needs a scratch buffer");
    spline_kernel<I, O><<<blocks_for(p.A * p.B, threads), threads, 0, stream>>>(src, dst, scratch, p, lo, hi);
  } else {
    direct_kernel<I, O><<<blocks_for(p.A * p.m * p.B, threads), threads, 0, stream>>>(src, dst, p, order, lo, hi);
  }
  FASTPANC_CUDA_CHECK(cudaGetLastError());
}

template <typename I>
void by_out(const View4& in, std::uintptr_t out, DType od, const Pass& p, int order, const float* lo,
            const float* hi, float* scratch, cudaStream_t st) {
  switch (od) {
    case DType::f32: launch<I, float>(in, out, p, order, lo, hi, scratch, st); break;
    case DType::f16: launch<I, __half>(in, out, p, order, lo, hi, scratch, st); break;
    case DType::bf16: launch<I, __nv_bfloat16>(in, out, p, order, lo, hi, scratch, st); break;
    default: fail(std::string("resample: output dtype must be float32, float16 or bfloat16, got ") + dtype_name(od));
  }
}

template <typename L>
__global__ void labels_kernel(const L* __restrict__ in, L* __restrict__ out, Pass p, long long oz, long long oy,
                              long long ox, int kind, int axis) {
  const long long total = p.shape[0] * oz * oy * ox;
  const long long os[3] = {oz, oy, ox};
  for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < total;
       i += (long long)gridDim.x * blockDim.x) {
    long long r = i;
    long long o[3];
    o[2] = r % ox, r /= ox;
    o[1] = r % oy, r /= oy;
    o[0] = r % oz;
    const long long c = r / oz;
    const L* sc = in + c * p.stride[0];
    long long nn[3], i0[3], i1[3];
    double w0[3], w1[3];
    for (int d = 0; d < 3; ++d) {
      int64_t idx[2];
      double w[2];
      rs::axis_taps(o[d], p.shape[d + 1], os[d], 0, idx, w);
      nn[d] = idx[0];
      rs::axis_taps(o[d], p.shape[d + 1], os[d], 1, idx, w);
      i0[d] = idx[0], i1[d] = idx[1], w0[d] = w[0], w1[d] = w[1];
    }
    const long long s1 = p.stride[1], s2 = p.stride[2], s3 = p.stride[3];
    if (kind == rs::kNearest) {
      out[i] = sc[nn[0] * s1 + nn[1] * s2 + nn[2] * s3];
    } else if (kind == rs::kLinearArgmax) {
      L v[8];
      double t[8];
      int q = 0;
      for (int a = 0; a < 2; ++a)
        for (int b = 0; b < 2; ++b)
          for (int e = 0; e < 2; ++e, ++q) {
            v[q] = sc[(a ? i1[0] : i0[0]) * s1 + (b ? i1[1] : i0[1]) * s2 + (e ? i1[2] : i0[2]) * s3];
            t[q] = rs::dmul(rs::dmul(a ? w1[0] : w0[0], b ? w1[1] : w0[1]), e ? w1[2] : w0[2]);
          }
      out[i] = rs::label_argmax_nearest(v, t, 8, sc[nn[0] * s1 + nn[1] * s2 + nn[2] * s3]);
    } else {
      long long q[3] = {o[0], o[1], o[2]};
      q[axis] = i0[axis];
      const L va = sc[q[0] * s1 + q[1] * s2 + q[2] * s3];
      q[axis] = i1[axis];
      const L vb = sc[q[0] * s1 + q[1] * s2 + q[2] * s3];
      out[i] = rs::label_threshold_pair(va, vb, w0[axis], w1[axis]);
    }
  }
}

template <typename L>
void launch_labels(const View4& in, std::uintptr_t out, const int64_t os[3], int kind, int axis, cudaStream_t st) {
  Pass p{};
  for (int k = 0; k < 4; ++k) {
    p.shape[k] = in.shape[k];
    p.stride[k] = in.stride[k];
  }
  const long long total = in.shape[0] * os[0] * os[1] * os[2];
  if (total == 0) return;
  labels_kernel<L><<<blocks_for(total, 256), 256, 0, st>>>(reinterpret_cast<const L*>(in.ptr),
                                                           reinterpret_cast<L*>(out), p, os[0], os[1], os[2],
                                                           kind, axis);
  FASTPANC_CUDA_CHECK(cudaGetLastError());
}

}  // namespace

void resample_axis(const View4& in, std::uintptr_t out, DType od, int dim, int64_t m, int order, int clip_mode,
                   int clip_dim, const float* lo, const float* hi, float* scratch, std::uintptr_t stream) {
  if (dim < 1 || dim > 3) fail("resample: dim must be 1, 2 or 3 (Z, Y, X)");
  if (order != 0 && order != 1 && order != 3) fail("resample: order must be 0, 1 or 3");
  if (m < 1 || in.shape[dim] < 1) fail("resample: sizes must be >= 1");
  if (clip_mode == 2 && (clip_dim < 1 || clip_dim > 3 || clip_dim == dim)) fail("resample: bad clip_dim");
  Pass p{};
  for (int k = 0; k < 4; ++k) {
    p.shape[k] = in.shape[k];
    p.stride[k] = in.stride[k];
  }
  p.dim = dim;
  p.n = in.shape[dim];
  p.m = m;
  p.A = 1;
  p.B = 1;
  for (int d = 0; d < dim; ++d) p.A *= in.shape[d];
  for (int d = dim + 1; d < 4; ++d) p.B *= in.shape[d];
  p.clip_mode = clip_mode;
  p.clip_dim = clip_dim;
  if (p.A * p.B == 0) return;
  cudaStream_t st = reinterpret_cast<cudaStream_t>(stream);
  switch (in.dtype) {
    case DType::f32: by_out<float>(in, out, od, p, order, lo, hi, scratch, st); break;
    case DType::f64: by_out<double>(in, out, od, p, order, lo, hi, scratch, st); break;
    case DType::f16: by_out<__half>(in, out, od, p, order, lo, hi, scratch, st); break;
    case DType::bf16: by_out<__nv_bfloat16>(in, out, od, p, order, lo, hi, scratch, st); break;
    case DType::i16: by_out<short>(in, out, od, p, order, lo, hi, scratch, st); break;
    case DType::i32: by_out<int>(in, out, od, p, order, lo, hi, scratch, st); break;
    case DType::u8: by_out<unsigned char>(in, out, od, p, order, lo, hi, scratch, st); break;
    case DType::i8: by_out<signed char>(in, out, od, p, order, lo, hi, scratch, st); break;
    default: fail(std::string("resample: unsupported input dtype ") + dtype_name(in.dtype));
  }
}

void resample_labels(const View4& in, std::uintptr_t out, const int64_t os[3], int kind, int axis,
                     std::uintptr_t stream) {
  if (kind < 0 || kind > 2) fail("resample_labels: kind must be 0 (nearest), 1 (linear) or 2 (linear z threshold)");
  if (kind == rs::kLinearThreshold) {
    if (axis < 0 || axis > 2) fail("resample_labels: axis must be 0, 1 or 2");
    for (int d = 0; d < 3; ++d)
      if (d != axis && os[d] != in.shape[d + 1]) fail("resample_labels: the threshold pass may resize only `axis`");
  }
  for (int d = 0; d < 3; ++d)
    if (os[d] < 1 || in.shape[d + 1] < 1) fail("resample_labels: sizes must be >= 1");
  cudaStream_t st = reinterpret_cast<cudaStream_t>(stream);
  switch (in.dtype) {
    case DType::u8: launch_labels<unsigned char>(in, out, os, kind, axis, st); break;
    case DType::i8: launch_labels<signed char>(in, out, os, kind, axis, st); break;
    case DType::i16: launch_labels<short>(in, out, os, kind, axis, st); break;
    case DType::i32: launch_labels<int>(in, out, os, kind, axis, st); break;
    case DType::i64: launch_labels<long long>(in, out, os, kind, axis, st); break;
    default: fail(std::string("resample_labels: labels must be an integer dtype, got ") + dtype_name(in.dtype));
  }
}

}  // namespace fastpanc::cuda
