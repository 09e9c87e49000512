/* test_quant_int8.c — quantized activations (quant.h; linear.c). The int8
 * decode path: the activation quantizer against an independent formula, the
 * AVX2 integer kernels against the plain double-precision reference of the
 * same quantized arithmetic, the quantized dot against the exact
 * f32-activation dot within the derived bound, batched = single-vector
 * results, and linear() on 1 and 2 threads. The 16-bit prefill path (at the
 * end): its definition bit for bit, its bound, threads, passes and sharing. */
#include "test.h"

#include <stdint.h>
#include <stdlib.h>

#include "kernels.h"
#include "linear.h"
#include "quant.h"
#include "threads.h"

static unsigned long long rng = 0x9e3779b97f4a7c15ull;
static unsigned rnd(void) {
    rng ^= rng << 13; rng ^= rng >> 7; rng ^= rng << 17;
    return (unsigned)(rng >> 11);
}
static float rndf(void) { return ((float)(rnd() & 0xffffff) / 16777216.0f) * 2.0f - 1.0f; }

typedef struct {
    weight w;
    uint8_t *data, *scales, *biases;
} rand_weight;

/* rows x cols random weights (Gaussian-ish rows with a few outliers), quantized by quant_quantize_row. */
static rand_weight make_weight(wformat f, int bits, int gs, dtype dt, int64_t rows, int64_t cols, float global) {
    rand_weight rw;
    memset(&rw, 0, sizeof rw);
    weight *w = &rw.w;
    w->format = f;
    w->rows = rows;
    w->cols = cols;
    w->bits = f == WF_AFFINE ? bits : 0;
    w->group_size = f == WF_AFFINE ? gs : 0;
    w->scale_dtype = dt;
    w->row_stride = quant_row_bytes(f, bits, cols);
    w->scale_stride = quant_scale_row_bytes(f, quant_format_group(f, gs), dt, cols);
    w->global_scale = global;
    rw.data = calloc((size_t)rows, w->row_stride);
    rw.scales = calloc((size_t)rows, w->scale_stride);
    rw.biases = f == WF_AFFINE ? calloc((size_t)rows, w->scale_stride) : NULL;
    float *src = malloc((size_t)cols * sizeof *src);
    for (int64_t r = 0; r < rows; r++) {
        for (int64_t i = 0; i < cols; i++) src[i] = (rndf() + rndf() + rndf()) * 0.05f * (rnd() % 64 ? 1.0f : 6.0f);
        if (r == 1) for (int64_t i = 0; i < cols; i++) src[i] = src[i] * 0.01f + 0.03f;   /* one-sided row: large biases */
        int rc = quant_quantize_row(f, bits, gs, dt, src, cols, rw.data + (size_t)r * w->row_stride,
                                    rw.scales + (size_t)r * w->scale_stride,
                                    rw.biases ? rw.biases + (size_t)r * w->scale_stride : NULL);
        if (rc) test_fail(__FILE__, __LINE__, "quantize row failed");
    }
    free(src);
    w->data = rw.data;
    w->scales = rw.scales;
    w->biases = rw.biases;
    return rw;
}
static void free_weight(rand_weight *rw) { free(rw->data); free(rw->scales); free(rw->biases); }

/* Activations: mostly unit-scale noise, a block of zeros (amax = 0), a block
 * with one outlier, a tiny-magnitude block, and exact .5 ties after scaling. */
static void make_x(float *x, int64_t cols, int variant) {
    for (int64_t i = 0; i < cols; i++) x[i] = rndf() * (variant ? 3.0f : 1.0f);
    for (int64_t i = 32; i < 64 && i < cols; i++) x[i] = 0.0f;
    if (cols >= 128) x[64 + 5] = 40.0f;
    if (cols >= 192) for (int64_t i = 128; i < 160; i++) x[i] *= 1e-6f;
    if (cols >= 256) for (int64_t i = 192; i < 224; i++) x[i] = (float)((int)(i % 9) - 4) * 0.5f + (i == 192 ? 127.0f : 0.0f);
}

/* Row r's codes, scale and bias per element, from the packed weight (what the reference arithmetic uses). */
static double scale_of(const weight *w, const uint8_t *p) {
    switch (w->scale_dtype) {
    case DT_F32: { float f; memcpy(&f, p, 4); return f; }
    case DT_F16: return f16_to_f32((uint16_t)(p[0] | p[1] << 8));
    case DT_BF16: return bf16_to_f32((uint16_t)(p[0] | p[1] << 8));
    default: return w->format == WF_NVFP4 ? e4m3_to_f32(p[0]) : e8m0_to_f32(p[0]);
    }
}

/* |s_g * c_i * global| per element of row r: c_i the centred code
 * (affine: code - 2^(bits-1)) or the E2M1 value (fp4) — the part of each
 * weight that multiplies quantized activations (the rest meets exact sums of x). */
static void scaled_codes_abs(const weight *w, int64_t r, double *out) {
    int bits = quant_format_bits(w->format, w->bits), gs = quant_format_group(w->format, w->group_size);
    uint8_t *codes = malloc((size_t)w->cols);
    quant_unpack_row(w->data + (size_t)r * w->row_stride, bits, w->cols, codes);
    size_t ss = w->format == WF_AFFINE ? (w->scale_dtype == DT_F32 ? 4 : 2) : 1;
    for (int64_t i = 0; i < w->cols; i++) {
        double s = scale_of(w, w->scales + (size_t)r * w->scale_stride + (size_t)(i / gs) * ss);
        double c = w->format == WF_AFFINE ? codes[i] - (1 << (bits - 1)) : e2m1_to_f32(codes[i]);
        out[i] = fabs(s * c * quant_global(w));
    }
    free(codes);
}

/* Sum of the magnitudes of the terms the kernel adds in f32 (for its rounding
 * bound): |s_g| * d_b * |c_i * q_i| per element (c_i centred), |b_g + C s_g| * |x_i|
 * for the bias term, times |global|. The VNNI kernel regroups the affine sum
 * (quant.h): |s_g| * d_b * |code_i * q_i| + |b_g| * |x_i| + |s_g| * C * (|x_i| +
 * d_b * |q_i|) instead, and takes fp4 codes as 2 e2m1 + 12, the 12 * q taken off
 * per group: 0.5 * |s_g| * d_b * ((2 e2m1_i + 12) + 12) * |q_i|. */
static double term_magnitude(const weight *w, int64_t r, const quant_act *a, const float *x) {
    const int8_t *q = a->q;
    const float *d = a->d;
    static const int E2M1X2[16] = {0, 1, 2, 3, 4, 6, 8, 12, 0, -1, -2, -3, -4, -6, -8, -12};
    int bits = quant_format_bits(w->format, w->bits), gs = quant_format_group(w->format, w->group_size);
    uint8_t *codes = malloc((size_t)w->cols);
    quant_unpack_row(w->data + (size_t)r * w->row_stride, bits, w->cols, codes);
    size_t ss = w->format == WF_AFFINE ? (w->scale_dtype == DT_F32 ? 4 : 2) : 1;
    double m = 0, m_vnni = 0, C = 1 << (bits - 1);
    for (int64_t i = 0; i < w->cols; i++) {
        int64_t g = i / gs;
        double s = fabs(scale_of(w, w->scales + (size_t)r * w->scale_stride + (size_t)g * ss));
        double c = w->format == WF_AFFINE ? abs(codes[i] - (1 << (bits - 1))) : abs(E2M1X2[codes[i]]) * 0.5;
        m += s * d[i / 32] * c * abs(q[i]);
        if (!w->biases) {   /* fp4 with VNNI: 0.5 * (2 e2m1 + 12) * q per element, less 0.5 * 12 * q per group */
            m_vnni += 0.5 * s * d[i / 32] * ((E2M1X2[codes[i]] + 12) + 12) * abs(q[i]);
            continue;
        }
        double b = scale_of(w, w->biases + (size_t)r * w->scale_stride + (size_t)g * ss);
        m += fabs(b + s * C) * fabs(x[i]);
        m_vnni += s * d[i / 32] * codes[i] * abs(q[i]) + fabs(b) * fabs(x[i]) + s * C * (fabs(x[i]) + d[i / 32] * abs(q[i]));
    }
    free(codes);
    float g = quant_global(w);
    return (a->vnni ? m_vnni : m) * fabs(g);
}

