// Host-side element types for every DType, torch-compatible casts between them, and a dispatcher
// that calls a generic lambda with a value of the C++ type of a runtime DType.
#pragma once
#include <cstdint>
#include <string>
#include <utility>

#include "common.h"
#include "half.h"

namespace fastpanc::cpu {

// 16-bit floats are stored as raw bits; these tags keep them apart from int16.
struct Half16 {
  uint16_t bits;
};
struct BFloat16 {
  uint16_t bits;
};

template <class T>
inline float to_float(T v) { return static_cast<float>(v); }
inline float to_float(Half16 v) { return half_to_float(v.bits); }
inline float to_float(BFloat16 v) { return bf16_to_float(v.bits); }

template <class T>
inline double to_double(T v) { return static_cast<double>(v); }
inline double to_double(Half16 v) { return half_to_float(v.bits); }
inline double to_double(BFloat16 v) { return bf16_to_float(v.bits); }

// torch's casts: native -> native is a static_cast; 16-bit floats go through float32 both ways.
template <class Out>
struct Caster {
  template <class In>
  static Out from(In v) { return static_cast<Out>(v); }
  static Out from(Half16 v) { return static_cast<Out>(half_to_float(v.bits)); }
  static Out from(BFloat16 v) { return static_cast<Out>(bf16_to_float(v.bits)); }
};
template <>
struct Caster<Half16> {
  template <class In>
  static Half16 from(In v) { return Half16{float_to_half(to_float(v))}; }
  static Half16 from(Half16 v) { return v; }
};
template <>
struct Caster<BFloat16> {
  template <class In>
  static BFloat16 from(In v) { return BFloat16{float_to_bf16(to_float(v))}; }
  static BFloat16 from(BFloat16 v) { return v; }
};
template <class Out, class In>
inline Out cast(In v) { return Caster<Out>::from(v); }

template <class T>
struct TypeTag {
  using type = T;
};

// Calls fn(TypeTag<T>{}) with T the host type of `t`.
template <class Fn>
void dispatch_dtype(DType t, Fn&& fn) {
  switch (t) {
    case DType::f32: fn(TypeTag<float>{}); break;
    case DType::f16: fn(TypeTag<Half16>{}); break;
    case DType::i16: fn(TypeTag<int16_t>{}); break;
    case DType::u8: fn(TypeTag<uint8_t>{}); break;
    case DType::f64: fn(TypeTag<double>{}); break;
    case DType::i32: fn(TypeTag<int32_t>{}); break;
    case DType::bf16: fn(TypeTag<BFloat16>{}); break;
    case DType::i64: fn(TypeTag<int64_t>{}); break;
    case DType::i8: fn(TypeTag<int8_t>{}); break;
    default: fail("unsupported dtype code " + std::to_string(static_cast<int>(t)));
  }
}

// Calls fn(TypeTag<T>{}) for the floating dtypes the network kernels take (float32, float16, bfloat16);
// other dtypes fail with a message naming `op`.
template <class Fn>
void dispatch_float_dtype(DType t, const char* op, Fn&& fn) {
  switch (t) {
    case DType::f32: fn(TypeTag<float>{}); break;
    case DType::f16: fn(TypeTag<Half16>{}); break;
    case DType::bf16: fn(TypeTag<BFloat16>{}); break;
    default:
      fail(std::string(op) + ": dtype must be float32, float16 or bfloat16, got " + dtype_name(t));
  }
}

}  // namespace fastpanc::cpu
