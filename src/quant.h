/* quant.h — quantized weight formats (SPEC §6): element/scale decoders, row
 * pack/unpack, dot products straight from packed data (scalar reference and
 * AVX2/FMA fast paths chosen at run time), the batched form for prefill, the
 * MLX-compatible quantizer, and load-time validation.
 *
 * Exact dequantization (what weight_row_f32 returns, bit for bit, and what the
 * numpy oracle tools/quant_ref.py reproduces), all arithmetic in IEEE f32,
 * never fused:
 *   affine:       w = (scale * q) + bias               (scale/bias from bf16/f16/f32)
 *                 (with VNNI the same sum regrouped, equal but for f32 rounding:
 *                 s_g * sum_b d_b * sum_i code_i * q_i + b_g * xsum_g + s_g * xres_g,
 *                 xres_g = C * (xsum_g - sum_b d_b * sum_i q_i), one vector
 *                 term per group instead of a subtraction per block)
 *   nvfp4/mxfp4:  w = e2m1(code) * scale_value         (exact: 2+4 significant bits)
 *   mxfp8:        w = e4m3(code) * e8m0(scale)
 * and then, when the weight carries a global scale g (g != 0 and g != 1),
 * w = w * g. A global_scale of 0 is read as "absent" (a weight struct whose
 * field was left zero must not silently become all zeros).
 *
 * Special codes: E4M3 0x7F/0xFF and E8M0 0xFF decode to NaN (OCP spec; MLX's
 * CPU decoder would give inf for E8M0 0xFF). quant_validate rejects tensors
 * whose scales hold them, so the model never multiplies by NaN/inf scales.
 * E8M0 0x00 decodes to 2^-127 (MLX's convention, = the formula). E4M3 element
 * codes 0x7F/0xFF in mxfp8 data decode to NaN in every path. */
#ifndef GLM_QUANT_H
#define GLM_QUANT_H

#include <stddef.h>
#include <stdint.h>

#include "tensor.h"

/* ---- scalar codecs ------------------------------------------------------ */
float e2m1_to_f32(uint8_t code);      /* low 4 bits used; 8 = -0 */
float e4m3_to_f32(uint8_t code);      /* FN variant; 0x7F/0xFF -> NaN */
float e8m0_to_f32(uint8_t code);      /* 2^(code-127); 0 -> 2^-127; 0xFF -> NaN */
/* MLX (Metal) encoders. f32_to_e4m3: round to nearest even, subnormals,
 * saturating to +-448 (0x7E/0xFE) for |x| >= 464, inf and NaN too. (MLX's
 * kernel maps (464, 480) to the NaN code 0x7F — a PyTorch-derived quirk we do
 * not copy: a NaN scale would poison the whole group.) */
uint8_t f32_to_e4m3(float x);
uint8_t f32_to_e2m1(float x);         /* MLX's thresholds: ties to even, sign kept */
uint8_t f32_to_e8m0_ceil(float x);    /* smallest 2^k >= x, k in [-127, 127]; x <= 0 -> 0 */

/* The same decoders inline, for the hot loops (one definition of each). */
static inline float quant_bits_f32(uint32_t u) { union { uint32_t u; float f; } v = {u}; return v.f; }
static inline float quant_e4m3(uint8_t code) {
    uint32_t e = (code >> 3) & 15, m = code & 7, sign = (uint32_t)(code & 0x80) << 24;
    if (e == 15 && m == 7) return quant_bits_f32(sign | 0x7fc00000u);
    if (e == 0) return sign ? -((float)m * 0x1p-9f) : (float)m * 0x1p-9f;   /* subnormal, exact */
    return quant_bits_f32(sign | ((e + 120) << 23) | (m << 20));
}
static inline float quant_e8m0(uint8_t code) {
    if (code == 0xff) return quant_bits_f32(0x7fc00000u);
    return quant_bits_f32(code ? (uint32_t)code << 23 : 0x400000u);   /* 0 -> 2^-127 */
}

/* ---- layout helpers ----------------------------------------------------- */
/* Bytes of one row's packed codes / of one row's scales (or biases). */
size_t quant_row_bytes(wformat f, int bits, int64_t cols);
size_t quant_scale_row_bytes(wformat f, int group_size, dtype scale_dtype, int64_t cols);
/* Element bits/group size a format implies (affine: as given). */
int quant_format_bits(wformat f, int bits);
int quant_format_group(wformat f, int group_size);

