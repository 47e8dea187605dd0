#pragma once
#include <cuda_runtime.h>

#include <stdexcept>
#include <string>

#define FASTPANC_CUDA_CHECK(expr)                                                                     \
  do {                                                                                              \
    cudaError_t err__ = (expr);                                                                     \
    if (err__ != cudaSuccess)                                                                       \
      throw std::runtime_error(std::string("fastpanc CUDA error: ") + cudaGetErrorString(err__) +   \
                               " at " __FILE__ ":" + std::to_string(__LINE__));                      \
  } while (0)

namespace fastpanc::cuda {
inline int blocks_for(long long n, int threads) {
  long long b = (n + threads - 1) / threads;
  return static_cast<int>(b > 65535LL * 32 ? 65535LL * 32 : b);
}
}  // namespace fastpanc::cuda
