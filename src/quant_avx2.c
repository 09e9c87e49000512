/* quant_avx2.c — AVX2/FMA dot products straight from packed weights, and the
 * batched (prefill) form. Compiled with -mavx2 -mfma -mf16c and called only
 * after quant.c's CPU check. Hot formats (affine 4/8-bit, nvfp4, mxfp4,
 * mxfp8) have fused decode+dot loops; the batched form decodes a row's codes
 * once and runs the very same loop over the decoded values for every vector,
 * so its results equal quant_dot's bit for bit. Other formats dequantize a
 * span (quant_decode_span) and take a vector dot. Only the f32 accumulation
 * order differs from the double-precision reference. */
#include "quant.h"

#if defined(__AVX2__) && defined(__FMA__)
#include <immintrin.h>
#include <string.h>

static inline float hsum(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

static inline float load_scale(const uint8_t *p, dtype d) {
    switch (d) {
    case DT_F32: { float f; memcpy(&f, p, 4); return f; }
    case DT_F16: return f16_to_f32((uint16_t)(p[0] | p[1] << 8));
    case DT_BF16: return bf16_to_f32((uint16_t)(p[0] | p[1] << 8));
    default: return 0.0f;
    }
}

static inline size_t scale_size(dtype d) { return d == DT_F32 ? 4 : d == DT_U8 ? 1 : 2; }

/* 8 packed nibbles (4 bytes) -> 8 int32 codes in element order: the word
 * broadcast to every lane, each lane shifted by 4 * its index. */
static inline __m256i nibbles8(const uint8_t *p) {
    uint32_t word;
    memcpy(&word, p, 4);
    __m256i v = _mm256_srlv_epi32(_mm256_set1_epi32((int)word), _mm256_setr_epi32(0, 4, 8, 12, 16, 20, 24, 28));
    return _mm256_and_si256(v, _mm256_set1_epi32(15));
}

static inline __m256 u8x8_to_ps(__m128i v) { return _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(v)); }

/* E2M1 codes (int32 lanes) -> values: magnitude by table, sign from bit 3. */
static inline __m256 e2m1_ps(__m256i c) {
    const __m256 lut = _mm256_setr_ps(0.0f, 0.5f, 1.0f, 1.5f, 2.0f, 3.0f, 4.0f, 6.0f);
    __m256 mag = _mm256_permutevar8x32_ps(lut, c);   /* uses the low 3 bits */
    __m256i sign = _mm256_slli_epi32(_mm256_and_si256(c, _mm256_set1_epi32(8)), 28);
    return _mm256_xor_ps(mag, _mm256_castsi256_ps(sign));
}

/* E4M3 codes (int32 lanes) -> values: the 7 magnitude bits placed at the top
 * of an f32 exponent/mantissa and rescaled by 2^120 (this also covers the
 * subnormals exactly); 0x7F/0xFF become NaN. */
static inline __m256 e4m3_ps(__m256i c) {
    __m256i mag = _mm256_and_si256(c, _mm256_set1_epi32(0x7f));
    __m256 v = _mm256_mul_ps(_mm256_castsi256_ps(_mm256_slli_epi32(mag, 20)),
                             _mm256_castsi256_ps(_mm256_set1_epi32(0x7b800000)));   /* 2^120 */
    __m256i nan = _mm256_cmpeq_epi32(mag, _mm256_set1_epi32(0x7f));
    v = _mm256_blendv_ps(v, _mm256_castsi256_ps(_mm256_set1_epi32(0x7fc00000)), _mm256_castsi256_ps(nan));
    __m256i sign = _mm256_slli_epi32(_mm256_and_si256(c, _mm256_set1_epi32(0x80)), 24);
    return _mm256_xor_ps(v, _mm256_castsi256_ps(sign));
}

/* Codes of one 16-element step of a packed row, as two f32 vectors. */
enum { K_A4, K_A8, K_FP4, K_FP8 };

static inline __attribute__((always_inline)) void step16(int kind, const uint8_t *row, int64_t c, __m256 *v0, __m256 *v1) {
    switch (kind) {
    case K_A4:   /* no shuffles: they share one port and bound this loop */
        *v0 = _mm256_cvtepi32_ps(nibbles8(row + c / 2));
        *v1 = _mm256_cvtepi32_ps(nibbles8(row + c / 2 + 4));
        break;
    case K_A8: {
        __m128i q = _mm_loadu_si128((const __m128i *)(row + c));
        *v0 = u8x8_to_ps(q);
        *v1 = u8x8_to_ps(_mm_srli_si128(q, 8));
        break;
    }
    case K_FP4:
        *v0 = e2m1_ps(nibbles8(row + c / 2));
        *v1 = e2m1_ps(nibbles8(row + c / 2 + 4));
        break;
    default: {
        __m128i q = _mm_loadu_si128((const __m128i *)(row + c));
        *v0 = e4m3_ps(_mm256_cvtepu8_epi32(q));
        *v1 = e4m3_ps(_mm256_cvtepu8_epi32(_mm_srli_si128(q, 8)));
        break;
    }
    }
}

