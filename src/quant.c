/* quant.c — quantized weight formats (SPEC §6): f16 conversion, FP8/FP4/E8M0
 * codecs, bit packing, exact row decoding, validation, the scalar reference
 * and portable dot products, the run-time choice of the AVX2 file, and the
 * MLX-compatible quantizer. Formulas and conventions: quant.h. */
#include "quant.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

/* ---- f16 ---------------------------------------------------------------- */

static inline float f32_from_bits(uint32_t u) { float f; memcpy(&f, &u, 4); return f; }
static inline uint32_t f32_bits(float f) { uint32_t u; memcpy(&u, &f, 4); return u; }

float f16_to_f32(uint16_t h) {
    uint32_t s = (uint32_t)(h & 0x8000) << 16, e = (h >> 10) & 0x1f, m = h & 0x3ff;
    if (e == 0) {
        float v = (float)m * 0x1p-24f;            /* zero or subnormal, exact */
        return s ? -v : v;
    }
    if (e == 31) return f32_from_bits(s | 0x7f800000u | (m << 13));   /* inf / NaN (payload kept) */
    return f32_from_bits(s | ((e + 112) << 23) | (m << 13));
}

uint16_t f32_to_f16(float f) {
    uint32_t u = f32_bits(f);
    uint16_t sign = (uint16_t)((u >> 16) & 0x8000);
    u &= 0x7fffffffu;
    if (u > 0x7f800000u) return (uint16_t)(sign | 0x7e00 | ((u >> 13) & 0x3ff)); /* quiet NaN */
    uint32_t e = u >> 23;
    if (e >= 143) return (uint16_t)(sign | 0x7c00);                 /* >= 2^16: inf */
    if (e < 113) {                                                  /* half subnormal (or 0) */
        if (e < 102) return sign;                                   /* < 2^-25 rounds to 0 */
        uint32_t m = (u & 0x7fffff) | 0x800000, shift = 126 - e;    /* value = m >> shift units of 2^-24 */
        uint32_t h = m >> shift, rem = m & ((1u << shift) - 1), half = 1u << (shift - 1);
        if (rem > half || (rem == half && (h & 1))) h++;
        return (uint16_t)(sign | h);
    }
    uint32_t h = ((e - 112) << 10) | ((u & 0x7fffff) >> 13), rem = u & 0x1fff;
    if (rem > 0x1000 || (rem == 0x1000 && (h & 1))) h++;           /* carry may reach inf: correct */
    return (uint16_t)(sign | h);
}

/* ---- FP8 / FP4 / E8M0 codecs ----------------------------------------------- */

static const float E2M1[16] = {0.0f, 0.5f, 1.0f, 1.5f, 2.0f, 3.0f, 4.0f, 6.0f,
                               -0.0f, -0.5f, -1.0f, -1.5f, -2.0f, -3.0f, -4.0f, -6.0f};

float e2m1_to_f32(uint8_t code) { return E2M1[code & 15]; }

float e4m3_to_f32(uint8_t code) { return quant_e4m3(code); }

float e8m0_to_f32(uint8_t code) { return quant_e8m0(code); }

uint8_t f32_to_e4m3(float x) {
    /* PyTorch's c10 Float8_e4m3fn conversion as MLX's Metal kernel uses it:
       adding 2^14 rounds the subnormal range to nearest even in hardware; the
       normal range rounds with the usual bias-and-carry. */
    uint32_t u = f32_bits(x), sign = u & 0x80000000u;
    u ^= sign;
    uint8_t r;
    if (u >= 0x43e80000u) r = 0x7e;                       /* >= 464, inf, NaN: saturate */
    else if (u < (121u << 23)) {                          /* < 2^-6: subnormal result */
        uint32_t t = f32_bits(f32_from_bits(u) + f32_from_bits(141u << 23));
        r = (uint8_t)(t - (141u << 23));
    } else {
        uint32_t odd = (u >> 20) & 1;
        u += ((uint32_t)(7 - 127) << 23) + 0x7ffff + odd;
        r = (uint8_t)(u >> 20);
    }
    return (uint8_t)(r | (sign >> 24));
}

