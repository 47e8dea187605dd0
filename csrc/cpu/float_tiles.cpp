#include "cpu/float_tiles.h"

#include <cstring>
#include <string>

#include "cpu/simd_clones.h"
#include "half.h"

namespace fastpanc::cpu {
namespace {

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

}  // namespace

const float* load_tile(std::uintptr_t base, DType dt, int64_t b, int64_t len, float* buf) {
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
      return nullptr;  // rejected by check_float_dtype before any thread starts
  }
}

void store_tile(const float* y, std::uintptr_t base, DType dt, int64_t b, int64_t len) {
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

void check_float_dtype(DType dt, const char* op, const char* what) {
  if (dt != DType::f32 && dt != DType::bf16 && dt != DType::f16) {
    fail(std::string(op) + ": " + what + " must be float32, float16 or bfloat16, got " + dtype_name(dt));
  }
}

void check_backward_dtypes(const char* op, DType grad_out, DType x, const DType* y, const DType* grad_x,
                           const DType* grad_residual) {
  check_float_dtype(grad_out, op, "grad_out");
  check_float_dtype(x, op, "x");
  if (y) check_float_dtype(*y, op, "y");
  if (grad_x) check_float_dtype(*grad_x, op, "grad_x");
  if (grad_residual) check_float_dtype(*grad_residual, op, "grad_residual");
}

}  // namespace fastpanc::cpu
