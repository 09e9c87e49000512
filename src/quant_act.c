/* quant_act.c — int8 activations for decode products (quant.h, "int8
 * activations"; bf16 ones for mxfp8): which weights have such kernels, the
 * scratch layout of a prepared vector, the plain C quantizer and the
 * double-precision reference of the quantized dot, and the dispatch to
 * quant_avx2.c. */
#include <string.h>

#include "quant.h"

int quant_act_supported(const weight *w) {
    if (!quant_using_avx2() || w->cols <= 0 || w->cols % 64 || w->cols > QUANT_ACT_MAX_COLS) return 0;
    switch (w->format) {
    case WF_AFFINE: return (w->bits == 4 || w->bits == 8) && w->biases;
    case WF_NVFP4: case WF_MXFP4: return 1;
    case WF_MXFP8: return quant_act_fp8_available();
    default: return 0;
    }
}

static int act_kind(const weight *w) {
    if (w->format == WF_AFFINE) return w->bits == 8 ? QA_A8 : QA_A4;
    return w->format == WF_MXFP8 ? QA_FP8 : QA_FP4;
}

#define ALIGN 32
static size_t up(size_t n) { return (n + ALIGN - 1) & ~(size_t)(ALIGN - 1); }

/* q [cols] | k [cols] | d [cols/32] | kd [cols/8] | kc [cols/8] int32 | xsum [cols/32] (affine groups are >= 32)
 * | xres [cols/16] (nvfp4's groups of 16); mxfp8's xb [cols] bf16 takes the place of q and k */
size_t quant_act_bytes(int64_t cols) {
    size_t c = (size_t)cols;
    return ALIGN + 2 * up(c) + up(c / 32 * 4) + 2 * up(c / 8 * 4) + up(c / 32 * 4) + up(c / 16 * 4);
}

void quant_act_prepare(const weight *w, const float *x, void *scratch, quant_act *a) {
    size_t c = (size_t)w->cols;
    uint8_t *p = (uint8_t *)(((uintptr_t)scratch + ALIGN - 1) & ~(uintptr_t)(ALIGN - 1));
    a->kind = act_kind(w);
    a->vnni = a->vex = 0;
    a->cols = w->cols;
    a->q = (int8_t *)p;
    a->xb = (uint16_t *)(void *)p;   /* 2 * cols bytes: q and k, which mxfp8 does not use */
    p += up(c);
    a->k = (int8_t *)p;
    a->qc = (int32_t *)(void *)p;   /* cols / 4 values: the 8-bit kind, which has no k */
    p += up(c);
    a->d = (float *)(void *)p; p += up(c / 32 * 4);
    a->kd = (float *)(void *)p; p += up(c / 8 * 4);
    a->kc = (int32_t *)(void *)p; p += up(c / 8 * 4);
    a->xsum = (float *)(void *)p; p += up(c / 32 * 4);
    a->xres = (float *)(void *)p;
    quant_act_prepare_avx2(w, x, a);
}

void quant_matmul_rows_q8(const weight *w, int64_t row0, int64_t row1, const quant_act *a, int n_x, float *y,
                          size_t y_stride) {
    quant_matmul_rows_q8_avx2(w, row0, row1, a, n_x, y, y_stride);
}

void quant_act_quantize(const float *x, int64_t cols, int8_t *q, float *d) {
    for (int64_t b = 0; b < cols / QUANT_ACT_BLOCK; b++) {
        const float *xb = x + b * QUANT_ACT_BLOCK;
        float amax = 0.0f;
        for (int i = 0; i < QUANT_ACT_BLOCK; i++) {
            float v = xb[i] < 0 ? -xb[i] : xb[i];
            amax = v > amax ? v : amax;
        }
        float id = amax != 0.0f ? 127.0f / amax : 0.0f;
        d[b] = amax / 127.0f;
        for (int i = 0; i < QUANT_ACT_BLOCK; i++) {
            /* round to nearest even without libm: |x * id| <= 127 (+ an ulp) < 2^22 */
            float v = xb[i] * id;
            v = (v + 0x1.8p23f) - 0x1.8p23f;
            q[b * QUANT_ACT_BLOCK + i] = (int8_t)v;
        }
    }
}

static double scale_at(const uint8_t *p, dtype dt) {
    switch (dt) {
    case DT_F32: { float f; memcpy(&f, p, 4); return f; }
    case DT_F16: return f16_to_f32((uint16_t)(p[0] | p[1] << 8));
    case DT_BF16: return bf16_to_f32((uint16_t)(p[0] | p[1] << 8));
    default: return p[0];
    }
}

double quant_dot_q8_ref(const weight *w, int64_t row, const int8_t *q, const float *d, const float *x) {
    static const int E2M1X2[16] = {0, 1, 2, 3, 4, 6, 8, 12, 0, -1, -2, -3, -4, -6, -8, -12};
    uint8_t codes[QUANT_ACT_MAX_COLS];
    int bits = quant_format_bits(w->format, w->bits), gs = quant_format_group(w->format, w->group_size);
    quant_unpack_row(w->data + (size_t)row * w->row_stride, bits, w->cols, codes);
    size_t ss = w->format == WF_AFFINE ? (w->scale_dtype == DT_F32 ? 4 : 2) : 1;
    const uint8_t *sp = w->scales + (size_t)row * w->scale_stride;
    const uint8_t *bp = w->biases ? w->biases + (size_t)row * w->scale_stride : NULL;
    /* affine codes are centred on C = 2^(bits-1): s*c*x = s*(c-C)*x + C*s*x, the
       second part with the exact sums of x (quant.h) */
    int C = w->format == WF_AFFINE ? 1 << (bits - 1) : 0;
    double acc = 0.0;
    if (w->format == WF_MXFP8) {   /* sum_g s_g * sum_i e4m3(code_i) * bf16(x_i) */
        for (int64_t g = 0; g < w->cols / gs; g++) {
            double sum = 0.0;
            for (int64_t i = g * gs; i < (g + 1) * gs; i++) sum += (double)quant_e4m3(codes[i]) * bf16_to_f32(f32_to_bf16(x[i]));
            acc += quant_e8m0(sp[g]) * sum;
        }
        return acc * quant_global(w);
    }
    for (int64_t g = 0; g < w->cols / gs; g++) {
        double s;
        if (w->format == WF_AFFINE) s = scale_at(sp + (size_t)g * ss, w->scale_dtype);
        else if (w->format == WF_NVFP4) s = quant_e4m3(sp[g]);
        else s = quant_e8m0(sp[g]);
        /* integer sums per activation block within the group (groups of 16 lie inside one block) */
        for (int64_t b0 = g * gs; b0 < (g + 1) * gs; b0 += QUANT_ACT_BLOCK) {
            int64_t n = gs < QUANT_ACT_BLOCK ? gs : QUANT_ACT_BLOCK;
            long isum = 0;
            for (int64_t i = b0; i < b0 + n; i++)
                isum += (long)(w->format == WF_AFFINE ? (int)codes[i] - C : E2M1X2[codes[i]]) * q[i];
            double v = s * (double)d[b0 / QUANT_ACT_BLOCK] * (double)isum;
            acc += w->format == WF_AFFINE ? v : 0.5 * v;
        }
        if (w->format == WF_AFFINE) {
            double xs = 0.0;
            for (int64_t i = g * gs; i < (g + 1) * gs; i++) xs += x[i];
            acc += (scale_at(bp + (size_t)g * ss, w->scale_dtype) + C * s) * xs;
        }
    }
    return acc * quant_global(w);
}