uint8_t f32_to_e2m1(float x) {
    if (isnan(x)) return 0x7;
    uint8_t sign = signbit(x) ? 0x8 : 0x0, b;
    x = fabsf(x);
    if (x > 5.0f) b = 7;
    else if (x >= 3.5f) b = 6;
    else if (x > 2.5f) b = 5;
    else if (x >= 1.75f) b = 4;
    else if (x > 1.25f) b = 3;
    else if (x >= 0.75f) b = 2;
    else if (x > 0.25f) b = 1;
    else b = 0;
    return (uint8_t)(b | sign);
}

uint8_t f32_to_e8m0_ceil(float x) {
    /* MLX's mx_scale_round_up: round(log2 x), then one step up if that power
       is still below x — i.e. the smallest power of two >= x, computed here
       exactly instead of through log2. */
    if (!(x > 0.0f)) return 0;
    if (isinf(x)) return 254;
    int e;
    float m = frexpf(x, &e);          /* x = m * 2^e, m in [0.5, 1) */
    int k = (m == 0.5f) ? e - 1 : e;
    if (k < -127) k = -127;
    if (k > 127) k = 127;
    return (uint8_t)(k + 127);
}

/* ---- layout --------------------------------------------------------------- */

int quant_format_bits(wformat f, int bits) {
    switch (f) {
    case WF_F32: return 32;
    case WF_F16: case WF_BF16: return 16;
    case WF_AFFINE: return bits;
    case WF_NVFP4: case WF_MXFP4: return 4;
    case WF_MXFP8: return 8;
    }
    return 0;
}

int quant_format_group(wformat f, int group_size) {
    switch (f) {
    case WF_AFFINE: return group_size;
    case WF_NVFP4: return 16;
    case WF_MXFP4: case WF_MXFP8: return 32;
    default: return 0;
    }
}

static size_t dtype_size(dtype d) {
    switch (d) {
    case DT_F32: return 4;
    case DT_F16: case DT_BF16: return 2;
    case DT_U8: return 1;
    }
    return 0;
}

size_t quant_row_bytes(wformat f, int bits, int64_t cols) {
    int b = quant_format_bits(f, bits);
    return (size_t)((cols * b + 7) / 8);
}

size_t quant_scale_row_bytes(wformat f, int group_size, dtype scale_dtype, int64_t cols) {
    int g = quant_format_group(f, group_size);
    if (g <= 0) return 0;
    return (size_t)(cols / g) * dtype_size(scale_dtype);
}

static int is_quantized(wformat f) { return f == WF_AFFINE || f == WF_NVFP4 || f == WF_MXFP4 || f == WF_MXFP8; }

size_t weight_bytes(const weight *w) {
    size_t n = (size_t)w->rows * quant_row_bytes(w->format, w->bits, w->cols);
    if (is_quantized(w->format)) {
        size_t s = (size_t)w->rows * quant_scale_row_bytes(w->format, w->group_size, w->scale_dtype, w->cols);
        n += w->format == WF_AFFINE ? 2 * s : s;
    }
    return n;
}

void quant_pack_row(const uint8_t *codes, int bits, int64_t n, uint8_t *packed) {
    size_t nbytes = (size_t)((n * bits + 7) / 8);
    memset(packed, 0, nbytes);
    for (int64_t k = 0; k < n; k++) {
        uint64_t bit = (uint64_t)k * (uint64_t)bits;
        unsigned v = codes[k] & ((1u << bits) - 1), sh = bit & 7;
        packed[bit >> 3] |= (uint8_t)(v << sh);
        if (sh + (unsigned)bits > 8) packed[(bit >> 3) + 1] |= (uint8_t)(v >> (8 - sh));
    }
}