static int check_weight(const char *what, rand_weight *rw) {
    weight *w = &rw->w;
    int64_t rows = w->rows, cols = w->cols;
    int gs = quant_format_group(w->format, w->group_size);
    enum { NX = 3 };
    size_t xs = (size_t)cols + 5, ys = (size_t)rows + 2;
    float *x = malloc(xs * NX * sizeof *x), *y = malloc(ys * NX * sizeof *y), *y1 = malloc(ys * sizeof *y1);
    double *sca = malloc((size_t)cols * sizeof *sca);
    int8_t *qref = malloc((size_t)cols);
    float *dref = malloc((size_t)cols / 32 * sizeof *dref);
    size_t bytes = quant_act_bytes(cols);
    uint8_t *scratch = malloc(bytes * NX + 7);
    quant_act a[NX];
    int fails = 0;
    double worst_rel = 0;
    for (int t = 0; t < NX; t++) {
        make_x(x + (size_t)t * xs, cols, t);
        /* odd scratch alignment: prepare aligns it itself */
        quant_act_prepare(w, x + (size_t)t * xs, scratch + 3 + (size_t)t * bytes, &a[t]);
        /* the quantizer, from its definition with libm's rintf (round to nearest even) */
        const float *xt = x + (size_t)t * xs;
        for (int64_t b = 0; b < cols / 32; b++) {
            float amax = 0;
            for (int i = 0; i < 32; i++) amax = fmaxf(amax, fabsf(xt[b * 32 + i]));
            float id = amax != 0.0f ? 127.0f / amax : 0.0f;
            dref[b] = amax / 127.0f;
            for (int i = 0; i < 32; i++) qref[b * 32 + i] = (int8_t)rintf(xt[b * 32 + i] * id);
        }
        if ((memcmp(qref, a[t].q, (size_t)cols) || memcmp(dref, a[t].d, (size_t)cols / 32 * 4)) && fails++ < 3)
            test_fail(__FILE__, __LINE__, "%s: AVX2 activation quantization differs from the definition", what);
        int8_t *qc = malloc((size_t)cols);
        float *dc = malloc((size_t)cols / 32 * sizeof *dc);
        quant_act_quantize(xt, cols, qc, dc);
        if ((memcmp(qref, qc, (size_t)cols) || memcmp(dref, dc, (size_t)cols / 32 * 4)) && fails++ < 3)
            test_fail(__FILE__, __LINE__, "%s: quant_act_quantize differs from the definition", what);
        free(qc);
        free(dc);
    }
    for (size_t i = 0; i < ys * NX; i++) y[i] = -777.0f;
    int64_t r0 = 1, r1 = rows - 1;
    quant_matmul_rows_q8(w, r0, r1, a, NX, y, ys);
    for (int t = 0; t < NX; t++) {
        const float *xt = x + (size_t)t * xs;
        for (int64_t r = 0; r < rows; r++) {
            float yv = y[(size_t)t * ys + r];
            if (r < r0 || r >= r1) {
                if (yv != -777.0f && fails++ < 3) test_fail(__FILE__, __LINE__, "%s: row %lld outside the range written", what, (long long)r);
                continue;
            }
            /* (1) the kernel against the same quantized arithmetic in double. Bound:
               every term passes through at most 3 f32 roundings (d_b * isum, * s_g,
               the add), and the sums are at most cols/64 + 3 (lanes, then the
               horizontal add), gs/8 + 3 (x group sums) and cols/gs + 3 (bias dot)
               deep: |err| <= (cols/32 + gs + 16) * 2^-24 * sum |terms| (Higham's
               gamma_n, generously rounded up). */
            double ref = quant_dot_q8_ref(w, r, a[t].q, a[t].d, xt);
            double mag = term_magnitude(w, r, &a[t], xt);
            double tol = ((double)cols / 32 + gs + 16) * 0x1p-24 * mag + 1e-30;
            if (!(fabs(yv - ref) <= tol) && fails++ < 3)
                test_fail(__FILE__, __LINE__, "%s row %lld x%d: int8 kernel %.9g vs its reference %.9g (tol %.3g)", what,
                          (long long)r, t, yv, ref, tol);
            /* the same vector alone: bit-identical */
            quant_matmul_rows_q8(w, r, r + 1, &a[t], 1, y1, 1);
            if (memcmp(&y1[r], &yv, 4) && fails++ < 3)
                test_fail(__FILE__, __LINE__, "%s row %lld x%d: batched %.9g != single %.9g", what, (long long)r, t, yv, y1[r]);
            /* (2) against the exact f32-activation dot. With q_i = rint(fl(x_i * id)):
               |q_i - x_i id| <= 1/2 + 127u, |d_b id - 1| <= 2u + u^2, so
               |d_b q_i - x_i| <= d_b (1/2 + 127u) + amax (2u + u^2) <= d_b (1/2 + 400u).
               Only the scaled (centred) codes s_g * c_i meet the quantized x (the rest
               of an affine weight is applied to exact group sums), hence
               |dot_q - dot| <= sum_b d_b (1/2 + 400u) sum_{i in b} |s_g c_i| |global|;
               plus the two f32 results' final roundings. */
            scaled_codes_abs(w, r, sca);
            double bound = 0;
            for (int64_t i = 0; i < cols; i++) bound += (double)a[t].d[i / 32] * (0.5 + 400 * 0x1p-24) * sca[i];
            double exact = quant_dot_ref(w, r, xt);
            double b2 = bound + 0x1p-23 * (fabs(exact) + fabs(ref)) + 1e-30;
            if (!(fabs(ref - exact) <= b2) && fails++ < 3)
                test_fail(__FILE__, __LINE__, "%s row %lld x%d: quantized dot %.9g vs exact %.9g beyond the bound %.3g", what,
                          (long long)r, t, ref, exact, b2);
            double rel = fabs(ref - exact) / (bound + 1e-30);
            if (rel > worst_rel) worst_rel = rel;
        }
    }
    if (fails == 0) printf("    %-28s worst |q8 - exact| / bound = %.3f\n", what, worst_rel);
    free(x); free(y); free(y1); free(sca); free(qref); free(dref); free(scratch);
    return fails;
}

TEST(quant_int8_kernels_match_reference_and_bound) {
    if (!quant_using_avx2()) SKIP("no AVX2: the int8-activation kernels are not used on this CPU");
    static const int64_t cols_list[] = {64, 128, 192, 512, 2048};
    static const dtype dts[] = {DT_BF16, DT_F16, DT_F32};
    char what[96];
    int bad = 0;
    for (int bi = 0; bi < 2; bi++)
        for (int gi = 0; gi < 3; gi++)
            for (int ci = 0; ci < 5; ci++) {
                int bits = bi ? 8 : 4, gs = 32 << gi;
                int64_t cols = cols_list[ci];
                if (cols % gs) continue;
                dtype dt = dts[(bi + gi + ci) % 3];
                rand_weight rw = make_weight(WF_AFFINE, bits, gs, dt, 7, cols, ci == 2 ? 0.75f : 1.0f);
                CHECK(quant_act_supported(&rw.w));
                snprintf(what, sizeof what, "affine%d g%d %s cols %lld", bits, gs, dt == DT_F32 ? "f32" : dt == DT_F16 ? "f16" : "bf16",
                         (long long)cols);
                bad += check_weight(what, &rw);
                free_weight(&rw);
            }
    for (int f = 0; f < 2; f++)
        for (int ci = 0; ci < 5; ci++) {
            wformat fmt = f ? WF_MXFP4 : WF_NVFP4;
            rand_weight rw = make_weight(fmt, 4, 0, DT_U8, 7, cols_list[ci], ci == 1 ? 0.3f : 1.0f);
            CHECK(quant_act_supported(&rw.w));
            snprintf(what, sizeof what, "%s cols %lld", f ? "mxfp4" : "nvfp4", (long long)cols_list[ci]);
            bad += check_weight(what, &rw);
            free_weight(&rw);
        }
    CHECK(bad == 0);
}

