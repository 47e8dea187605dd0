#include <climits>

#include "cuda/check.cuh"
#include "cuda/crop.h"
#include "cuda/dispatch.cuh"

namespace fastpanc::cuda {
namespace {

struct Geo {
  long long shape[4];
  long long stride[4];
};

__device__ __forceinline__ int warp_min(int v) {
  for (int o = 16; o > 0; o >>= 1) v = min(v, __shfl_down_sync(0xffffffffu, v, o));
  return v;
}
__device__ __forceinline__ int warp_max(int v) {
  for (int o = 16; o > 0; o >>= 1) v = max(v, __shfl_down_sync(0xffffffffu, v, o));
  return v;
}

constexpr int kBboxThreads = 128;

// One block per (z, y) row: its threads scan x over all channels, reduce the row's first/last selected
// x in the block, and one thread folds the row into the global box with atomics.
template <class T, bool kThreshold>
__global__ void bbox_kernel(const T* __restrict__ in, Geo g, double threshold, int* __restrict__ result) {
  const long long row = blockIdx.x;
  const long long Y = g.shape[2], X = g.shape[3];
  const long long z = row / Y, y = row % Y;
  int first = INT_MAX, last = -1;
  for (long long c = 0; c < g.shape[0]; ++c) {
    const T* base = in + c * g.stride[0] + z * g.stride[1] + y * g.stride[2];
    for (long long x = threadIdx.x; x < X; x += blockDim.x) {
      const double v = to_d(base[x * g.stride[3]]);
      if (kThreshold ? v > threshold : v != 0.0) {
        first = min(first, static_cast<int>(x));
        last = max(last, static_cast<int>(x));
      }
    }
  }
  __shared__ int s_first[kBboxThreads / 32], s_last[kBboxThreads / 32];
  first = warp_min(first);
  last = warp_max(last);
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  if (lane == 0) {
    s_first[warp] = first;
    s_last[warp] = last;
  }
  __syncthreads();
  if (threadIdx.x == 0) {
    for (int w = 1; w < kBboxThreads / 32; ++w) {
      first = min(first, s_first[w]);
      last = max(last, s_last[w]);
    }
    if (last >= 0) {
      atomicMin(result + 0, static_cast<int>(z));
      atomicMin(result + 1, static_cast<int>(y));
      atomicMin(result + 2, first);
      atomicMax(result + 3, static_cast<int>(z));
      atomicMax(result + 4, static_cast<int>(y));
      atomicMax(result + 5, last);
    }
  }
}

struct CropGeo {
  long long C, Z, Y, X;
  long long s0, s1, s2, s3;
  long long oz, oy, ox;
  long long lo0, lo1, lo2;
};

template <class I, class O>
__global__ void crop_kernel(const I* __restrict__ in, O* __restrict__ out, CropGeo g, long long n, double pad_value) {
  const O pad = dcast<O>(pad_value);
  for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < n; i += (long long)gridDim.x * blockDim.x) {
    long long r = i;
    const long long k = r % g.ox;
    r /= g.ox;
    const long long j = r % g.oy;
    r /= g.oy;
    const long long l = r % g.oz;
    const long long c = r / g.oz;
    const long long sz = g.lo0 + l, sy = g.lo1 + j, sx = g.lo2 + k;
    const bool inside = sz >= 0 && sz < g.Z && sy >= 0 && sy < g.Y && sx >= 0 && sx < g.X;
    out[i] = inside ? dcast<O>(in[c * g.s0 + sz * g.s1 + sy * g.s2 + sx * g.s3]) : pad;
  }
}

}  // namespace

void bounding_box(const View4& x, bool use_threshold, double threshold, std::uintptr_t result,
                  std::uintptr_t stream) {
  const long long rows = x.shape[1] * x.shape[2];
  if (rows == 0 || x.shape[0] == 0 || x.shape[3] == 0) return;
  if (rows > 0x7fffffffLL) fail("bounding_box: too many rows for one CUDA grid");
  Geo g;
  for (int k = 0; k < 4; ++k) {
    g.shape[k] = x.shape[k];
    g.stride[k] = x.stride[k];
  }
  cudaStream_t st = reinterpret_cast<cudaStream_t>(stream);
  int* res = reinterpret_cast<int*>(result);
  dispatch_dtype(x.dtype, [&](auto tag) {
    using T = typename decltype(tag)::type;
    const T* in = reinterpret_cast<const T*>(x.ptr);
    if (use_threshold)
      bbox_kernel<T, true><<<static_cast<unsigned>(rows), kBboxThreads, 0, st>>>(in, g, threshold, res);
    else
      bbox_kernel<T, false><<<static_cast<unsigned>(rows), kBboxThreads, 0, st>>>(in, g, threshold, res);
  });
  FASTPANC_CUDA_CHECK(cudaGetLastError());
}

void crop_pad(const View4& x, std::uintptr_t out, DType out_dtype, const int64_t out_shape[3], const int64_t lo[3],
              double pad_value, std::uintptr_t stream) {
  CropGeo g{x.shape[0], x.shape[1],   x.shape[2],   x.shape[3], x.stride[0], x.stride[1], x.stride[2],
            x.stride[3], out_shape[0], out_shape[1], out_shape[2], lo[0],     lo[1],       lo[2]};
  const long long n = g.C * g.oz * g.oy * g.ox;
  if (n == 0) return;
  cudaStream_t st = reinterpret_cast<cudaStream_t>(stream);
  const int threads = 256;
  dispatch_dtype(x.dtype, [&](auto in_tag) {
    using I = typename decltype(in_tag)::type;
    dispatch_dtype(out_dtype, [&](auto out_tag) {
      using O = typename decltype(out_tag)::type;
      crop_kernel<I, O><<<blocks_for(n, threads), threads, 0, st>>>(reinterpret_cast<const I*>(x.ptr),
                                                                     reinterpret_cast<O*>(out), g, n, pad_value);
    });
  });
  FASTPANC_CUDA_CHECK(cudaGetLastError());
}

}  // namespace fastpanc::cuda