static inline unsigned get_code(const uint8_t *p, int bits, int64_t k) {
    uint64_t bit = (uint64_t)k * (uint64_t)bits;
    unsigned sh = bit & 7, v = p[bit >> 3] >> sh;
    if (sh + (unsigned)bits > 8) v |= (unsigned)p[(bit >> 3) + 1] << (8 - sh);
    return v & ((1u << bits) - 1);
}

void quant_unpack_row(const uint8_t *packed, int bits, int64_t n, uint8_t *codes) {
    for (int64_t k = 0; k < n; k++) codes[k] = (uint8_t)get_code(packed, bits, k);
}

/* ---- exact decoding --------------------------------------------------------- */

static inline float load_scalar(const uint8_t *p, dtype d) {
    switch (d) {
    case DT_F32: { float f; memcpy(&f, p, 4); return f; }
    case DT_F16: return f16_to_f32((uint16_t)(p[0] | p[1] << 8));
    case DT_BF16: return bf16_to_f32((uint16_t)(p[0] | p[1] << 8));
    case DT_U8: return (float)p[0];
    }
    return 0.0f;
}

float quant_global(const weight *w) {
    if (!is_quantized(w->format) || w->global_scale == 0.0f) return 1.0f;
    return w->global_scale;
}

void quant_decode_span(const weight *w, int64_t r, int64_t c0, int64_t n, float *out) {
    const uint8_t *row = w->data + (size_t)r * w->row_stride;
    switch (w->format) {
    case WF_F32:
        memcpy(out, row + (size_t)c0 * 4, (size_t)n * 4);
        return;
    case WF_F16:
        for (int64_t i = 0; i < n; i++) out[i] = load_scalar(row + (size_t)(c0 + i) * 2, DT_F16);
        return;
    case WF_BF16:
        for (int64_t i = 0; i < n; i++) out[i] = load_scalar(row + (size_t)(c0 + i) * 2, DT_BF16);
        return;
    default: break;
    }
    int bits = quant_format_bits(w->format, w->bits), gs = quant_format_group(w->format, w->group_size);
    size_t ss = dtype_size(w->scale_dtype);
    const uint8_t *srow = w->scales + (size_t)r * w->scale_stride;
    const uint8_t *brow = w->biases ? w->biases + (size_t)r * w->scale_stride : NULL;
    for (int64_t g0 = c0; g0 < c0 + n; g0 += gs) {
        int64_t g = g0 / gs;
        float *o = out + (g0 - c0);
        const uint8_t *sp = srow + (size_t)g * ss;
        switch (w->format) {
        case WF_AFFINE: {
            float s = load_scalar(sp, w->scale_dtype), b = load_scalar(brow + (size_t)g * ss, w->scale_dtype);
            for (int i = 0; i < gs; i++) {
                float t = s * (float)get_code(row, bits, g0 + i);   /* two roundings, never fused */
                o[i] = t + b;
            }
            break;
        }
        case WF_NVFP4: case WF_MXFP4: {
            float s = w->format == WF_NVFP4 ? e4m3_to_f32(sp[0]) : e8m0_to_f32(sp[0]);
            for (int i = 0; i < gs; i++) o[i] = E2M1[get_code(row, 4, g0 + i)] * s;
            break;
        }
        case WF_MXFP8: {
            float s = e8m0_to_f32(sp[0]);
            for (int i = 0; i < gs; i++) o[i] = e4m3_to_f32(row[g0 + i]) * s;
            break;
        }
        default: break;
        }
    }
}

void weight_row_f32(const weight *w, int64_t r, float *out) {
    if (!quant_using_avx2() || quant_decode_row_avx2(w, r, out) != 0) quant_decode_span(w, r, 0, w->cols, out);
    float g = quant_global(w);
    if (g != 1.0f)
        for (int64_t i = 0; i < w->cols; i++) out[i] = out[i] * g;
}