TEST(quant_int8_extreme_codes_and_activations) {
    /* 8-bit codes 0 and 255 (centred: -128 and 127) against activations of
       +-127 (every x of a block equal in magnitude): the AVX2 step's pairs
       reach 2 * 128 * 127, the most its maddubs holds without saturating */
    if (!quant_using_avx2()) SKIP("no AVX2");
    enum { COLS = 256 };
    rand_weight rw = make_weight(WF_AFFINE, 8, 64, DT_BF16, 4, COLS, 1.0f);
    size_t rs = rw.w.row_stride;
    for (int i = 0; i < COLS; i++) {
        rw.data[i] = 0;
        rw.data[rs + (size_t)i] = 255;
        rw.data[2 * rs + (size_t)i] = i % 2 ? 255 : 0;
        rw.data[3 * rs + (size_t)i] = i / 2 % 2 ? 0 : 255;
    }
    float x[COLS], y[4];
    void *scratch = malloc(quant_act_bytes(COLS));
    for (int v = 0; v < 2; v++) {
        for (int i = 0; i < COLS; i++) x[i] = v == 0 || i / 2 % 2 ? 1.5f : -1.5f;
        quant_act a;
        quant_act_prepare(&rw.w, x, scratch, &a);
        quant_matmul_rows_q8(&rw.w, 0, 4, &a, 1, y, 4);
        for (int r = 0; r < 4; r++) {
            double ref = quant_dot_q8_ref(&rw.w, r, a.q, a.d, x);
            double tol = ((double)COLS / 32 + 64 + 16) * 0x1p-24 * term_magnitude(&rw.w, r, &a, x) + 1e-30;
            CHECKF(fabs(y[r] - ref) <= tol, "x%d row %d: %.9g vs reference %.9g (tol %.3g)", v, r, y[r], ref, tol);
        }
    }
    free(scratch);
    free_weight(&rw);
}

/* mxfp8 rows against activations rounded to bf16 (AVX512-BF16; elsewhere
 * mxfp8 keeps the f32 path, which quant_act_supported says): against the
 * same arithmetic in double, within f32 summation's bound; against the exact
 * dot, within the activations' rounding, 2^-9 of each |s_g e4m3_i x_i|, plus
 * that; batched = single; NaN codes and NaN scales propagate. */
TEST(quant_fp8_bf16_activations) {
    rand_weight probe = make_weight(WF_MXFP8, 8, 0, DT_U8, 1, 128, 1.0f);
    int available = quant_act_fp8_available();
    CHECK(quant_act_supported(&probe.w) == available);
    free_weight(&probe);
    if (!available) return;
    enum { NX = 3, ROWS = 9 };
    const int64_t cols_list[] = {64, 1088, 2048};   /* 2, 34 (a partial chunk of 16 scales) and 64 groups */
    const float globals[] = {1.0f, 0.375f};
    for (int ci = 0; ci < 3; ci++)
        for (int gi = 0; gi < 2; gi++) {
            int64_t cols = cols_list[ci];
            rand_weight rw = make_weight(WF_MXFP8, 8, 0, DT_U8, ROWS, cols, globals[gi]);
            if (ci == 2) {   /* a NaN code in row 3, a NaN scale in row 5 */
                rw.data[3 * rw.w.row_stride + 77] = 0xff;
                rw.scales[5 * rw.w.scale_stride + 63] = 0xff;
            }
            REQUIRE(quant_act_supported(&rw.w));
            float *x = malloc((size_t)cols * NX * sizeof *x), y[NX * ROWS], y1[ROWS];
            void *scratch = malloc(quant_act_bytes(cols) * NX);
            quant_act a[NX];
            for (int t = 0; t < NX; t++) {
                make_x(x + (size_t)t * cols, cols, t);
                quant_act_prepare(&rw.w, x + (size_t)t * cols, (uint8_t *)scratch + (size_t)t * quant_act_bytes(cols), &a[t]);
            }
            quant_matmul_rows_q8(&rw.w, 0, ROWS, a, NX, y, ROWS);
            for (int t = 0; t < NX; t++) {
                const float *xt = x + (size_t)t * cols;
                for (int r = 0; r < ROWS; r++) {
                    float yv = y[t * ROWS + r];
                    quant_matmul_rows_q8(&rw.w, r, r + 1, &a[t], 1, y1, 1);
                    CHECKF(!memcmp(&y1[r], &yv, 4), "cols %lld row %d x%d: batched %.9g != single %.9g", (long long)cols, r, t,
                           yv, y1[r]);
                    if (ci == 2 && (r == 3 || r == 5)) {
                        CHECKF(isnan(yv), "row %d: %g, not NaN", r, yv);
                        continue;
                    }
                    double mag = 0, magx = 0;
                    const uint8_t *row = rw.w.data + (size_t)r * rw.w.row_stride, *sp = rw.w.scales + (size_t)r * rw.w.scale_stride;
                    for (int64_t i = 0; i < cols; i++) {
                        double v = fabs((double)quant_e8m0(sp[i / 32]) * quant_e4m3(row[i])) * fabs(globals[gi]);
                        mag += v * fabs(bf16_to_f32(f32_to_bf16(xt[i])));
                        magx += v * fabs(xt[i]);
                    }
                    double ref = quant_dot_q8_ref(&rw.w, r, NULL, NULL, xt), exact = quant_dot_ref(&rw.w, r, xt);
                    double tol = ((double)cols / 32 + 48) * 0x1p-24 * mag + 1e-30;
                    CHECKF(fabs(yv - ref) <= tol, "cols %lld row %d x%d: %.9g vs its reference %.9g (tol %.3g)", (long long)cols,
                           r, t, yv, ref, tol);
                    double bound = 0x1p-9 * magx + tol + 0x1p-23 * fabs(exact);
                    CHECKF(fabs(yv - exact) <= bound, "cols %lld row %d x%d: %.9g vs exact %.9g (bound %.3g)", (long long)cols,
                           r, t, yv, exact, bound);
                }
            }
            free(scratch);
            free(x);
            free_weight(&rw);
        }
}

/* Row r holds E4M3 code r, as every element of an mxfp8 row (scales 1) and
 * as every scale of an nvfp4 row (elements 1.0). With x = 127, which the int8
 * quantizer and bf16 keep exactly, row r's dot is 256 * 127 * e4m3(r) through
 * the f32 rows and the quantized (or bf16) ones alike: one wrong table entry
 * or widening among the 256 codes shows, even a small one that a random
 * row's rounding bound would hide. */
TEST(quant_every_e4m3_code_through_the_rows) {
    enum { COLS = 256 };   /* 16 nvfp4 scales: one whole vector of them */
    float x[COLS], y[256];
    for (int i = 0; i < COLS; i++) x[i] = 127.0f;
    for (int f = 0; f < 2; f++) {
        wformat fmt = f ? WF_NVFP4 : WF_MXFP8;
        rand_weight rw = make_weight(fmt, f ? 4 : 8, 0, DT_U8, 256, COLS, 1.0f);
        for (int r = 0; r < 256; r++) {
            memset(rw.data + (size_t)r * rw.w.row_stride, f ? 0x22 : r, rw.w.row_stride);   /* E2M1 0x2: 1.0 */
            memset(rw.scales + (size_t)r * rw.w.scale_stride, f ? r : 127, rw.w.scale_stride);
        }
        for (int path = 0; path < 2; path++) {
            if (path == 0) quant_matmul_rows(&rw.w, 0, 256, x, 1, COLS, y, 256);
            else {
                if (!quant_act_supported(&rw.w)) continue;
                void *scratch = malloc(quant_act_bytes(COLS));
                quant_act a;
                quant_act_prepare(&rw.w, x, scratch, &a);
                quant_matmul_rows_q8(&rw.w, 0, 256, &a, 1, y, 256);
                free(scratch);
            }
            for (int r = 0; r < 256; r++) {
                float want = (float)COLS * 127.0f * quant_e4m3((uint8_t)r);
                CHECKF(isnan(want) ? isnan(y[r]) : y[r] == want, "%s %s rows, code 0x%02x: %.9g, want %.9g",
                       f ? "nvfp4" : "mxfp8", path ? "quantized" : "f32", r, y[r], want);
            }
        }
        free_weight(&rw);
    }
}

