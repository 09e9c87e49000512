/* test_kernels.c — every fast kernel against the scalar reference on random
 * data, and the thread pool. */
#include <stdlib.h>

#include "kernels.h"
#include "linear.h"
#include "tensor.h"
#include "test.h"
#include "threads.h"

static float frand(unsigned *s) {
    *s = *s * 1664525u + 1013904223u;
    return ((*s >> 8) / 16777216.0f) * 2.0f - 1.0f;
}

/* Runs a check on the AVX2 table and, where the CPU has AVX-512F, on the
 * AVX-512 one; 0 when there is no AVX2 (the test then skips). */
static int check_fast_tables(void (*check)(const kernel_table *)) {
    const kernel_table *avx2 = kernels_avx2(), *avx512 = kernels_avx512();
    if (!avx2) return 0;
    check(avx2);
    if (avx512) check(avx512);
    else printf("    no AVX-512F: only the AVX2 kernels checked\n");
    return 1;
}

static void check_vector_kernels(const kernel_table *fast) {
    const kernel_table *ref = kernels_reference();
    unsigned seed = 1;
    int sizes[] = {1, 7, 8, 31, 32, 33, 100, 1000, 4099};
    for (size_t k = 0; k < sizeof sizes / sizeof *sizes; k++) {
        int n = sizes[k];
        float *w = malloc(n * sizeof *w), *x = malloc(n * sizeof *x), *y1 = malloc(n * sizeof *y1), *y2 = malloc(n * sizeof *y2);
        uint16_t *wb = malloc(n * sizeof *wb), *wh = malloc(n * sizeof *wh);
        for (int i = 0; i < n; i++) {
            w[i] = frand(&seed);
            x[i] = frand(&seed);
            wb[i] = f32_to_bf16(w[i]);
            wh[i] = f32_to_f16(w[i]);
            y1[i] = y2[i] = frand(&seed);
        }
        double scale = sqrt((double)n);   /* |dot| of n random +-1 terms grows like sqrt(n) */
        CHECKF(fabs(fast->dot_f32(w, x, n, NULL) - ref->dot_f32(w, x, n, NULL)) < 1e-5 * scale, "dot_f32 n=%d", n);
        CHECKF(fabs(fast->dot_bf16(wb, x, n, NULL) - ref->dot_bf16(wb, x, n, NULL)) < 1e-5 * scale, "dot_bf16 n=%d", n);
        CHECKF(fabs(fast->dot_f16(wh, x, n, NULL) - ref->dot_f16(wh, x, n, NULL)) < 1e-5 * scale, "dot_f16 n=%d", n);
        /* a request ahead changes nothing in the result */
        float d0 = fast->dot_bf16(wb, x, n, NULL), d1 = fast->dot_bf16(wb, x, n, x);
        CHECKF(!memcmp(&d0, &d1, sizeof d0), "dot_bf16 n=%d with a request ahead", n);
        ref->axpy(0.37f, x, y1, n);
        fast->axpy(0.37f, x, y2, n);
        for (int i = 0; i < n; i++) CHECKF(fabsf(y1[i] - y2[i]) < 1e-6f, "axpy n=%d i=%d", n, i);
        ref->bf16_to_f32(wb, y1, n);
        fast->bf16_to_f32(wb, y2, n);
        CHECK(memcmp(y1, y2, n * sizeof *y1) == 0);
        ref->f16_to_f32(wh, y1, n);
        fast->f16_to_f32(wh, y2, n);
        CHECK(memcmp(y1, y2, n * sizeof *y1) == 0);
        /* swiglu on gates across silu's range (both signs, large and tiny) */
        for (int i = 0; i < n; i++) y1[i] = y2[i] = 12.0f * w[i] * (i % 3 ? 1.0f : 8.0f);
        ref->swiglu(y1, x, n);
        fast->swiglu(y2, x, n);
        for (int i = 0; i < n; i++)
            CHECKF(fabsf(y1[i] - y2[i]) <= 4e-7f * fabsf(y1[i]) + 1e-30f, "swiglu n=%d i=%d: %g vs %g", n, i, y2[i], y1[i]);
        free(w); free(x); free(y1); free(y2); free(wb); free(wh);
    }
}

TEST(kernels_avx2_and_avx512_match_reference) {
    if (!check_fast_tables(check_vector_kernels)) SKIP("CPU has no AVX2/FMA");
}

