#pragma once
#include <cstdint>
#include <vector>

#include "common.h"

namespace fastpanc::cpu {

// Sliding-window aggregation. acc (K, Z, Y, X) float32 and weight (1, Z, Y, X) float32, any strides.
// logits0 is the (K, pz, py, px) view of window 0 (float32, float16 or bfloat16); window b starts
// batch_stride elements further. starts holds B * 3 (z, y, x) starts, each window inside the volume.
// gauss is (pz, py, px) float32, contiguous. For each window in order:
//   acc[:, window] += logits[b] * gauss;  weight[window] += gauss   (float32)
void accumulate(const View4& acc, const View4& weight, const View4& logits0, int64_t batch_stride,
                const std::vector<int64_t>& starts, const float* gauss);

// labels (Z, Y, X) uint8 = argmax_k(acc[k] / weight) (first maximum; NaN counts as the maximum, as in
// torch.argmax); probs, when not 0, (K, Z, Y, X) float16 = softmax_k(acc[k] / weight). Both contiguous.
void finalize(const View4& acc, const View4& weight, std::uintptr_t labels, std::uintptr_t probs);

}  // namespace fastpanc::cpu
