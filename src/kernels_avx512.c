/* kernels_avx512.c — AVX-512F variants of the compute-bound kernels (the
 * prefill products and their widening, decode's row dots, attention's
 * products, maximum and exponentials, the FMA peak probe), and on CPUs with
 * AVX512-BF16 attention over a bf16 cache in bf16 arithmetic; every other
 * entry is the AVX2 one. The functions here are compiled for their ISA by
 * target attributes (so no build needs special flags for this file) and none
 * runs unless the CPU reports it (and AVX2/FMA). On cores with full-width
 * 512-bit FMA units this doubles the multiply-add rate. */
#include "kernels.h"

#include <immintrin.h>
#include <math.h>
#include <pthread.h>
#include <string.h>

#include "line_requests.h"
#include "tensor.h"

#define AVX512 __attribute__((target("avx512f,avx2,fma")))
#define GEMM_KC 576   /* columns per block of the product: a cached latent row (512 + 64) whole, 2.25 KB */
#define GEMM_RB 8     /* weight rows per block of gemm_f32 */

/* The lane sums of four vectors, [sum a, sum b, sum c, sum d], in one
 * transposing tree: lanes l and l + 8, then l + 4, then l + 2, then l + 1
 * (the order of _mm512_reduce_add_ps, so a single vector summed as
 * lane_sums4(a, a, a, a) gets the same bits as one of four). */
static inline __attribute__((always_inline)) AVX512 __m128 lane_sums4(__m512 a, __m512 b, __m512 c, __m512 d) {
    /* 128-bit chunks [a0+a2, a1+a3, b0+b2, b1+b3] and the same for c, d */
    __m512 ab = _mm512_add_ps(_mm512_shuffle_f32x4(a, b, 0x44), _mm512_shuffle_f32x4(a, b, 0xee));
    __m512 cd = _mm512_add_ps(_mm512_shuffle_f32x4(c, d, 0x44), _mm512_shuffle_f32x4(c, d, 0xee));
    /* chunk k: vector k's four partial sums */
    __m512 s = _mm512_add_ps(_mm512_shuffle_f32x4(ab, cd, 0x88), _mm512_shuffle_f32x4(ab, cd, 0xdd));
    s = _mm512_add_ps(s, _mm512_shuffle_ps(s, s, 0x4e));   /* lanes l and l ^ 2 */
    s = _mm512_add_ps(s, _mm512_shuffle_ps(s, s, 0xb1));   /* and l ^ 1 */
    return _mm512_castps512_ps128(_mm512_permutexvar_ps(_mm512_setr_epi32(0, 4, 8, 12, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0), s));
}

static inline AVX512 __m512 load16_bf16(const uint16_t *p) {
    return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(_mm256_loadu_si256((const __m256i *)p)), 16));
}

/* Rows of f32 (BF = 0) or bf16 (BF = 1, widened exactly as read): row i's
 * element c, a pointer to it, 16 elements from it as f32. */
static inline __attribute__((always_inline)) const void *row_at(const void *w, size_t ws, size_t i, int64_t c, const int BF) {
    return BF ? (const void *)((const uint16_t *)w + i * ws + c) : (const void *)((const float *)w + i * ws + c);
}
static inline __attribute__((always_inline)) AVX512 __m512 load_row16(const void *p, const int BF) {
    return BF ? load16_bf16(p) : _mm512_loadu_ps(p);
}
static inline __attribute__((always_inline)) float row_value(const void *w, size_t ws, size_t i, int64_t c, const int BF) {
    return BF ? bf16_to_f32(*(const uint16_t *)row_at(w, ws, i, c, BF)) : *(const float *)row_at(w, ws, i, c, BF);
}

/* One NR x NT tile of the prefill product over columns [c0, c1) (NR <= 4
 * weight rows, NT <= 6 vectors; constants after inlining, so the accumulators
 * live in registers): each output gets one 16-lane FMA chain over the
 * columns, summed across lanes, stored (first column block) or added. On
 * the 16-column steps k = phase (mod period) it requests the lines of the
 * next row block at that step's columns. */
