/* kernels_avx2.c — AVX2/FMA variants of the kernels in kernels.c. This file
 * alone is compiled with -mavx2 -mfma -mf16c; nothing here runs unless the
 * CPU reports those features. */
#include "kernels.h"

#include <immintrin.h>
#include <math.h>
#include <string.h>

#include "line_requests.h"
#include "tensor.h"

#define GEMM_KC 512   /* columns per block of the prefill product: 2 KB of each row */
#define GEMM_RB 16    /* weight rows per block of the prefill product */

static inline float hsum(__m256 v) {
    __m128 lo = _mm256_castps256_ps128(v), hi = _mm256_extractf128_ps(v, 1);
    lo = _mm_add_ps(lo, hi);
    lo = _mm_add_ps(lo, _mm_movehl_ps(lo, lo));
    lo = _mm_add_ss(lo, _mm_movehdup_ps(lo));
    return _mm_cvtss_f32(lo);
}

/* The lane sums of four vectors, [sum a, sum b, sum c, sum d], in one
 * transposing tree: pairs of adjacent lanes, then pairs of pairs, then the
 * two halves (a single vector summed as lane_sums4(a, a, a, a) gets the
 * same bits as one of four). */
static inline __m128 lane_sums4(__m256 a, __m256 b, __m256 c, __m256 d) {
    __m256 s = _mm256_hadd_ps(_mm256_hadd_ps(a, b), _mm256_hadd_ps(c, d));
    return _mm_add_ps(_mm256_castps256_ps128(s), _mm256_extractf128_ps(s, 1));
}

static inline __m256 load_bf16(const uint16_t *p) {
    __m128i h = _mm_loadu_si128((const __m128i *)p);
    return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
}

static inline __m256 load_f16(const uint16_t *p) { return _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)p)); }

/* Four independent accumulators hide FMA latency. Each step of 32
 * elements requests the lines of `ahead` at its byte offsets, as the
 * AVX-512 kernels and the quantized rows do (kernels.h, row_prefetch). */
#define DOT_BODY(LOAD)                                                                 \
    __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;                        \
    int64_t i = 0;                                                                     \
    for (; i + 32 <= n; i += 32) {                                                     \
        if (ahead)                                                                     \
            for (size_t b = 0; b < 32 * sizeof *w; b += 64)                            \
                row_prefetch_line((const char *)ahead + (size_t)i * sizeof *w + b);    \
        a0 = _mm256_fmadd_ps(LOAD(w + i), _mm256_loadu_ps(x + i), a0);                 \
        a1 = _mm256_fmadd_ps(LOAD(w + i + 8), _mm256_loadu_ps(x + i + 8), a1);         \
        a2 = _mm256_fmadd_ps(LOAD(w + i + 16), _mm256_loadu_ps(x + i + 16), a2);       \
        a3 = _mm256_fmadd_ps(LOAD(w + i + 24), _mm256_loadu_ps(x + i + 24), a3);       \
    }                                                                                  \
    for (; i + 8 <= n; i += 8) a0 = _mm256_fmadd_ps(LOAD(w + i), _mm256_loadu_ps(x + i), a0); \
    float s = hsum(_mm256_add_ps(_mm256_add_ps(a0, a1), _mm256_add_ps(a2, a3)));

static float avx2_dot_f32(const float *w, const float *x, int64_t n, const void *ahead) {
    DOT_BODY(_mm256_loadu_ps)
    for (; i < n; i++) s += w[i] * x[i];
    return s;
}

static float avx2_dot_bf16(const uint16_t *w, const float *x, int64_t n, const void *ahead) {
    DOT_BODY(load_bf16)
    for (; i < n; i++) s += bf16_to_f32(w[i]) * x[i];
    return s;
}