TEST(quant_int8_coverage) {
    if (!quant_using_avx2()) SKIP("no AVX2");
    rand_weight a6 = make_weight(WF_AFFINE, 6, 64, DT_BF16, 2, 128, 1.0f);
    rand_weight fp8 = make_weight(WF_MXFP8, 8, 0, DT_U8, 2, 128, 1.0f);
    rand_weight a4 = make_weight(WF_AFFINE, 4, 32, DT_BF16, 2, 96, 1.0f);   /* cols not a multiple of 64 */
    CHECK(!quant_act_supported(&a6.w));
    CHECK(quant_act_supported(&fp8.w) == quant_act_fp8_available());   /* bf16 activations (below) */
    CHECK(!quant_act_supported(&a4.w));
    quant_set_fast(0);   /* the portable build has no integer kernels */
    a6.w.bits = 4;
    CHECK(!quant_act_supported(&a6.w));
    quant_set_fast(1);
    free_weight(&a6); free_weight(&fp8); free_weight(&a4);
}

/* linear(): one quantization per call shared by all tasks, so 1 and 2
 * threads and linear_rows agree bit for bit; exact_act = 1 is the f32 path. */
TEST(quant_int8_linear_threads_and_exact_switch) {
    if (!quant_using_avx2()) SKIP("no AVX2");
    rand_weight rw = make_weight(WF_AFFINE, 4, 64, DT_BF16, 203, 512, 1.0f);
    weight *w = &rw.w;
    int n = 3, rows = (int)w->rows, cols = (int)w->cols;
    size_t ss = (size_t)LINEAR_ROW_BLOCK * cols;
    float *x = malloc((size_t)n * cols * 4), *scratch = malloc(2 * ss * 4);
    float *y1 = malloc((size_t)n * rows * 4), *y2 = malloc((size_t)n * rows * 4), *y3 = malloc((size_t)n * rows * 4);
    for (int t = 0; t < n; t++) make_x(x + (size_t)t * cols, cols, t);
    thread_pool *p1 = pool_new(1), *p2 = pool_new(2);
    linear(p1, w, x, n, cols, y1, rows, scratch, ss, NULL);
    linear(p2, w, x, n, cols, y2, rows, scratch, ss, NULL);
    CHECK(memcmp(y1, y2, (size_t)n * rows * 4) == 0);
    linear_rows(w, 0, rows, x, n, cols, y3, rows, scratch);
    CHECK(memcmp(y1, y3, (size_t)n * rows * 4) == 0);
    /* the int8 path was taken: it differs from the f32 path, which exact_act selects */
    w->exact_act = 1;
    linear(p2, w, x, n, cols, y2, rows, scratch, ss, NULL);
    quant_matmul_rows(w, 0, rows, x, n, cols, y3, rows);
    CHECK(memcmp(y2, y3, (size_t)n * rows * 4) == 0);
    CHECK(memcmp(y1, y2, (size_t)n * rows * 4) != 0);
    pool_free(p1);
    pool_free(p2);
    free(x); free(scratch); free(y1); free(y2); free(y3);
    free_weight(&rw);
}

/* The batched product on quantized rows with f32 activations (exact_act;
 * affine rows otherwise take 16-bit ones where the CPU has AVX-512 VNNI,
 * test_quant_x16.c): the bits of the reference kernel on the rows from
 * weight_row_f32, for several groups, widths the fast decoder does not
 * cover (3 and 6 bits), global scales, and every fp format, with 2 threads. */
TEST(quant_int8_batched_column_blocks_match_whole_rows) {
    struct { wformat f; int bits, gs; dtype dt; float global; } cases[] = {
        {WF_AFFINE, 4, 64, DT_BF16, 1.0f}, {WF_AFFINE, 8, 32, DT_F16, 1.0f}, {WF_AFFINE, 4, 128, DT_F32, 1.0f},
        {WF_AFFINE, 3, 32, DT_BF16, 1.0f}, {WF_AFFINE, 6, 128, DT_BF16, 0.7f}, {WF_NVFP4, 4, 0, DT_U8, 0.3f}, {WF_MXFP4, 4, 0, DT_U8, 1.0f},
        {WF_MXFP8, 8, 0, DT_U8, 1.0f}};
    int rows = 45, cols = 768, n = 6, np = gemm_xt_lanes(n);
    float *x = malloc((size_t)n * cols * 4), *xt = calloc((size_t)cols * np, 4), *wf = malloc((size_t)rows * cols * 4);
    float *acc = malloc((size_t)rows * np * 4), *y = malloc((size_t)n * rows * 4);
    size_t ss = linear_rows_scratch_floats(n, cols) + linear_packed_floats(n, cols);
    float *scratch = malloc(2 * ss * 4), *packed = malloc(linear_packed_floats(n, cols) * 4);
    for (int t = 0; t < n; t++) make_x(x + (size_t)t * cols, cols, t);
    for (int c = 0; c < cols; c++)
        for (int t = 0; t < n; t++) xt[(size_t)c * np + t] = x[(size_t)t * cols + c];
    thread_pool *p2 = pool_new(2);
    for (size_t k = 0; k < sizeof cases / sizeof *cases; k++) {
        rand_weight rw = make_weight(cases[k].f, cases[k].bits, cases[k].gs, cases[k].dt, rows, cols, cases[k].global);
        rw.w.exact_act = 1;
        for (int r = 0; r < rows; r++) weight_row_f32(&rw.w, r, wf + (size_t)r * cols);
        kernels_reference()->gemm_f32_xt(wf, (size_t)cols, rows, xt, n, cols, acc, 1);
        linear(p2, &rw.w, x, n, cols, y, rows, scratch, ss, packed);
        int same = 1;
        for (int t = 0; t < n; t++)
            for (int r = 0; r < rows; r++) same &= memcmp(&y[(size_t)t * rows + r], &acc[(size_t)r * np + t], 4) == 0;
        CHECKF(same, "case %zu (format %d, group %d): batched bits differ from the decoded rows'", k, (int)cases[k].f,
               cases[k].gs);
        free_weight(&rw);
    }
    pool_free(p2);
    free(x); free(xt); free(wf); free(acc); free(y); free(scratch); free(packed);
}

/* linear_many over two weights of one input (SwiGLU's gate and up): the
 * bits of two linear() calls, on the int8 path (a 4-bit and an 8-bit weight
 * of different heights, quantized activations for each) and on the batched
 * path (5 vectors, transposed once for both), with 2 threads. */