static void check_gemm(const kernel_table *fast) {
    const kernel_table *ref = kernels_reference();
    unsigned seed = 9;
    /* every tile edge: rows % 4, vectors % 3 (AVX2) and % 6 (AVX-512), columns
       % 8 and % 16, several column blocks; decode's keys x 20 heads */
    int shapes[][3] = {{1, 1, 1}, {4, 3, 8}, {5, 7, 13}, {16, 12, 64}, {9, 10, 301}, {3, 2, 40},
                       {6, 4, 16}, {7, 5, 9}, {256, 20, 576}, {2, 1, 3}, {6, 13, 1100}};
    for (size_t k = 0; k < sizeof shapes / sizeof *shapes; k++) {
        int rows = shapes[k][0], n = shapes[k][1], cols = shapes[k][2];
        size_t ws = (size_t)cols + 3, xs = (size_t)cols + 5, ys = (size_t)rows + 2;   /* padded strides */
        float *w = malloc(rows * ws * 4), *x = malloc(n * xs * 4), *y1 = malloc(n * ys * 4), *y2 = malloc(n * ys * 4);
        for (size_t i = 0; i < rows * ws; i++) w[i] = frand(&seed);
        for (size_t i = 0; i < n * xs; i++) x[i] = frand(&seed);
        for (size_t i = 0; i < n * ys; i++) y1[i] = y2[i] = 77.0f;
        ref->gemm_f32(w, ws, rows, x, xs, n, cols, y1, ys, NULL, 0);
        /* with requests ahead (decode's next block; here the vectors): the same bits as without, below */
        fast->gemm_f32(w, ws, rows, x, xs, n, cols, y2, ys, x, n * xs * 4);
        for (int t = 0; t < n; t++)
            for (size_t r = 0; r < ys; r++) {
                float a = y1[t * ys + r], b = y2[t * ys + r];
                if (r >= (size_t)rows) CHECKF(a == 77.0f && b == 77.0f, "wrote past the rows at %zu", r);
                else CHECKF(fabsf(a - b) < 1e-5f * sqrtf((float)cols), "shape %zu t=%d r=%zu: %g vs %g", k, t, r, b, a);
            }
        /* each output is the same arithmetic whatever tile it falls in: one row
           or one vector at a time gives the same bits (thread-count independence) */
        float *y3 = malloc(ys * 4);
        for (int t = 0; t < n; t++)
            for (int r = 0; r < rows; r++) {
                fast->gemm_f32(w + (size_t)r * ws, ws, 1, x + (size_t)t * xs, xs, 1, cols, y3, ys, NULL, 0);
                CHECKF(memcmp(y3, &y2[t * ys + r], 4) == 0, "shape %zu t=%d r=%d depends on its tile", k, t, r);
            }
        /* bf16 rows (a bf16 cache): the same bits as gemm_f32 on the rows widened */
        uint16_t *wb = malloc(rows * ws * 2);
        for (size_t i = 0; i < rows * ws; i++) {
            wb[i] = f32_to_bf16(w[i]);
            w[i] = bf16_to_f32(wb[i]);
        }
        const kernel_table *tables[] = {ref, fast};
        for (int v = 0; v < 2; v++) {
            for (size_t i = 0; i < n * ys; i++) y1[i] = y2[i] = 77.0f;
            tables[v]->gemm_f32(w, ws, rows, x, xs, n, cols, y1, ys, NULL, 0);
            tables[v]->gemm_bf16(wb, ws, rows, x, xs, n, cols, y2, ys, w, rows * ws * 4);
            CHECKF(memcmp(y1, y2, n * ys * 4) == 0, "%s gemm_bf16 shape %zu differs from gemm_f32 on its rows",
                   tables[v]->name, k);
        }
        free(w); free(wb); free(x); free(y1); free(y2); free(y3);
    }
}

TEST(kernels_gemm_matches_reference) {
    if (!check_fast_tables(check_gemm)) SKIP("CPU has no AVX2/FMA");
}

static void check_weighted_sum(const kernel_table *fast) {
    const kernel_table *ref = kernels_reference();
    unsigned seed = 17;
    /* heads, rows, cols: every head grouping (1..6 per group for AVX2, 1..8 for
       AVX-512; 7, 13, 17 uneven) and column tails of 16- and 32-wide strips */
    int shapes[][3] = {{1, 1, 1}, {4, 5, 16}, {20, 37, 512}, {6, 3, 45}, {3, 9, 24}, {7, 4, 32}, {13, 6, 17},
                       {2, 256, 48}, {5, 2, 16}, {8, 5, 64}, {17, 3, 40}, {20, 150, 96}};
    for (size_t k = 0; k < sizeof shapes / sizeof *shapes; k++) {
        int nh = shapes[k][0], n = shapes[k][1], cols = shapes[k][2];
        size_t as = (size_t)n + 2, xs = (size_t)cols + 3, ys = (size_t)cols + 1;
        float *a = malloc(nh * as * 4), *x = malloc(n * xs * 4), *y1 = malloc(nh * ys * 4), *y2 = malloc(nh * ys * 4);
        for (size_t i = 0; i < nh * as; i++) a[i] = frand(&seed);
        for (size_t i = 0; i < n * xs; i++) x[i] = frand(&seed);
        for (size_t i = 0; i < nh * ys; i++) y1[i] = y2[i] = frand(&seed);
        float *y0 = malloc(nh * ys * 4);
        memcpy(y0, y1, nh * ys * 4);
        ref->weighted_sum(a, as, nh, x, xs, n, cols, y1, ys, NULL, 0);
        /* with requests ahead: the same bits as without, below */
        fast->weighted_sum(a, as, nh, x, xs, n, cols, y2, ys, a, nh * as * 4);
        for (size_t i = 0; i < nh * ys; i++) CHECKF(fabsf(y1[i] - y2[i]) < 1e-5f * sqrtf((float)n), "shape %zu at %zu", k, i);
        /* one head at a time, from the same start, gives the same bits as the grouped pass */
        for (int h = 0; h < nh; h++) {
            float *y3 = malloc(ys * 4);
            memcpy(y3, y0 + (size_t)h * ys, ys * 4);
            fast->weighted_sum(a + (size_t)h * as, as, 1, x, xs, n, cols, y3, ys, NULL, 0);
            CHECKF(memcmp(y3, y2 + (size_t)h * ys, (size_t)cols * 4) == 0, "shape %zu head %d depends on its group", k, h);
            free(y3);
        }
        /* bf16 rows (a bf16 cache): the same bits as weighted_sum on the rows widened */
        uint16_t *xb = malloc(n * xs * 2);
        for (size_t i = 0; i < n * xs; i++) {
            xb[i] = f32_to_bf16(x[i]);
            x[i] = bf16_to_f32(xb[i]);
        }
        const kernel_table *tables[] = {ref, fast};
        for (int v = 0; v < 2; v++) {
            memcpy(y1, y0, nh * ys * 4);
            memcpy(y2, y0, nh * ys * 4);
            tables[v]->weighted_sum(a, as, nh, x, xs, n, cols, y1, ys, NULL, 0);
            tables[v]->weighted_sum_bf16(a, as, nh, xb, xs, n, cols, y2, ys, x, n * xs * 4);
            CHECKF(memcmp(y1, y2, nh * ys * 4) == 0, "%s weighted_sum_bf16 shape %zu differs from weighted_sum on its rows",
                   tables[v]->name, k);
        }
        free(xb);
        free(y0);
        free(a); free(x); free(y1); free(y2);
    }
}