/* Little-endian bit stream (SPEC §6.1): code k at bits [k*bits, (k+1)*bits).
 * pack writes ceil(n*bits/8) bytes; codes must be < 2^bits. */
void quant_pack_row(const uint8_t *codes, int bits, int64_t n, uint8_t *packed);
void quant_unpack_row(const uint8_t *packed, int bits, int64_t n, uint8_t *codes);

/* Checks a weight view: format parameters (affine bits 2,3,4,5,6,8 and groups
 * 32/64/128; nvfp4 group 16, mxfp4/mxfp8 group 32, U8 scales), cols a multiple
 * of the group, strides large enough, pointers present, a finite global scale,
 * and every scale: no NaN codes (E4M3 0x7F/0xFF, E8M0 0xFF), no NaN/inf affine
 * scales or biases. 0 if usable, -1 with a message naming the problem. */
int quant_validate(const weight *w, char *err, size_t errlen);

/* ---- dot products -------------------------------------------------------- */
/* dot(row `row` of w, x[cols]) — the truth: exact dequantized values as above,
 * accumulated in double. Works for every format, plain ones included. */
float quant_dot_ref(const weight *w, int64_t row, const float *x);
/* The fast version (AVX2/FMA when the CPU has it, else portable scalar code).
 * Same products, f32 accumulation in another order. */
float quant_dot(const weight *w, int64_t row, const float *x);
/* y[t * y_stride + r] = dot(row r, x + t * x_stride) for r in [row0, row1),
 * t in [0, n_x): each row's codes are decoded once and used for all n_x
 * activation vectors (prefill). Strides are in floats. Each result equals
 * quant_dot(w, r, x + t * x_stride) bit for bit, so prefill and token-by-token
 * decode agree exactly. */
void quant_matmul_rows(const weight *w, int64_t row0, int64_t row1, const float *x, int n_x,
                       size_t x_stride, float *y, size_t y_stride);

/* Which implementation quant_dot/quant_matmul_rows use: 1 for AVX2/FMA. Tests
 * can force the portable path with quant_set_fast(0) to check it too. */
int quant_using_avx2(void);
void quant_set_fast(int allow_avx2);

/* ---- int8 activations (decode) ------------------------------------------------
 * For products with few activation vectors (decode) the vector is quantized
 * once per product, llama.cpp-style, and rows are dotted with integer
 * instructions. Quantization (quant_act_quantize, bit for bit in every path):
 * blocks of QUANT_ACT_BLOCK = 32 elements, amax = max |x_i| in the block,
 * d = amax / 127, id = amax ? 127 / amax : 0 (f32 divisions), and
 * q_i = x_i * id (f32 product) rounded to nearest, ties to even, in [-127, 127].
 * A row's dot is then, with exact integer inner sums and f32 outside:
 *   affine:       sum_g s_g * sum_{blocks b in g} d_b * sum_{i in b} (code_i - C) * q_i
 *                 + (b_g + C * s_g) * xsum_g
 *                 (C = 2^(bits-1) centres the codes, so the common part C*s*x
 *                 meets xsum_g, the exact f32 sum of x over group g, and only
 *                 the centred codes meet the quantized x: half the error)
 *   nvfp4/mxfp4:  0.5 * sum_b d_b * sum_{groups g in b} s_g * sum_{i in g} 2*e2m1(code_i) * q_i
 *                 (the VNNI kernel sums (2*e2m1 + 12) * q and adds xres_g =
 *                 -12 * sum_{i in g} q_i before scaling by s_g * d_b, once per
 *                 group: equal in exact arithmetic)
 * times the global scale. The error against the f32 dot is bounded by
 * |x_i - d_b*q_i| <= d_b/2 per element (up to f32 rounding), i.e. by
 * 0.5 * sum_b d_b * sum_{i in b} |s_g * c_i| (c_i the centred code or the E2M1
 * value; derivation in tests/test_quant_int8.c).
 * Covered: affine 4- and 8-bit (groups 32/64/128), nvfp4, mxfp4, with cols a
 * multiple of 64 and at most QUANT_ACT_MAX_COLS, on AVX2 CPUs; every other
 * weight keeps the f32 path (quant_matmul_rows). Non-finite activations give
 * non-finite results, as in the f32 path (d_b becomes inf or NaN).
 * mxfp8 (same column limits, CPUs with AVX512-BF16 and -VBMI) takes x rounded to bf16
 * instead (QA_FP8, xb): sum_g s_g * sum_{i in g} e4m3(code_i) * bf16(x_i), each
 * |x_i - bf16(x_i)| <= 2^-9 |x_i|. */