static float avx2_dot_f16(const uint16_t *w, const float *x, int64_t n, const void *ahead) {
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

/* Rows of f32 (BF = 0) or bf16 (BF = 1, widened exactly as read): row i's
 * element c, a pointer to it, 8 elements from it as f32. */
static inline __attribute__((always_inline)) const void *row_at(const void *w, size_t ws, size_t i, int64_t c, const int BF) {
    return BF ? (const void *)((const uint16_t *)w + i * ws + c) : (const void *)((const float *)w + i * ws + c);
}
static inline __attribute__((always_inline)) __m256 load_row8(const void *p, const int BF) {
    return BF ? load_bf16(p) : _mm256_loadu_ps(p);
}
static inline __attribute__((always_inline)) float row_value(const void *w, size_t ws, size_t i, int64_t c, const int BF) {
    return BF ? bf16_to_f32(*(const uint16_t *)row_at(w, ws, i, c, BF)) : *(const float *)row_at(w, ws, i, c, BF);
}

/* One NR x NT tile of the prefill product over columns [c0, c1) (NR <= 4
 * weight rows, NT <= 3 vectors; constants after inlining, so the accumulators
 * live in registers): each output gets one 8-lane FMA chain over the
 * columns, summed across lanes, stored (first column block) or added. On
 * the 8-column steps k = phase (mod period) it requests the lines of the
 * next row block at that step's columns, and every step takes its share of
 * the requests q. */
static inline __attribute__((always_inline)) void gemm_tile(const void *w, size_t ws, const float *x, size_t xs, int64_t c0,
                                                            int64_t c1, float *y, size_t ys, int first, const int NR,
                                                            const int NT, int phase, int period, line_requests *q,
                                                            const int BF) {
    __m256 acc[4][3];
    _Pragma("GCC unroll 4")
    for (int i = 0; i < NR; i++)
        _Pragma("GCC unroll 6")
        for (int j = 0; j < NT; j++) acc[i][j] = _mm256_setzero_ps();
    for (int64_t c = c0, k = 0; c < c1; c += 8, k = k + 1 == period ? 0 : k + 1) {
        __m256 u[3];
        _Pragma("GCC unroll 6")
        for (int j = 0; j < NT; j++) u[j] = _mm256_loadu_ps(x + (size_t)j * xs + c);
        int pf = k == phase;
        request_step(q);
        _Pragma("GCC unroll 4")
        for (int i = 0; i < NR; i++) {
            /* the next row block's rows: streamed rows (decode's cached keys)
               arrive while the vector tiles pass over this block */
            if (pf) _mm_prefetch((const char *)row_at(w, ws, (size_t)(GEMM_RB + i), c, BF), _MM_HINT_T0);
            __m256 v = load_row8(row_at(w, ws, (size_t)i, c, BF), BF);
            _Pragma("GCC unroll 6")
            for (int j = 0; j < NT; j++) acc[i][j] = _mm256_fmadd_ps(v, u[j], acc[i][j]);
        }
    }
    _Pragma("GCC unroll 6")
    for (int j = 0; j < NT; j++) {
        float *yj = y + (size_t)j * ys;
        if (NR == 4) {
            __m128 s = lane_sums4(acc[0][j], acc[1][j], acc[2][j], acc[3][j]);
            _mm_storeu_ps(yj, first ? s : _mm_add_ps(_mm_loadu_ps(yj), s));
        } else {
            _Pragma("GCC unroll 4")
            for (int i = 0; i < NR; i++) {
                float s = _mm_cvtss_f32(lane_sums4(acc[i][j], acc[i][j], acc[i][j], acc[i][j]));
                yj[i] = first ? s : yj[i] + s;
            }
        }
    }
}

/* One vector tile (NT vectors) against a block of rb weight rows: tiles of 4
 * rows, then single rows; the same arithmetic for every output. */
#define GEMM_ROWS(rb, NT)                                                                                      \
    do {                                                                                                       \
        int r = 0;                                                                                             \
        for (; r + 4 <= rb; r += 4) gemm_tile(row_at(wb, ws, r, 0, BF), ws, xt, xs, c0, c1, yt + r, ys, first, 4, NT, phase, period, q, BF); \
        for (; r < rb; r++) gemm_tile(row_at(wb, ws, r, 0, BF), ws, xt, xs, c0, c1, yt + r, ys, first, 1, NT, phase, period, q, BF);       \
    } while (0)

#define GEMM_TAIL(nt)                                                                                          \
    switch (nt) {                                                                                              \
    case 2: GEMM_ROWS(rb, 2); break;                                                                           \
    case 1: GEMM_ROWS(rb, 1); break;                                                                           \
    default: break;                                                                                            \
    }

/* Weight rows in blocks of GEMM_RB and columns in blocks of GEMM_KC: the
 * block of weights (16 x 2 KB) stays in L1 while every vector tile passes
 * over it, and a vector tile (NT x 2 KB) stays in L1 across the block's row
 * tiles. The vector tiles request the next row block's lines in turns
 * (streamed weights such as decode's cached keys arrive before they are
 * needed): decode's f32 scores at depth 8192 took 12-13% less time than with
 * the first tile requesting the next row tile (2 threads, rotating in one
 * process). The requests for `ahead` (decode's next block) are spread over
 * every tile's steps, as in the AVX-512 kernel. Every output
 * is the same arithmetic whatever the tile shape (the sum of its per-block
 * chains in block order, then the leftover columns in order), so a row's
 * result does not depend on where the row and vector splits fall (thread
 * count, batch size). */
static inline __attribute__((always_inline)) void gemm_rows(const void *w, size_t ws, int rows, const float *x, size_t xs, int n,
                                                            int64_t cols, float *y, size_t ys, const void *ahead,
                                                            size_t ahead_bytes, const int BF) {
    int64_t cw = cols & ~(int64_t)(7);
    int row_tiles = rows / GEMM_RB * (GEMM_RB / 4) + rows % GEMM_RB / 4 + rows % 4;
    line_requests requests = requests_over(ahead, ahead_bytes, (int64_t)row_tiles * ((n + 2) / 3) * (cw / 8)), *q = &requests;
    for (int r0 = 0; r0 < rows; r0 += GEMM_RB) {
        int rb = rows - r0 < GEMM_RB ? rows - r0 : GEMM_RB;
        const void *wb = row_at(w, ws, (size_t)r0, 0, BF);
        for (int64_t c0 = 0; c0 < cw; c0 += GEMM_KC) {
            int64_t c1 = cw - c0 < GEMM_KC ? cw : c0 + GEMM_KC;
            /* vector tile i requests every line of the next row block at the
               8-column steps 2i, 2i + period, ... (a 64-byte line is 2 steps) */
            int first = c0 == 0, t = 0, period = 2 * ((n + 2) / 3), phase = 0;
            for (; t + 3 <= n; t += 3, phase += 2) {
                const float *xt = x + (size_t)t * xs;
                float *yt = y + (size_t)t * ys + r0;
                GEMM_ROWS(rb, 3);
            }
            const float *xt = x + (size_t)t * xs;
            float *yt = y + (size_t)t * ys + r0;
            GEMM_TAIL(n - t)
        }
    }
    if (cw == cols) return;
    for (int t = 0; t < n; t++)
        for (int r = 0; r < rows; r++) {
            float s = cw ? y[(size_t)t * ys + r] : 0;
            for (int64_t c = cw; c < cols; c++) s += row_value(w, ws, (size_t)r, c, BF) * x[(size_t)t * xs + c];
            y[(size_t)t * ys + r] = s;
        }
}

static void avx2_gemm_f32(const float *w, size_t ws, int rows, const float *x, size_t xs, int n, int64_t cols, float *y,
                          size_t ys, const void *ahead, size_t ahead_bytes) {
    gemm_rows(w, ws, rows, x, xs, n, cols, y, ys, ahead, ahead_bytes, 0);
}

static void avx2_gemm_bf16(const uint16_t *w, size_t ws, int rows, const float *x, size_t xs, int n, int64_t cols, float *y,
                           size_t ys, const void *ahead, size_t ahead_bytes) {
    gemm_rows(w, ws, rows, x, xs, n, cols, y, ys, ahead, ahead_bytes, 1);
}

/* Column c of a tile: MR weights times NV vectors of tokens. */
static inline __attribute__((always_inline)) void xt_column(__m256 a[8][3], const float *w, size_t ws, const float *xt,
                                                            size_t np, int64_t c, const int MR, const int NV) {
    __m256 xv[3];
    _Pragma("GCC unroll 3")
    for (int j = 0; j < NV; j++) xv[j] = _mm256_loadu_ps(xt + (size_t)c * np + 8 * j);
    _Pragma("GCC unroll 8")
    for (int i = 0; i < MR; i++) {
        __m256 b = _mm256_set1_ps(w[(size_t)i * ws + c]);
        _Pragma("GCC unroll 3")
        for (int j = 0; j < NV; j++) a[i][j] = _mm256_fmadd_ps(b, xv[j], a[i][j]);
    }
}

/* gemm_f32_xt: tiles of MR weight rows x NV vectors of 8 tokens, each
 * continuing its chains from acc (or from 0) over the block's columns in
 * order and storing them back. */
static inline __attribute__((always_inline)) void xt_tile(const float *w, size_t ws, const float *xt, size_t np,
                                                          int64_t cols, float *acc, int first, const int MR,
                                                          const int NV) {
    __m256 a[8][3];
    _Pragma("GCC unroll 8")
    for (int i = 0; i < MR; i++)
        _Pragma("GCC unroll 3")
        for (int j = 0; j < NV; j++) a[i][j] = first ? _mm256_setzero_ps() : _mm256_loadu_ps(acc + i * np + 8 * j);
    for (int64_t c = 0; c < cols; c++) xt_column(a, w, ws, xt, np, c, MR, NV);
    _Pragma("GCC unroll 8")
    for (int i = 0; i < MR; i++)
        _Pragma("GCC unroll 3")
        for (int j = 0; j < NV; j++) _mm256_storeu_ps(acc + i * np + 8 * j, a[i][j]);
}

#define XT_TILES(MR, NV)                                                                                      \
    for (; r + (MR) <= rows; r += (MR))                                                                       \
    xt_tile(w + (size_t)r * ws, ws, xg, np, cols, ag + r * np, first, MR, NV)

/* Groups of up to 3 vectors of tokens (their slice of the vectors stays in
 * L1 while every row passes over it), then row tiles: 4 rows (up to
 * 3 * 4 independent chains), or 8 with a single vector, then
 * single rows. */
static void avx2_gemm_f32_xt(const float *w, size_t ws, int rows, const float *xt, int n, int64_t cols, float *acc, int first) {
    size_t np = (size_t)gemm_xt_lanes(n);
    for (size_t t0 = 0; t0 < np; t0 += 3 * 8) {
        int nv = np - t0 < 3 * 8 ? (int)(np - t0) / 8 : 3, r = 0;
        const float *xg = xt + t0;
        float *ag = acc + t0;
        switch (nv) {
        case 3: XT_TILES(4, 3); XT_TILES(1, 3); break;
        case 2: XT_TILES(4, 2); XT_TILES(1, 2); break;
        default: XT_TILES(8, 1); XT_TILES(1, 1); break;
        }
    }
}

/* NH heads (<= 6) x 16 columns of accumulators over n cached rows: per row,
 * 2 row loads and NH broadcasts feed 2 * NH FMAs, and a share of the
 * requests q. Each output is one chain over the rows in order, whatever NH. */
static inline __attribute__((always_inline)) void wsum_tile(const float *a, size_t as, const void *x, size_t xs, int n,
                                                            float *y, size_t ys, const int NH, line_requests *q,
                                                            const int BF) {
    __m256 c[6][2];
    _Pragma("GCC unroll 6")
    for (int h = 0; h < NH; h++) {
        c[h][0] = _mm256_loadu_ps(y + (size_t)h * ys);
        c[h][1] = _mm256_loadu_ps(y + (size_t)h * ys + 8);
    }
    for (int p = 0; p < n; p++) {
        request_step(q);
        __m256 x0 = load_row8(row_at(x, xs, (size_t)p, 0, BF), BF), x1 = load_row8(row_at(x, xs, (size_t)p, 8, BF), BF);
        _Pragma("GCC unroll 6")
        for (int h = 0; h < NH; h++) {
            __m256 b = _mm256_broadcast_ss(a + (size_t)h * as + p);
            c[h][0] = _mm256_fmadd_ps(b, x0, c[h][0]);
            c[h][1] = _mm256_fmadd_ps(b, x1, c[h][1]);
        }
    }
    _Pragma("GCC unroll 6")
    for (int h = 0; h < NH; h++) {
        _mm256_storeu_ps(y + (size_t)h * ys, c[h][0]);
        _mm256_storeu_ps(y + (size_t)h * ys + 8, c[h][1]);
    }
}

/* Strips of 16 columns outermost, so a strip of the cached rows stays in L1
 * while every head group passes over it; heads in groups of up to 6 (as
 * even as possible: 20 heads are 4 groups of 5, 10-12 independent chains).
 * The requests for `ahead` are spread over every tile's rows. */
static inline __attribute__((always_inline)) void wsum_rows(const float *a, size_t as, int nh, const void *x, size_t xs, int n,
                                                            int64_t cols, float *y, size_t ys, const void *ahead,
                                                            size_t ahead_bytes, const int BF) {
    int groups = (nh + 5) / 6;
    line_requests requests = requests_over(ahead, ahead_bytes, cols / 16 * groups * n), *q = &requests;
    int64_t j = 0;
    for (; j + 16 <= cols; j += 16)
        for (int g = 0, h = 0; g < groups; g++) {
            int gh = (nh - h) / (groups - g);
            const float *ag = a + (size_t)h * as;
            const void *xj = row_at(x, xs, 0, j, BF);
            float *yg = y + (size_t)h * ys + j;
            switch (gh) {
            case 6: wsum_tile(ag, as, xj, xs, n, yg, ys, 6, q, BF); break;
            case 5: wsum_tile(ag, as, xj, xs, n, yg, ys, 5, q, BF); break;
            case 4: wsum_tile(ag, as, xj, xs, n, yg, ys, 4, q, BF); break;
            case 3: wsum_tile(ag, as, xj, xs, n, yg, ys, 3, q, BF); break;
            case 2: wsum_tile(ag, as, xj, xs, n, yg, ys, 2, q, BF); break;
            default: wsum_tile(ag, as, xj, xs, n, yg, ys, 1, q, BF); break;
            }
            h += gh;
        }
    for (; j < cols; j++)
        for (int h = 0; h < nh; h++) {
            float acc = y[(size_t)h * ys + j];
            for (int p = 0; p < n; p++) acc += a[(size_t)h * as + p] * row_value(x, xs, (size_t)p, j, BF);
            y[(size_t)h * ys + j] = acc;
        }
}

static void avx2_weighted_sum(const float *a, size_t as, int nh, const float *x, size_t xs, int n, int64_t cols, float *y,
                              size_t ys, const void *ahead, size_t ahead_bytes) {
    wsum_rows(a, as, nh, x, xs, n, cols, y, ys, ahead, ahead_bytes, 0);
}

static void avx2_weighted_sum_bf16(const float *a, size_t as, int nh, const uint16_t *x, size_t xs, int n, int64_t cols,
                                   float *y, size_t ys, const void *ahead, size_t ahead_bytes) {
    wsum_rows(a, as, nh, x, xs, n, cols, y, ys, ahead, ahead_bytes, 1);
}

/* exp for arguments <= 0 (softmax): 2^k * p(r) with r = x - k ln 2 in
 * [-ln2/2, ln2/2] and Cephes' degree-6 polynomial (about 1 ulp from expf);
 * below -87 the result is 0, as expf's would be denormal or 0. */
static inline __m256 exp_nonpos(__m256 x) {
    __m256 k = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(1.44269504088896341f)), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m256 r = _mm256_fnmadd_ps(k, _mm256_set1_ps(0.693359375f), x);
    r = _mm256_fnmadd_ps(k, _mm256_set1_ps(-2.12194440e-4f), r);
    __m256 p = _mm256_set1_ps(1.9875691500e-4f);
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.3981999507e-3f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(8.3334519073e-3f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(4.1665795894e-2f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.6666665459e-1f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(5.0000001201e-1f));
    p = _mm256_fmadd_ps(_mm256_mul_ps(p, r), r, _mm256_add_ps(r, _mm256_set1_ps(1.0f)));
    __m256i e = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(k), _mm256_set1_epi32(127)), 23);
    __m256 y = _mm256_mul_ps(p, _mm256_castsi256_ps(e));
    return _mm256_and_ps(y, _mm256_cmp_ps(x, _mm256_set1_ps(-87.0f), _CMP_GE_OQ));
}

