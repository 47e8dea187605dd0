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

// channels-last: x (B, Z, Y, X, C), out (B, Zo, Yo, Xo, C); every loop runs along the channels
template <typename T>
void run_cl(const T* x, T* out, int64_t batch, int64_t C, int64_t Z, int64_t Y, int64_t X, int sz, int sy, int sx) {
  const int64_t Zo = Z / sz, Yo = Y / sy, Xo = X / sx;
  const float inv = 1.0f / static_cast<float>(sz * sy * sx);
#pragma omp parallel
  {
    std::vector<float> acc(static_cast<size_t>(C)), s(static_cast<size_t>(C));
#pragma omp for schedule(static)
    for (int64_t bzy = 0; bzy < batch * Zo * Yo; ++bzy) {
      const int64_t yo = bzy % Yo, zo = (bzy / Yo) % Zo, b = bzy / (Yo * Zo);
      for (int64_t xo = 0; xo < Xo; ++xo) {
        std::fill(acc.begin(), acc.end(), 0.0f);
        for (int dz = 0; dz < sz; ++dz) {
          for (int dy = 0; dy < sy; ++dy) {
            // as run(): the sum along x first, then added to the window's sum
            const T* v = x + (((b * Z + zo * sz + dz) * Y + yo * sy + dy) * X + xo * sx) * C;
            std::fill(s.begin(), s.end(), 0.0f);
            for (int dx = 0; dx < sx; ++dx) {
              for (int64_t c = 0; c < C; ++c) s[c] += to_float(v[dx * C + c]);
            }
            for (int64_t c = 0; c < C; ++c) acc[c] += s[c];
          }
        }
        T* o = out + (bzy * Xo + xo) * C;
        for (int64_t c = 0; c < C; ++c) o[c] = cast<T>(acc[c] * inv);
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

void avg_pool_down_cl(std::uintptr_t x, std::uintptr_t out, DType dtype, int64_t batch, int64_t channels, int64_t Z,
                      int64_t Y, int64_t X, int sz, int sy, int sx) {
  if (sz < 1 || sy < 1 || sx < 1) fail("avg_pool_down_cl: strides must be >= 1");
  if (batch < 0 || channels < 0 || Z < 0 || Y < 0 || X < 0) fail("avg_pool_down_cl: negative size");
  if (batch == 0 || channels == 0 || Z / sz == 0 || Y / sy == 0 || X / sx == 0) return;
  dispatch_float_dtype(dtype, "avg_pool_down_cl", [&](auto tag) {
    using T = typename decltype(tag)::type;
    run_cl(reinterpret_cast<const T*>(x), reinterpret_cast<T*>(out), batch, channels, Z, Y, X, sz, sy, sx);
  });
}

}  // namespace fastpanc::cpu