static int hot_kind(const weight *w) {
    switch (w->format) {
    case WF_AFFINE: return w->bits == 4 ? K_A4 : w->bits == 8 ? K_A8 : -1;
    case WF_NVFP4: case WF_MXFP4: return K_FP4;
    case WF_MXFP8: return K_FP8;
    default: return -1;
    }
}

/* Per-group sums of x, for the affine bias term: sum x*(s*q+b) over a group
 * is s*sum(x*q) + b*sum(x), and sum(x) is the same for every row. */
static void group_sums(const float *x, int64_t cols, int gs, float *xs) {
    for (int64_t g = 0; g < cols / gs; g++) {
        __m256 a = _mm256_setzero_ps();
        for (int64_t c = g * gs; c < (g + 1) * gs; c += 8) a = _mm256_add_ps(a, _mm256_loadu_ps(x + c));
        xs[g] = hsum(a);
    }
}

static inline float group_scale(const weight *w, const uint8_t *sp, int64_t g) {
    switch (w->format) {
    case WF_AFFINE: return load_scale(sp + (size_t)g * scale_size(w->scale_dtype), w->scale_dtype);
    case WF_NVFP4: return quant_e4m3(sp[g]);
    default: return quant_e8m0(sp[g]);
    }
}

/* Row r against x. Unpacking codes, not memory, bounds this loop, so it
 * keeps two independent accumulators per group (one FMA chain would stall on
 * latency) and takes the bias term from the precomputed group sums.
 * (Interleaving several rows to share the x loads was measured slower from
 * DRAM: the extra streams defeat the hardware prefetcher.)
 * xsum: group_sums of x (affine only). */
static inline __attribute__((always_inline)) float hot_row(int kind, const weight *w, int64_t r, const float *x,
                                                           const float *xsum) {
    int gs = quant_format_group(w->format, w->group_size);
    int64_t ng = w->cols / gs;
    const uint8_t *row = w->data + (size_t)r * w->row_stride, *sp = w->scales + (size_t)r * w->scale_stride;
    const uint8_t *bp = w->biases ? w->biases + (size_t)r * w->scale_stride : NULL;
    __m256 tot = _mm256_setzero_ps();
    float btot = 0.0f;
    for (int64_t g = 0; g < ng; g++) {
        __m256 a0 = _mm256_setzero_ps(), a1 = _mm256_setzero_ps();
        for (int64_t c = g * gs; c < (g + 1) * gs; c += 16) {
            __m256 v0, v1;
            step16(kind, row, c, &v0, &v1);
            a0 = _mm256_fmadd_ps(_mm256_loadu_ps(x + c), v0, a0);
            a1 = _mm256_fmadd_ps(_mm256_loadu_ps(x + c + 8), v1, a1);
        }
        tot = _mm256_fmadd_ps(_mm256_set1_ps(group_scale(w, sp, g)), _mm256_add_ps(a0, a1), tot);
        if (kind == K_A4 || kind == K_A8) btot += group_scale(w, bp, g) * xsum[g];
    }
    return hsum(tot) + btot;
}

/* The kind as a constant, so each loop specializes. */
static float hot_row_any(int kind, const weight *w, int64_t r, const float *x, const float *xsum) {
    switch (kind) {
    case K_A4: return hot_row(K_A4, w, r, x, xsum);
    case K_A8: return hot_row(K_A8, w, r, x, xsum);
    case K_FP4: return hot_row(K_FP4, w, r, x, xsum);
    default: return hot_row(K_FP8, w, r, x, xsum);
    }
}

static float dot_vec(const float *a, const float *b, int64_t n) {
    __m256 s0 = _mm256_setzero_ps(), s1 = _mm256_setzero_ps();
    int64_t i = 0;
    for (; i + 16 <= n; i += 16) {
        s0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), s0);
        s1 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 8), _mm256_loadu_ps(b + i + 8), s1);
    }
    float s = hsum(_mm256_add_ps(s0, s1));
    for (; i < n; i++) s += a[i] * b[i];
    return s;
}

/* Everything else: dequantize a span at a time, vector dot per span. */
#define SPAN 512
/* Longest row the hot kernels take. */
#define MAX_ROW 16384