#define QUANT_ACT_BLOCK 32
#define QUANT_ACT_MAX_COLS 16384
typedef struct {
    int kind;            /* which kernel layout was prepared (0: none) */
    int vnni;            /* laid out for the AVX-512 VNNI kernels (affine: the regrouped sum) */
    int vex;             /* for the AVX2 kernels with AVX-VNNI (8-bit: qc) */
    int64_t cols;
    int8_t *q;           /* [cols] quantized values, natural order */
    float *d;            /* [cols / 32] block scales */
    float *xsum;         /* [cols / group] exact f32 group sums of x (affine) */
    int8_t *k;           /* 4-bit kinds: q split into even and odd elements per 64 (or 128) */
    int32_t *qc;         /* 8-bit with vex: 128 * the sum of each 4 q (in k's place) */
    float *kd;           /* 4-bit kinds: d per int32 lane of their kernels; fp4 with VNNI: d per group (x 2^8 for nvfp4) */
    int32_t *kc;         /* 4-bit kinds without VNNI: their codes' offset times sum q per block (nvfp4: per group), in its first lane */
    float *xres;         /* [cols / group] with VNNI: C * (xsum - sum of d * q) (affine) or -12 * sum q (fp4) per group */
    uint16_t *xb;        /* mxfp8: [cols] x rounded to bf16, in its kernel's order per 64 (the other arrays unused) */
} quant_act;

/* Nonzero when rows of w can be dotted with int8 activations here. */
int quant_act_supported(const weight *w);
/* Scratch bytes one prepared vector of cols elements needs (any alignment). */
size_t quant_act_bytes(int64_t cols);
/* Quantizes x[w->cols] for w into scratch (quant_act_bytes(w->cols) bytes) and
 * points a into it. Only for weights quant_act_supported accepts. */
void quant_act_prepare(const weight *w, const float *x, void *scratch, quant_act *a);
/* y[t * y_stride + r] = dot(row r, a[t]) for r in [row0, row1), t < n_x.
 * Each result depends only on the row and its vector (never on n_x or the
 * row range). */
void quant_matmul_rows_q8(const weight *w, int64_t row0, int64_t row1, const quant_act *a, int n_x, float *y,
                          size_t y_stride);
/* The plain C quantizer (the definition above) and the reference dot of row
 * `row` against a quantized vector: the same quantized arithmetic, integer
 * sums exact, accumulated in double. */
void quant_act_quantize(const float *x, int64_t cols, int8_t *q, float *d);
double quant_dot_q8_ref(const weight *w, int64_t row, const int8_t *q, const float *d, const float *x);

/* ---- 16-bit activations (prefill) ------------------------------------------
 * Products of affine, nvfp4 and mxfp4 rows with 4 or more vectors (prefill),
 * on CPUs with AVX-512 VNNI (or AVX-VNNI, with the AVX2 kernels), quantize
 * the vectors per weight group to int16 and multiply exact integer sums
 * (vpdpwssd: two multiply-adds per lane and instruction, twice an f32
 * FMA's). For group g of gs columns and vector t: amax = max |x_i|, xsum =
 * the f32 sum of x over the group in element order, d = fma(xsum, 0,
 * amax / 32767) (NaN when the group holds a non-finite x), id = amax ?
 * 32767 / amax : 0 (f32 divisions), q_i = x_i * id (f32 product) rounded
 * to nearest even. Each weight is an integer c_i times a group factor s_g
 * plus, for affine rows, a group bias b_g:
 *   affine: c_i = code_i - C (centred, C = 2^(bits-1)), s_g the scale,
 *           b_g = bias + C * s_g (f32), for weights without a global scale;
 *   fp4:    c_i = 2 * E2M1(code_i) (-12..12), s_g = 0.5 * scale (times the
 *           global scale, one f32 product, when it is not 1).
 * Then, with acc = 0 and f32 operations in this order, for each group:
 *   acc = fma((float)(sum_i c_i * q_i) * d, s_g, acc)
 *   acc = fma(xsum, b_g, acc)            (affine only)
 * (the sum exact in int32: |q| <= 32767, |c| <= 128, gs <= 128). The error
 * against the f32 dot is bounded by |x_i - d*q_i| <= d/2 per element:
 * 0.5 * sum_g d_g * |s_g| * sum_i |c_i| (centring halves it, as for int8),
 * ~1.5e-5 of the group's largest activation per element (int8 blocks, for
 * decode, are ~4e-3).
 * mxfp8 (E4M3 values are not small integers), on CPUs with AVX512-BF16 as
 * well: the vectors rounded to bf16 (vcvtneps2bf16: nearest even, f32
 * denormals to 0), a relative error of at most 2^-9 per element, and each
 * weight's E4M3 value, exact in bf16, multiplied in pairs (vdpbf16ps: two
 * exact products per f32 lane and instruction); per group of 32 the f32 sum
 * of its 32 products (16 pair steps per lane) meets the E8M0 scale:
 * acc = fma(sum, s_g, acc). Without bf16 pairs, on AMX tiles, mxfp8 rows
 * take the f32 vectors split exactly instead (linear.c, takes_split).
 * Weights with exact_act keep the f32 products. */