TEST(kernels_weighted_sum_matches_reference) {
    if (!check_fast_tables(check_weighted_sum)) SKIP("CPU has no AVX2/FMA");
}

static void check_exp_sum(const kernel_table *fast) {
    const kernel_table *ref = kernels_reference();
    unsigned seed = 23;
    int sizes[] = {1, 7, 8, 9, 16, 37, 256, 1000};
    for (size_t k = 0; k < sizeof sizes / sizeof *sizes; k++) {
        int n = sizes[k];
        float *a = malloc(n * 4), *b = malloc(n * 4), mx = -INFINITY, scale = 0.09f;
        for (int i = 0; i < n; i++) {
            a[i] = b[i] = frand(&seed) * (i % 5 == 0 ? 1200.0f : 60.0f);   /* some far below the maximum: exp 0 */
            mx = a[i] > mx ? a[i] : mx;
        }
        float s1 = ref->exp_sum(a, n, scale, mx * scale), s2 = fast->exp_sum(b, n, scale, mx * scale);
        for (int i = 0; i < n; i++) CHECKF(fabsf(a[i] - b[i]) <= 3e-7f * a[i] + 1e-37f, "n=%d i=%d: %g vs %g", n, i, b[i], a[i]);
        CHECKF(fabsf(s1 - s2) <= 1e-6f * s1, "n=%d sum %g vs %g", n, s2, s1);
        CHECK(s2 >= 1.0f);   /* the maximum's term is exactly exp(0) = 1 */
        free(a); free(b);
    }
}

TEST(kernels_exp_sum_matches_reference) {
    if (!check_fast_tables(check_exp_sum)) SKIP("CPU has no AVX2/FMA");
}

/* The maximum is exact: the same value as the reference's, wherever it lies
 * (first, last, in a vector tail) and whatever the signs. */
static void check_max(const kernel_table *fast) {
    const kernel_table *ref = kernels_reference();
    unsigned seed = 29;
    int sizes[] = {1, 2, 7, 8, 9, 15, 16, 17, 33, 256, 1000};
    for (size_t k = 0; k < sizeof sizes / sizeof *sizes; k++) {
        int n = sizes[k];
        float *a = malloc(n * 4);
        for (int at = 0; at < n; at += (n > 20 ? 7 : 1)) {
            for (int i = 0; i < n; i++) a[i] = frand(&seed) * 50.0f - 100.0f;   /* all negative */
            a[at] = -1.0f - frand(&seed) * 0.5f;                                 /* the largest */
            CHECKF(fast->max_f32(a, n) == a[at], "n=%d max at %d: %g vs %g", n, at, fast->max_f32(a, n), a[at]);
            CHECK(ref->max_f32(a, n) == a[at]);
        }
        a[n - 1] = 3.0f;   /* in the last lane (a tail when n is not a multiple of the width) */
        CHECKF(fast->max_f32(a, n) == 3.0f, "n=%d last", n);
        free(a);
    }
}

TEST(kernels_max_matches_reference) {
    if (!check_fast_tables(check_max)) SKIP("CPU has no AVX2/FMA");
}

/* bf16 arithmetic (AVX512-BF16, optional): against double sums of the same
 * bf16 values; products of two bf16 values are exact in f32, so only the
 * order of the f32 sums differs. */
typedef void (*bf16_weighted_sum_fn)(const uint16_t *a, size_t as, int nh, const uint16_t *x, size_t xs, int n, int64_t cols,
                                     float *y, size_t ys);

/* y += a x with bf16 weights and rows, against double; and each row of a
 * alone gives the same bits as among the others. */