TEST(quant_int8_linear_many_one_input_matches_two_linears) {
    rand_weight r0 = make_weight(WF_AFFINE, 4, 64, DT_BF16, 203, 512, 1.0f);
    rand_weight r1 = make_weight(WF_AFFINE, 8, 32, DT_BF16, 77, 512, 1.0f);
    int cols = 512, rows0 = 203, rows1 = 77;
    size_t ss = linear_rows_scratch_floats(5, cols) + linear_packed_floats(5, cols);
    float *x = malloc((size_t)5 * cols * 4), *scratch = malloc(2 * ss * 4), *packed = malloc(linear_packed_floats(5, cols) * 4);
    float *a0 = malloc((size_t)5 * rows0 * 4), *a1 = malloc((size_t)5 * rows0 * 4);
    float *b0 = malloc((size_t)5 * rows0 * 4), *b1 = malloc((size_t)5 * rows0 * 4);
    for (int t = 0; t < 5; t++) make_x(x + (size_t)t * cols, cols, t);
    thread_pool *p2 = pool_new(2);
    int counts[] = {2, 5};
    for (int i = 0; i < 2; i++) {
        int n = counts[i];
        linear(p2, &r0.w, x, n, cols, a0, rows0, scratch, ss, packed);
        linear(p2, &r1.w, x, n, cols, a1, rows0, scratch, ss, packed);
        const weight *w[2] = {&r0.w, &r1.w};
        const float *in[2] = {x, x};
        float *out[2] = {b0, b1};
        linear_many(p2, 2, w, in, n, cols, out, rows0, scratch, ss, packed);
        CHECKF(memcmp(a0, b0, (size_t)n * rows0 * 4) == 0, "%d vectors: first weight differs", n);
        for (int t = 0; t < n; t++)
            CHECKF(memcmp(a1 + (size_t)t * rows0, b1 + (size_t)t * rows0, (size_t)rows1 * 4) == 0,
                   "%d vectors: second weight differs (vector %d)", n, t);
    }
    pool_free(p2);
    free(x); free(scratch); free(packed); free(a0); free(a1); free(b0); free(b1);
    free_weight(&r0);
    free_weight(&r1);
}

/* linear_many (decode's experts in one parallel section) gives each weight
 * linear()'s bits: more weights than one section takes, inputs shared by
 * neighbours (quantized once) or not, a neighbour with the same input but
 * another layout, two widths, plain and quantized formats, 1-2 vectors and
 * 5 (one linear() after another). */
TEST(quant_int8_linear_many_matches_linears) {
    enum { COUNT = 21 };
    int cols[2] = {512, 256}, rows = 45;
    float *xs[3];
    for (int i = 0; i < 3; i++) {
        xs[i] = malloc((size_t)5 * 512 * 4);
        for (int t = 0; t < 5; t++) make_x(xs[i] + (size_t)t * 512, 512, 10 * i + t);
    }
    rand_weight rw[COUNT];
    const weight *w[COUNT];
    const float *x[COUNT];
    float *y[COUNT], *ref = malloc((size_t)5 * rows * 4);
    for (int k = 0; k < COUNT; k++) {
        int c = cols[k % 7 == 6];
        switch (k % 5) {
        case 0: case 1: rw[k] = make_weight(WF_AFFINE, 4, 64, DT_BF16, rows, c, 1.0f); break;
        case 2: rw[k] = make_weight(WF_AFFINE, 8, 32, DT_F16, rows, c, 1.0f); break;
        case 3:   /* plain bf16 */
            memset(&rw[k], 0, sizeof rw[k]);
            rw[k].w = (weight){.format = WF_BF16, .rows = rows, .cols = c, .row_stride = (size_t)c * 2};
            rw[k].data = malloc((size_t)rows * c * 2);
            for (int64_t i = 0; i < (int64_t)rows * c; i++) ((uint16_t *)(void *)rw[k].data)[i] = f32_to_bf16(rndf());
            rw[k].w.data = rw[k].data;
            break;
        default: rw[k] = make_weight(WF_NVFP4, 0, 0, DT_U8, rows, c, 0.5f); break;
        }
        w[k] = &rw[k].w;
        x[k] = xs[k % 4 == 3 ? 1 + k % 2 : 0];   /* most share the first input */
        y[k] = malloc((size_t)5 * rows * 4);
    }
    size_t ss = (size_t)18 * 3 * (512 + 64) + linear_rows_scratch_floats(5, 512) + linear_packed_floats(5, 512);
    float *scratch = malloc(2 * ss * 4), *packed = malloc(linear_packed_floats(5, 512) * 4);
    thread_pool *p2 = pool_new(2);
    int counts[] = {1, 2, 5};
    for (int i = 0; i < 3; i++) {
        int n = counts[i];
        linear_many(p2, COUNT, w, x, n, 512, y, rows, scratch, ss, packed);
        for (int k = 0; k < COUNT; k++) {
            linear(p2, w[k], x[k], n, 512, ref, rows, scratch, ss, packed);
            CHECKF(memcmp(ref, y[k], (size_t)n * rows * 4) == 0, "%d vectors: weight %d differs from linear()", n, k);
        }
    }
    pool_free(p2);
    for (int k = 0; k < COUNT; k++) { free_weight(&rw[k]); free(y[k]); }
    for (int i = 0; i < 3; i++) free(xs[i]);
    free(ref); free(scratch); free(packed);
}

/* ---- 16-bit activations (prefill; quant.h) ---------------------------------- */

/* quant.h's definition of the prepared vectors, in plain C. */
static void x16_expected(const float *x, int64_t cols, int gs, int16_t *q, float *d, float *xsum) {
    for (int64_t g = 0; g < cols / gs; g++) {
        float amax = 0.0f, sum = 0.0f;
        for (int i = 0; i < gs; i++) {
            amax = fmaxf(amax, fabsf(x[g * gs + i]));
            sum += x[g * gs + i];
        }
        float id = amax > 0.0f ? 32767.0f / amax : 0.0f;
        d[g] = fmaf(sum, 0.0f, amax / 32767.0f);   /* NaN for a non-finite group */
        xsum[g] = sum;
        for (int i = 0; i < gs; i++) q[g * gs + i] = (int16_t)rintf(x[g * gs + i] * id);
    }
}

/* quant.h's weight integers c_i and group factors s_g, b_g for row r:
 * affine centred codes, scale, bias + C * scale; fp4 2 * E2M1, half the
 * scale (times the global one), 0. */
static void x16_expected_weights(const weight *w, int64_t r, int *c, float *sg, float *bg) {
    int bits = quant_format_bits(w->format, w->bits), gs = quant_format_group(w->format, w->group_size);
    size_t ss = w->format != WF_AFFINE ? 1 : w->scale_dtype == DT_F32 ? 4 : 2;
    uint8_t *codes = malloc((size_t)w->cols);
    quant_unpack_row(w->data + (size_t)r * w->row_stride, bits, w->cols, codes);
    int C = w->format == WF_AFFINE ? 1 << (bits - 1) : 0;
    for (int64_t i = 0; i < w->cols; i++) c[i] = w->format == WF_AFFINE ? codes[i] - C : (int)(2.0f * e2m1_to_f32(codes[i]));
    for (int64_t g = 0; g < w->cols / gs; g++) {
        float s = (float)scale_of(w, w->scales + (size_t)r * w->scale_stride + (size_t)g * ss);
        if (w->format == WF_AFFINE) {
            sg[g] = s;
            bg[g] = (float)scale_of(w, w->biases + (size_t)r * w->scale_stride + (size_t)g * ss) + (float)C * s;
        } else {
            sg[g] = quant_global(w) != 1.0f ? 0.5f * s * quant_global(w) : 0.5f * s;
            bg[g] = 0.0f;
        }
    }
    free(codes);
}

/* quant.h's definition of one output from those vectors: exact integer
 * sums, then per group fma(sum * d, s, acc) and, for affine rows,
 * fma(xsum, b, acc) in f32. */
static float x16_expected_dot(const weight *w, int64_t r, const int16_t *q, const float *d, const float *xsum) {
    int gs = quant_format_group(w->format, w->group_size);
    int *c = malloc((size_t)w->cols * sizeof *c);
    float *sg = malloc((size_t)w->cols * 4), *bg = malloc((size_t)w->cols * 4);
    x16_expected_weights(w, r, c, sg, bg);
    float acc = 0.0f;
    for (int64_t g = 0; g < w->cols / gs; g++) {
        int64_t sum = 0;
        for (int i = 0; i < gs; i++) sum += (int64_t)c[g * gs + i] * q[g * gs + i];
        if (sum != (int32_t)sum) test_fail(__FILE__, __LINE__, "integer sum %lld past int32", (long long)sum);
        acc = fmaf((float)(int32_t)sum * d[g], sg[g], acc);
        if (w->format == WF_AFFINE) acc = fmaf(xsum[g], bg[g], acc);
    }
    free(c); free(sg); free(bg);
    return acc;
}

