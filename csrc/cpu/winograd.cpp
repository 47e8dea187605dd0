#include "cpu/winograd.h"

#include <algorithm>
#include <string>
#include <vector>

#include "cpu/simd_clones.h"

namespace fastpanc::cpu {
namespace {

constexpr int64_t kBlock = 64;  // channels per pass over a tile

// F(m, 3) along one axis: alpha = m + 2 inputs per m outputs. B^T (alpha x alpha) and A^T (m x alpha), row-major;
// every entry is a binary fraction, so the transforms round only in their sums. F(2, 3) takes the points 0, 1, -1
// and infinity, F(4, 3) 0, 1, -1, 1/2, -1/2 and infinity (smaller entries than 2, -2: about half the rounding).
constexpr float kBT2[16] = {1, 0, -1, 0, 0, 1, 1, 0, 0, -1, 1, 0, 0, 1, 0, -1};
constexpr float kAT2[8] = {1, 1, 1, 0, 0, 1, -1, -1};
constexpr float kBT4[36] = {0.25f, 0,     -1.25f, 0,    1, 0, 0, -0.25f, -0.25f, 1,     1, 0,
                            0,     0.25f, -0.25f, -1,   1, 0, 0, -0.5f,  -1,     0.5f,  1, 0,
                            0,     0.5f,  -1,     -0.5f, 1, 0, 0, 0.25f,  0,      -1.25f, 0, 1};
constexpr float kAT4[24] = {1, 1, 1, 1, 1, 0, 0, 1, -1, 0.5f, -0.5f, 0, 0, 1, 1, 0.25f, 0.25f, 0, 0, 1, -1, 0.125f, -0.125f, 1};

struct Spec {
  int m, alpha;
  const float* BT;
  const float* AT;
};

Spec spec_of(int m) { return m == 2 ? Spec{2, 4, kBT2, kAT2} : Spec{4, 6, kBT4, kAT4}; }

struct Tiles {
  int64_t TZ, TY, TX;
  int nz;  // transform points along z: alpha (3-tap kernel) or 1
  int mz;  // outputs along z per tile: m or 1
};

Tiles tiles_of(int64_t Z, int64_t Y, int64_t X, int kz, const Spec& s) {
  const int64_t m = s.m;
  if (kz == 3) return {(Z + m - 1) / m, (Y + m - 1) / m, (X + m - 1) / m, s.alpha, s.m};
  return {Z, (Y + m - 1) / m, (X + m - 1) / m, 1, 1};
}

// dst row i (i < no) = sum over j < ni of T[i][j] * src row j: rows of n floats, ss (src) and ds (dst) floats apart.
inline void transform_rows(const float* T, int no, int ni, const float* src, int64_t ss, float* dst, int64_t ds,
                           int64_t n) {
  for (int i = 0; i < no; ++i) {
    float* d = dst + i * ds;
    bool first = true;
    for (int j = 0; j < ni; ++j) {
      const float c = T[i * ni + j];
      if (c == 0.0f) continue;
      const float* s = src + j * ss;
      if (first) {
#pragma omp simd
        for (int64_t k = 0; k < n; ++k) d[k] = c * s[k];
        first = false;
      } else {
#pragma omp simd
        for (int64_t k = 0; k < n; ++k) d[k] += c * s[k];
      }
    }
    if (first) std::fill(d, d + n, 0.0f);
  }
}

// One tile's input transform: its alpha x alpha x nz inputs (zero outside the volume), kBlock channels at a time,
// through scratch b0 / b1 (alpha^3 * kBlock floats each), written to row j of each of the P planes of V.
FASTPANC_SIMD_CLONES
void input_tile(const Spec& S, const float* x, float* V, float* b0, float* b1, int64_t Z, int64_t Y, int64_t X,
                int64_t C, int nz, int64_t b, int64_t z0, int64_t y0, int64_t x0, int64_t j, int64_t ld) {
  const int al = S.alpha;
  const int P = nz * al * al;
  const int64_t row = kBlock, plane = al * kBlock, cube = al * al * kBlock;
  for (int64_t c0 = 0; c0 < C; c0 += kBlock) {
    const int64_t n = std::min(kBlock, C - c0);
    for (int a = 0; a < nz; ++a) {
      const int64_t z = z0 + a;
      for (int r = 0; r < al; ++r) {
        const int64_t y = y0 + r;
        for (int q = 0; q < al; ++q) {
          const int64_t xx = x0 + q;
          float* dst = b0 + a * cube + r * plane + q * row;
          if (z < 0 || z >= Z || y < 0 || y >= Y || xx < 0 || xx >= X) {
            std::fill(dst, dst + n, 0.0f);
          } else {
            const float* src = x + (((b * Z + z) * Y + y) * X + xx) * C + c0;
            std::copy(src, src + n, dst);
          }
        }
      }
    }
    for (int a = 0; a < nz; ++a) {
      for (int r = 0; r < al; ++r) {  // along x
        transform_rows(S.BT, al, al, b0 + a * cube + r * plane, row, b1 + a * cube + r * plane, row, n);
      }
      for (int q = 0; q < al; ++q) {  // along y
        transform_rows(S.BT, al, al, b1 + a * cube + q * row, plane, b0 + a * cube + q * row, plane, n);
      }
    }
    const float* res = b0;
    if (nz > 1) {
      for (int rq = 0; rq < al * al; ++rq) transform_rows(S.BT, al, al, b0 + rq * row, cube, b1 + rq * row, cube, n);
      res = b1;
    }
    for (int p = 0; p < P; ++p) std::copy(res + p * row, res + p * row + n, V + p * ld + j * C + c0);
  }
}

// One tile's output transform: row j of the P planes of M to its m x m x mz outputs (those inside the volume),
// plus bias.
FASTPANC_SIMD_CLONES
void output_tile(const Spec& S, const float* M, const float* bias, float* out, float* b0, float* b1, int64_t Z,
                 int64_t Y, int64_t X, int64_t Co, int nz, int64_t b, int64_t z0, int64_t y0, int64_t x0, int64_t j,
                 int64_t ld) {
  const int al = S.alpha, m = S.m;
  const int P = nz * al * al;
  const int mz = nz > 1 ? m : 1;
  const int64_t row = kBlock, plane = al * kBlock, cube = al * al * kBlock;
  for (int64_t c0 = 0; c0 < Co; c0 += kBlock) {
    const int64_t n = std::min(kBlock, Co - c0);
    for (int p = 0; p < P; ++p) {
      const float* src = M + p * ld + j * Co + c0;
      std::copy(src, src + n, b0 + p * row);
    }
    for (int a = 0; a < nz; ++a) {
      for (int r = 0; r < al; ++r) {  // along x: q < m hold it
        transform_rows(S.AT, m, al, b0 + a * cube + r * plane, row, b1 + a * cube + r * plane, row, n);
      }
      for (int q = 0; q < m; ++q) {  // along y: r < m
        transform_rows(S.AT, m, al, b1 + a * cube + q * row, plane, b0 + a * cube + q * row, plane, n);
      }
    }
    const float* res = b0;
    if (nz > 1) {
      for (int r = 0; r < m; ++r) {
        for (int q = 0; q < m; ++q) {  // along z: a < m
          transform_rows(S.AT, m, al, b0 + r * plane + q * row, cube, b1 + r * plane + q * row, cube, n);
        }
      }
      res = b1;
    }
    for (int a = 0; a < mz; ++a) {
      const int64_t z = z0 + a;
      if (z >= Z) continue;
      for (int r = 0; r < m; ++r) {
        const int64_t y = y0 + r;
        if (y >= Y) continue;
        for (int q = 0; q < m; ++q) {
          const int64_t xx = x0 + q;
          if (xx >= X) continue;
          const float* s = res + a * cube + r * plane + q * row;
          float* dst = out + (((b * Z + z) * Y + y) * X + xx) * Co + c0;
          if (bias != nullptr) {
            const float* bb = bias + c0;
#pragma omp simd
            for (int64_t i = 0; i < n; ++i) dst[i] = s[i] + bb[i];
          } else {
            std::copy(s, s + n, dst);
          }
        }
      }
    }
  }
}

struct TileIndex {
  int64_t b, iz, iy, ix;
};

inline TileIndex tile_index(const Tiles& T, int64_t t) {
  return {t / (T.TX * T.TY * T.TZ), (t / (T.TX * T.TY)) % T.TZ, (t / T.TX) % T.TY, t % T.TX};
}

// Runs fn(tile, j, b0, b1) for the tiles t0 .. t0 + nt - 1 over the OpenMP threads, each thread with its two
// scratch buffers of one transformed tile of kBlock channels.
template <typename Fn>
void for_each_tile(const Spec& S, const Tiles& T, int64_t t0, int64_t nt, Fn fn) {
#pragma omp parallel
  {
    std::vector<float> scratch(2 * S.alpha * S.alpha * S.alpha * kBlock);
    float* b0 = scratch.data();
    float* b1 = b0 + S.alpha * S.alpha * S.alpha * kBlock;
#pragma omp for schedule(static)
    for (int64_t j = 0; j < nt; ++j) fn(tile_index(T, t0 + j), j, b0, b1);
  }
}

void input_tiles(const float* x, float* V, int64_t Z, int64_t Y, int64_t X, int64_t C, int kz, int m, int64_t t0,
                 int64_t nt, int64_t ld) {
  const Spec S = spec_of(m);
  const Tiles T = tiles_of(Z, Y, X, kz, S);
  for_each_tile(S, T, t0, nt, [&](const TileIndex& t, int64_t j, float* b0, float* b1) {
    input_tile(S, x, V, b0, b1, Z, Y, X, C, T.nz, t.b, T.nz > 1 ? m * t.iz - 1 : t.iz, m * t.iy - 1, m * t.ix - 1, j,
               ld);
  });
}

void output_tiles(const float* M, const float* bias, float* out, int64_t Z, int64_t Y, int64_t X, int64_t Co, int kz,
                  int m, int64_t t0, int64_t nt, int64_t ld) {
  const Spec S = spec_of(m);
  const Tiles T = tiles_of(Z, Y, X, kz, S);
  for_each_tile(S, T, t0, nt, [&](const TileIndex& t, int64_t j, float* b0, float* b1) {
    output_tile(S, M, bias, out, b0, b1, Z, Y, X, Co, T.nz, t.b, t.iz * T.mz, m * t.iy, m * t.ix, j, ld);
  });
}

void check(const char* name, int64_t B, int64_t Z, int64_t Y, int64_t X, int64_t C, int kz, int m, int64_t t0,
           int64_t nt, int64_t ld) {
  if (kz != 1 && kz != 3) fail(std::string(name) + ": the kernel's z size must be 1 or 3, got " + std::to_string(kz));
  if (m != 2 && m != 4) fail(std::string(name) + ": the output tile must be 2 or 4, got " + std::to_string(m));
  if (B < 0 || Z < 0 || Y < 0 || X < 0 || C < 0) fail(std::string(name) + ": negative size");
  const Tiles T = tiles_of(Z, Y, X, kz, spec_of(m));
  if (t0 < 0 || nt < 0 || t0 + nt > B * T.TZ * T.TY * T.TX) {
    fail(std::string(name) + ": tiles [" + std::to_string(t0) + ", " + std::to_string(t0 + nt) + ") out of range [0, " +
         std::to_string(B * T.TZ * T.TY * T.TX) + ")");
  }
  if (ld < nt * C) {
    fail(std::string(name) + ": plane stride " + std::to_string(ld) + " is less than tiles x channels = " +
         std::to_string(nt * C));
  }
}

}  // namespace

void winograd_input_cl(std::uintptr_t x, std::uintptr_t v, int64_t B, int64_t Z, int64_t Y, int64_t X, int64_t C,
                       int kz, int m, int64_t t0, int64_t nt, int64_t ld) {
  check("winograd_input_cl", B, Z, Y, X, C, kz, m, t0, nt, ld);
  if (nt == 0 || C == 0) return;
  input_tiles(reinterpret_cast<const float*>(x), reinterpret_cast<float*>(v), Z, Y, X, C, kz, m, t0, nt, ld);
}

void winograd_output_cl(std::uintptr_t mm, std::uintptr_t bias, std::uintptr_t out, int64_t B, int64_t Z, int64_t Y,
                        int64_t X, int64_t Co, int kz, int m, int64_t t0, int64_t nt, int64_t ld) {
  check("winograd_output_cl", B, Z, Y, X, Co, kz, m, t0, nt, ld);
  if (nt == 0 || Co == 0) return;
  output_tiles(reinterpret_cast<const float*>(mm), reinterpret_cast<const float*>(bias), reinterpret_cast<float*>(out),
               Z, Y, X, Co, kz, m, t0, nt, ld);
}

}  // namespace fastpanc::cpu