#define QUANT_X16_ROWS 32
#define QUANT_X16_SG 16          /* a row block's group factors come in runs of 16 groups */
#define QUANT_X16_BF16 0x10000   /* in a key: bf16 vectors (mxfp8 rows) */
static inline int quant_x16_key_group(int key) { return key & ~QUANT_X16_BF16; }
typedef struct {
    int n, np;          /* vectors, and lanes: n rounded up to 16 (the lanes past n are 0) */
    int group, bf16;    /* bf16: the values are bf16 bits, no d or xsum */
    int64_t cols;
    int16_t *q;         /* [cols/2][np][2]: per column pair, each lane's two values */
    float *d, *xsum;    /* [cols/group][np] */
    int8_t *qh, *ql;    /* with AMX-INT8 tiles, q's high and low bytes (quant_amx_split), else NULL */
} quant_x16;
/* Nonzero where the kernels exist (and quant_set_fast and quant_x16_allow
 * allow them); tests turn the path off with quant_x16_allow(0) to compare.
 * quant_x16_group: the key of the vectors a weight takes (the group size,
 * plus QUANT_X16_BF16 for bf16 ones: weights of one key share prepared
 * vectors), or 0 when it keeps f32 ones. */
void quant_x16_allow(int on);
int quant_x16_available(void);
int quant_x16_group(const weight *w);
/* Bytes for n prepared vectors of cols columns (any alignment); the layout
 * in them; columns [c0, c1) (group multiples) of x[n][x_stride] quantized
 * into it. key: quant_x16_group's. */
size_t quant_x16_bytes(int n, int64_t cols, int key);
void quant_x16_layout(void *buf, int n, int64_t cols, int key, quant_x16 *a);
void quant_x16_prepare(const float *x, size_t x_stride, int64_t c0, int64_t c1, const quant_x16 *a);
/* y[t * y_stride + r] for r in [row0, row1), t < a->n, as defined above;
 * scratch: quant_x16_scratch_floats(n, cols) floats. Each result depends
 * only on its row and vector. */
size_t quant_x16_scratch_floats(int n, int64_t cols);
void quant_x16_matmul_rows(const weight *w, int64_t row0, int64_t row1, const quant_x16 *a, float *y,
                           size_t y_stride, float *scratch);

/* On Intel CPUs with AMX-INT8 (where the AMX kernels are in use),
 * quant_x16_matmul_rows multiplies affine and fp4 rows on the tiles instead,
 * with the same bits (quant_amx.c); quant_amx_allow(0) turns that off, for
 * tests to compare. */
void quant_amx_allow(int on);
int quant_amx_int8(void);