/* ---- validation --------------------------------------------------------------- */

int quant_validate(const weight *w, char *err, size_t errlen) {
#define FAIL(...) do { if (err && errlen) snprintf(err, errlen, __VA_ARGS__); return -1; } while (0)
    if (w->rows < 0 || w->cols <= 0) FAIL("bad shape [%lld, %lld]", (long long)w->rows, (long long)w->cols);
    if (!w->data && w->rows > 0) FAIL("no data");
    if ((int)w->format < WF_F32 || w->format > WF_MXFP8) FAIL("unknown weight format %d", (int)w->format);
    if (!is_quantized(w->format)) {
        if (w->row_stride < quant_row_bytes(w->format, 0, w->cols)) FAIL("row stride %zu too small", w->row_stride);
        return 0;
    }
    int bits = quant_format_bits(w->format, w->bits), gs = quant_format_group(w->format, w->group_size);
    if (w->format == WF_AFFINE) {
        if (!(bits == 2 || bits == 3 || bits == 4 || bits == 5 || bits == 6 || bits == 8))
            FAIL("affine bits %d unsupported (2, 3, 4, 5, 6, 8)", w->bits);
        if (!(gs == 32 || gs == 64 || gs == 128)) FAIL("affine group size %d unsupported (32, 64, 128)", w->group_size);
        if (w->scale_dtype == DT_U8) FAIL("affine scales must be f32, f16 or bf16");
        if (!w->biases) FAIL("affine weight without biases");
    } else {
        if (w->bits && w->bits != bits) FAIL("%d-bit codes given for a %d-bit format", w->bits, bits);
        if (w->group_size && w->group_size != gs) FAIL("group size %d given for a group-%d format", w->group_size, gs);
        if (w->scale_dtype != DT_U8) FAIL("fp-format scales must be u8");
    }
    if (w->cols % gs) FAIL("cols %lld not a multiple of the group size %d", (long long)w->cols, gs);
    if (w->row_stride < quant_row_bytes(w->format, bits, w->cols)) FAIL("row stride %zu too small", w->row_stride);
    size_t srow = quant_scale_row_bytes(w->format, gs, w->scale_dtype, w->cols);
    if (w->scale_stride < srow) FAIL("scale stride %zu too small", w->scale_stride);
    if (!w->scales && w->rows > 0) FAIL("no scales");
    if (!isfinite(w->global_scale)) FAIL("global scale is not finite");
    int64_t ng = w->cols / gs;
    for (int64_t r = 0; r < w->rows; r++) {
        const uint8_t *s = w->scales + (size_t)r * w->scale_stride;
        if (w->format == WF_AFFINE) {
            const uint8_t *b = w->biases + (size_t)r * w->scale_stride;
            size_t ss = dtype_size(w->scale_dtype);
            for (int64_t g = 0; g < ng; g++) {
                if (!isfinite(load_scalar(s + g * ss, w->scale_dtype)))
                    FAIL("non-finite scale at row %lld group %lld", (long long)r, (long long)g);
                if (!isfinite(load_scalar(b + g * ss, w->scale_dtype)))
                    FAIL("non-finite bias at row %lld group %lld", (long long)r, (long long)g);
            }
        } else if (w->format == WF_NVFP4) {
            for (int64_t g = 0; g < ng; g++)
                if ((s[g] & 0x7f) == 0x7f) FAIL("NaN E4M3 scale code 0x%02x at row %lld group %lld", s[g], (long long)r, (long long)g);
        } else {
            for (int64_t g = 0; g < ng; g++)
                if (s[g] == 0xff) FAIL("NaN E8M0 scale code 0xff at row %lld group %lld", (long long)r, (long long)g);
        }
    }
    return 0;
#undef FAIL
}

/* ---- dot products ----------------------------------------------------------------- */