static void check_bf16_weighted_sum(bf16_weighted_sum_fn ws, const char *name, const int shape[3], size_t q, unsigned *seed) {
    int nh = shape[0], n = shape[1], cols = shape[2];
    size_t as = (size_t)n + 3, xs = (size_t)cols + 3, ys = (size_t)cols + 1;
    uint16_t *a = malloc(nh * as * 2), *x = malloc(n * xs * 2);
    float *y = malloc(nh * ys * 4), *y0 = malloc(nh * ys * 4), *y1 = malloc(ys * 4);
    for (size_t i = 0; i < nh * as; i++) a[i] = f32_to_bf16(frand(seed) * 0.5f + 0.5f);
    for (int h = 0; h < nh; h++)
        if (n % 2) a[h * as + n] = 0;   /* the pair past an odd n */
    for (size_t i = 0; i < n * xs; i++) x[i] = f32_to_bf16(frand(seed));
    for (size_t i = 0; i < nh * ys; i++) y[i] = y0[i] = frand(seed);
    ws(a, as, nh, x, xs, n, cols, y, ys);
    for (int h = 0; h < nh; h++)
        for (size_t j = 0; j < ys; j++) {
            if (j >= (size_t)cols) {
                CHECKF(y[h * ys + j] == y0[h * ys + j], "%s wrote past the columns at %zu", name, j);
                continue;
            }
            double e = y0[h * ys + j];
            for (int p = 0; p < n; p++) e += (double)bf16_to_f32(a[h * as + p]) * bf16_to_f32(x[p * xs + j]);
            CHECKF(fabs(y[h * ys + j] - e) < 1e-5 * sqrt((double)n) * (1 + fabs(e)), "%s shape %zu h=%d j=%zu: %g vs %g", name, q, h,
                   j, y[h * ys + j], e);
        }
    for (int h = 0; h < nh; h++) {
        memcpy(y1, y0 + (size_t)h * ys, ys * 4);
        ws(a + (size_t)h * as, as, 1, x, xs, n, cols, y1, ys);
        CHECKF(memcmp(y1, y + (size_t)h * ys, ys * 4) == 0, "%s shape %zu h=%d depends on the rows beside it", name, q, h);
    }
    free(a); free(x); free(y); free(y0); free(y1);
}

static void check_bf16_arithmetic(const kernel_table *k) {
    unsigned seed = 31;
    /* rounding: every value the reference's way, ties to even included */
    float ties[] = {1.00390625f, 1.01171875f, -3.0078125f, 0.0f, -0.0f, 65504.0f, 1e-30f};
    uint16_t got[64];
    float vals[64];
    for (int i = 0; i < 64; i++) vals[i] = i < 7 ? ties[i] : frand(&seed) * 100.0f;
    k->round_bf16(vals, got, 37);   /* a masked tail */
    for (int i = 0; i < 37; i++) CHECKF(got[i] == f32_to_bf16(vals[i]), "round %g: %04x vs %04x", vals[i], got[i], f32_to_bf16(vals[i]));
    int gshapes[][3] = {{1, 1, 2}, {4, 5, 32}, {9, 10, 70}, {256, 20, 576}, {7, 13, 100}, {3, 6, 33}};
    for (size_t q = 0; q < sizeof gshapes / sizeof *gshapes; q++) {
        int rows = gshapes[q][0], n = gshapes[q][1], cols = gshapes[q][2];
        size_t ws = (size_t)cols + 3, xs = (size_t)cols + 4 + q % 2, ys = (size_t)rows + 2;   /* even and odd strides */
        uint16_t *w = malloc(rows * ws * 2), *x = malloc(n * xs * 2);
        float *y = malloc(n * ys * 4), *y1 = malloc(4);
        for (size_t i = 0; i < rows * ws; i++) w[i] = f32_to_bf16(frand(&seed));
        for (size_t i = 0; i < n * xs; i++) x[i] = f32_to_bf16(frand(&seed));
        for (size_t i = 0; i < n * ys; i++) y[i] = 77.0f;
        k->gemm_bf16_bf16(w, ws, rows, x, xs, n, cols, y, ys);
        for (int t = 0; t < n; t++)
            for (size_t r = 0; r < ys; r++) {
                if (r >= (size_t)rows) {
                    CHECKF(y[t * ys + r] == 77.0f, "gemm_bf16_bf16 wrote past the rows at %zu", r);
                    continue;
                }
                double e = 0;
                for (int c = 0; c < cols; c++) e += (double)bf16_to_f32(w[r * ws + c]) * bf16_to_f32(x[t * xs + c]);
                CHECKF(fabs(y[t * ys + r] - e) < 1e-5 * sqrt((double)cols), "gemm_bf16_bf16 shape %zu t=%d r=%zu: %g vs %g",
                       q, t, r, y[t * ys + r], e);
                k->gemm_bf16_bf16(w + r * ws, ws, 1, x + (size_t)t * xs, xs, 1, cols, y1, 1);
                CHECKF(memcmp(y1, &y[t * ys + r], 4) == 0, "gemm_bf16_bf16 shape %zu t=%d r=%zu depends on its tile", q, t, r);
            }
        free(w); free(x); free(y); free(y1);
    }
    int wshapes[][3] = {{1, 1, 1}, {4, 5, 16}, {20, 37, 512}, {6, 3, 45}, {3, 9, 24}, {7, 4, 32}, {13, 6, 17}, {20, 256, 512},
                        {33, 40, 64}, {20, 19, 70}};
    for (size_t q = 0; q < sizeof wshapes / sizeof *wshapes; q++) {
        check_bf16_weighted_sum(k->weighted_sum_bf16_bf16, "weighted_sum_bf16_bf16", wshapes[q], q, &seed);
        if (k->weighted_sum_bf16_few) check_bf16_weighted_sum(k->weighted_sum_bf16_few, "weighted_sum_bf16_few", wshapes[q], q, &seed);
    }
}