static float avx2_exp_sum(float *x, int64_t n, float scale, float m) {
    __m256 vs = _mm256_set1_ps(scale), vm = _mm256_set1_ps(m), acc = _mm256_setzero_ps();
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        __m256 e = exp_nonpos(_mm256_sub_ps(_mm256_mul_ps(_mm256_loadu_ps(x + i), vs), vm));
        _mm256_storeu_ps(x + i, e);
        acc = _mm256_add_ps(acc, e);
    }
    float s = hsum(acc);
    if (i < n) {   /* the tail through the same exp, padded with -inf (exp 0) */
        float t[8];
        for (int k = 0; k < 8; k++) t[k] = i + k < n ? x[i + k] * scale - m : -INFINITY;
        _mm256_storeu_ps(t, exp_nonpos(_mm256_loadu_ps(t)));
        for (int k = 0; i + k < n; k++) {
            x[i + k] = t[k];
            s += t[k];
        }
    }
    return s;
}

static float avx2_max_f32(const float *x, int64_t n) {
    int64_t i = 0;
    float m = x[0];
    if (n >= 8) {
        __m256 a = _mm256_loadu_ps(x);
        for (i = 8; i + 8 <= n; i += 8) a = _mm256_max_ps(a, _mm256_loadu_ps(x + i));
        __m128 h = _mm_max_ps(_mm256_castps256_ps128(a), _mm256_extractf128_ps(a, 1));
        h = _mm_max_ps(h, _mm_movehl_ps(h, h));
        m = _mm_cvtss_f32(_mm_max_ss(h, _mm_movehdup_ps(h)));
    }
    for (; i < n; i++) m = x[i] > m ? x[i] : m;
    return m;
}

