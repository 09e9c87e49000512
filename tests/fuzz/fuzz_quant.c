/* fuzz_quant.c — libFuzzer target: arbitrary bytes as a weight description
 * plus packed data. quant_validate must reject every unusable view; whatever
 * it accepts must decode, dot and batch-multiply without touching memory
 * outside the buffers, and the batched result must equal the single dot. The
 * quantizer must accept or refuse any float row without crashing. */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "quant.h"

int LLVMFuzzerTestOneInput(const uint8_t *d, size_t n) {
    if (n < 8) return 0;
    weight w;
    memset(&w, 0, sizeof w);
    w.format = (wformat)(d[0] % 8);
    w.bits = d[1] % 10;
    w.group_size = 16 << (d[2] % 4);
    w.scale_dtype = (dtype)(d[3] % 5);
    w.rows = d[4] % 4;
    w.cols = 16 * (1 + d[5] % 24);
    w.global_scale = (d[6] & 1) ? 0.5f : (d[6] & 2) ? NAN : 0.0f;
    int stride_pad = d[7] % 3 - 1;   /* -1: too small */
    uint8_t h0 = d[0], h1 = d[1], h2 = d[2];
    d += 8;
    n -= 8;
    size_t rb = quant_row_bytes(w.format, w.bits, w.cols) + (size_t)(stride_pad + 1);
    size_t sb = quant_scale_row_bytes(w.format, w.group_size, w.scale_dtype, w.cols) + 1;
    w.row_stride = rb - 1;
    w.scale_stride = sb - 1;
    size_t need = (size_t)w.rows * (rb + 2 * sb);
    /* exact-size heap copies so ASan sees any overrun */
    uint8_t *buf = malloc(need ? need : 1);
    for (size_t i = 0; i < need; i++) buf[i] = n ? d[i % n] : 0;
    w.data = buf;
    w.scales = buf + (size_t)w.rows * rb;
    w.biases = (h0 & 8) ? NULL : buf + (size_t)w.rows * (rb + sb);
    char err[128];
    if (quant_validate(&w, err, sizeof err) == 0 && w.rows > 0) {
        float *x = malloc(sizeof(float) * (size_t)w.cols * 2), *row = malloc(sizeof(float) * (size_t)w.cols);
        float y[8];
        for (int64_t i = 0; i < w.cols * 2; i++) x[i] = (float)(i % 7) - 3.0f;
        for (int64_t r = 0; r < w.rows; r++) {
            weight_row_f32(&w, r, row);
            (void)quant_dot_ref(&w, r, x);
        }
        quant_matmul_rows(&w, 0, w.rows, x, 2, (size_t)w.cols, y, 4);
        for (int64_t r = 0; r < w.rows; r++) {
            float s = quant_dot(&w, r, x);
            if (memcmp(&s, &y[r], 4) != 0 && !(isnan(s) && isnan(y[r]))) abort();
        }
        free(x);
        free(row);
    }
    free(buf);
    /* quantizer on the input bytes read as floats */
    int64_t cols = (int64_t)(n / 4) / 32 * 32;
    if (cols > 0 && cols <= 4096) {
        float *src = malloc(sizeof(float) * (size_t)cols);
        memcpy(src, d, sizeof(float) * (size_t)cols);
        uint8_t *packed = malloc((size_t)cols), *sc = malloc((size_t)cols / 4 + 8), *bi = malloc((size_t)cols / 4 + 8);
        wformat f = (wformat)(3 + h0 % 4);
        (void)quant_quantize_row(f, 2 + h1 % 7, 32 << (h2 % 3), f == WF_AFFINE ? DT_F32 : DT_U8, src, cols, packed, sc, bi);
        free(src);
        free(packed);
        free(sc);
        free(bi);
    }
    return 0;
}