TEST(kernels_bf16_arithmetic_matches_double) {
    const kernel_table *k = kernels_avx512();
    if (!k || !k->gemm_bf16_bf16) SKIP("CPU has no AVX512-BF16");
    check_bf16_arithmetic(k);
    if (kernels_amx()) check_bf16_arithmetic(kernels_amx());   /* the same on AMX tiles */
}

/* gemm_bf16_split (AMX): bf16 rows times f32 vectors split into three bf16
 * parts. The parts hold each vector exactly, so against the exact (double)
 * products the error is that of f32 sums of 3 * cols exact terms; with only
 * the first part (x rounded to bf16) the short rows here would miss that
 * bound by far. Shapes cover partial tiles of rows, vectors and columns,
 * strides past the widths, the layout prepared in two column ranges, and
 * values from 1e-3 to 1e3. An infinite activation gives an infinite sum,
 * not a NaN from its parts. */
TEST(kernels_bf16_split_matches_double) {
    const kernel_table *k = kernels_amx();
    if (!k) SKIP("no AMX tiles");
    unsigned seed = 41;
    int shapes[][3] = {{1, 4, 1}, {16, 16, 32}, {17, 20, 33}, {32, 32, 2048}, {40, 48, 100}, {5, 7, 0}, {33, 4, 64}, {64, 50, 576}};
    for (size_t q = 0; q < sizeof shapes / sizeof *shapes; q++) {
        int rows = shapes[q][0], n = shapes[q][1], cols = shapes[q][2];
        size_t ws = (size_t)cols + 3, xs = (size_t)cols + 5, ys = (size_t)rows + 2;
        uint16_t *w = malloc(rows * ws * 2 + 2), *xsplit = malloc(split_bf16_elems(n, cols) * 2 + 2);
        float *x = malloc(n * xs * 4 + 4), *y = malloc(n * ys * 4);
        for (size_t i = 0; i < rows * ws; i++) w[i] = f32_to_bf16(frand(&seed));
        for (size_t i = 0; i < n * xs; i++) x[i] = frand(&seed) * powf(10.0f, (float)(i % 7) - 3.0f);
        for (size_t i = 0; i < n * ys; i++) y[i] = 77.0f;
        int64_t mid = cols / 64 * 32;   /* the layout in two column ranges */
        k->split_bf16(x, xs, n, cols, 0, mid, xsplit);
        k->split_bf16(x, xs, n, cols, mid, cols, xsplit);
        k->gemm_bf16_split(w, ws, rows, cols, xsplit, n, y, ys);
        double gamma = (3.0 * cols + 2) * 0x1p-24 / (1 - (3.0 * cols + 2) * 0x1p-24);
        for (int t = 0; t < n; t++)
            for (size_t r = 0; r < ys; r++) {
                if (r >= (size_t)rows) {
                    CHECKF(y[t * ys + r] == 77.0f, "gemm_bf16_split wrote past the rows at %zu", r);
                    continue;
                }
                double e = 0, mag = 0;
                for (int c = 0; c < cols; c++) {
                    double p = (double)bf16_to_f32(w[r * ws + c]) * x[t * xs + c];
                    e += p;
                    mag += fabs(p);
                }
                CHECKF(fabs(y[t * ys + r] - e) <= gamma * mag, "gemm_bf16_split shape %zu t=%d r=%zu: %.9g vs %.9g", q, t, r,
                       y[t * ys + r], e);
            }
        free(w); free(xsplit); free(x); free(y);
    }
    uint16_t w[32];
    float x[32], y;
    uint16_t xsplit[1536];
    for (int c = 0; c < 32; c++) {
        w[c] = f32_to_bf16(1.0f);
        x[c] = c == 5 ? INFINITY : 1.0f;
    }
    k->split_bf16(x, 32, 1, 32, 0, 32, xsplit);
    k->gemm_bf16_split(w, 32, 1, 32, xsplit, 1, &y, 1);
    CHECKF(isinf(y) && y > 0, "an infinite activation gave %g", y);
}

/* gemm_f32_split and weighted_sum_split (AMX): f32 rows and f32 vectors,
 * both split exactly into three bf16 parts, six of the nine part products
 * taken. Against the exact (double) products the error is that of f32 sums
 * of 6 * cols terms plus the three dropped products (under 2^-21 of each
 * product: a truncated second part is below 2^-7 of its value, the third
 * below 2^-15); the first part alone (bf16 operands) would miss that bound by
 * far. Shapes cover partial tiles of rows, vectors, heads and columns,
 * strides past the widths, a prefill tile (80 queries x 256 keys x 576) and
 * values from 1e-3 to 1e3. Each output is the same bits whatever its tile:
 * one row, vector or head at a time gives what the whole call gave. */
static double split_bound(int terms) {
    double g = (6.0 * terms + 2) * 0x1p-24;
    return g / (1 - g) + 0x1p-21;
}

