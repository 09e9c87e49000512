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

static void avx2_axpy_bf16(float a, const uint16_t *x, float *y, int64_t n) {
    __m256 va = _mm256_set1_ps(a);
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) _mm256_storeu_ps(y + i, _mm256_fmadd_ps(va, load_bf16(x + i), _mm256_loadu_ps(y + i)));
    for (; i < n; i++) y[i] += a * bf16_to_f32(x[i]);
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

/* 4 weight rows x 3 activation vectors per step: 12 accumulators, 4 + 1
 * loads per 12 FMAs, so the FMA units rather than the loads set the pace. */
static void avx2_gemm_f32(const float *w, size_t ws, int rows, const float *x, size_t xs, int n, int64_t cols, float *y,
                          size_t ys) {
    int64_t c8 = cols & ~(int64_t)7;
    int r = 0;
    for (; r + 4 <= rows; r += 4) {
        const float *w0 = w + (size_t)r * ws, *w1 = w0 + ws, *w2 = w1 + ws, *w3 = w2 + ws;
        int t = 0;
        for (; t + 3 <= n; t += 3) {
            const float *x0 = x + (size_t)t * xs, *x1 = x0 + xs, *x2 = x1 + xs;
            __m256 a00 = _mm256_setzero_ps(), a01 = a00, a02 = a00, a10 = a00, a11 = a00, a12 = a00;
            __m256 a20 = a00, a21 = a00, a22 = a00, a30 = a00, a31 = a00, a32 = a00;
            for (int64_t c = 0; c < c8; c += 8) {
                __m256 v0 = _mm256_loadu_ps(w0 + c), v1 = _mm256_loadu_ps(w1 + c);
                __m256 v2 = _mm256_loadu_ps(w2 + c), v3 = _mm256_loadu_ps(w3 + c);
                __m256 u = _mm256_loadu_ps(x0 + c);
                a00 = _mm256_fmadd_ps(v0, u, a00); a10 = _mm256_fmadd_ps(v1, u, a10);
                a20 = _mm256_fmadd_ps(v2, u, a20); a30 = _mm256_fmadd_ps(v3, u, a30);
                u = _mm256_loadu_ps(x1 + c);
                a01 = _mm256_fmadd_ps(v0, u, a01); a11 = _mm256_fmadd_ps(v1, u, a11);
                a21 = _mm256_fmadd_ps(v2, u, a21); a31 = _mm256_fmadd_ps(v3, u, a31);
                u = _mm256_loadu_ps(x2 + c);
                a02 = _mm256_fmadd_ps(v0, u, a02); a12 = _mm256_fmadd_ps(v1, u, a12);
                a22 = _mm256_fmadd_ps(v2, u, a22); a32 = _mm256_fmadd_ps(v3, u, a32);
            }
            float s[4][3] = {{hsum(a00), hsum(a01), hsum(a02)}, {hsum(a10), hsum(a11), hsum(a12)},
                             {hsum(a20), hsum(a21), hsum(a22)}, {hsum(a30), hsum(a31), hsum(a32)}};
            const float *wr[4] = {w0, w1, w2, w3}, *xr[3] = {x0, x1, x2};
            for (int i = 0; i < 4; i++)
                for (int j = 0; j < 3; j++) {
                    for (int64_t c = c8; c < cols; c++) s[i][j] += wr[i][c] * xr[j][c];
                    y[(size_t)(t + j) * ys + r + i] = s[i][j];
                }
        }
        for (; t < n; t++)
            for (int i = 0; i < 4; i++) y[(size_t)t * ys + r + i] = avx2_dot_f32(w0 + (size_t)i * ws, x + (size_t)t * xs, cols);
    }
    for (; r < rows; r++)
        for (int t = 0; t < n; t++) y[(size_t)t * ys + r] = avx2_dot_f32(w + (size_t)r * ws, x + (size_t)t * xs, cols);
}

/* 4 heads x 16 columns of accumulators (8 registers): per cached row, 2 row
 * loads and 4 broadcasts feed 8 FMAs. */
