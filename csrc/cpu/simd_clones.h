#pragma once
// FASTPANC_SIMD_CLONES: compile a function for AVX-512, AVX2 and the x86-64 baseline; the loader picks the best one
// this CPU runs (GCC/Clang on x86-64; elsewhere one plain build).
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define FASTPANC_SIMD_CLONES __attribute__((target_clones("avx512f", "avx2", "default")))
#else
#define FASTPANC_SIMD_CLONES
#endif