TEST(kernels_f32_split_attention_matches_double) {
    const kernel_table *k = kernels_amx();
    if (!k) SKIP("no AMX tiles");
    unsigned seed = 43;
    int shapes[][3] = {{1, 1, 1}, {16, 16, 32}, {17, 20, 33}, {33, 80, 576}, {256, 80, 576}, {40, 35, 100}, {5, 7, 0}, {3, 50, 48},
                       {56, 20, 40}};
    for (size_t q = 0; q < sizeof shapes / sizeof *shapes; q++) {
        int rows = shapes[q][0], n = shapes[q][1], cols = shapes[q][2];
        size_t ws = (size_t)cols + 3, xs = (size_t)cols + 5, ys = (size_t)rows + 2;
        float *w = malloc(rows * ws * 4 + 4), *x = malloc(n * xs * 4 + 4), *y = malloc(n * ys * 4), y1;
        uint16_t *xsplit = malloc(split_bf16_elems(n, cols) * 2 + 2), *work = malloc(split_work_elems(cols, 0, 0) * 2 + 2);
        uint16_t *x1 = malloc(split_bf16_elems(1, cols) * 2 + 2);
        for (size_t i = 0; i < rows * ws; i++) w[i] = frand(&seed) * powf(10.0f, (float)(i % 5) - 2.0f);
        for (size_t i = 0; i < n * xs; i++) x[i] = frand(&seed) * powf(10.0f, (float)(i % 7) - 3.0f);
        for (size_t i = 0; i < n * ys; i++) y[i] = 77.0f;
        k->split_bf16(x, xs, n, cols, 0, cols, xsplit);
        k->gemm_f32_split(w, ws, rows, cols, xsplit, n, y, ys, work);
        for (int t = 0; t < n; t++) {
            k->split_bf16(x + (size_t)t * xs, xs, 1, cols, 0, cols, x1);
            for (size_t r = 0; r < ys; r++) {
                if (r >= (size_t)rows) {
                    CHECKF(y[t * ys + r] == 77.0f, "gemm_f32_split wrote past the rows at %zu", r);
                    continue;
                }
                double e = 0, mag = 0;
                for (int c = 0; c < cols; c++) {
                    double p = (double)w[r * ws + c] * x[t * xs + c];
                    e += p;
                    mag += fabs(p);
                }
                CHECKF(fabs(y[t * ys + r] - e) <= split_bound(cols) * mag, "gemm_f32_split shape %zu t=%d r=%zu: %.9g vs %.9g",
                       q, t, r, y[t * ys + r], e);
                k->gemm_f32_split(w + r * ws, ws, 1, cols, x1, 1, &y1, 1, work);
                CHECKF(memcmp(&y1, &y[t * ys + r], 4) == 0, "gemm_f32_split shape %zu t=%d r=%zu depends on its tile", q, t, r);
            }
        }
        free(w); free(x); free(y); free(xsplit); free(work); free(x1);
    }
    /* heads, rows, cols for the value sums: y += sum_p a[h][p] x[p][j] */
    int sums[][3] = {{1, 1, 1}, {16, 32, 16}, {20, 37, 512}, {80, 256, 512}, {17, 33, 45}, {35, 5, 40}, {3, 64, 17}};
    for (size_t q = 0; q < sizeof sums / sizeof *sums; q++) {
        int nh = sums[q][0], n = sums[q][1], cols = sums[q][2];
        size_t as = (size_t)n + 2, xs = (size_t)cols + 3, ys = (size_t)cols + 1;
        float *a = malloc(nh * as * 4), *x = malloc(n * xs * 4), *y = malloc(nh * ys * 4), *y0 = malloc(nh * ys * 4);
        float *y1 = malloc(ys * 4);
        uint16_t *work = malloc(split_work_elems(0, nh, n) * 2 + 2);
        for (size_t i = 0; i < nh * as; i++) a[i] = fabsf(frand(&seed)) * powf(10.0f, -(float)(i % 4));   /* probabilities */
        for (size_t i = 0; i < n * xs; i++) x[i] = frand(&seed) * powf(10.0f, (float)(i % 7) - 3.0f);
        for (size_t i = 0; i < nh * ys; i++) y[i] = y0[i] = frand(&seed);
        k->weighted_sum_split(a, as, nh, x, xs, n, cols, y, ys, work);
        for (int h = 0; h < nh; h++) {
            for (size_t j = 0; j < ys; j++) {
                if (j >= (size_t)cols) {
                    CHECKF(y[h * ys + j] == y0[h * ys + j], "weighted_sum_split wrote past the columns at %zu", j);
                    continue;
                }
                double e = y0[h * ys + j], mag = fabs(e);
                for (int p = 0; p < n; p++) {
                    double t = (double)a[h * as + p] * x[p * xs + j];
                    e += t;
                    mag += fabs(t);
                }
                CHECKF(fabs(y[h * ys + j] - e) <= split_bound(n + 1) * mag, "weighted_sum_split shape %zu h=%d j=%zu: %.9g vs %.9g",
                       q, h, j, y[h * ys + j], e);
            }
            memcpy(y1, y0 + (size_t)h * ys, ys * 4);
            k->weighted_sum_split(a + (size_t)h * as, as, 1, x, xs, n, cols, y1, ys, work);
            CHECKF(memcmp(y1, y + (size_t)h * ys, (size_t)cols * 4) == 0, "weighted_sum_split shape %zu head %d depends on its group",
                   q, h);
        }
        free(a); free(x); free(y); free(y0); free(y1); free(work);
    }
}

