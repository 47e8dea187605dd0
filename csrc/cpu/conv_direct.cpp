#include "cpu/conv_direct.h"

#include <algorithm>

#include "cpu/simd_clones.h"

namespace fastpanc::cpu {
namespace {

constexpr int64_t kLanes = 16;  // output channels per block: one AVX-512 register of float32
constexpr int64_t kRun = 4;     // neighbouring x positions per block: four independent accumulators

// Outputs [x0, x0 + n) (n <= kRun) of one row, output channels [co0, co0 + kLanes) (the first `valid` stored).
// `in` is the padded input at (b, c = 0, z, y, x0), `wb` the weight at output channel co0.
template <int64_t N>
inline void block(const float* __restrict in, const float* __restrict wb, const float* __restrict bias,
                  float* __restrict o, int64_t C, int64_t Cop, int64_t Co, int64_t valid, int64_t plane_c,
                  int64_t Xp, int64_t Yp, int kz, int ky, int kx) {
  float acc[N][kLanes];
  for (int64_t q = 0; q < N; ++q) {
#pragma omp simd
    for (int64_t j = 0; j < kLanes; ++j) acc[q][j] = bias[j];
  }
  const float* wt = wb;
  for (int dz = 0; dz < kz; ++dz) {
    for (int dy = 0; dy < ky; ++dy) {
      for (int dx = 0; dx < kx; ++dx) {
        for (int64_t c = 0; c < C; ++c, wt += Cop) {
          const float* v = in + c * plane_c + (dz * Yp + dy) * Xp + dx;
          for (int64_t q = 0; q < N; ++q) {
            const float s = v[q];
#pragma omp simd
            for (int64_t j = 0; j < kLanes; ++j) acc[q][j] += s * wt[j];
          }
        }
      }
    }
  }
  for (int64_t q = 0; q < N; ++q) {
    float* dst = o + q * Co;
    for (int64_t j = 0; j < valid; ++j) dst[j] = acc[q][j];
  }
}

FASTPANC_SIMD_CLONES
void row(const float* in, const float* w, const float* bias, float* o, int64_t C, int64_t X, int64_t Co, int64_t Cop,
         int64_t plane_c, int64_t Xp, int64_t Yp, int kz, int ky, int kx) {
  for (int64_t co0 = 0; co0 < Co; co0 += kLanes) {
    const int64_t valid = std::min(kLanes, Co - co0);
    int64_t x0 = 0;
    for (; x0 + kRun <= X; x0 += kRun) {
      block<kRun>(in + x0, w + co0, bias + co0, o + x0 * Co + co0, C, Cop, Co, valid, plane_c, Xp, Yp, kz, ky, kx);
    }
    for (; x0 < X; ++x0) {
      block<1>(in + x0, w + co0, bias + co0, o + x0 * Co + co0, C, Cop, Co, valid, plane_c, Xp, Yp, kz, ky, kx);
    }
  }
}

}  // namespace

void conv3d_direct_cl(std::uintptr_t xp, std::uintptr_t w, std::uintptr_t bias, std::uintptr_t out, int64_t B,
                      int64_t C, int64_t Z, int64_t Y, int64_t X, int64_t Co, int64_t Cop, int kz, int ky, int kx) {
  if (B < 0 || C < 1 || Z < 0 || Y < 0 || X < 0 || Co < 1) fail("conv3d_direct_cl: bad sizes");
  if (Cop < Co || Cop % kLanes != 0) fail("conv3d_direct_cl: Cop must be a multiple of 16 and >= Co");
  if (kz < 1 || ky < 1 || kx < 1 || kz % 2 == 0 || ky % 2 == 0 || kx % 2 == 0)
    fail("conv3d_direct_cl: kernel sizes must be odd and >= 1");
  const int64_t Zp = Z + kz - 1, Yp = Y + ky - 1, Xp = X + kx - 1, plane_c = Zp * Yp * Xp;
  const float* x = reinterpret_cast<const float*>(xp);
  const float* wt = reinterpret_cast<const float*>(w);
  const float* bs = reinterpret_cast<const float*>(bias);
  float* o = reinterpret_cast<float*>(out);
#pragma omp parallel for schedule(static)
  for (int64_t bzy = 0; bzy < B * Z * Y; ++bzy) {
    const int64_t y = bzy % Y, z = (bzy / Y) % Z, b = bzy / (Y * Z);
    const float* in = x + b * C * plane_c + (z * Yp + y) * Xp;
    row(in, wt, bs, o + bzy * X * Co, C, X, Co, Cop, plane_c, Xp, Yp, kz, ky, kx);
  }
}

}  // namespace fastpanc::cpu