/* The prepared vectors (two column ranges, as two threads would) and the
 * kernels' outputs equal the definition bit for bit, for every affine width,
 * group and scale type, nvfp4 (with and without a global scale) and mxfp4,
 * row counts off the tiles' sizes, column counts off the column blocks', and
 * 4-50 vectors (1-3 vectors of 16 lanes per tile, idle lanes). Against the
 * f64 dot of the dequantized row, each output is within the activations'
 * bound 0.5 * sum_g d_g |s_g| sum_i |c_i| plus f32 rounding. Without the
 * kernels (no AVX-512 VNNI or AVX-VNNI), no weight takes them. Where the CPU
 * has AMX-INT8, twice: on its tiles (groups of 32 or more) and without. */
static void x16_cases(int amx);
TEST(quant_x16_matches_definition_and_bound) {
    x16_cases(1);
    if (quant_amx_int8()) {
        quant_amx_allow(0);
        x16_cases(0);
        quant_amx_allow(1);
    }
}

static void x16_cases(int amx) {
    rand_weight probe = make_weight(WF_AFFINE, 4, 64, DT_BF16, 1, 64, 1.0f);
    int avail = quant_x16_available();
    CHECK(quant_x16_group(&probe.w) == (avail ? 64 : 0));
    free_weight(&probe);
    if (!avail) return;
    struct { wformat f; int bits, gs; dtype dt; int rows, cols, n; float global; } cases[] = {
        {WF_AFFINE, 4, 64, DT_BF16, 45, 768, 37, 1}, {WF_AFFINE, 8, 32, DT_F16, 33, 320, 4, 1},
        {WF_AFFINE, 4, 128, DT_F32, 17, 640, 50, 1}, {WF_AFFINE, 2, 32, DT_BF16, 40, 96, 16, 1},
        {WF_AFFINE, 3, 64, DT_BF16, 9, 256, 17, 1}, {WF_AFFINE, 5, 128, DT_F16, 31, 384, 33, 1},
        {WF_AFFINE, 6, 32, DT_BF16, 12, 512, 48, 1}, {WF_AFFINE, 8, 128, DT_F32, 64, 1024, 20, 1},
        {WF_NVFP4, 4, 16, DT_U8, 45, 768, 37, 1}, {WF_NVFP4, 4, 16, DT_U8, 20, 272, 5, 0.37f},
        {WF_MXFP4, 4, 32, DT_U8, 33, 576, 48, 1},
    };
    double worst = 0;
    for (size_t k = 0; k < sizeof cases / sizeof *cases; k++) {
        int rows = cases[k].rows, cols = cases[k].cols, n = cases[k].n, gs = cases[k].gs, ng = cols / gs;
        rand_weight rw = make_weight(cases[k].f, cases[k].bits, gs, cases[k].dt, rows, cols, cases[k].global);
        CHECKF(quant_x16_group(&rw.w) == gs, "case %zu: group %d", k, quant_x16_group(&rw.w));
        float *x = malloc((size_t)n * cols * 4), *y = malloc((size_t)n * rows * 4), *wf = malloc((size_t)cols * 4);
        for (int t = 0; t < n; t++) make_x(x + (size_t)t * cols, cols, t);
        void *buf = malloc(quant_x16_bytes(n, cols, gs));
        float *scratch = malloc(quant_x16_scratch_floats(n, cols) * 4);
        quant_x16 a;
        quant_x16_layout(buf, n, cols, gs, &a);
        int tiles = amx && gs >= 32 && quant_amx_int8();
        CHECKF((a.qh != NULL) == tiles, "case %zu: AMX tiles %s", k, tiles ? "not taken" : "taken");
        int64_t half = (int64_t)(ng / 2) * gs;
        quant_x16_prepare(x, (size_t)cols, 0, half, &a);
        quant_x16_prepare(x, (size_t)cols, half, cols, &a);
        int16_t *q = malloc((size_t)cols * 2);
        float *d = malloc((size_t)ng * 4), *xs = malloc((size_t)ng * 4), *sg = malloc((size_t)ng * 4), *bg = malloc((size_t)ng * 4);
        int *c = malloc((size_t)cols * sizeof *c), prep_ok = 1;
        for (int t = 0; t < a.np; t++) {
            if (t < n) x16_expected(x + (size_t)t * cols, cols, gs, q, d, xs);
            else { memset(q, 0, (size_t)cols * 2); memset(d, 0, (size_t)ng * 4); memset(xs, 0, (size_t)ng * 4); }
            for (int c = 0; c < cols; c++) prep_ok &= a.q[((size_t)c / 2 * (size_t)a.np + (size_t)t) * 2 + (size_t)(c & 1)] == q[c];
            for (int g = 0; g < ng; g++)
                prep_ok &= !memcmp(&a.d[(size_t)g * a.np + t], &d[g], 4) && !memcmp(&a.xsum[(size_t)g * a.np + t], &xs[g], 4);
        }
        CHECKF(prep_ok, "case %zu: prepared vectors differ from the definition", k);
        quant_x16_matmul_rows(&rw.w, 0, rows, &a, y, (size_t)rows, scratch);
        int same = 1;
        for (int t = 0; t < n; t++) {
            const float *xt = x + (size_t)t * cols;
            x16_expected(xt, cols, gs, q, d, xs);
            for (int r = 0; r < rows; r++) {
                float want = x16_expected_dot(&rw.w, r, q, d, xs), got = y[(size_t)t * rows + r];
                same &= !memcmp(&want, &got, 4);
                /* the bound: each x_i is d_g * q_i within d_g / 2 */
                x16_expected_weights(&rw.w, r, c, sg, bg);
                weight_row_f32(&rw.w, r, wf);
                double exact = 0, bound = 0, mag = 0;
                for (int i = 0; i < cols; i++) {
                    exact += (double)wf[i] * xt[i];
                    mag += fabs((double)wf[i] * xt[i]);
                    bound += 0.5 * d[i / gs] * fabs((double)sg[i / gs]) * abs(c[i]);
                }
                double err = fabs((double)got - exact), allowed = bound + 1e-6 * mag;
                if (allowed > 0 && err / allowed > worst) worst = err / allowed;
                CHECKF(err <= allowed, "case %zu row %d vector %d: |%g - %g| > %g", k, r, t, got, exact, allowed);
            }
        }
        CHECKF(same, "case %zu (format %d, %d-bit, group %d%s): outputs differ from the definition", k, (int)cases[k].f,
               cases[k].bits, gs, tiles ? ", AMX tiles" : "");
        free(x); free(y); free(wf); free(buf); free(scratch); free(q); free(d); free(xs); free(sg); free(bg); free(c);
        free_weight(&rw);
    }
    printf("    worst |x16 - exact| / (bound + f32 rounding) = %.3f\n", worst);
}

/* vcvtneps2bf16 in plain C: nearest even, f32 denormals to a signed 0. */
static uint16_t bf16_nearest_even(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    if ((u & 0x7f800000u) == 0) return (uint16_t)(u >> 16 & 0x8000);
    return (uint16_t)((u + 0x7fffu + (u >> 16 & 1)) >> 16);
}

/* mxfp8 rows with bf16 activations (quant.h), where the CPU has
 * AVX512-BF16: the prepared vectors are the inputs rounded to bf16; every
 * output is within f32 summation rounding of the float64 dot of the
 * dequantized row with those rounded inputs (so every code decodes exactly:
 * one row holds each of the 254 non-NaN E4M3 codes, subnormals included),
 * and within 2^-9 per product more of the dot with the inputs as given; a
 * NaN code makes its row's outputs NaN. Without AVX512-BF16 the rows keep
 * f32 activations. */