TEST(kernels_rope_pairings) {
    /* Adjacent pairs rotate (x[2i], x[2i+1]); rotate-half rotates (x[i], x[i+d/2]). */
    float c[2] = {0.0f, 1.0f}, s[2] = {1.0f, 0.0f};   /* pair 0 by 90 degrees, pair 1 unchanged */
    float a[4] = {1, 2, 3, 4}, b[4] = {1, 2, 3, 4};
    rope_apply(a, 4, c, s, 1);
    rope_apply(b, 4, c, s, 0);
    float ea[4] = {-2, 1, 3, 4}, eb[4] = {-3, 2, 1, 4};
    CHECK(memcmp(a, ea, sizeof a) == 0);
    CHECK(memcmp(b, eb, sizeof b) == 0);
}
/* gemm_f32_xt: one FMA chain per output in column order, continued across
 * calls, so every variant gives the reference's bits, whatever the column
 * blocks; and within the rounding bound of the exact (double) products.
 * Shapes cover the row tiles (4 / 8 and single rows), one to three vectors
 * of tokens (8 / 16 lanes) and empty columns. */
static void check_gemm_xt(const kernel_table *fast) {
    const kernel_table *ref = kernels_reference();
    unsigned seed = 13;
    int shapes[][3] = {{1, 4, 1},     {4, 4, 8},     {9, 17, 33},  {16, 16, 2048}, {8, 48, 513}, {13, 49, 100},
                       {3, 25, 1100}, {32, 100, 64}, {5, 7, 0},    {32, 24, 7},    {7, 40, 1025}};
    for (size_t k = 0; k < sizeof shapes / sizeof *shapes; k++) {
        int rows = shapes[k][0], n = shapes[k][1], cols = shapes[k][2], np = gemm_xt_lanes(n);
        size_t ws = (size_t)cols + 3;
        float *w = malloc((rows * ws + 1) * 4), *xt = calloc((size_t)cols * np + 1, 4);
        float *a1 = malloc((size_t)rows * np * 4), *a2 = malloc((size_t)rows * np * 4), *a3 = malloc((size_t)rows * np * 4);
        for (size_t i = 0; i < rows * ws; i++) w[i] = frand(&seed);
        for (int c = 0; c < cols; c++)
            for (int t = 0; t < n; t++) xt[(size_t)c * np + t] = frand(&seed);
        for (size_t i = 0; i < (size_t)rows * np; i++) a1[i] = a2[i] = a3[i] = 77.0f;
        ref->gemm_f32_xt(w, ws, rows, xt, n, cols, a1, 1);
        fast->gemm_f32_xt(w, ws, rows, xt, n, cols, a2, 1);
        /* the same chains in three column blocks, continued through acc */
        int c1 = (cols + 2) / 3, c2 = c1 + (cols - c1) / 2;   /* a block at column 0 is always the first */
        fast->gemm_f32_xt(w, ws, rows, xt, n, c1, a3, 1);
        fast->gemm_f32_xt(w + c1, ws, rows, xt + (size_t)c1 * np, n, c2 - c1, a3, 0);
        fast->gemm_f32_xt(w + c2, ws, rows, xt + (size_t)c2 * np, n, cols - c2, a3, 0);
        size_t bytes = (size_t)rows * np * 4;
        CHECKF(memcmp(a1, a2, bytes) == 0, "shape %zu (%d rows, %d vectors, %d columns): bits differ from the reference", k,
               rows, n, cols);
        CHECKF(memcmp(a2, a3, bytes) == 0, "shape %zu: column blocks change the bits", k);
        double gamma = cols * 0x1p-24 / (1 - cols * 0x1p-24);
        for (int t = 0; t < np; t++)
            for (int r = 0; r < rows; r++) {
                float got = a2[(size_t)r * np + t];
                double exact = 0, mag = 0;
                for (int c = 0; c < cols; c++) {
                    double p = (double)w[r * ws + c] * xt[(size_t)c * np + t];
                    exact += p;
                    mag += fabs(p);
                }
                CHECKF(fabs(got - exact) <= gamma * mag, "shape %zu t=%d r=%d: %g vs %g", k, t, r, got, exact);
            }
        free(w); free(xt); free(a1); free(a2); free(a3);
    }
}

TEST(kernels_gemm_xt_matches_reference_bit_for_bit) {
    if (!check_fast_tables(check_gemm_xt)) SKIP("CPU has no AVX2/FMA");
}

/* A bf16 weight of random values over data[rows * cols] (the caller frees data). */
static weight random_bf16_weight(uint16_t *data, int rows, int cols, unsigned *seed) {
    for (size_t i = 0; i < (size_t)rows * cols; i++) data[i] = f32_to_bf16(frand(seed));
    weight w = {0};
    w.format = WF_BF16;
    w.rows = rows;
    w.cols = cols;
    w.data = (const uint8_t *)data;
    w.row_stride = (size_t)cols * 2;
    w.global_scale = 1;
    return w;
}

