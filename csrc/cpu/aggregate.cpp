#include "cpu/aggregate.h"

#include <cmath>
#include <string>
#include <vector>

#include "cpu/dispatch.h"

namespace fastpanc::cpu {
namespace {

template <class L>
void accumulate_window(const View4& acc, const View4& weight, const L* lg, const View4& lv, const int64_t* s0,
                       const float* gauss) {
  const int64_t K = lv.shape[0], pz = lv.shape[1], py = lv.shape[2], px = lv.shape[3];
  float* A = reinterpret_cast<float*>(acc.ptr);
  float* W = reinterpret_cast<float*>(weight.ptr);
  const int64_t a3 = acc.stride[3], w3 = weight.stride[3], l3 = lv.stride[3];
  const bool unit = a3 == 1 && w3 == 1 && l3 == 1;
  // rows of one window never overlap, so they are split among threads; windows run one after another
#pragma omp parallel for collapse(2) schedule(static)
  for (int64_t z = 0; z < pz; ++z) {
    for (int64_t y = 0; y < py; ++y) {
      const float* g = gauss + (z * py + y) * px;
      const int64_t vz = s0[0] + z, vy = s0[1] + y;
      float* w = W + vz * weight.stride[1] + vy * weight.stride[2] + s0[2] * w3;
      if (unit) {
        for (int64_t x = 0; x < px; ++x) w[x] += g[x];
      } else {
        for (int64_t x = 0; x < px; ++x) w[x * w3] += g[x];
      }
      for (int64_t k = 0; k < K; ++k) {
        float* a = A + k * acc.stride[0] + vz * acc.stride[1] + vy * acc.stride[2] + s0[2] * a3;
        const L* l = lg + k * lv.stride[0] + z * lv.stride[1] + y * lv.stride[2];
        if (unit) {
          for (int64_t x = 0; x < px; ++x) a[x] += to_float(l[x]) * g[x];
        } else {
          for (int64_t x = 0; x < px; ++x) a[x * a3] += to_float(l[x * l3]) * g[x];
        }
      }
    }
  }
}

}  // namespace

void accumulate(const View4& acc, const View4& weight, const View4& logits0, int64_t batch_stride,
                const std::vector<int64_t>& starts, const float* gauss) {
  if (acc.dtype != DType::f32 || weight.dtype != DType::f32) fail("accumulate: acc and weight must be float32");
  if (starts.size() % 3 != 0) fail("accumulate: starts must hold 3 values per window");
  const int64_t B = static_cast<int64_t>(starts.size() / 3);
  auto run = [&](auto tag) {
    using L = typename decltype(tag)::type;
    const L* base = reinterpret_cast<const L*>(logits0.ptr);
    for (int64_t b = 0; b < B; ++b)
      accumulate_window<L>(acc, weight, base + b * batch_stride, logits0, starts.data() + 3 * b, gauss);
  };
  switch (logits0.dtype) {
    case DType::f32: run(TypeTag<float>{}); break;
    case DType::f16: run(TypeTag<Half16>{}); break;
    case DType::bf16: run(TypeTag<BFloat16>{}); break;
    default:
      fail(std::string("accumulate: logits must be float32, float16 or bfloat16, got ") + dtype_name(logits0.dtype));
  }
}

void finalize(const View4& acc, const View4& weight, std::uintptr_t labels, std::uintptr_t probs) {
  if (acc.dtype != DType::f32 || weight.dtype != DType::f32) fail("finalize: acc and weight must be float32");
  const int64_t K = acc.shape[0], Z = acc.shape[1], Y = acc.shape[2], X = acc.shape[3];
  if (K < 1 || K > 256) fail("finalize: the number of classes must be 1..256, got " + std::to_string(K));
  const float* A = reinterpret_cast<const float*>(acc.ptr);
  const float* W = reinterpret_cast<const float*>(weight.ptr);
  uint8_t* lab = reinterpret_cast<uint8_t*>(labels);
  uint16_t* P = reinterpret_cast<uint16_t*>(probs);
  const int64_t plane = Z * Y * X;
  const int64_t as0 = acc.stride[0], as1 = acc.stride[1], as2 = acc.stride[2], as3 = acc.stride[3];
  const int64_t ws1 = weight.stride[1], ws2 = weight.stride[2], ws3 = weight.stride[3];
  // Row by row, in per-thread buffers, so that every inner loop is a branch-free loop over x that the
  // compiler vectorises: logits = acc / weight (IEEE division, as the reference), then the running
  // argmax (the first maximum wins; the first NaN wins, as torch.argmax), then the optional softmax.
#pragma omp parallel
  {
    std::vector<float> v(static_cast<size_t>(K * X)), bv(X), sum(X);
    std::vector<int32_t> best(X), seen(X);
#pragma omp for collapse(2) schedule(static)
    for (int64_t z = 0; z < Z; ++z) {
      for (int64_t y = 0; y < Y; ++y) {
        const int64_t o = (z * Y + y) * X;
        const float* wrow = W + z * ws1 + y * ws2;
        for (int64_t k = 0; k < K; ++k) {
          const float* a = A + k * as0 + z * as1 + y * as2;
          float* vk = v.data() + k * X;
          if (as3 == 1 && ws3 == 1) {
            for (int64_t x = 0; x < X; ++x) vk[x] = a[x] / wrow[x];
          } else {
            for (int64_t x = 0; x < X; ++x) vk[x] = a[x * as3] / wrow[x * ws3];
          }
        }
        float* b = bv.data();
        int32_t* bi = best.data();
        int32_t* sn = seen.data();
        for (int64_t x = 0; x < X; ++x) {
          b[x] = v[x];
          bi[x] = 0;
          sn[x] = v[x] != v[x];
        }
        for (int64_t k = 1; k < K; ++k) {
          const float* vk = v.data() + k * X;
          const int32_t kk = static_cast<int32_t>(k);
          for (int64_t x = 0; x < X; ++x) {
            const float c = vk[x];
            const int32_t nan = c != c;
            const int32_t take = (sn[x] == 0) & (nan | (c > b[x]));
            b[x] = take ? c : b[x];
            bi[x] = take ? kk : bi[x];
            sn[x] |= nan;
          }
        }
        for (int64_t x = 0; x < X; ++x) lab[o + x] = static_cast<uint8_t>(bi[x]);
        if (P == nullptr) continue;
        float* s = sum.data();
        for (int64_t x = 0; x < X; ++x) s[x] = 0.f;
        for (int64_t k = 0; k < K; ++k) {
          float* vk = v.data() + k * X;
          for (int64_t x = 0; x < X; ++x) {
            vk[x] = std::exp(vk[x] - b[x]);
            s[x] += vk[x];
          }
        }
        for (int64_t x = 0; x < X; ++x) s[x] = 1.0f / s[x];
        for (int64_t k = 0; k < K; ++k) {
          const float* vk = v.data() + k * X;
          uint16_t* pk = P + k * plane + o;
          for (int64_t x = 0; x < X; ++x) pk[x] = float_to_half(vk[x] * s[x]);
        }
      }
    }
  }
}

}  // namespace fastpanc::cpu