/* silu(x) = x / (1 + exp(-x)), with the exponential's argument kept <= 0:
 * e = exp(-|x|), silu = x / (1 + e) for x >= 0 and x e / (1 + e) below. */
static inline __m256 silu_ps(__m256 x) {
    __m256 e = exp_nonpos(_mm256_or_ps(x, _mm256_set1_ps(-0.0f)));   /* -|x| */
    __m256 num = _mm256_blendv_ps(_mm256_mul_ps(x, e), x, _mm256_cmp_ps(x, _mm256_setzero_ps(), _CMP_GE_OQ));
    return _mm256_div_ps(num, _mm256_add_ps(_mm256_set1_ps(1.0f), e));
}

static void avx2_swiglu(float *g, const float *u, int64_t n) {
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) _mm256_storeu_ps(g + i, _mm256_mul_ps(silu_ps(_mm256_loadu_ps(g + i)), _mm256_loadu_ps(u + i)));
    if (i < n) {   /* the tail through the same arithmetic */
        float t[8] = {0};
        for (int k = 0; i + k < n; k++) t[k] = g[i + k];
        _mm256_storeu_ps(t, silu_ps(_mm256_loadu_ps(t)));
        for (int k = 0; i + k < n; k++) g[i + k] = t[k] * u[i + k];
    }
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
    /* ten chains with different values: equal ones were merged into one by
       GCC, which timed one chain's latency and credited ten */
    __m256 a0 = _mm256_set1_ps(1.0f), a1 = _mm256_set1_ps(1.1f), a2 = _mm256_set1_ps(1.2f), a3 = _mm256_set1_ps(1.3f),
           a4 = _mm256_set1_ps(1.4f), a5 = _mm256_set1_ps(1.5f), a6 = _mm256_set1_ps(1.6f), a7 = _mm256_set1_ps(1.7f),
           a8 = _mm256_set1_ps(1.8f), a9 = _mm256_set1_ps(1.9f);
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
    "avx2", avx2_dot_f32, avx2_dot_bf16, avx2_dot_f16, avx2_axpy, avx2_bf16_to_f32, avx2_f16_to_f32, avx2_gemm_f32,
    avx2_gemm_bf16, avx2_gemm_f32_xt, avx2_weighted_sum, avx2_weighted_sum_bf16, avx2_exp_sum,
    avx2_max_f32, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, avx2_swiglu, avx2_sum_f32, avx2_fma_probe,
};

const kernel_table *kernels_avx2(void) {
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return &avx2_table;
    return 0;
}