TEST(kernels_linear_threads_and_batches_agree) {
    unsigned seed = 5;
    int rows = 203, cols = 77, n = 5;
    uint16_t *wd = malloc((size_t)rows * cols * 2);
    weight w = random_bf16_weight(wd, rows, cols, &seed);
    float *x = malloc((size_t)n * cols * 4), *y1 = calloc((size_t)n * rows, 4), *y2 = calloc((size_t)n * rows, 4);
    size_t ss = linear_rows_scratch_floats(n, cols) + linear_packed_floats(n, cols);
    float *y3 = calloc(rows, 4), *scratch = malloc(2 * ss * 4), *packed = malloc(linear_packed_floats(n, cols) * 4);
    for (int i = 0; i < n * cols; i++) x[i] = frand(&seed);
    thread_pool *p1 = pool_new(1), *p2 = pool_new(2);
    linear(p1, &w, x, n, cols, y1, rows, scratch, ss, packed);     /* batched: transposed vectors, widened rows */
    linear(p2, &w, x, n, cols, y2, rows, scratch, ss, packed);
    CHECK(memcmp(y1, y2, (size_t)n * rows * 4) == 0);       /* thread count changes nothing */
    linear_rows(&w, 0, rows, x, n, cols, y2, rows, scratch);   /* one thread, packing its own vectors */
    CHECK(memcmp(y1, y2, (size_t)n * rows * 4) == 0);
    linear(p2, &w, x + 2 * cols, 1, cols, y3, rows, scratch, ss, NULL);   /* one vector: decode path */
    for (int r = 0; r < rows; r++) {
        double ref = 0;
        for (int c = 0; c < cols; c++) ref += (double)bf16_to_f32(wd[r * cols + c]) * x[2 * cols + c];
        CHECKF(fabs(ref - y3[r]) < 1e-4, "row %d: decode %g vs %g", r, y3[r], ref);
        CHECKF(fabs(ref - y1[2 * rows + r]) < 1e-4, "row %d: batched %g vs %g", r, y1[2 * rows + r], ref);
    }
    pool_free(p1);
    pool_free(p2);
    free(wd); free(x); free(y1); free(y2); free(y3); free(scratch); free(packed);
}

/* An input so wide that the batched product goes in passes of fewer tokens
 * (linear_pass_tokens): every output keeps its bits whatever the passes and
 * threads (a batch of 7 tokens, one pass, gives the same numbers as the
 * first 7 of 53), and the transposed vectors of this width or any narrower
 * one fit the buffer sized by linear_packed_floats (allocated to the byte,
 * for the sanitizer). */
TEST(kernels_linear_passes_of_a_wide_input_agree) {
    unsigned seed = 9;
    int rows = 19, cols = 40000, n = 53;
    CHECK(linear_pass_tokens(n, cols) < n);
    uint16_t *wd = malloc((size_t)rows * cols * 2);
    weight w = random_bf16_weight(wd, rows, cols, &seed);
    float *x = malloc((size_t)n * cols * 4), *y1 = malloc((size_t)n * rows * 4), *y2 = malloc((size_t)n * rows * 4);
    for (size_t i = 0; i < (size_t)n * cols; i++) x[i] = frand(&seed);
    size_t ss = linear_rows_scratch_floats(n, cols) + linear_packed_floats(n, cols);
    float *scratch = malloc(2 * ss * 4), *packed = malloc(linear_packed_floats(n, cols) * 4);
    thread_pool *p1 = pool_new(1), *p2 = pool_new(2);
    linear(p2, &w, x, n, cols, y1, rows, scratch, ss, packed);
    linear(p1, &w, x, 7, cols, y2, rows, scratch, ss, packed);
    CHECK(memcmp(y1, y2, (size_t)7 * rows * 4) == 0);
    linear_rows(&w, 0, rows, x, n, cols, y2, rows, scratch);
    CHECK(memcmp(y1, y2, (size_t)n * rows * 4) == 0);
    /* a narrower input through the same buffers takes more tokens per pass */
    weight narrow = w;
    narrow.cols = 16000;
    CHECK(linear_pass_tokens(n, narrow.cols) == n);
    linear(p2, &narrow, x, n, cols, y2, rows, scratch, ss, packed);
    linear_rows(&narrow, 0, rows, x, n, cols, y1, rows, scratch);
    CHECK(memcmp(y1, y2, (size_t)n * rows * 4) == 0);
    linear(p2, &w, x, n, cols, y1, rows, scratch, ss, packed);
    for (int t = 0; t < n; t += 13)
        for (int r = 0; r < rows; r++) {
            double ref = 0, mag = 0;
            for (int c = 0; c < cols; c++) {
                double p = (double)bf16_to_f32(wd[(size_t)r * cols + c]) * x[(size_t)t * cols + c];
                ref += p;
                mag += fabs(p);
            }
            CHECKF(fabs(ref - y1[(size_t)t * rows + r]) <= cols * 0x1p-24 * mag, "token %d row %d: %g vs %g", t, r,
                   y1[(size_t)t * rows + r], ref);
        }
    pool_free(p1);
    pool_free(p2);
    free(wd); free(x); free(y1); free(y2); free(scratch); free(packed);
}

typedef struct { int *hits; } pool_ctx;
static void count_task(void *ctx, int task, int thread) {
    (void)thread;
    __atomic_fetch_add(&((pool_ctx *)ctx)->hits[task], 1, __ATOMIC_RELAXED);
}

TEST(threads_pool_runs_every_task_once) {
    thread_pool *p = pool_new(3);
    REQUIRE(p);
    int hits[1000] = {0};
    pool_ctx c = {hits};
    for (int round = 0; round < 200; round++) pool_run(p, count_task, &c, 1000);
    for (int i = 0; i < 1000; i++) CHECKF(hits[i] == 200, "task %d ran %d times", i, hits[i]);
    pool_free(p);
}