TEST(quant_x16_mxfp8_bf16_pairs) {
    int rows = 37, cols = 544, n = 37, ng = cols / 32;
    rand_weight rw = make_weight(WF_MXFP8, 8, 32, DT_U8, rows, cols, 1.0f);
    int default_pairs = kernels_set_bf16_pairs(0);
    CHECK(quant_x16_group(&rw.w) == 0);   /* pairs off: f32 activations */
    kernels_set_bf16_pairs(1);   /* on wherever the CPU has them, whatever its default (kernels.h) */
    int key = quant_x16_group(&rw.w);
    if (!(key & QUANT_X16_BF16)) {
        CHECK(key == 0);
        kernels_set_bf16_pairs(default_pairs);
        free_weight(&rw);
        return;
    }
    CHECK(key == (32 | QUANT_X16_BF16));
    uint8_t *every = rw.data + 2 * rw.w.row_stride, *nan_row = rw.data + 3 * rw.w.row_stride;
    for (int i = 0; i < cols; i++) every[i] = (uint8_t)((i % 256 & 0x7f) == 0x7f ? i % 256 - 1 : i % 256);
    nan_row[300] = 0xff;
    float *x = malloc((size_t)n * cols * 4), *y = malloc((size_t)n * rows * 4), *wf = malloc((size_t)cols * 4);
    for (int t = 0; t < n; t++) make_x(x + (size_t)t * cols, cols, t);
    x[5 * cols + 10] = 1e-40f;   /* a denormal: 0 in bf16 */
    void *buf = malloc(quant_x16_bytes(n, cols, key));
    float *scratch = malloc(quant_x16_scratch_floats(n, cols) * 4);
    quant_x16 a;
    quant_x16_layout(buf, n, cols, key, &a);
    quant_x16_prepare(x, (size_t)cols, 0, 8 * 32, &a);
    quant_x16_prepare(x, (size_t)cols, 8 * 32, cols, &a);
    int prep_ok = 1;
    for (int t = 0; t < a.np; t++)
        for (int c = 0; c < cols; c++)
            prep_ok &= (uint16_t)a.q[((size_t)c / 2 * (size_t)a.np + (size_t)t) * 2 + (size_t)(c & 1)] ==
                       (t < n ? bf16_nearest_even(x[(size_t)t * cols + c]) : 0);
    CHECK(prep_ok);
    quant_x16_matmul_rows(&rw.w, 0, rows, &a, y, (size_t)rows, scratch);
    double worst = 0;
    for (int r = 0; r < rows; r++) {
        weight_row_f32(&rw.w, r, wf);
        for (int t = 0; t < n; t++) {
            const float *xt = x + (size_t)t * cols;
            float got = y[(size_t)t * rows + r];
            if (r == 3) { CHECKF(isnan(got), "vector %d: a NaN code gave %g", t, got); continue; }
            double rounded = 0, exact = 0, mag = 0;
            for (int i = 0; i < cols; i++) {
                uint32_t b = (uint32_t)bf16_nearest_even(xt[i]) << 16;
                float xb;
                memcpy(&xb, &b, 4);
                rounded += (double)wf[i] * xb;
                exact += (double)wf[i] * xt[i];
                mag += fabs((double)wf[i] * xt[i]);
            }
            /* 32 roundings within a group's sum, one per group into acc */
            double f32_rounding = (32 + ng + 2) * 0x1p-24 * mag * (1 + 0x1p-8);
            double err = fabs((double)got - rounded);
            if (mag > 0 && err / f32_rounding > worst) worst = err / f32_rounding;
            CHECKF(err <= f32_rounding, "row %d vector %d: |%g - %g| > %g", r, t, got, rounded, f32_rounding);
            CHECKF(fabs((double)got - exact) <= 0x1p-9 * mag + f32_rounding, "row %d vector %d: %g vs exact %g", r, t, got, exact);
        }
    }
    printf("    worst |bf16 pairs - dot of the rounded inputs| / f32 rounding bound = %.3f\n", worst);
    /* one-hot vectors read single weights: each exactly its dequantized value */
    int n1 = 256;
    float *x1 = calloc((size_t)n1 * cols, 4), *y1 = malloc((size_t)n1 * rows * 4);
    void *buf1 = malloc(quant_x16_bytes(n1, cols, key));
    float *scratch1 = malloc(quant_x16_scratch_floats(n1, cols) * 4);
    for (int t = 0; t < n1; t++) x1[(size_t)t * cols + t] = 1.0f;
    quant_x16_layout(buf1, n1, cols, key, &a);
    quant_x16_prepare(x1, (size_t)cols, 0, cols, &a);
    quant_x16_matmul_rows(&rw.w, 0, rows, &a, y1, (size_t)rows, scratch1);
    int exact_ok = 1;
    for (int r = 0; r < rows; r++) {
        if (r == 3) continue;
        weight_row_f32(&rw.w, r, wf);
        for (int t = 0; t < n1; t++) exact_ok &= y1[(size_t)t * rows + r] == wf[t];   /* -0 (code 0x80) sums to +0 */
    }
    CHECKF(exact_ok, "a single weight read through the bf16 pairs differs from its value");
    free(x); free(y); free(wf); free(buf); free(scratch); free(x1); free(y1); free(buf1); free(scratch1);
    kernels_set_bf16_pairs(default_pairs);
    free_weight(&rw);
}

/* mxfp8 rows with bf16 pairs off on AMX tiles (linear.c, takes_split): each
 * decoded row is exact in bf16 and the vectors are split exactly, so every
 * output is within f32 summation rounding (3 * cols exact terms) of the
 * float64 dot of the dequantized row with the vectors as given (one row
 * holds each non-NaN E4M3 code), and a single product is the f32 sum of
 * its three exact part products (two roundings, not one: hi + mid can need
 * more than 24 bits); a NaN code makes its row's outputs NaN; 1 and 2
 * threads and linear_rows agree bit for bit. */
