#pragma once
#include <cstdint>

#include "common.h"

namespace fastpanc::cpu {

// Bounding box of the selected voxels of x (C, Z, Y, X): a voxel is selected when any channel is != 0
// (use_threshold false) or > threshold. Writes half-open {zlo, zhi, ylo, yhi, xlo, xhi} and returns
// true, or returns false when nothing is selected.
bool bounding_box(const View4& x, bool use_threshold, double threshold, int64_t box[6]);

// out (C, oz, oy, ox), contiguous, out_dtype: out[c, i, j, k] = x[c, lo0 + i, lo1 + j, lo2 + k] cast to
// out_dtype where that voxel is inside x, else pad_value (cast to out_dtype).
void crop_pad(const View4& x, std::uintptr_t out, DType out_dtype, const int64_t out_shape[3], const int64_t lo[3],
              double pad_value);

}  // namespace fastpanc::cpu