/* ---- quantizer ------------------------------------------------------------ */
/* One row of cols (a multiple of the group) in MLX's algorithms:
 *  WF_AFFINE (bits 2..8 but 7, group 32/64/128, scale_dtype F32/F16/BF16):
 *    mlx/backend/cpu/quantized.cpp `quantize` (= ops.cpp's fallback): per group
 *    min/max in f32, scale = max((max-min)/(2^b-1), 1e-7) signed away from the
 *    larger-magnitude edge, q0 = rint(edge/scale); if q0 != 0: scale = edge/q0,
 *    bias = edge; q = clamp(rint((w-bias)/scale), 0, 2^b-1) with the f32
 *    scale/bias; the stored scale/bias are then rounded (to nearest even) to
 *    scale_dtype.
 *  WF_NVFP4 / WF_MXFP4 / WF_MXFP8 (scale_dtype DT_U8; bits/group ignored):
 *    mlx/backend/metal/kernels/fp_quantized.h `fp_quantize` without a global
 *    scale: d = amax/6 (fp4) or amax/448 (fp8); scale = e4m3(d) (nvfp4) or the
 *    smallest power of two >= d (E8M0, mx); inv = scale ? 1/scale : 0; code =
 *    e2m1(w*inv) or e4m3(w*inv).
 * Writes quant_row_bytes to packed, one scale per group to scales and (affine)
 * one bias per group to biases. Returns 0, or -1 for unsupported parameters or
 * a non-finite input value (nothing meaningful to encode). */
int quant_quantize_row(wformat f, int bits, int group, dtype scale_dtype, const float *src, int64_t cols,
                       uint8_t *packed, uint8_t *scales, uint8_t *biases);

/* ---- internal: the AVX2 file's entry points (quant_avx2.c), called only after
 * the CPU check in quant.c ---------------------------------------------------- */
float quant_dot_avx2(const weight *w, int64_t row, const float *x);
/* Row r dequantized into out (before the global scale), exactly as
 * quant_decode_span does, for affine 4/8-bit and the fp formats; 0 if
 * handled, -1 for a format it does not cover. */
int quant_decode_row_avx2(const weight *w, int64_t r, float *out);
void quant_matmul_rows_avx2(const weight *w, int64_t row0, int64_t row1, const float *x, int n_x,
                            size_t x_stride, float *y, size_t y_stride);
/* Nonzero where the AVX-512 kernels are in use and the CPU has VNNI (with
 * BW and VL): the int8 rows' and quant_x16.c's 512-bit kernels. */
int quant_avx512_vnni(void);
/* Nonzero where the CPU has AVX-VNNI (256-bit vpdpbusd/vpdpwssd, VEX-encoded):
 * the AVX2 int8-activation rows and quant_x16.c's 256-bit kernels use it. */
int quant_avx_vnni(void);
/* Row r's group factors as f32 (affine 4/8-bit or other widths, nvfp4,
 * mxfp4, mxfp8): sc the scales; bi, for affine, the biases plus C * scale
 * (C = 2^(bits-1), the centred codes' common part). */
void quant_row_factors_avx2(const weight *w, int64_t r, float *sc, float *bi);
/* int8-activation kernels (kind: QA_* of quant_act.c); prepare fills a's
 * arrays, already pointed into scratch, from x. */
enum { QA_NONE, QA_A4, QA_A8, QA_FP4, QA_FP8 };
/* Nonzero where mxfp8 rows have their bf16-activation kernel (AVX512-BF16 and -VBMI,
 * with the AVX-512 kernels in use). */
int quant_act_fp8_available(void);
void quant_act_prepare_avx2(const weight *w, const float *x, quant_act *a);
void quant_matmul_rows_q8_avx2(const weight *w, int64_t row0, int64_t row1, const quant_act *a, int n_x, float *y,
                               size_t y_stride);
/* quant_amx.c's parts of quant_x16_matmul_rows (called only where
 * quant_amx_int8 says so): the prepared values split into bytes for columns
 * [c0, c1), a row's weight integers as bytes, the tile configuration for
 * groups of gs (begin, before a thread's first block of rows; end, after its
 * last) and a block of rows times every vector. */
void quant_amx_split(const quant_x16 *a, int64_t c0, int64_t c1);
void quant_amx_row_codes(const weight *w, int64_t r, int8_t *codes, int i, uint8_t *bytes);
void quant_amx_begin(int gs);
void quant_amx_end(void);
void quant_amx_rows(const int8_t *codes, const float *sg, const float *bg, const quant_x16 *a, int affine, int rows,
                    float *y, size_t y_stride);
/* Dequantize cols [c0, c0+n) of row r (n and c0 multiples of the group) into
 * out, exactly as weight_row_f32 but without the global scale. Shared by both
 * implementations. */
void quant_decode_span(const weight *w, int64_t r, int64_t c0, int64_t n, float *out);
/* The global scale to apply (1 when absent). */
float quant_global(const weight *w);

#endif
