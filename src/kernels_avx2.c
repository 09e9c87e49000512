/* kernels_avx2.c — AVX2/FMA variants of the kernels in kernels.c. This file
 * alone is compiled with -mavx2 -mfma -mf16c; nothing here runs unless the
 * CPU reports those features. */
#include "kernels.h"

#include <immintrin.h>

#include "tensor.h"

static inline float hsum(__m256 v) {
    __m128 lo = _mm256_castps256_ps128(v), hi = _mm256_extractf128_ps(v, 1);
    lo = _mm_add_ps(lo, hi);
    lo = _mm_add_ps(lo, _mm_movehl_ps(lo, lo));
    lo = _mm_add_ss(lo, _mm_movehdup_ps(lo));
    return _mm_cvtss_f32(lo);
}

static inline __m256 load_bf16(const uint16_t *p) {
    __m128i h = _mm_loadu_si128((const __m128i *)p);
    return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
}

static inline __m256 load_f16(const uint16_t *p) { return _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)p)); }

/* Four independent accumulators hide FMA latency. */
#define DOT_BODY(LOAD)                                                                 \
    __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;                        \
    int64_t i = 0;                                                                     \
    for (; i + 32 <= n; i += 32) {                                                     \
        a0 = _mm256_fmadd_ps(LOAD(w + i), _mm256_loadu_ps(x + i), a0);                 \
        a1 = _mm256_fmadd_ps(LOAD(w + i + 8), _mm256_loadu_ps(x + i + 8), a1);         \
        a2 = _mm256_fmadd_ps(LOAD(w + i + 16), _mm256_loadu_ps(x + i + 16), a2);       \
        a3 = _mm256_fmadd_ps(LOAD(w + i + 24), _mm256_loadu_ps(x + i + 24), a3);       \
    }                                                                                  \
    for (; i + 8 <= n; i += 8) a0 = _mm256_fmadd_ps(LOAD(w + i), _mm256_loadu_ps(x + i), a0); \
    float s = hsum(_mm256_add_ps(_mm256_add_ps(a0, a1), _mm256_add_ps(a2, a3)));

static float avx2_dot_f32(const float *w, const float *x, int64_t n) {
    DOT_BODY(_mm256_loadu_ps)
    for (; i < n; i++) s += w[i] * x[i];
    return s;
}

static float avx2_dot_bf16(const uint16_t *w, const float *x, int64_t n) {
    DOT_BODY(load_bf16)
    for (; i < n; i++) s += bf16_to_f32(w[i]) * x[i];
    return s;
}

static float avx2_dot_f16(const uint16_t *w, const float *x, int64_t n) {
    DOT_BODY(load_f16)
    for (; i < n; i++) s += _cvtsh_ss(w[i]) * x[i];
    return s;
}

static void avx2_axpy(float a, const float *x, float *y, int64_t n) {
    __m256 va = _mm256_set1_ps(a);
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) _mm256_storeu_ps(y + i, _mm256_fmadd_ps(va, _mm256_loadu_ps(x + i), _mm256_loadu_ps(y + i)));
    for (; i < n; i++) y[i] += a * x[i];
}

static void avx2_bf16_to_f32(const uint16_t *src, float *dst, int64_t n) {
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) _mm256_storeu_ps(dst + i, load_bf16(src + i));
    for (; i < n; i++) dst[i] = bf16_to_f32(src[i]);
}

static void avx2_f16_to_f32(const uint16_t *src, float *dst, int64_t n) {
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) _mm256_storeu_ps(dst + i, load_f16(src + i));
    for (; i < n; i++) dst[i] = _cvtsh_ss(src[i]);
}

static const kernel_table avx2_table = {
    "avx2", avx2_dot_f32, avx2_dot_bf16, avx2_dot_f16, avx2_axpy, avx2_bf16_to_f32, avx2_f16_to_f32,
};

const kernel_table *kernels_avx2(void) {
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return &avx2_table;
    return 0;
}