/* Columns decoded per step: a multiple of every group size, small enough for L1. */
#define SPAN 512

static int64_t span_len(const weight *w, int64_t c0) {
    int64_t n = w->cols - c0;
    return n < SPAN ? n : SPAN;
}

float quant_dot_ref(const weight *w, int64_t row, const float *x) {
    float buf[SPAN];
    float g = quant_global(w);
    double acc = 0.0;
    for (int64_t c0 = 0; c0 < w->cols; c0 += SPAN) {
        int64_t n = span_len(w, c0);
        quant_decode_span(w, row, c0, n, buf);
        for (int64_t i = 0; i < n; i++) {
            float v = g != 1.0f ? buf[i] * g : buf[i];
            acc += (double)x[c0 + i] * (double)v;
        }
    }
    return (float)acc;
}

static float dot_f32(const float *a, const float *b, int64_t n) {
    float s[8] = {0};
    int64_t i = 0;
    for (; i + 8 <= n; i += 8)
        for (int k = 0; k < 8; k++) s[k] += a[i + k] * b[i + k];
    for (; i < n; i++) s[0] += a[i] * b[i];
    return ((s[0] + s[1]) + (s[2] + s[3])) + ((s[4] + s[5]) + (s[6] + s[7]));
}

static float dot_portable(const weight *w, int64_t row, const float *x) {
    float buf[SPAN];
    float acc = 0.0f;
    for (int64_t c0 = 0; c0 < w->cols; c0 += SPAN) {
        int64_t n = span_len(w, c0);
        quant_decode_span(w, row, c0, n, buf);
        acc += dot_f32(buf, x + c0, n);
    }
    return acc * quant_global(w);
}

static void matmul_portable(const weight *w, int64_t row0, int64_t row1, const float *x, int n_x,
                            size_t x_stride, float *y, size_t y_stride) {
    float buf[SPAN];
    float g = quant_global(w);
    for (int64_t r = row0; r < row1; r++) {
        for (int t = 0; t < n_x; t++) y[(size_t)t * y_stride + r] = 0.0f;
        for (int64_t c0 = 0; c0 < w->cols; c0 += SPAN) {
            int64_t n = span_len(w, c0);
            quant_decode_span(w, r, c0, n, buf);
            for (int t = 0; t < n_x; t++) y[(size_t)t * y_stride + r] += dot_f32(buf, x + (size_t)t * x_stride + c0, n);
        }
        if (g != 1.0f)
            for (int t = 0; t < n_x; t++) y[(size_t)t * y_stride + r] *= g;
    }
}

static int allow_fast = 1;

void quant_set_fast(int allow_avx2) { allow_fast = allow_avx2; }

int quant_using_avx2(void) {
#if defined(__x86_64__) || defined(__i386__)
    return allow_fast && __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
#else
    return 0;
#endif
}

float quant_dot(const weight *w, int64_t row, const float *x) {
    if (quant_using_avx2()) return quant_dot_avx2(w, row, x);
    return dot_portable(w, row, x);
}

void quant_matmul_rows(const weight *w, int64_t row0, int64_t row1, const float *x, int n_x,
                       size_t x_stride, float *y, size_t y_stride) {
    if (quant_using_avx2()) quant_matmul_rows_avx2(w, row0, row1, x, n_x, x_stride, y, y_stride);
    else matmul_portable(w, row0, row1, x, n_x, x_stride, y, y_stride);
}

/* ---- quantizer ------------------------------------------------------------------- */

static void store_scalar(uint8_t *p, dtype d, float v) {
    uint16_t h;
    switch (d) {
    case DT_F32: memcpy(p, &v, 4); return;
    case DT_F16: h = f32_to_f16(v); break;
    case DT_BF16: h = f32_to_bf16(v); break;
    default: return;
    }
    p[0] = (uint8_t)h;
    p[1] = (uint8_t)(h >> 8);
}

