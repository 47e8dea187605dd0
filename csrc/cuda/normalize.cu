#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include "cuda/check.cuh"
#include "cuda/normalize.h"

namespace fastpanc::cuda {
namespace {

struct Strides4 {
  long long shape[4];
  long long stride[4];
};

template <typename T>
__device__ __forceinline__ float ld(const T* p) { return static_cast<float>(*p); }
template <>
__device__ __forceinline__ float ld<__half>(const __half* p) { return __half2float(*p); }
template <>
__device__ __forceinline__ float ld<__nv_bfloat16>(const __nv_bfloat16* p) { return __bfloat162float(*p); }

template <typename O>
__device__ __forceinline__ void st(O* p, float v) { *p = static_cast<O>(v); }
template <>
__device__ __forceinline__ void st<__half>(__half* p, float v) { *p = __float2half_rn(v); }
template <>
__device__ __forceinline__ void st<__nv_bfloat16>(__nv_bfloat16* p, float v) { *p = __float2bfloat16_rn(v); }

template <typename I, typename O>
__global__ void normalize_kernel(const I* __restrict__ in, O* __restrict__ out, Strides4 s, long long n, float lo,
                                 float hi, float mean, float inv_std) {
  for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < n; i += (long long)gridDim.x * blockDim.x) {
    long long r = i;
    const long long x = r % s.shape[3];
    r /= s.shape[3];
    const long long y = r % s.shape[2];
    r /= s.shape[2];
    const long long z = r % s.shape[1];
    const long long c = r / s.shape[1];
    const float raw = ld(in + c * s.stride[0] + z * s.stride[1] + y * s.stride[2] + x * s.stride[3]);
    const float v = isnan(raw) ? raw : fminf(fmaxf(raw, lo), hi);  // NaN propagates as in torch.clamp
    st(out + i, (v - mean) * inv_std);
  }
}

template <typename I, typename O>
void launch(const View4& x, std::uintptr_t out, float lo, float hi, float mean, float inv, cudaStream_t stream) {
  Strides4 s;
  for (int k = 0; k < 4; ++k) {
    s.shape[k] = x.shape[k];
    s.stride[k] = x.stride[k];
  }
  const long long n = x.numel();
  if (n == 0) return;
  const int threads = 256;
  normalize_kernel<I, O><<<blocks_for(n, threads), threads, 0, stream>>>(
      reinterpret_cast<const I*>(x.ptr), reinterpret_cast<O*>(out), s, n, lo, hi, mean, inv);
  FASTPANC_CUDA_CHECK(cudaGetLastError());
}

template <typename I>
void by_out(const View4& x, std::uintptr_t out, DType od, float lo, float hi, float mean, float inv, cudaStream_t st) {
  switch (od) {
    case DType::f32: launch<I, float>(x, out, lo, hi, mean, inv, st); break;
    case DType::f16: launch<I, __half>(x, out, lo, hi, mean, inv, st); break;
    case DType::bf16: launch<I, __nv_bfloat16>(x, out, lo, hi, mean, inv, st); break;
    default: fail(std::string("ct_normalize: output dtype must be float32, float16 or bfloat16, got ") + dtype_name(od));
  }
}
}  // namespace

void ct_normalize(const View4& x, std::uintptr_t out, DType od, float lo, float hi, float mean, float std,
                  std::uintptr_t stream) {
  if (!(std > 0.f)) fail("ct_normalize: std must be > 0");
  const float inv = 1.0f / std;
  cudaStream_t st = reinterpret_cast<cudaStream_t>(stream);
  switch (x.dtype) {
    case DType::f32: by_out<float>(x, out, od, lo, hi, mean, inv, st); break;
    case DType::f64: by_out<double>(x, out, od, lo, hi, mean, inv, st); break;
    case DType::f16: by_out<__half>(x, out, od, lo, hi, mean, inv, st); break;
    case DType::bf16: by_out<__nv_bfloat16>(x, out, od, lo, hi, mean, inv, st); break;
    case DType::i16: by_out<short>(x, out, od, lo, hi, mean, inv, st); break;
    case DType::i32: by_out<int>(x, out, od, lo, hi, mean, inv, st); break;
    case DType::u8: by_out<unsigned char>(x, out, od, lo, hi, mean, inv, st); break;
    case DType::i8: by_out<signed char>(x, out, od, lo, hi, mean, inv, st); break;
    default: fail(std::string("ct_normalize: unsupported input dtype ") + dtype_name(x.dtype));
  }
}

}  // namespace fastpanc::cuda
