// Turning the (pointer, shape, strides, dtype code) tuples that Python passes into kernel views.
#pragma once
#include <vector>

#include "common.h"

namespace fastpanc {

inline View4 make_view(std::uintptr_t ptr, const std::vector<int64_t>& shape, const std::vector<int64_t>& strides,
                       int dtype) {
  if (shape.size() != strides.size()) fail("shape and strides differ in length");
  if (shape.empty() || shape.size() > 4) fail("views have 1 to 4 dimensions, got " + std::to_string(shape.size()));
  View4 v;
  v.ptr = ptr;
  v.dtype = static_cast<DType>(dtype);
  const size_t pad = 4 - shape.size();
  for (size_t i = 0; i < shape.size(); ++i) {
    if (shape[i] < 0) fail("negative size in shape");
    v.shape[pad + i] = shape[i];
    v.stride[pad + i] = strides[i];
  }
  return v;
}

}  // namespace fastpanc
