// Device element types for every DType, torch-compatible casts (16-bit floats go through float32, as
// c10 does) and a host dispatcher that calls a generic lambda with the CUDA type of a runtime DType.
#pragma once
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <cstdint>
#include <string>

#include "common.h"

namespace fastpanc::cuda {

template <class T>
__device__ __forceinline__ float to_f(T v) { return static_cast<float>(v); }
template <>
__device__ __forceinline__ float to_f<__half>(__half v) { return __half2float(v); }
template <>
__device__ __forceinline__ float to_f<__nv_bfloat16>(__nv_bfloat16 v) { return __bfloat162float(v); }

template <class T>
__device__ __forceinline__ double to_d(T v) { return static_cast<double>(v); }
template <>
__device__ __forceinline__ double to_d<__half>(__half v) { return __half2float(v); }
template <>
__device__ __forceinline__ double to_d<__nv_bfloat16>(__nv_bfloat16 v) { return __bfloat162float(v); }

template <class Out>
struct DCast {
  template <class In>
  __device__ static Out from(In v) { return static_cast<Out>(v); }
  __device__ static Out from(__half v) { return static_cast<Out>(__half2float(v)); }
  __device__ static Out from(__nv_bfloat16 v) { return static_cast<Out>(__bfloat162float(v)); }
};
template <>
struct DCast<__half> {
  template <class In>
  __device__ static __half from(In v) { return __float2half_rn(to_f(v)); }
  __device__ static __half from(__half v) { return v; }
};
template <>
struct DCast<__nv_bfloat16> {
  template <class In>
  __device__ static __nv_bfloat16 from(In v) { return __float2bfloat16_rn(to_f(v)); }
  __device__ static __nv_bfloat16 from(__nv_bfloat16 v) { return v; }
};
template <class Out, class In>
__device__ __forceinline__ Out dcast(In v) { return DCast<Out>::from(v); }

template <class T>
struct TypeTag {
  using type = T;
};

template <class Fn>
void dispatch_dtype(DType t, Fn&& fn) {
  switch (t) {
    case DType::f32: fn(TypeTag<float>{}); break;
    case DType::f16: fn(TypeTag<__half>{}); break;
    case DType::i16: fn(TypeTag<int16_t>{}); break;
    case DType::u8: fn(TypeTag<uint8_t>{}); break;
    case DType::f64: fn(TypeTag<double>{}); break;
    case DType::i32: fn(TypeTag<int32_t>{}); break;
    case DType::bf16: fn(TypeTag<__nv_bfloat16>{}); break;
    case DType::i64: fn(TypeTag<int64_t>{}); break;
    case DType::i8: fn(TypeTag<int8_t>{}); break;
    default: fail("unsupported dtype code " + std::to_string(static_cast<int>(t)));
  }
}

}  // namespace fastpanc::cuda