static void affine_group(const float *w, int gs, int bits, uint8_t *codes, float *scale_out, float *bias_out) {
    /* Operation for operation as MLX's CPU `quantize` (std::max/min semantics
       included), so results match bit for bit. */
    float n_bins = (float)((1 << bits) - 1), eps = 1e-7f;
    float w_min = INFINITY, w_max = -INFINITY;
    for (int j = 0; j < gs; j++) {
        w_max = w_max < w[j] ? w[j] : w_max;
        w_min = w[j] < w_min ? w[j] : w_min;
    }
    int mask = fabsf(w_min) > fabsf(w_max);
    float scale = (w_max - w_min) / n_bins;
    scale = scale < eps ? eps : scale;
    scale = mask ? scale : -scale;
    float edge = mask ? w_min : w_max;
    float q0 = rintf(edge / scale), bias = 0.0f;
    if (q0 != 0.0f) {
        scale = edge / q0;
        bias = edge;
    }
    for (int j = 0; j < gs; j++) {
        float q = rintf((w[j] - bias) / scale);
        /* Only a constant group beyond ~3e31 gets here (edge/scale overflows,
           scale becomes 0, 0/0): w == bias, so level 0 is exact. MLX would
           cast the NaN (undefined behaviour). */
        if (isnan(q)) q = 0.0f;
        q = q < 0.0f ? 0.0f : q;
        q = n_bins < q ? n_bins : q;
        codes[j] = (uint8_t)q;
    }
    *scale_out = scale;
    *bias_out = bias;
}

int quant_quantize_row(wformat f, int bits, int group, dtype scale_dtype, const float *src, int64_t cols,
                       uint8_t *packed, uint8_t *scales, uint8_t *biases) {
    int b = quant_format_bits(f, bits), gs = quant_format_group(f, group);
    if (f == WF_AFFINE) {
        if (!(b == 2 || b == 3 || b == 4 || b == 5 || b == 6 || b == 8)) return -1;
        if (!(gs == 32 || gs == 64 || gs == 128)) return -1;
        if (scale_dtype == DT_U8 || !biases) return -1;
    } else if (f == WF_NVFP4 || f == WF_MXFP4 || f == WF_MXFP8) {
        if (scale_dtype != DT_U8) return -1;
    } else return -1;
    if (cols <= 0 || cols % gs) return -1;
    for (int64_t i = 0; i < cols; i++)
        if (!isfinite(src[i])) return -1;
    uint8_t codes[128];
    size_t ss = dtype_size(scale_dtype);
    memset(packed, 0, quant_row_bytes(f, b, cols));
    for (int64_t g = 0; g < cols / gs; g++) {
        const float *w = src + g * gs;
        if (f == WF_AFFINE) {
            float s, bias;
            affine_group(w, gs, b, codes, &s, &bias);
            store_scalar(scales + g * ss, scale_dtype, s);
            store_scalar(biases + g * ss, scale_dtype, bias);
        } else {
            float amax = 0.0f;
            for (int j = 0; j < gs; j++) amax = fmaxf(amax, fabsf(w[j]));
            float d = amax / (b == 4 ? 6.0f : 448.0f), sv;
            uint8_t sc;
            if (f == WF_NVFP4) { sc = f32_to_e4m3(d); sv = e4m3_to_f32(sc); }
            else { sc = f32_to_e8m0_ceil(d); sv = e8m0_to_f32(sc); }
            scales[g] = sc;
            float inv = sv == 0.0f ? 0.0f : 1.0f / sv;
            for (int j = 0; j < gs; j++) {
                float v = w[j] * inv;
                codes[j] = b == 4 ? f32_to_e2m1(v) : f32_to_e4m3(v);
            }
        }
        /* groups start on byte boundaries (gs * bits is a multiple of 8) */
        quant_pack_row(codes, b, gs, packed + (size_t)(g * gs * b / 8));
    }
    return 0;
}
