#include "cpu/pool.h"

#include <algorithm>
#include <vector>

#include "cpu/dispatch.h"

namespace fastpanc::cpu {
namespace {

template <typename T>
void run(const T* x, T* out, int64_t planes, int64_t Z, int64_t Y, int64_t X, int sz, int sy, int sx) {
  const int64_t Zo = Z / sz, Yo = Y / sy, Xo = X / sx;
  const float inv = 1.0f / static_cast<float>(sz * sy * sx);
#pragma omp parallel
  {
    std::vector<float> acc(static_cast<size_t>(Xo));
#pragma omp for schedule(static)
    for (int64_t pz = 0; pz < planes * Zo; ++pz) {
      const int64_t p = pz / Zo, zo = pz % Zo;
      for (int64_t yo = 0; yo < Yo; ++yo) {
        std::fill(acc.begin(), acc.end(), 0.0f);
        for (int dz = 0; dz < sz; ++dz) {
          for (int dy = 0; dy < sy; ++dy) {
            const T* row = x + ((p * Z + zo * sz + dz) * Y + yo * sy + dy) * X;
            for (int64_t xo = 0; xo < Xo; ++xo) {
              float s = 0.0f;
              for (int dx = 0; dx < sx; ++dx) s += to_float(row[xo * sx + dx]);
              acc[xo] += s;
            }
          }
        }
        T* o = out + (pz * Yo + yo) * Xo;
        for (int64_t xo = 0; xo < Xo; ++xo) o[xo] = cast<T>(acc[xo] * inv);
      }
    }
  }
}

}  // namespace

void avg_pool_down(std::uintptr_t x, std::uintptr_t out, DType dtype, int64_t planes, int64_t Z, int64_t Y, int64_t X,
                   int sz, int sy, int sx) {
  if (sz < 1 || sy < 1 || sx < 1) fail("avg_pool_down: strides must be >= 1");
  if (planes < 0 || Z < 0 || Y < 0 || X < 0) fail("avg_pool_down: negative size");
  if (planes == 0 || Z / sz == 0 || Y / sy == 0 || X / sx == 0) return;
  dispatch_float_dtype(dtype, "avg_pool_down", [&](auto tag) {
    using T = typename decltype(tag)::type;
    run(reinterpret_cast<const T*>(x), reinterpret_cast<T*>(out), planes, Z, Y, X, sz, sy, sx);
  });
}

}  // namespace fastpanc::cpu