TEST(quant_mxfp8_rows_on_amx_tiles) {
    if (!kernels_active()->gemm_bf16_split) SKIP("no AMX tiles");
    int rows = 45, cols = 544, n = 37;
    rand_weight rw = make_weight(WF_MXFP8, 8, 32, DT_U8, rows, cols, 1.0f);
    int default_pairs = kernels_set_bf16_pairs(0);
    uint8_t *every = rw.data + 2 * rw.w.row_stride, *nan_row = rw.data + 3 * rw.w.row_stride;
    for (int i = 0; i < cols; i++) every[i] = (uint8_t)((i % 256 & 0x7f) == 0x7f ? i % 256 - 1 : i % 256);
    nan_row[300] = 0xff;
    float *x = malloc((size_t)n * cols * 4), *wf = malloc((size_t)cols * 4);
    float *y1 = malloc((size_t)n * rows * 4), *y2 = malloc((size_t)n * rows * 4), *y3 = malloc((size_t)n * rows * 4);
    for (int t = 0; t < n; t++) make_x(x + (size_t)t * cols, cols, t);
    size_t ss = linear_rows_scratch_floats(n, cols) + linear_packed_floats(n, cols);
    float *scratch = malloc(2 * ss * 4), *packed = malloc(linear_packed_floats(n, cols) * 4);
    thread_pool *p1 = pool_new(1), *p2 = pool_new(2);
    linear(p1, &rw.w, x, n, cols, y1, rows, scratch, ss, packed);
    linear(p2, &rw.w, x, n, cols, y2, rows, scratch, ss, packed);
    linear_rows(&rw.w, 0, rows, x, n, cols, y3, rows, scratch);
    CHECK(memcmp(y1, y2, (size_t)n * rows * 4) == 0);
    CHECK(memcmp(y1, y3, (size_t)n * rows * 4) == 0);
    double bound_terms = (3.0 * cols + 2) * 0x1p-24;
    for (int r = 0; r < rows; r++) {
        weight_row_f32(&rw.w, r, wf);
        for (int t = 0; t < n; t++) {
            float got = y1[(size_t)t * rows + r];
            if (r == 3) { CHECKF(isnan(got), "vector %d: a NaN code gave %g", t, got); continue; }
            double exact = 0, mag = 0;
            for (int i = 0; i < cols; i++) {
                exact += (double)wf[i] * x[(size_t)t * cols + i];
                mag += fabs((double)wf[i] * x[(size_t)t * cols + i]);
            }
            CHECKF(fabs(got - exact) <= bound_terms * mag, "row %d vector %d: %.9g vs %.9g", r, t, got, exact);
        }
    }
    /* one-hot vectors of full-precision values read single products: each
       within two f32 roundings of weight * value, |w| (|hi| + |mid| + |lo|)
       * 2u / (1 - 2u) with the parts' magnitudes at most |x| (1 + 2^-7)
       (bf16 activations, off by up to 2^-9, or only two parts, 2^-17,
       would miss it) */
    for (int t = 0; t < n; t++) {
        memset(x + (size_t)t * cols, 0, (size_t)cols * 4);
        x[(size_t)t * cols + (size_t)t * 17 % cols] = (1.0f + (float)(rnd() & 0x7fffff) * 0x1p-23f) * (t % 2 ? -3.0f : 0.01f);
    }
    linear(p2, &rw.w, x, n, cols, y1, rows, scratch, ss, packed);
    int exact_ok = 1;
    for (int r = 0; r < rows; r++) {
        if (r == 3) continue;
        weight_row_f32(&rw.w, r, wf);
        for (int t = 0; t < n; t++) {
            int c = t * 17 % cols;
            double exact = (double)wf[c] * x[(size_t)t * cols + c], u = 0x1p-24;
            exact_ok &= fabs(y1[(size_t)t * rows + r] - exact) <= fabs(exact) * (1 + 0x1p-7) * 2 * u / (1 - 2 * u);
        }
    }
    CHECKF(exact_ok, "a single product through the tiles is off by more than two f32 roundings");
    pool_free(p1);
    pool_free(p2);
    kernels_set_bf16_pairs(default_pairs);
    free(x); free(wf); free(y1); free(y2); free(y3); free(scratch); free(packed);
    free_weight(&rw);
}

/* Non-finite activations make their vector's outputs NaN (the f32 path:
 * non-finite) and leave the other vectors' alone. */
TEST(quant_x16_non_finite_activations) {
    if (!quant_x16_available()) return;
    int rows = 20, cols = 256, n = 6;
    float *x = malloc((size_t)n * cols * 4), *y = malloc((size_t)n * rows * 4);
    for (int t = 0; t < n; t++) make_x(x + (size_t)t * cols, cols, t);
    x[1 * cols + 70] = NAN;
    x[3 * cols + 5] = INFINITY;
    x[4 * cols + 200] = -INFINITY;
    float *scratch = malloc((linear_rows_scratch_floats(n, cols) + linear_packed_floats(n, cols)) * 4);
    const wformat formats[3] = {WF_AFFINE, WF_NVFP4, WF_MXFP8};
    for (int k = 0; k < 3; k++) {
        rand_weight rw = make_weight(formats[k], 4, k ? 0 : 64, k ? DT_U8 : DT_BF16, rows, cols, 1.0f);
        int key = quant_x16_group(&rw.w);
        CHECK(k == 2 || key > 0);
        if (key) {
            linear_rows(&rw.w, 0, rows, x, n, (size_t)cols, y, (size_t)rows, scratch);
            for (int t = 0; t < n; t++)
                for (int r = 0; r < rows; r++) {
                    /* int16: d is NaN for the group; bf16 pairs: inf times weights of both signs */
                    float v = y[t * rows + r];
                    int bad = t == 1 || t == 3 || t == 4, ok = !bad ? isfinite(v) : k == 2 ? !isfinite(v) : isnan(v);
                    CHECKF(ok, "weight %d vector %d row %d: %g", k, t, r, v);
                }
        }
        free_weight(&rw);
    }
    free(x); free(y); free(scratch);
}

/* linear() with 16-bit activations: 1 and 2 threads and linear_rows agree bit
 * for bit, over two passes of tokens (a wide input); linear_many over a gate
 * and up of one group shares one prepared input and gives two linear()s'
 * bits; exact_act = 1 takes the f32 path instead. */
TEST(quant_x16_linear_threads_passes_and_sharing) {
    if (!quant_x16_available()) return;
    int rows = 40, cols = 5120, n = 200;
    CHECK(linear_pass_tokens(n, cols) < n);
    rand_weight g = make_weight(WF_AFFINE, 4, 64, DT_BF16, rows, cols, 1.0f);
    rand_weight u = make_weight(WF_AFFINE, 8, 64, DT_BF16, rows + 8, cols, 1.0f);
    size_t ss = linear_rows_scratch_floats(n, cols) + linear_packed_floats(n, cols);
    float *x = malloc((size_t)n * cols * 4), *scratch = malloc(2 * ss * 4), *packed = malloc(linear_packed_floats(n, cols) * 4);
    size_t ys = (size_t)rows + 8, yb = (size_t)n * ys * 4;
    float *y1 = malloc(yb), *y2 = malloc(yb), *y3 = malloc(yb), *y4 = malloc(yb);
    for (int t = 0; t < n; t++) make_x(x + (size_t)t * cols, cols, t);
    thread_pool *p1 = pool_new(1), *p2 = pool_new(2);
    linear(p1, &g.w, x, n, cols, y1, ys, scratch, ss, packed);
    linear(p2, &g.w, x, n, cols, y2, ys, scratch, ss, packed);
    linear_rows(&g.w, 0, rows, x, n, cols, y3, ys, scratch);
    int same12 = 1, same13 = 1;
    for (int t = 0; t < n; t++) {
        same12 &= !memcmp(y1 + t * ys, y2 + t * ys, (size_t)rows * 4);
        same13 &= !memcmp(y1 + t * ys, y3 + t * ys, (size_t)rows * 4);
    }
    CHECK(same12 && same13);
    linear(p2, &u.w, x, n, cols, y3, ys, scratch, ss, packed);
    const weight *w[2] = {&g.w, &u.w};
    const float *in[2] = {x, x};
    float *out[2] = {y2, y4};
    linear_many(p2, 2, w, in, n, cols, out, ys, scratch, ss, packed);
    int gate = 1;
    for (int t = 0; t < n; t++) gate &= !memcmp(y1 + t * ys, y2 + t * ys, (size_t)rows * 4);
    CHECK(gate);
    CHECK(!memcmp(y3, y4, yb));
    g.w.exact_act = 1;
    linear(p2, &g.w, x, n, cols, y2, ys, scratch, ss, packed);
    quant_matmul_rows(&g.w, 0, rows, x, n, cols, y3, ys);
    double num = 0, den = 0;
    int exact_same = 1;
    for (int t = 0; t < n; t++)
        for (int r = 0; r < rows; r++) {
            double e = (double)y1[t * ys + r] - y2[t * ys + r];
            num += e * e;
            den += (double)y2[t * ys + r] * y2[t * ys + r];
            exact_same &= fabsf(y2[t * ys + r] - y3[t * ys + r]) <= 1e-4f * (1.0f + fabsf(y3[t * ys + r]));
        }
    printf("    x16 vs f32 activations, 200 vectors of 5120: relative L2 %.3g\n", sqrt(num / den));
    CHECK(exact_same);
    CHECK(num > 0 && sqrt(num / den) < 1e-3);
    pool_free(p1);
    pool_free(p2);
    free(x); free(scratch); free(packed); free(y1); free(y2); free(y3); free(y4);
    free_weight(&g);
    free_weight(&u);
}
