#pragma once
// Float32 views of float32 / float16 / bfloat16 arrays, a tile at a time, for the kernels whose arithmetic runs
// on float arrays (the fused instance norm, both layouts): half-precision tiles are widened into a buffer on
// the way in and narrowed on the way out; float32 tiles are used in place.
#include <cstddef>
#include <cstdint>

#include "common.h"

namespace fastpanc::cpu {

// Elements [b, b + len) of the array at `base` as float: a pointer into the data for float32, else widened into
// buf (len floats). dt must pass check_float_dtype.
const float* load_tile(std::uintptr_t base, DType dt, int64_t b, int64_t len, float* buf);

// Writes the float tile y to elements [b, b + len) of the array at `base`: nothing for float32 (y was computed in
// place in it), else narrowed (bfloat16 rounds to nearest even, NaN stays NaN).
void store_tile(const float* y, std::uintptr_t base, DType dt, int64_t b, int64_t len);

inline size_t float_elem_size(DType dt) { return dt == DType::f32 ? 4 : 2; }

// fails (std::invalid_argument through fail()) unless dt is float32, float16 or bfloat16: "<op>: <what> must be ..."
void check_float_dtype(DType dt, const char* op, const char* what);

// the same for the arrays of an instance-norm backward; a null pointer is an array that is not passed
void check_backward_dtypes(const char* op, DType grad_out, DType x, const DType* y, const DType* grad_x,
                           const DType* grad_residual);

}  // namespace fastpanc::cpu