static float generic_row(const weight *w, int64_t r, const float *x) {
    if (w->format == WF_F32) return dot_vec((const float *)(const void *)(w->data + (size_t)r * w->row_stride), x, w->cols);
    float buf[SPAN];
    float s = 0.0f;
    for (int64_t c0 = 0; c0 < w->cols; c0 += SPAN) {
        int64_t n = w->cols - c0 < SPAN ? w->cols - c0 : SPAN;
        quant_decode_span(w, r, c0, n, buf);
        s += dot_vec(buf, x + c0, n);
    }
    return s;
}

/* Dequantization, the same arithmetic as quant_decode_span: (scale * code) +
 * bias as two roundings (separate multiply and add, never an FMA), or
 * code * scale. Used to widen blocks of rows for the prefill GEMM. */
int quant_decode_row_avx2(const weight *w, int64_t r, float *out) {
    int kind = hot_kind(w);
    if (kind < 0) return -1;
    int gs = quant_format_group(w->format, w->group_size);
    const uint8_t *row = w->data + (size_t)r * w->row_stride, *sp = w->scales + (size_t)r * w->scale_stride;
    const uint8_t *bp = w->biases ? w->biases + (size_t)r * w->scale_stride : NULL;
    for (int64_t g = 0; g < w->cols / gs; g++) {
        __m256 s = _mm256_set1_ps(group_scale(w, sp, g));
        __m256 b = bp ? _mm256_set1_ps(group_scale(w, bp, g)) : _mm256_setzero_ps();
        for (int64_t c = g * gs; c < (g + 1) * gs; c += 16) {
            __m256 v0, v1;
            switch (kind) {   /* constant per row: the branch predicts perfectly */
            case K_A4: step16(K_A4, row, c, &v0, &v1); break;
            case K_A8: step16(K_A8, row, c, &v0, &v1); break;
            case K_FP4: step16(K_FP4, row, c, &v0, &v1); break;
            default: step16(K_FP8, row, c, &v0, &v1); break;
            }
            if (kind == K_A4 || kind == K_A8) {
                v0 = _mm256_add_ps(_mm256_mul_ps(s, v0), b);
                v1 = _mm256_add_ps(_mm256_mul_ps(s, v1), b);
            } else {
                v0 = _mm256_mul_ps(v0, s);
                v1 = _mm256_mul_ps(v1, s);
            }
            _mm256_storeu_ps(out + c, v0);
            _mm256_storeu_ps(out + c + 8, v1);
        }
    }
    return 0;
}

/* Longest row the hot kernels take (their group sums live on the stack). */
#define MAX_GROUPS (MAX_ROW / 16)

float quant_dot_avx2(const weight *w, int64_t row, const float *x) {
    int kind = hot_kind(w);
    if (kind < 0 || w->cols > MAX_ROW) return generic_row(w, row, x) * quant_global(w);
    float xsum[MAX_GROUPS];
    if (kind == K_A4 || kind == K_A8) group_sums(x, w->cols, w->group_size, xsum);
    return hot_row_any(kind, w, row, x, xsum) * quant_global(w);
}

void quant_matmul_rows_avx2(const weight *w, int64_t row0, int64_t row1, const float *x, int n_x,
                            size_t x_stride, float *y, size_t y_stride) {
    int kind = hot_kind(w);
    float g = quant_global(w);
    if (kind < 0 || w->cols > MAX_ROW) {   /* the rarer formats: one row at a time */
        for (int64_t r = row0; r < row1; r++)
            for (int t = 0; t < n_x; t++) y[(size_t)t * y_stride + r] = quant_dot_avx2(w, r, x + (size_t)t * x_stride);
        return;
    }
    float xsum[MAX_GROUPS];
    for (int t = 0; t < n_x; t++) {
        const float *xt = x + (size_t)t * x_stride;
        if (kind == K_A4 || kind == K_A8) group_sums(xt, w->cols, w->group_size, xsum);
        for (int64_t r = row0; r < row1; r++) y[(size_t)t * y_stride + r] = hot_row_any(kind, w, r, xt, xsum) * g;
    }
}

#else /* not built for AVX2: never called (quant.c checks the CPU first) */

float quant_dot_avx2(const weight *w, int64_t row, const float *x) { return quant_dot_ref(w, row, x); }
int quant_decode_row_avx2(const weight *w, int64_t r, float *out) { (void)w; (void)r; (void)out; return -1; }
void quant_matmul_rows_avx2(const weight *w, int64_t row0, int64_t row1, const float *x, int n_x,
                            size_t x_stride, float *y, size_t y_stride) {
    for (int64_t r = row0; r < row1; r++)
        for (int t = 0; t < n_x; t++) y[(size_t)t * y_stride + r] = quant_dot_ref(w, r, x + (size_t)t * x_stride);
}

#endif
