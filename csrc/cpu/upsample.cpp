#include "cpu/upsample.h"

#include <cstring>
#include <vector>

#include "cpu/dispatch.h"

namespace fastpanc::cpu {
namespace {

template <typename T>
void run(const T* y, const T* skip, T* out, int64_t B, int64_t Co, int64_t Cs, int64_t Z, int64_t Y, int64_t X, int sz,
         int sy, int sx, const float* bias) {
  const int64_t s = static_cast<int64_t>(sz) * sy * sx;
  const int64_t Zo = Z * sz, Yo = Y * sy, Xo = X * sx, C = Co + Cs;
  const int64_t plane_in = Z * Y * X, plane_out = Zo * Yo * Xo, row_out = Yo * Xo;
#pragma omp parallel for schedule(static)
  for (int64_t bcz = 0; bcz < B * C * Zo; ++bcz) {
    const int64_t zo = bcz % Zo, bc = bcz / Zo, c = bc % C, b = bc / C;
    T* o = out + bc * plane_out + zo * row_out;
    if (c >= Co) {  // the skip's slice: a plain copy
      std::memcpy(o, skip + (b * Cs + (c - Co)) * plane_out + zo * row_out, sizeof(T) * row_out);
      continue;
    }
    const int64_t z = zo / sz, dz = zo % sz;
    const float bc_bias = bias ? bias[c] : 0.0f;
    for (int64_t yo = 0; yo < Yo; ++yo) {
      const int64_t yy = yo / sy, dy = yo % sy;
      T* orow = o + yo * Xo;
      for (int dx = 0; dx < sx; ++dx) {
        const T* irow = y + (b * Co * s + c * s + (dz * sy + dy) * sx + dx) * plane_in + (z * Y + yy) * X;
        for (int64_t x = 0; x < X; ++x) orow[x * sx + dx] = cast<T>(to_float(irow[x]) + bc_bias);
      }
    }
  }
}

// channels-last: y (B, Z, Y, X, Co*s), skip (B, Zo, Yo, Xo, Cs), out (B, Zo, Yo, Xo, Co + Cs)
template <typename T>
void run_cl(const T* y, const T* skip, T* out, int64_t B, int64_t Co, int64_t Cs, int64_t Z, int64_t Y, int64_t X,
            int sz, int sy, int sx, const float* bias) {
  const int64_t s = static_cast<int64_t>(sz) * sy * sx;
  const int64_t Zo = Z * sz, Yo = Y * sy, Xo = X * sx, C = Co + Cs;
#pragma omp parallel
  {
    std::vector<float> zero;
    if (bias == nullptr) zero.assign(static_cast<size_t>(Co), 0.0f);
    const float* bs = bias ? bias : zero.data();
#pragma omp for schedule(static)
    for (int64_t bzy = 0; bzy < B * Zo * Yo; ++bzy) {
      const int64_t yo = bzy % Yo, zo = (bzy / Yo) % Zo, b = bzy / (Yo * Zo);
      const int64_t z = zo / sz, dz = zo % sz, yy = yo / sy, dy = yo % sy;
      const T* irow = y + ((b * Z + z) * Y + yy) * X * Co * s;
      const T* srow = skip ? skip + bzy * Xo * Cs : nullptr;
      T* orow = out + bzy * Xo * C;
      for (int64_t xo = 0; xo < Xo; ++xo) {
        const int64_t k = (dz * sy + dy) * sx + xo % sx;  // the voxel's place in its stride block
        const T* in = irow + (xo / sx) * Co * s + k;
        T* o = orow + xo * C;
        for (int64_t c = 0; c < Co; ++c) o[c] = cast<T>(to_float(in[c * s]) + bs[c]);
        if (Cs) std::memcpy(o + Co, srow + xo * Cs, sizeof(T) * Cs);
      }
    }
  }
}

}  // namespace

void depth_to_space_cat(std::uintptr_t y, std::uintptr_t skip, std::uintptr_t out, DType dtype, int64_t B,
                        int64_t Co, int64_t Cs, int64_t Z, int64_t Y, int64_t X, int sz, int sy, int sx,
                        std::uintptr_t bias) {
  if (sz < 1 || sy < 1 || sx < 1) fail("depth_to_space_cat: strides must be >= 1");
  if (B < 0 || Co < 0 || Cs < 0 || Z < 0 || Y < 0 || X < 0) fail("depth_to_space_cat: negative size");
  if (Cs > 0 && skip == 0) fail("depth_to_space_cat: skip channels without a skip pointer");
  const float* bs = reinterpret_cast<const float*>(bias);
  dispatch_float_dtype(dtype, "depth_to_space_cat", [&](auto tag) {
    using T = typename decltype(tag)::type;
    run(reinterpret_cast<const T*>(y), reinterpret_cast<const T*>(skip), reinterpret_cast<T*>(out), B, Co, Cs, Z, Y, X,
        sz, sy, sx, bs);
  });
}

void depth_to_space_cat_cl(std::uintptr_t y, std::uintptr_t skip, std::uintptr_t out, DType dtype, int64_t B,
                           int64_t Co, int64_t Cs, int64_t Z, int64_t Y, int64_t X, int sz, int sy, int sx,
                           std::uintptr_t bias) {
  if (sz < 1 || sy < 1 || sx < 1) fail("depth_to_space_cat_cl: strides must be >= 1");
  if (B < 0 || Co < 0 || Cs < 0 || Z < 0 || Y < 0 || X < 0) fail("depth_to_space_cat_cl: negative size");
  if (Cs > 0 && skip == 0) fail("depth_to_space_cat_cl: skip channels without a skip pointer");
  if (B == 0 || Co + Cs == 0 || Z == 0 || Y == 0 || X == 0) return;
  const float* bs = reinterpret_cast<const float*>(bias);
  dispatch_float_dtype(dtype, "depth_to_space_cat_cl", [&](auto tag) {
    using T = typename decltype(tag)::type;
    run_cl(reinterpret_cast<const T*>(y), reinterpret_cast<const T*>(skip), reinterpret_cast<T*>(out), B, Co, Cs, Z,
           Y, X, sz, sy, sx, bs);
  });
}

}  // namespace fastpanc::cpu