static void avx2_weighted_sum(const float *a, size_t as, int nh, const float *x, size_t xs, int n, int64_t cols, float *y,
                              size_t ys) {
    int h = 0;
    for (; h + 4 <= nh; h += 4) {
        const float *a0 = a + (size_t)h * as, *a1 = a0 + as, *a2 = a1 + as, *a3 = a2 + as;
        float *y0 = y + (size_t)h * ys, *y1 = y0 + ys, *y2 = y1 + ys, *y3 = y2 + ys;
        int64_t j = 0;
        for (; j + 16 <= cols; j += 16) {
            __m256 c00 = _mm256_loadu_ps(y0 + j), c01 = _mm256_loadu_ps(y0 + j + 8);
            __m256 c10 = _mm256_loadu_ps(y1 + j), c11 = _mm256_loadu_ps(y1 + j + 8);
            __m256 c20 = _mm256_loadu_ps(y2 + j), c21 = _mm256_loadu_ps(y2 + j + 8);
            __m256 c30 = _mm256_loadu_ps(y3 + j), c31 = _mm256_loadu_ps(y3 + j + 8);
            for (int p = 0; p < n; p++) {
                const float *xr = x + (size_t)p * xs + j;
                __m256 x0 = _mm256_loadu_ps(xr), x1 = _mm256_loadu_ps(xr + 8);
                __m256 b = _mm256_broadcast_ss(a0 + p);
                c00 = _mm256_fmadd_ps(b, x0, c00); c01 = _mm256_fmadd_ps(b, x1, c01);
                b = _mm256_broadcast_ss(a1 + p);
                c10 = _mm256_fmadd_ps(b, x0, c10); c11 = _mm256_fmadd_ps(b, x1, c11);
                b = _mm256_broadcast_ss(a2 + p);
                c20 = _mm256_fmadd_ps(b, x0, c20); c21 = _mm256_fmadd_ps(b, x1, c21);
                b = _mm256_broadcast_ss(a3 + p);
                c30 = _mm256_fmadd_ps(b, x0, c30); c31 = _mm256_fmadd_ps(b, x1, c31);
            }
            _mm256_storeu_ps(y0 + j, c00); _mm256_storeu_ps(y0 + j + 8, c01);
            _mm256_storeu_ps(y1 + j, c10); _mm256_storeu_ps(y1 + j + 8, c11);
            _mm256_storeu_ps(y2 + j, c20); _mm256_storeu_ps(y2 + j + 8, c21);
            _mm256_storeu_ps(y3 + j, c30); _mm256_storeu_ps(y3 + j + 8, c31);
        }
        for (; j < cols; j++)
            for (int p = 0; p < n; p++) {
                float xv = x[(size_t)p * xs + j];
                y0[j] += a0[p] * xv; y1[j] += a1[p] * xv; y2[j] += a2[p] * xv; y3[j] += a3[p] * xv;
            }
    }
    for (; h < nh; h++)
        for (int p = 0; p < n; p++) avx2_axpy(a[(size_t)h * as + p], x + (size_t)p * xs, y + (size_t)h * ys, cols);
}

static float avx2_sum_f32(const float *x, int64_t n) {
    __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
    int64_t i = 0;
    for (; i + 32 <= n; i += 32) {
        a0 = _mm256_add_ps(a0, _mm256_loadu_ps(x + i));
        a1 = _mm256_add_ps(a1, _mm256_loadu_ps(x + i + 8));
        a2 = _mm256_add_ps(a2, _mm256_loadu_ps(x + i + 16));
        a3 = _mm256_add_ps(a3, _mm256_loadu_ps(x + i + 24));
    }
    float s = hsum(_mm256_add_ps(_mm256_add_ps(a0, a1), _mm256_add_ps(a2, a3)));
    for (; i < n; i++) s += x[i];
    return s;
}

/* Ten independent 8-wide FMA chains: enough to cover the FMA latency on two ports. */
static double avx2_fma_probe(long iters, float *sink) {
    __m256 m = _mm256_set1_ps(0.999999f), c = _mm256_set1_ps(1e-7f);
    __m256 a0 = _mm256_set1_ps(1), a1 = a0, a2 = a0, a3 = a0, a4 = a0, a5 = a0, a6 = a0, a7 = a0, a8 = a0, a9 = a0;
    for (long i = 0; i < iters; i++) {
        a0 = _mm256_fmadd_ps(a0, m, c); a1 = _mm256_fmadd_ps(a1, m, c); a2 = _mm256_fmadd_ps(a2, m, c);
        a3 = _mm256_fmadd_ps(a3, m, c); a4 = _mm256_fmadd_ps(a4, m, c); a5 = _mm256_fmadd_ps(a5, m, c);
        a6 = _mm256_fmadd_ps(a6, m, c); a7 = _mm256_fmadd_ps(a7, m, c); a8 = _mm256_fmadd_ps(a8, m, c);
        a9 = _mm256_fmadd_ps(a9, m, c);
    }
    __m256 s = _mm256_add_ps(_mm256_add_ps(_mm256_add_ps(a0, a1), _mm256_add_ps(a2, a3)),
                             _mm256_add_ps(_mm256_add_ps(a4, a5), _mm256_add_ps(_mm256_add_ps(a6, a7), _mm256_add_ps(a8, a9))));
    *sink += hsum(s);
    return 10.0 * 8 * 2 * (double)iters;
}

static const kernel_table avx2_table = {
    "avx2", avx2_dot_f32, avx2_dot_bf16, avx2_dot_f16, avx2_axpy, avx2_axpy_bf16, avx2_bf16_to_f32, avx2_f16_to_f32, avx2_gemm_f32,
    avx2_weighted_sum, avx2_sum_f32, avx2_fma_probe,
};

const kernel_table *kernels_avx2(void) {
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return &avx2_table;
    return 0;
}
