#include <string>

#include "cuda/aggregate.h"
#include "cuda/check.cuh"
#include "cuda/dispatch.cuh"

namespace fastpanc::cuda {
namespace {

struct V4 {
  long long shape[4];
  long long stride[4];
};

V4 geo(const View4& v) {
  V4 g;
  for (int k = 0; k < 4; ++k) {
    g.shape[k] = v.shape[k];
    g.stride[k] = v.stride[k];
  }
  return g;
}

// One thread per voxel of the window: a voxel's weight and its K accumulators are touched by exactly
// one thread, so no atomics are needed within a launch.
template <class L>
__global__ void accumulate_kernel(float* __restrict__ acc, V4 a, float* __restrict__ weight, V4 w,
                                  const L* __restrict__ lg, V4 l, const float* __restrict__ gauss, long long z0,
                                  long long y0, long long x0) {
  const long long pz = l.shape[1], py = l.shape[2], px = l.shape[3];
  const long long n = pz * py * px;
  for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < n; i += (long long)gridDim.x * blockDim.x) {
    const long long x = i % px, r = i / px;
    const long long y = r % py, z = r / py;
    const float g = gauss[i];
    const long long vz = z0 + z, vy = y0 + y, vx = x0 + x;
    weight[vz * w.stride[1] + vy * w.stride[2] + vx * w.stride[3]] += g;
    const long long ao = vz * a.stride[1] + vy * a.stride[2] + vx * a.stride[3];
    const long long lo = z * l.stride[1] + y * l.stride[2] + x * l.stride[3];
    for (long long k = 0; k < l.shape[0]; ++k) {
      float* p = acc + ao + k * a.stride[0];
      *p = __fadd_rn(*p, __fmul_rn(to_f(lg[lo + k * l.stride[0]]), g));  // no FMA: same rounding as torch
    }
  }
}

__global__ void finalize_kernel(const float* __restrict__ acc, V4 a, const float* __restrict__ weight, V4 w,
                                unsigned char* __restrict__ labels, __half* __restrict__ probs) {
  const long long K = a.shape[0], Y = a.shape[2], X = a.shape[3];
  const long long n = a.shape[1] * Y * X;
  for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < n; i += (long long)gridDim.x * blockDim.x) {
    const long long x = i % X, r = i / X;
    const long long y = r % Y, z = r / Y;
    const float wt = weight[z * w.stride[1] + y * w.stride[2] + x * w.stride[3]];
    const float* p = acc + z * a.stride[1] + y * a.stride[2] + x * a.stride[3];
    int best = 0;
    float bv = 0.f;
    for (long long k = 0; k < K; ++k) {
      const float v = __fdiv_rn(p[k * a.stride[0]], wt);  // IEEE division even under --use_fast_math
      if (isnan(v)) {
        best = static_cast<int>(k);
        bv = v;
        break;  // torch.argmax: the first NaN wins
      }
      if (k == 0 || v > bv) {
        best = static_cast<int>(k);
        bv = v;
      }
    }
    labels[i] = static_cast<unsigned char>(best);
    if (probs != nullptr) {
      float sum = 0.f;
      for (long long k = 0; k < K; ++k) sum += expf(__fdiv_rn(p[k * a.stride[0]], wt) - bv);
      const float inv = 1.0f / sum;
      for (long long k = 0; k < K; ++k)
        probs[k * n + i] = __float2half_rn(expf(__fdiv_rn(p[k * a.stride[0]], wt) - bv) * inv);
    }
  }
}

}  // namespace

void accumulate(const View4& acc, const View4& weight, const View4& logits0, int64_t batch_stride,
                const std::vector<int64_t>& starts, const float* gauss, std::uintptr_t stream) {
  if (acc.dtype != DType::f32 || weight.dtype != DType::f32) fail("accumulate: acc and weight must be float32");
  if (starts.size() % 3 != 0) fail("accumulate: starts must hold 3 values per window");
  const long long n = logits0.shape[1] * logits0.shape[2] * logits0.shape[3];
  if (n == 0) return;
  cudaStream_t st = reinterpret_cast<cudaStream_t>(stream);
  const V4 a = geo(acc), w = geo(weight), l = geo(logits0);
  const int threads = 256;
  auto run = [&](auto tag) {
    using L = typename decltype(tag)::type;
    const L* base = reinterpret_cast<const L*>(logits0.ptr);
    for (size_t b = 0; b < starts.size() / 3; ++b) {
      accumulate_kernel<L><<<blocks_for(n, threads), threads, 0, st>>>(
          reinterpret_cast<float*>(acc.ptr), a, reinterpret_cast<float*>(weight.ptr), w,
          base + static_cast<long long>(b) * batch_stride, l, gauss, starts[3 * b], starts[3 * b + 1],
          starts[3 * b + 2]);
      FASTPANC_CUDA_CHECK(cudaGetLastError());
    }
  };
  switch (logits0.dtype) {
    case DType::f32: run(TypeTag<float>{}); break;
    case DType::f16: run(TypeTag<__half>{}); break;
    case DType::bf16: run(TypeTag<__nv_bfloat16>{}); break;
    default:
      fail(std::string("accumulate: logits must be float32, float16 or bfloat16, got ") + dtype_name(logits0.dtype));
  }
}

void finalize(const View4& acc, const View4& weight, std::uintptr_t labels, std::uintptr_t probs,
              std::uintptr_t stream) {
  if (acc.dtype != DType::f32 || weight.dtype != DType::f32) fail("finalize: acc and weight must be float32");
  if (acc.shape[0] < 1 || acc.shape[0] > 256)
    fail("finalize: the number of classes must be 1..256, got " + std::to_string(acc.shape[0]));
  const long long n = acc.shape[1] * acc.shape[2] * acc.shape[3];
  if (n == 0) return;
  const int threads = 256;
  finalize_kernel<<<blocks_for(n, threads), threads, 0, reinterpret_cast<cudaStream_t>(stream)>>>(
      reinterpret_cast<const float*>(acc.ptr), geo(acc), reinterpret_cast<const float*>(weight.ptr), geo(weight),
      reinterpret_cast<unsigned char*>(labels), reinterpret_cast<__half*>(probs));
  FASTPANC_CUDA_CHECK(cudaGetLastError());
}

}  // namespace fastpanc::cuda