static inline __attribute__((always_inline)) AVX512 void gemm_tile(const void *w, size_t ws, const float *x, size_t xs, int64_t c0,
                                                            int64_t c1, float *y, size_t ys, int first, const int NR,
                                                            const int NT, int phase, int period, line_requests *q,
                                                            const int BF) {
    __m512 acc[4][6];
    _Pragma("GCC unroll 4")
    for (int i = 0; i < NR; i++)
        _Pragma("GCC unroll 6")
        for (int j = 0; j < NT; j++) acc[i][j] = _mm512_setzero_ps();
    for (int64_t c = c0, k = 0; c < c1; c += 16, k = k + 1 == period ? 0 : k + 1) {
        __m512 u[6];
        _Pragma("GCC unroll 6")
        for (int j = 0; j < NT; j++) u[j] = _mm512_loadu_ps(x + (size_t)j * xs + c);
        int pf = k == phase;
        request_step(q);
        _Pragma("GCC unroll 4")
        for (int i = 0; i < NR; i++) {
            /* the next row block's rows: streamed rows (decode's cached keys)
               arrive while the vector tiles pass over this block */
            if (pf) _mm_prefetch((const char *)row_at(w, ws, (size_t)(GEMM_RB + i), c, BF), _MM_HINT_T0);
            __m512 v = load_row16(row_at(w, ws, (size_t)i, c, BF), BF);
            _Pragma("GCC unroll 6")
            for (int j = 0; j < NT; j++) acc[i][j] = _mm512_fmadd_ps(v, u[j], acc[i][j]);
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
        for (; r + 4 <= rb; r += 4) gemm_tile(row_at(wb, ws, r, 0, BF), ws, xt, xs, c0, c1, yt + r, ys, first, 4, NT, i, tiles, q, BF); \
        for (; r < rb; r++) gemm_tile(row_at(wb, ws, r, 0, BF), ws, xt, xs, c0, c1, yt + r, ys, first, 1, NT, i, tiles, q, BF);       \
    } while (0)

#define GEMM_TILE(nt)                                                                                          \
    switch (nt) {                                                                                              \
    case 6: GEMM_ROWS(rb, 6); break;                                                                           \
    case 5: GEMM_ROWS(rb, 5); break;                                                                           \
    case 4: GEMM_ROWS(rb, 4); break;                                                                           \
    case 3: GEMM_ROWS(rb, 3); break;                                                                           \
    case 2: GEMM_ROWS(rb, 2); break;                                                                           \
    default: GEMM_ROWS(rb, 1); break;                                                                          \
    }

/* Weight rows in blocks of GEMM_RB and columns in blocks of GEMM_KC: the
 * block of weights (8 x 2.25 KB) stays in L1 while every vector tile passes
 * over it, and a vector tile (NT x 2.25 KB) stays in L1 across the block's row
 * tiles (with 16 rows the two no longer fit in a 48 KB L1 together: decode's
 * score product ran 5% slower). The first vector tile prefetches the next
 * row block, so streamed rows such as decode's cached keys arrive while the
 * tiles work on this one (prefetching one row tile ahead left half the row
 * tiles waiting: the score product ran 4-10% slower). Vector tile i of
 * `tiles` requests every tiles-th line from the i-th, so the requests are
 * spread over the block's whole time: decode's f32 scores at depth 8192 took
 * 12-14% less time than with the first tile requesting them all (2 threads,
 * rotating in one process). Every output
 * is the same arithmetic whatever the tile shape (the sum of its per-block
 * chains in block order, then the leftover columns in order), so a row's
 * result does not depend on where the row and vector splits fall (thread
 * count, batch size). */
static inline __attribute__((always_inline)) AVX512 void gemm_rows(const void *w, size_t ws, int rows, const float *x, size_t xs,
                                                                     int n, int64_t cols, float *y, size_t ys,
                                                                     const void *ahead, size_t ahead_bytes, const int BF) {
    int64_t cw = cols & ~(int64_t)(15);
    int row_tiles = rows / GEMM_RB * (GEMM_RB / 4) + rows % GEMM_RB / 4 + rows % 4;
    line_requests requests = requests_over(ahead, ahead_bytes, (int64_t)row_tiles * ((n + 5) / 6) * (cw / 16)), *q = &requests;
    for (int r0 = 0; r0 < rows; r0 += GEMM_RB) {
        int rb = rows - r0 < GEMM_RB ? rows - r0 : GEMM_RB;
        const void *wb = row_at(w, ws, (size_t)r0, 0, BF);
        for (int64_t c0 = 0; c0 < cw; c0 += GEMM_KC) {
            int64_t c1 = cw - c0 < GEMM_KC ? cw : c0 + GEMM_KC;
            int first = c0 == 0, tiles = (n + 5) / 6;
            /* vector tiles as even as possible (20 heads: 5, 5, 5, 5, not 6, 6, 6, 2) */
            for (int i = 0, t = 0; i < tiles; i++) {
                int nt = (n - t) / (tiles - i);
                const float *xt = x + (size_t)t * xs;
                float *yt = y + (size_t)t * ys + r0;
                GEMM_TILE(nt)
                t += nt;
            }
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

static AVX512 void avx512_gemm_f32(const float *w, size_t ws, int rows, const float *x, size_t xs, int n, int64_t cols,
                                   float *y, size_t ys, const void *ahead, size_t ahead_bytes) {
    gemm_rows(w, ws, rows, x, xs, n, cols, y, ys, ahead, ahead_bytes, 0);
}

static AVX512 void avx512_gemm_bf16(const uint16_t *w, size_t ws, int rows, const float *x, size_t xs, int n, int64_t cols,
                                    float *y, size_t ys, const void *ahead, size_t ahead_bytes) {
    gemm_rows(w, ws, rows, x, xs, n, cols, y, ys, ahead, ahead_bytes, 1);
}

/* Decode's row dot products (plain weights): 16 lanes a step instead of 8,
 * so a core keeps up with its share of the memory bandwidth (bf16 rows are
 * widened as they are read). Four accumulators hide the FMA latency. Each
 * step of 64 elements requests the lines of `ahead` at its byte offsets, as
 * the quantized rows do (the kind per CPU: kernels.h): bf16 decode on a
 * quiet Zen 5 host (probe 76-80 GB/s) read 88-92% of the probe instead of
 * 80-83% without, 5 alternating pairs. */
static inline AVX512 __m512 load16_f16(const uint16_t *p) { return _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)p)); }

#define DOT512_BODY(LOAD)                                                                  \
    __m512 a0 = _mm512_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;                            \
    int64_t i = 0;                                                                         \
    for (; i + 64 <= n; i += 64) {                                                         \
        if (ahead)                                                                         \
            for (size_t b = 0; b < 64 * sizeof *w; b += 64)                                \
                row_prefetch_line((const char *)ahead + (size_t)i * sizeof *w + b); \
        a0 = _mm512_fmadd_ps(LOAD(w + i), _mm512_loadu_ps(x + i), a0);                     \
        a1 = _mm512_fmadd_ps(LOAD(w + i + 16), _mm512_loadu_ps(x + i + 16), a1);           \
        a2 = _mm512_fmadd_ps(LOAD(w + i + 32), _mm512_loadu_ps(x + i + 32), a2);           \
        a3 = _mm512_fmadd_ps(LOAD(w + i + 48), _mm512_loadu_ps(x + i + 48), a3);           \
    }                                                                                      \
    for (; i + 16 <= n; i += 16) a0 = _mm512_fmadd_ps(LOAD(w + i), _mm512_loadu_ps(x + i), a0); \
    float s = _mm512_reduce_add_ps(_mm512_add_ps(_mm512_add_ps(a0, a1), _mm512_add_ps(a2, a3)));

static AVX512 float avx512_dot_f32(const float *w, const float *x, int64_t n, const void *ahead) {
    DOT512_BODY(_mm512_loadu_ps)
    for (; i < n; i++) s += w[i] * x[i];
    return s;
}

static AVX512 float avx512_dot_bf16(const uint16_t *w, const float *x, int64_t n, const void *ahead) {
    DOT512_BODY(load16_bf16)
    for (; i < n; i++) s += bf16_to_f32(w[i]) * x[i];
    return s;
}

static AVX512 float avx512_dot_f16(const uint16_t *w, const float *x, int64_t n, const void *ahead) {
    DOT512_BODY(load16_f16)
    for (; i < n; i++) s += f16_to_f32(w[i]) * x[i];
    return s;
}

/* Widening for the prefill product's column blocks: 16 values per step. */
static AVX512 void avx512_bf16_to_f32(const uint16_t *src, float *dst, int64_t n) {
    int64_t i = 0;
    for (; i + 16 <= n; i += 16) _mm512_storeu_ps(dst + i, load16_bf16(src + i));
    for (; i < n; i++) dst[i] = bf16_to_f32(src[i]);
}

static AVX512 void avx512_f16_to_f32(const uint16_t *src, float *dst, int64_t n) {
    int64_t i = 0;
    for (; i + 16 <= n; i += 16) _mm512_storeu_ps(dst + i, load16_f16(src + i));
    for (; i < n; i++) dst[i] = f16_to_f32(src[i]);
}

/* Column c of a tile: MR weights times NV vectors of tokens. */
static inline __attribute__((always_inline)) AVX512 void xt_column(__m512 a[12][3], const float *w, size_t ws,
                                                                   const float *xt, size_t np, int64_t c, const int MR,
                                                                   const int NV) {
    __m512 xv[3];
    _Pragma("GCC unroll 3")
    for (int j = 0; j < NV; j++) xv[j] = _mm512_loadu_ps(xt + (size_t)c * np + 16 * j);
    _Pragma("GCC unroll 12")
    for (int i = 0; i < MR; i++) {
        __m512 b = _mm512_set1_ps(w[(size_t)i * ws + c]);
        _Pragma("GCC unroll 3")
        for (int j = 0; j < NV; j++) a[i][j] = _mm512_fmadd_ps(b, xv[j], a[i][j]);
    }
}

/* gemm_f32_xt: tiles of MR weight rows x NV vectors of 16 tokens, each
 * continuing its chains from acc (or from 0) over the block's columns in
 * order and storing them back. */
static inline __attribute__((always_inline)) AVX512 void xt_tile(const float *w, size_t ws, const float *xt, size_t np,
                                                                 int64_t cols, float *acc, int first, const int MR,
                                                                 const int NV) {
    __m512 a[12][3];
    _Pragma("GCC unroll 12")
    for (int i = 0; i < MR; i++)
        _Pragma("GCC unroll 3")
        for (int j = 0; j < NV; j++) a[i][j] = first ? _mm512_setzero_ps() : _mm512_loadu_ps(acc + i * np + 16 * j);
    for (int64_t c = 0; c < cols; c++) xt_column(a, w, ws, xt, np, c, MR, NV);
    _Pragma("GCC unroll 12")
    for (int i = 0; i < MR; i++)
        _Pragma("GCC unroll 3")
        for (int j = 0; j < NV; j++) _mm512_storeu_ps(acc + i * np + 16 * j, a[i][j]);
}

#define XT_TILES(MR, NV)                                                                                      \
    for (; r + (MR) <= rows; r += (MR))                                                                       \
    xt_tile(w + (size_t)r * ws, ws, xg, np, cols, ag + r * np, first, MR, NV)

/* Groups of up to 3 vectors of tokens (their slice of the vectors stays in
 * L1 while every row passes over it), then row tiles of up to 24 chains:
 * 8 rows x 3 vectors, 12 x 2 (MoE experts' ~32 tokens), 8 x 1, then single
 * rows. */
static AVX512 void avx512_gemm_f32_xt(const float *w, size_t ws, int rows, const float *xt, int n, int64_t cols, float *acc,
                                      int first) {
    size_t np = (size_t)gemm_xt_lanes(n);
    for (size_t t0 = 0; t0 < np; t0 += 3 * 16) {
        int nv = np - t0 < 3 * 16 ? (int)(np - t0) / 16 : 3, r = 0;
        const float *xg = xt + t0;
        float *ag = acc + t0;
        switch (nv) {
        case 3: XT_TILES(8, 3); XT_TILES(1, 3); break;
        case 2: XT_TILES(12, 2); XT_TILES(8, 2); XT_TILES(1, 2); break;
        default: XT_TILES(8, 1); XT_TILES(1, 1); break;
        }
    }
}

/* NH heads (<= 8) x 32 columns of accumulators over n cached rows (f32 or
 * bf16, as row_at): per row, 2 row loads and NH broadcasts feed 2 * NH FMAs.
 * Each output is one chain over the rows in order, whatever NH. */
static inline __attribute__((always_inline)) AVX512 void wsum_tile(const float *a, size_t as, const void *x, size_t xs, int n,
                                                                   float *y, size_t ys, const int NH, line_requests *q,
                                                                   const int BF) {
    __m512 c[8][2];
    _Pragma("GCC unroll 8")
    for (int h = 0; h < NH; h++) {
        c[h][0] = _mm512_loadu_ps(y + (size_t)h * ys);
        c[h][1] = _mm512_loadu_ps(y + (size_t)h * ys + 16);
    }
    for (int p = 0; p < n; p++) {
        __m512 x0 = load_row16(row_at(x, xs, (size_t)p, 0, BF), BF), x1 = load_row16(row_at(x, xs, (size_t)p, 16, BF), BF);
        request_step(q);
        _Pragma("GCC unroll 8")
        for (int h = 0; h < NH; h++) {
            __m512 b = _mm512_set1_ps(a[(size_t)h * as + p]);
            c[h][0] = _mm512_fmadd_ps(b, x0, c[h][0]);
            c[h][1] = _mm512_fmadd_ps(b, x1, c[h][1]);
        }
    }
    _Pragma("GCC unroll 8")
    for (int h = 0; h < NH; h++) {
        _mm512_storeu_ps(y + (size_t)h * ys, c[h][0]);
        _mm512_storeu_ps(y + (size_t)h * ys + 16, c[h][1]);
    }
}

/* Rows in chunks of WSUM_RC, and in a chunk strips of 32 columns, so a
 * chunk's strip (8 KB) stays in L1 beside the weights a while every head
 * group passes over it (whole 256-row strips, 32 KB, did not: the value sums
 * took 31 us a block instead of 35 in L2); heads in groups of up to 8, as
 * even as possible (20 heads: 7, 7, 6). An output's chain continues from
 * chunk to chunk through y, so it is the same arithmetic whatever the
 * chunks. Leftover columns: one chain per output in row order, as the
 * reference. */
#define WSUM_RC 64
static inline __attribute__((always_inline)) AVX512 void wsum_rows(const float *a, size_t as, int nh, const void *x, size_t xs,
                                                                   int n, int64_t cols, float *y, size_t ys,
                                                                   const void *ahead, size_t ahead_bytes, const int BF) {
    int groups = (nh + 7) / 8;
    int64_t cw = cols & ~(int64_t)31;
    line_requests requests = requests_over(ahead, ahead_bytes, cw / 32 * groups * n), *q = &requests;
    for (int p0 = 0; p0 < n; p0 += WSUM_RC) {
        int np = n - p0 < WSUM_RC ? n - p0 : WSUM_RC;
        for (int64_t j = 0; j < cw; j += 32)
            for (int g = 0, h = 0; g < groups; g++) {
                int gh = (nh - h) / (groups - g);
                const float *ag = a + (size_t)h * as + p0;
                const void *xj = row_at(x, xs, (size_t)p0, j, BF);
                float *yg = y + (size_t)h * ys + j;
                switch (gh) {
                case 8: wsum_tile(ag, as, xj, xs, np, yg, ys, 8, q, BF); break;
                case 7: wsum_tile(ag, as, xj, xs, np, yg, ys, 7, q, BF); break;
                case 6: wsum_tile(ag, as, xj, xs, np, yg, ys, 6, q, BF); break;
                case 5: wsum_tile(ag, as, xj, xs, np, yg, ys, 5, q, BF); break;
                case 4: wsum_tile(ag, as, xj, xs, np, yg, ys, 4, q, BF); break;
                case 3: wsum_tile(ag, as, xj, xs, np, yg, ys, 3, q, BF); break;
                case 2: wsum_tile(ag, as, xj, xs, np, yg, ys, 2, q, BF); break;
                default: wsum_tile(ag, as, xj, xs, np, yg, ys, 1, q, BF); break;
                }
                h += gh;
            }
    }
    for (int64_t j = cw; j < cols; j++)
        for (int h = 0; h < nh; h++) {
            float acc = y[(size_t)h * ys + j];
            for (int p = 0; p < n; p++) acc += a[(size_t)h * as + p] * row_value(x, xs, (size_t)p, j, BF);
            y[(size_t)h * ys + j] = acc;
        }
}

static AVX512 void avx512_weighted_sum(const float *a, size_t as, int nh, const float *x, size_t xs, int n, int64_t cols,
                                       float *y, size_t ys, const void *ahead, size_t ahead_bytes) {
    wsum_rows(a, as, nh, x, xs, n, cols, y, ys, ahead, ahead_bytes, 0);
}

static AVX512 void avx512_weighted_sum_bf16(const float *a, size_t as, int nh, const uint16_t *x, size_t xs, int n,
                                            int64_t cols, float *y, size_t ys, const void *ahead, size_t ahead_bytes) {
    wsum_rows(a, as, nh, x, xs, n, cols, y, ys, ahead, ahead_bytes, 1);
}

/* exp for arguments <= 0: the AVX2 kernel's steps 16 lanes at a time (the
 * same operations, so the same value in every lane). */
static inline AVX512 __m512 exp_nonpos16(__m512 x) {
    __m512 k = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(1.44269504088896341f)), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m512 r = _mm512_fnmadd_ps(k, _mm512_set1_ps(0.693359375f), x);
    r = _mm512_fnmadd_ps(k, _mm512_set1_ps(-2.12194440e-4f), r);
    __m512 p = _mm512_set1_ps(1.9875691500e-4f);
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.3981999507e-3f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(8.3334519073e-3f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(4.1665795894e-2f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.6666665459e-1f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(5.0000001201e-1f));
    p = _mm512_fmadd_ps(_mm512_mul_ps(p, r), r, _mm512_add_ps(r, _mm512_set1_ps(1.0f)));
    __m512i e = _mm512_slli_epi32(_mm512_add_epi32(_mm512_cvtps_epi32(k), _mm512_set1_epi32(127)), 23);
    __m512 y = _mm512_mul_ps(p, _mm512_castsi512_ps(e));
    return _mm512_maskz_mov_ps(_mm512_cmp_ps_mask(x, _mm512_set1_ps(-87.0f), _CMP_GE_OQ), y);
}

/* The tail is a masked step whose missing lanes read -inf (exp 0). */
static AVX512 float avx512_exp_sum(float *x, int64_t n, float scale, float m) {
    __m512 vs = _mm512_set1_ps(scale), vm = _mm512_set1_ps(m), acc = _mm512_setzero_ps();
    for (int64_t i = 0; i < n; i += 16) {
        __mmask16 live = first_lanes16(n - i);
        __m512 v = _mm512_mask_loadu_ps(_mm512_set1_ps(-INFINITY), live, x + i);
        __m512 e = exp_nonpos16(_mm512_sub_ps(_mm512_mul_ps(v, vs), vm));
        _mm512_mask_storeu_ps(x + i, live, e);
        acc = _mm512_add_ps(acc, e);
    }
    return _mm512_reduce_add_ps(acc);
}

static AVX512 float avx512_max_f32(const float *x, int64_t n) {
    __m512 a = _mm512_set1_ps(-INFINITY);
    for (int64_t i = 0; i < n; i += 16) {
        __mmask16 live = first_lanes16(n - i);
        a = _mm512_max_ps(a, _mm512_mask_loadu_ps(_mm512_set1_ps(-INFINITY), live, x + i));
    }
    return _mm512_reduce_max_ps(a);
}

/* Ten independent 16-wide FMA chains: enough to cover the FMA latency on two ports. */
static AVX512 double avx512_fma_probe(long iters, float *sink) {
    __m512 m = _mm512_set1_ps(0.999999f), c = _mm512_set1_ps(1e-7f);
    /* ten chains with different values: equal ones were merged into one by
       GCC, which timed one chain's latency and credited ten */
    __m512 a0 = _mm512_set1_ps(1.0f), a1 = _mm512_set1_ps(1.1f), a2 = _mm512_set1_ps(1.2f), a3 = _mm512_set1_ps(1.3f),
           a4 = _mm512_set1_ps(1.4f), a5 = _mm512_set1_ps(1.5f), a6 = _mm512_set1_ps(1.6f), a7 = _mm512_set1_ps(1.7f),
           a8 = _mm512_set1_ps(1.8f), a9 = _mm512_set1_ps(1.9f);
    for (long i = 0; i < iters; i++) {
        a0 = _mm512_fmadd_ps(a0, m, c); a1 = _mm512_fmadd_ps(a1, m, c); a2 = _mm512_fmadd_ps(a2, m, c);
        a3 = _mm512_fmadd_ps(a3, m, c); a4 = _mm512_fmadd_ps(a4, m, c); a5 = _mm512_fmadd_ps(a5, m, c);
        a6 = _mm512_fmadd_ps(a6, m, c); a7 = _mm512_fmadd_ps(a7, m, c); a8 = _mm512_fmadd_ps(a8, m, c);
        a9 = _mm512_fmadd_ps(a9, m, c);
    }
    __m512 s = _mm512_add_ps(_mm512_add_ps(_mm512_add_ps(a0, a1), _mm512_add_ps(a2, a3)),
                             _mm512_add_ps(_mm512_add_ps(a4, a5), _mm512_add_ps(_mm512_add_ps(a6, a7), _mm512_add_ps(a8, a9))));
    *sink += _mm512_reduce_add_ps(s);
    return 10.0 * 16 * 2 * (double)iters;
}

/* ---- bf16 arithmetic for a bf16 latent cache (AVX512-BF16: vdpbf16ps
 * multiplies 32 bf16 pairs and adds each pair's two products into 16 f32
 * lanes, twice the multiply-adds of an FMA per instruction, from half the
 * bytes). The queries and the probabilities are rounded to bf16, as GPU
 * attention kernels and llama.cpp's f16 cache round them. */
#define BF16DOT __attribute__((target("avx512f,avx512bw,avx512bf16,avx2,fma")))

/* 32 bf16 values from p, the ones past `live` read as 0. */
static inline BF16DOT __m512bh load32_bf16(const uint16_t *p, int64_t live) {
    __mmask32 m = live >= 32 ? (__mmask32)0xffffffffu : (__mmask32)((1u << live) - 1);
    return (__m512bh)_mm512_maskz_loadu_epi16(m, p);
}

/* One NR x NT tile of scores: each output one chain of pair products over
 * the columns, its lanes summed at the end; prefetching as gemm_tile. */
static inline __attribute__((always_inline)) BF16DOT void dpbf16_tile(const uint16_t *w, size_t ws, const uint16_t *x, size_t xs,
                                                                      int64_t cols, float *y, size_t ys, const int NR,
                                                                      const int NT, int phase, int period) {
    __m512 acc[4][6];
    _Pragma("GCC unroll 4")
    for (int i = 0; i < NR; i++)
        _Pragma("GCC unroll 6")
        for (int j = 0; j < NT; j++) acc[i][j] = _mm512_setzero_ps();
    for (int64_t c = 0, k = 0; c < cols; c += 32, k = k + 1 == period ? 0 : k + 1) {
        __m512bh u[6];
        _Pragma("GCC unroll 6")
        for (int j = 0; j < NT; j++) u[j] = load32_bf16(x + (size_t)j * xs + c, cols - c);
        int pf = k == phase;
        _Pragma("GCC unroll 4")
        for (int i = 0; i < NR; i++) {
            if (pf) _mm_prefetch((const char *)(w + (size_t)(GEMM_RB + i) * ws + c), _MM_HINT_T0);
            __m512bh v = load32_bf16(w + (size_t)i * ws + c, cols - c);
            _Pragma("GCC unroll 6")
            for (int j = 0; j < NT; j++) acc[i][j] = _mm512_dpbf16_ps(acc[i][j], v, u[j]);
        }
    }
    _Pragma("GCC unroll 6")
    for (int j = 0; j < NT; j++) {
        float *yj = y + (size_t)j * ys;
        if (NR == 4) _mm_storeu_ps(yj, lane_sums4(acc[0][j], acc[1][j], acc[2][j], acc[3][j]));
        else
            _Pragma("GCC unroll 4")
            for (int i = 0; i < NR; i++) yj[i] = _mm_cvtss_f32(lane_sums4(acc[i][j], acc[i][j], acc[i][j], acc[i][j]));
    }
}

#define DPBF16_ROWS(NT)                                                                                        \
    do {                                                                                                       \
        int r = 0;                                                                                             \
        for (; r + 4 <= rb; r += 4) dpbf16_tile(wb + (size_t)r * ws, ws, xt, xs, cols, yt + r, ys, 4, NT, i, 1); \
        for (; r < rb; r++) dpbf16_tile(wb + (size_t)r * ws, ws, xt, xs, cols, yt + r, ys, 1, NT, i, 1);       \
    } while (0)

#define DPBF16_TILE(nt)                                                                                        \
    switch (nt) {                                                                                              \
    case 6: DPBF16_ROWS(6); break;                                                                             \
    case 5: DPBF16_ROWS(5); break;                                                                             \
    case 4: DPBF16_ROWS(4); break;                                                                             \
    case 3: DPBF16_ROWS(3); break;                                                                             \
    case 2: DPBF16_ROWS(2); break;                                                                             \
    default: DPBF16_ROWS(1); break;                                                                            \
    }

/* gemm_bf16 with bf16 vectors too: rows in blocks of GEMM_RB, vector tiles
 * as even as possible, the first tile prefetching the next row block (spread
 * over the tiles as in gemm_rows, these half-size rows' scores took 5-7%
 * longer). Every output is the same arithmetic whatever its tile. */
static BF16DOT void avx512_gemm_bf16_bf16(const uint16_t *w, size_t ws, int rows, const uint16_t *x, size_t xs, int n,
                                          int64_t cols, float *y, size_t ys) {
    for (int r0 = 0; r0 < rows; r0 += GEMM_RB) {
        int rb = rows - r0 < GEMM_RB ? rows - r0 : GEMM_RB, tiles = (n + 5) / 6;
        const uint16_t *wb = w + (size_t)r0 * ws;
        for (int i = 0, t = 0; i < tiles; i++) {
            int nt = (n - t) / (tiles - i);
            const uint16_t *xt = x + (size_t)t * xs;
            float *yt = y + (size_t)t * ys + r0;
            DPBF16_TILE(nt)
            t += nt;
        }
    }
}

/* NH heads (<= 8) x 32 columns over n rows, two rows a step: the rows'
 * elements interleaved in pairs (within 128-bit lanes: columns 0-3 and 4-7 of
 * each 8 go to lo and hi) meet each head's two probabilities, broadcast as
 * one 32-bit pair. An odd last row pairs with zeros. The lanes are put back
 * in column order once, at the end. */
static inline __attribute__((always_inline)) BF16DOT void wsum_bf16_tile(const uint16_t *a, size_t as, const uint16_t *x,
                                                                         size_t xs, int n, int64_t live, float *y, size_t ys,
                                                                         const int NH) {
    __m512 lo[8], hi[8];
    _Pragma("GCC unroll 8")
    for (int h = 0; h < NH; h++) lo[h] = hi[h] = _mm512_setzero_ps();
    for (int p = 0; p < n; p += 2) {
        __m512i r0 = (__m512i)load32_bf16(x + (size_t)p * xs, live);
        __m512i r1 = p + 1 < n ? (__m512i)load32_bf16(x + (size_t)(p + 1) * xs, live) : _mm512_setzero_si512();
        __m512bh e = (__m512bh)_mm512_unpacklo_epi16(r0, r1), o = (__m512bh)_mm512_unpackhi_epi16(r0, r1);
        _Pragma("GCC unroll 8")
        for (int h = 0; h < NH; h++) {
            uint32_t pair;
            memcpy(&pair, a + (size_t)h * as + p, sizeof pair);
            __m512bh b = (__m512bh)_mm512_set1_epi32((int32_t)pair);
            lo[h] = _mm512_dpbf16_ps(lo[h], e, b);
            hi[h] = _mm512_dpbf16_ps(hi[h], o, b);
        }
    }
    const __m512i first = _mm512_setr_epi32(0, 1, 2, 3, 16, 17, 18, 19, 4, 5, 6, 7, 20, 21, 22, 23);
    const __m512i second = _mm512_setr_epi32(8, 9, 10, 11, 24, 25, 26, 27, 12, 13, 14, 15, 28, 29, 30, 31);
    __mmask16 m0 = first_lanes16(live);
    __mmask16 m1 = first_lanes16(live - 16);
    _Pragma("GCC unroll 8")
    for (int h = 0; h < NH; h++) {
        float *yh = y + (size_t)h * ys;
        __m512 c0 = _mm512_permutex2var_ps(lo[h], first, hi[h]), c1 = _mm512_permutex2var_ps(lo[h], second, hi[h]);
        _mm512_mask_storeu_ps(yh, m0, _mm512_add_ps(_mm512_maskz_loadu_ps(m0, yh), c0));
        _mm512_mask_storeu_ps(yh + 16, m1, _mm512_add_ps(_mm512_maskz_loadu_ps(m1, yh + 16), c1));
    }
}

/* weighted_sum_bf16 with bf16 probabilities, read in pairs: a row of a must
 * hold n rounded up to even values (the one past an odd n is 0). */
static BF16DOT void avx512_weighted_sum_bf16_bf16(const uint16_t *a, size_t as, int nh, const uint16_t *x, size_t xs, int n,
                                                  int64_t cols, float *y, size_t ys) {
    int groups = (nh + 7) / 8;
    for (int64_t j = 0; j < cols; j += 32)
        for (int g = 0, h = 0; g < groups; g++) {
            int gh = (nh - h) / (groups - g);
            const uint16_t *ag = a + (size_t)h * as;
            float *yg = y + (size_t)h * ys + j;
            switch (gh) {
            case 8: wsum_bf16_tile(ag, as, x + j, xs, n, cols - j, yg, ys, 8); break;
            case 7: wsum_bf16_tile(ag, as, x + j, xs, n, cols - j, yg, ys, 7); break;
            case 6: wsum_bf16_tile(ag, as, x + j, xs, n, cols - j, yg, ys, 6); break;
            case 5: wsum_bf16_tile(ag, as, x + j, xs, n, cols - j, yg, ys, 5); break;
            case 4: wsum_bf16_tile(ag, as, x + j, xs, n, cols - j, yg, ys, 4); break;
            case 3: wsum_bf16_tile(ag, as, x + j, xs, n, cols - j, yg, ys, 3); break;
            case 2: wsum_bf16_tile(ag, as, x + j, xs, n, cols - j, yg, ys, 2); break;
            default: wsum_bf16_tile(ag, as, x + j, xs, n, cols - j, yg, ys, 1); break;
            }
            h += gh;
        }
}

/* f32 to bf16, rounding to nearest even (16 a step; the tail masked). */
static BF16DOT void avx512_round_bf16(const float *x, uint16_t *y, int64_t n) {
    for (int64_t i = 0; i < n; i += 16) {
        __mmask16 m = first_lanes16(n - i);
        __m256i b = (__m256i)_mm512_cvtneps_pbh(_mm512_maskz_loadu_ps(m, x + i));
        _mm512_mask_storeu_epi16(y + i, (__mmask32)m, _mm512_castsi256_si512(b));
    }
}

/* The AVX2 table with the 512-bit entries, built once (pthread_once: any
 * thread may ask first). */
static kernel_table avx512_table;
static int avx512_usable;
static pthread_once_t avx512_once = PTHREAD_ONCE_INIT;

static void build_avx512_table(void) {
    const kernel_table *avx2 = kernels_avx2();
    __builtin_cpu_init();
    if (!avx2 || !__builtin_cpu_supports("avx512f")) return;
    avx512_table = *avx2;
    avx512_table.name = "avx512";
    avx512_table.dot_f32 = avx512_dot_f32;
    avx512_table.dot_bf16 = avx512_dot_bf16;
    avx512_table.dot_f16 = avx512_dot_f16;
    avx512_table.gemm_f32 = avx512_gemm_f32;
    avx512_table.bf16_to_f32 = avx512_bf16_to_f32;
    avx512_table.f16_to_f32 = avx512_f16_to_f32;
    avx512_table.gemm_f32_xt = avx512_gemm_f32_xt;
    avx512_table.gemm_bf16 = avx512_gemm_bf16;
    avx512_table.weighted_sum = avx512_weighted_sum;
    avx512_table.weighted_sum_bf16 = avx512_weighted_sum_bf16;
    avx512_table.exp_sum = avx512_exp_sum;
    avx512_table.max_f32 = avx512_max_f32;
    avx512_table.fma_probe = avx512_fma_probe;
    if (__builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512bf16")) {
        avx512_table.gemm_bf16_bf16 = avx512_gemm_bf16_bf16;
        avx512_table.weighted_sum_bf16_bf16 = avx512_weighted_sum_bf16_bf16;
        avx512_table.round_bf16 = avx512_round_bf16;
    }
    avx512_usable = 1;
}

const kernel_table *kernels_avx512(void) {
    pthread_once(&avx512_once, build_avx512_table);
    return avx512_usable ? &avx512_table : 0;
}
