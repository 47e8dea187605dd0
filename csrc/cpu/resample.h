// Resampling (nnU-Net v2 / skimage.transform.resize(mode="edge", anti_aliasing=False) semantics).
// The inline tap and label helpers below are shared by the CPU and the CUDA kernels (no CUDA includes).
#pragma once
#include <cmath>
#include <cstdint>

#include "common.h"

#if defined(__CUDACC__)
#define FASTPANC_HD __host__ __device__ __forceinline__
#else
#define FASTPANC_HD inline
#endif

namespace fastpanc::rs {

constexpr int kPad = 12;  // scipy pads by 12 edge values before the spline prefilter in "nearest" mode
constexpr double kPole = -0.267949192431122706472553658494127633;  // sqrt(3) - 2

// Rounded double arithmetic that the compiler may not fuse into FMAs (scipy computes without FMAs, and
// label ties are decided by exact equality of these values).
FASTPANC_HD double dmul(double a, double b) {
#ifdef __CUDA_ARCH__
  return __dmul_rn(a, b);
#else
  return a * b;
#endif
}
FASTPANC_HD double dadd(double a, double b) {
#ifdef __CUDA_ARCH__
  return __dadd_rn(a, b);
#else
  return a + b;
#endif
}

FASTPANC_HD int64_t clamp_index(int64_t i, int64_t n) { return i < 0 ? 0 : (i >= n ? n - 1 : i); }

// Input coordinate of output sample k: ((k + 0.5) * zoom - 0.5) + npad, rounded after each step as in scipy.
FASTPANC_HD double source_coord(int64_t k, double zoom, int npad) {
  double cc = dadd(static_cast<double>(k), 0.5);
  cc = dmul(cc, zoom);
  cc = dadd(cc, -0.5);
  return dadd(cc, static_cast<double>(npad));
}

// Taps of output sample k along an axis of n_in -> n_out samples for order 0, 1 or 3: indices clamped into the
// signal (for order 3 the 12-padded signal of n_in + 24 samples) and weights exactly as scipy's
// get_spline_interpolation_weights. Returns the number of taps (order + 1).
FASTPANC_HD int axis_taps(int64_t k, int64_t n_in, int64_t n_out, int order, int64_t* idx, double* w) {
  const double zoom = static_cast<double>(n_in) / static_cast<double>(n_out);
  const int npad = order == 3 ? kPad : 0;
  const int64_t len = n_in + 2 * npad;
  const double cc = source_coord(k, zoom, npad);
  if (order == 0) {
    idx[0] = clamp_index(static_cast<int64_t>(floor(dadd(cc, 0.5))), len);
    w[0] = 1.0;
    return 1;
  }
  const double fl = floor(cc);
  const int64_t start = static_cast<int64_t>(fl) - order / 2;
  const double x = dadd(cc, -fl);
  if (order == 1) {
    w[0] = dadd(1.0, -x);
    w[1] = dadd(1.0, -w[0]);
  } else {
    const double y = x, z = dadd(1.0, -x);
    w[0] = z * z * z / 6.0;
    w[1] = (y * y * (y - 2.0) * 3.0 + 4.0) / 6.0;
    w[2] = (z * z * (z - 2.0) * 3.0 + 4.0) / 6.0;
    w[3] = dadd(dadd(dadd(1.0, -w[0]), -w[1]), -w[2]);
  }
  for (int h = 0; h <= order; ++h) idx[h] = clamp_index(start + h, len);
  return order + 1;
}

// Linear label interpolation at one output voxel: v are the labels at the 8 taps in scipy's order (last axis
// fastest), t the float64 terms (w0 * w1) * w2. Each label scores the sum of its terms in tap order; the
// nearest-neighbour label `nn` wins where it attains the top score, else the smallest top-scoring label
// (batchgenerators' resize_segmentation with seg_tiebreak="nearest").
template <typename L>
FASTPANC_HD L label_argmax_nearest(const L* v, const double* t, int n, L nn) {
  L lab[8];
  double score[8];
  int k = 0;
  for (int i = 0; i < n; ++i) {
    int j = 0;
    while (j < k && lab[j] != v[i]) ++j;
    if (j == k) {
      lab[k] = v[i];
      score[k] = 0.0;
      ++k;
    }
    score[j] = dadd(score[j], t[i]);
  }
  double best = score[0];
  L win = lab[0];
  double nn_score = -1.0;
  for (int j = 0; j < k; ++j) {
    if (score[j] > best || (score[j] == best && lab[j] < win)) {
      best = score[j];
      win = lab[j];
    }
    if (lab[j] == nn) nn_score = score[j];
  }
  return nn_score == best ? nn : win;
}

// nnU-Net's separate-z label pass with order_z = 1: labels a, b at the two taps with weights w0, w1; the largest
// label scoring above 0.5 wins, 0 where none does.
template <typename L>
FASTPANC_HD L label_threshold_pair(L a, L b, double w0, double w1) {
  if (a == b) return dadd(w0, w1) > 0.5 ? a : L(0);
  const bool ha = w0 > 0.5, hb = w1 > 0.5;
  if (ha && hb) return a > b ? a : b;
  if (ha) return a;
  if (hb) return b;
  return L(0);
}

enum LabelKind : int { kNearest = 0, kLinearArgmax = 1, kLinearThreshold = 2 };

}  // namespace fastpanc::rs

namespace fastpanc::cpu {

// One axis pass of image resampling.
// in: (C, Z, Y, X) strided view (float32/16, bfloat16, float64, int16/32, uint8, int8).
// out: contiguous, in's shape with dimension `dim` (1, 2 or 3) resized to n_out; float32, float16 or bfloat16.
// order: 0, 1 or 3. Clipping of the result: clip_mode 0 none; 1 to [lo[c], hi[c]]; 2 to
// [lo[c * S + i], hi[c * S + i]] with i the index along clip_dim (!= dim) and S that dimension's size.
void resample_axis(const View4& in, std::uintptr_t out, DType out_dtype, int dim, int64_t n_out, int order,
                   int clip_mode, int clip_dim, const float* lo, const float* hi);

// The clip bounds of resample_axis: dim 0: lo/hi[c] = min/max of channel c; dim 1..3: lo/hi[c * S + i] = min/max
// of the slice i along that dimension (S its size). lo and hi hold float32 (exact for the integer and 16-bit inputs).
void minmax(const View4& in, float* lo, float* hi, int dim);

// Orders 0/1 in a single pass: per axis order 0 or 1 (orders[0..2] for Z, Y, X), the tensor product of the
// per-axis interpolations (equal to resample_axis run axis by axis, without clipping, which these orders never
// need). out: contiguous (C, *out_shape), float32, float16 or bfloat16.
void resample_lowres(const View4& in, std::uintptr_t out, DType out_dtype, const int64_t out_shape[3],
                     const int orders[3]);

// Label resampling of (C, Z, Y, X) integer labels into a contiguous (C, *out_shape) tensor of the same dtype.
// kind: rs::kNearest (order 0 on every axis), rs::kLinearArgmax (order 1, argmax with nearest tie-break), or
// rs::kLinearThreshold (order 1 along `axis` (0..2) only, every other axis keeps its size; > 0.5 rule).
void resample_labels(const View4& in, std::uintptr_t out, const int64_t out_shape[3], int kind, int axis);

}  // namespace fastpanc::cpu
