// Framework-free helpers shared by the CPU and CUDA kernels: dtypes, shapes, strides.
#pragma once
#include <cstdint>
#include <stdexcept>
#include <string>

namespace fastpanc {

// Element types passed from Python as small integers (see fastpanc/ops/_backend.py DTYPE_CODES).
enum class DType : int { f32 = 0, f16 = 1, i16 = 2, u8 = 3, f64 = 4, i32 = 5, bf16 = 6, i64 = 7, i8 = 8 };

inline const char* dtype_name(DType t) {
  switch (t) {
    case DType::f32: return "float32";
    case DType::f16: return "float16";
    case DType::i16: return "int16";
    case DType::u8: return "uint8";
    case DType::f64: return "float64";
    case DType::i32: return "int32";
    case DType::bf16: return "bfloat16";
    case DType::i64: return "int64";
    case DType::i8: return "int8";
  }
  return "unknown";
}

// A strided view of up to 4 dimensions (C, Z, Y, X); strides are in elements.
struct View4 {
  std::uintptr_t ptr = 0;
  int64_t shape[4] = {1, 1, 1, 1};
  int64_t stride[4] = {0, 0, 0, 0};
  DType dtype = DType::f32;
  int64_t numel() const { return shape[0] * shape[1] * shape[2] * shape[3]; }
};

[[noreturn]] inline void fail(const std::string& msg) { throw std::invalid_argument("fastpanc._C: " + msg); }

}  // namespace fastpanc
