/* quant_avx2.c — AVX2/FMA dot products straight from packed weights, and the
 * batched (prefill) form. Compiled with -mavx2 -mfma -mf16c and called only
 * after quant.c's CPU check. Hot formats (affine 4/8-bit, nvfp4, mxfp4,
 * mxfp8) have fused decode+dot loops; the batched form decodes a row's codes
 * once and runs the very same loop over the decoded values for every vector,
 * so its results equal quant_dot's bit for bit. Other formats dequantize a
 * span (quant_decode_span) and take a vector dot. Only the f32 accumulation
 * order differs from the double-precision reference.
 * Where the AVX-512 kernels are in use (kernels.h), mxfp8 rows and the affine
 * int8-activation rows have 512-bit variants (AVX-512F, VNNI), compiled by
 * their target attributes and chosen only after a CPU check. */
#include "quant.h"

#if defined(__AVX2__) && defined(__FMA__)
#include <immintrin.h>
#include <math.h>
#include <pthread.h>
#include <string.h>

#include "kernels.h"

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

/* 16 E4M3 codes as fp16 bits whose value is the code's times 2^-8: the sign
 * and the 7 magnitude bits moved under fp16's sign, exponent and mantissa
 * (its exponent bias is 8 more, and its subnormals are E4M3's, scaled
 * alike); NaN codes (0x7F/0xFF) become fp16 NaNs. vcvtph2ps widens them
 * exactly. Placing the bits in an f32 and multiplying by 2^120 instead, as
 * e4m3_fast_ps does, makes the subnormal codes f32 denormals, which this CPU
 * multiplies several times slower: nvfp4 rows whose scales are subnormal
 * (mlx-lm's and Ollama's nvfp4 have no global scale, so small weights give
 * them) ran at 12.6-16 GB/s instead of ~30 (1 thread in L2). */
static inline __m256i e4m3x16_half(__m128i codes) {
    __m256i h = _mm256_and_si256(_mm256_slli_epi16(_mm256_cvtepi8_epi16(codes), 7), _mm256_set1_epi16((short)0xbfff));
    __m256i nan = _mm256_cmpeq_epi16(_mm256_and_si256(h, _mm256_set1_epi16(0x7fff)), _mm256_set1_epi16(0x3f80));
    return _mm256_or_si256(h, _mm256_and_si256(nan, _mm256_set1_epi16(0x7c00)));
}

/* 16 E4M3 codes -> values (NaN codes NaN), as two vectors of 8. */
static inline void e4m3x16_ps(__m128i codes, __m256 *v0, __m256 *v1) {
    __m256i h = e4m3x16_half(codes);
    *v0 = _mm256_mul_ps(_mm256_cvtph_ps(_mm256_castsi256_si128(h)), _mm256_set1_ps(256.0f));
    *v1 = _mm256_mul_ps(_mm256_cvtph_ps(_mm256_extracti128_si256(h, 1)), _mm256_set1_ps(256.0f));
}

/* 8 E4M3 codes (the bytes' sign-extended int32 lanes) -> values, without the
 * NaN test: sign and the 7 magnitude bits moved to the top of an f32 and
 * rescaled by 2^120 (exact, subnormals included, but slow on them; rare among
 * a group's codes, unlike among nvfp4's scales). NaN codes come out as +-480,
 * so callers check for them first (e4m3_has_nan). */
static inline __m256 e4m3_fast_ps(__m256i c) {
    __m256i bits = _mm256_and_si256(_mm256_slli_epi32(c, 20), _mm256_set1_epi32((int)0x87f00000));
    return _mm256_mul_ps(_mm256_castsi256_ps(bits), _mm256_castsi256_ps(_mm256_set1_epi32(0x7b800000)));
}

/* Any of 16 E4M3 codes NaN (0x7F/0xFF)? */
static inline int e4m3_has_nan(__m128i q) {
    const __m128i m = _mm_set1_epi8(0x7f);
    return _mm_movemask_epi8(_mm_cmpeq_epi8(_mm_and_si128(q, m), m)) != 0;
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
        if (__builtin_expect(e4m3_has_nan(q), 0)) {
            e4m3x16_ps(q, v0, v1);
        } else {
            *v0 = e4m3_fast_ps(_mm256_cvtepi8_epi32(q));
            *v1 = e4m3_fast_ps(_mm256_cvtepi8_epi32(_mm_srli_si128(q, 8)));
        }
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

/* Decode reads every row once, in order. While a row is multiplied, each
 * step asks for one line of the row kernels_prefetch.quant_bytes further on
 * (its scales and biases at the row's start): spread so, the requests keep
 * pace with the stream (which kind of request, per CPU: kernels.h). Measured
 * on Zen 5 from DRAM with 2 threads, rotating variants in one process (40
 * passes over 330 MB of rows each): against no prefetch, 8-bit VNNI rows
 * +6-13%; against the whole row requested at once, 4-bit VNNI rows +3-6%,
 * and that bunched form made 8-bit rows 8-12% slower than none. The distance
 * depends on how busy the host's memory is: against 4 KB, 6 KB streamed
 * 8-bit rows 4-9% and 4-bit rows 5-7% faster while the probe read 77-83
 * GB/s, and 0-3% slower at 53-57 GB/s (8 KB: +4-9%, but -2 to -5% on 8-bit
 * rows when busy; 2 KB had been slower than 4 KB). On the Intel Xeon, 3 KB
 * was 9-10% slower than 6 KB, 12 KB the same. */

/* The row to request a line of per step while row r is multiplied (NULL
 * when none is left before row1); requests its scales and biases now. */
static inline __attribute__((always_inline)) const uint8_t *row_ahead(const weight *w, int64_t r, int64_t row1) {
    size_t dist = (size_t)kernels_prefetch.quant_bytes;
    int64_t ahead = w->row_stride >= dist ? 1 : (int64_t)(dist / w->row_stride);
    if (r + ahead >= row1) return NULL;
    __builtin_prefetch(w->scales + (size_t)(r + ahead) * w->scale_stride, 0, 2);
    if (w->biases) __builtin_prefetch(w->biases + (size_t)(r + ahead) * w->scale_stride, 0, 2);
    return w->data + (size_t)(r + ahead) * w->row_stride;
}

/* Row r against x. Unpacking codes bounds this loop in cache, so it keeps
 * two independent accumulators per group (one FMA chain would stall on
 * latency) and takes the bias term from the precomputed group sums.
 * (Interleaving several rows to share the x loads was measured slower from
 * DRAM: the extra streams defeat the hardware prefetcher.)
 * xsum: group_sums of x (affine only); pf: the row to request a line of per
 * 64 bytes of codes, or NULL. */
static inline __attribute__((always_inline)) float hot_row(int kind, const weight *w, int64_t r, const float *x,
                                                           const float *xsum, const uint8_t *pf) {
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
            int64_t byte = kind == K_A8 ? c : c / 2;
            if (pf && byte % 64 == 0) row_prefetch_line(pf + byte);
            step16(kind, row, c, &v0, &v1);
            a0 = _mm256_fmadd_ps(_mm256_loadu_ps(x + c), v0, a0);
            a1 = _mm256_fmadd_ps(_mm256_loadu_ps(x + c + 8), v1, a1);
        }
        tot = _mm256_fmadd_ps(_mm256_set1_ps(group_scale(w, sp, g)), _mm256_add_ps(a0, a1), tot);
        if (kind == K_A4 || kind == K_A8) btot += group_scale(w, bp, g) * xsum[g];
    }
    return hsum(tot) + btot;
}

/* An mxfp8 row with 512-bit vectors: decoding E4M3 codes, not memory, bounds
 * this loop, so it takes 64 codes (two groups) a step with one NaN test for
 * all of them, decodes them where they lie in the 32-bit lanes (e4m3_byte;
 * x comes in that order, fp8_x_order) rather than widening 16 at a time
 * through a cross-lane shuffle, keeps two accumulator chains, and decodes
 * each 16 groups' E8M0 scales in one vector. A group at a time, with a NaN
 * test per 16 codes and the scale decoded in scalar code, one thread read
 * 8-15 GB/s of rows from DRAM; now 16-18. The same values as fp8_row_avx2 (exact decode; NaN codes
 * through quant_e4m3), summed in 16 lanes. pf: the row to request a line of
 * per 64 bytes, or NULL. */
#define AVX512 __attribute__((target("avx512f,avx2,fma")))

/* 16 E8M0 scales as f32: 2^(code-127), code 0 -> 2^-127, 0xff -> NaN. */
static inline __attribute__((always_inline)) AVX512 __m512 e8m0x16(__m128i codes) {
    __m512i c = _mm512_cvtepu8_epi32(codes), bits = _mm512_slli_epi32(c, 23);
    bits = _mm512_mask_blend_epi32(_mm512_cmpeq_epi32_mask(c, _mm512_setzero_si512()), bits, _mm512_set1_epi32(0x400000));
    bits = _mm512_mask_blend_epi32(_mm512_cmpeq_epi32_mask(c, _mm512_set1_epi32(0xff)), bits, _mm512_set1_epi32(0x7fc00000));
    return _mm512_castsi512_ps(bits);
}

/* The E8M0 scales of groups g0..g0+n-1 (n <= 16) as f32, the lanes past n
 * 0: a short chunk is copied out first, so the row's scales are never read
 * past their end (a masked byte load needs AVX-512BW). */
static inline __attribute__((always_inline)) AVX512 __m512 e8m0_chunk(const uint8_t *sp, int64_t g0, int64_t n) {
    uint8_t tail[16] = {0};
    if (n < 16) memcpy(tail, sp + g0, (size_t)n);
    return e8m0x16(_mm_loadu_si128((const __m128i *)(n < 16 ? tail : sp + g0)));
}

/* 16 E4M3 codes (no NaN among them) as f32: the code's bits moved into
 * place, times 2^120 (exact, subnormals included). */
static inline __attribute__((always_inline)) AVX512 __m512 e4m3x16(const uint8_t *p) {
    __m512i b = _mm512_slli_epi32(_mm512_cvtepi8_epi32(_mm_loadu_si128((const __m128i *)p)), 20);
    return _mm512_mul_ps(_mm512_castsi512_ps(_mm512_and_si512(b, _mm512_set1_epi32((int)0x87f00000))),
                         _mm512_castsi512_ps(_mm512_set1_epi32(0x7b800000)));
}

/* 32 codes of one group against x: the group's unscaled dot in 16 lanes. */
static inline __attribute__((always_inline)) AVX512 __m512 fp8_group32(const uint8_t *p, const float *x) {
    __m512 v0, v1;
    if (__builtin_expect(e4m3_has_nan(_mm_loadu_si128((const __m128i *)p)) ||
                         e4m3_has_nan(_mm_loadu_si128((const __m128i *)(p + 16))), 0)) {
        float d[32];
        for (int i = 0; i < 32; i++) d[i] = quant_e4m3(p[i]);
        v0 = _mm512_loadu_ps(d);
        v1 = _mm512_loadu_ps(d + 16);
    } else {
        v0 = e4m3x16(p);
        v1 = e4m3x16(p + 16);
    }
    return _mm512_fmadd_ps(_mm512_loadu_ps(x), v0, _mm512_mul_ps(_mm512_loadu_ps(x + 16), v1));
}

/* x in the order fp8_row_avx512 meets it: per 64 elements, lane l of
 * vector k holds element 4l + k (byte k of the row's 32-bit lane l); a last
 * 32 elements in order. */
static void fp8_x_order(const float *x, int64_t cols, float *xr) {
    int64_t c = 0;
    for (; c + 64 <= cols; c += 64)
        for (int k = 0; k < 4; k++)
            for (int l = 0; l < 16; l++) xr[c + 16 * k + l] = x[c + 4 * l + k];
    for (; c < cols; c++) xr[c] = x[c];
}

/* E4M3 code k of each 32-bit lane (no NaN among them) as f32: the byte
 * moved to the top, shifted down arithmetically so its sign fills bits
 * 31..28 and its other bits land at 26..20, masked, times 2^120. */
static inline __attribute__((always_inline)) AVX512 __m512 e4m3_byte(__m512i q, const int k) {
    __m512i t = k == 3 ? q : _mm512_slli_epi32(q, 24 - 8 * k);
    return _mm512_mul_ps(_mm512_castsi512_ps(_mm512_and_si512(_mm512_srai_epi32(t, 4), _mm512_set1_epi32((int)0x87f00000))),
                         _mm512_castsi512_ps(_mm512_set1_epi32(0x7b800000)));
}

static AVX512 float fp8_row_avx512(const weight *w, int64_t r, const float *x, const float *xr, const uint8_t *pf) {
    const uint8_t *row = w->data + (size_t)r * w->row_stride, *sp = w->scales + (size_t)r * w->scale_stride;
    const __m512i low7 = _mm512_set1_epi8(0x7f), one = _mm512_set1_epi8(1), high = _mm512_set1_epi8((char)0x80);
    const __m512i halves = _mm512_setr_epi32(0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1);
    int64_t ng = w->cols / 32;
    __m512 tot = _mm512_setzero_ps(), tot1 = _mm512_setzero_ps();
    for (int64_t g0 = 0; g0 < ng; g0 += 16) {
        int64_t n = ng - g0 < 16 ? ng - g0 : 16, j = 0;
        __m512 S = e8m0_chunk(sp, g0, n);
        for (; j + 2 <= n; j += 2) {   /* 64 codes: lanes 0-7 are group j, 8-15 group j + 1 */
            int64_t c = (g0 + j) * 32;
            const uint8_t *p = row + c;
            if (pf) row_prefetch_line(pf + c);
            /* a NaN code is 0x7f or 0xff: its low 7 bits + 1 carry into bit 7 (no byte overflows) */
            __m512i q = _mm512_loadu_si512(p);
            if (__builtin_expect(_mm512_test_epi64_mask(_mm512_add_epi64(_mm512_and_si512(q, low7), one), high) != 0, 0)) {
                tot = _mm512_fmadd_ps(_mm512_permutexvar_ps(_mm512_set1_epi32((int)j), S), fp8_group32(p, x + c), tot);
                tot1 = _mm512_fmadd_ps(_mm512_permutexvar_ps(_mm512_set1_epi32((int)j + 1), S), fp8_group32(p + 32, x + c + 32), tot1);
                continue;
            }
            const float *xc = xr + c;
            __m512 a = _mm512_fmadd_ps(_mm512_loadu_ps(xc), e4m3_byte(q, 0), _mm512_mul_ps(_mm512_loadu_ps(xc + 16), e4m3_byte(q, 1)));
            __m512 b = _mm512_fmadd_ps(_mm512_loadu_ps(xc + 32), e4m3_byte(q, 2), _mm512_mul_ps(_mm512_loadu_ps(xc + 48), e4m3_byte(q, 3)));
            __m512 s = _mm512_permutexvar_ps(_mm512_add_epi32(halves, _mm512_set1_epi32((int)j)), S);
            if (j & 2) tot1 = _mm512_fmadd_ps(s, _mm512_add_ps(a, b), tot1);
            else tot = _mm512_fmadd_ps(s, _mm512_add_ps(a, b), tot);
        }
        if (j < n) {   /* an odd last group, in order */
            int64_t c = (g0 + j) * 32;
            if (pf) row_prefetch_line(pf + c);
            tot = _mm512_fmadd_ps(_mm512_permutexvar_ps(_mm512_set1_epi32((int)j), S), fp8_group32(row + c, x + c), tot);
        }
    }
    return _mm512_reduce_add_ps(_mm512_add_ps(tot, tot1));
}

/* 16 affine group scales (or biases) from group g of p as f32. */
static inline __attribute__((always_inline)) AVX512 __m512 affine_scales16(const uint8_t *p, dtype dt, int64_t g) {
    switch (dt) {
    case DT_F32: return _mm512_loadu_ps(p + 4 * g);
    case DT_F16: return _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(p + 2 * g)));
    default: return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(_mm256_loadu_si256((const __m256i *)(p + 2 * g))), 16));
    }
}

/* 16 E4M3 codes from p as f32, exactly (through fp16 bits, e4m3x16_half). */
static inline __attribute__((always_inline)) AVX512 __m512 e4m3x16_f32(const uint8_t *p) {
    return _mm512_mul_ps(_mm512_cvtph_ps(e4m3x16_half(_mm_loadu_si128((const __m128i *)p))), _mm512_set1_ps(256.0f));
}

/* The scales of a row's groups g0..g0+15 as f32, for the decode below. */
static inline __attribute__((always_inline)) AVX512 __m512 scales16(const weight *w, const uint8_t *p, int64_t g0) {
    switch (w->format) {
    case WF_AFFINE: return affine_scales16(p, w->scale_dtype, g0);
    case WF_NVFP4: return e4m3x16_f32(p + g0);
    default: return e8m0x16(_mm_loadu_si128((const __m128i *)(p + g0)));
    }
}

/* 16 codes from element c of a row as f32 (E4M3 through fp16 bits, exact;
 * 4-bit codes put in element order by one byte unpack). */
static inline __attribute__((always_inline)) AVX512 __m512 codes16(int kind, const uint8_t *row, int64_t c) {
    if (kind == K_A8) return _mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i *)(row + c))));
    if (kind == K_FP8) return e4m3x16_f32(row + c);
    const __m128i m4 = _mm_set1_epi8(0x0f);
    __m128i b = _mm_loadl_epi64((const __m128i *)(row + c / 2));
    __m512i n = _mm512_cvtepu8_epi32(_mm_unpacklo_epi8(_mm_and_si128(b, m4), _mm_and_si128(_mm_srli_epi16(b, 4), m4)));
    if (kind == K_A4) return _mm512_cvtepi32_ps(n);
    const __m512 e2m1 = _mm512_setr_ps(0.0f, 0.5f, 1.0f, 1.5f, 2.0f, 3.0f, 4.0f, 6.0f,
                                       -0.0f, -0.5f, -1.0f, -1.5f, -2.0f, -3.0f, -4.0f, -6.0f);
    return _mm512_permutexvar_ps(n, e2m1);
}

/* quant_decode_row_avx2 with AVX-512, the same values bit for bit: 16
 * elements a step, and 16 groups' scales (and biases) decoded at a time
 * (a scalar decode per group took much of an nvfp4 row's time). Prefill
 * decodes every expert's rows for a few dozen tokens each, so this is a
 * visible part of its time. Per 1536 x 2048 expert, rows into an L2 block,
 * against the AVX2 decode: int4 0.28-0.30 -> 0.21-0.23 ms, int8 0.21 -> 0.13,
 * nvfp4 (subnormal scales) 0.53-0.59 -> 0.29, mxfp4 0.31-0.33 -> 0.20-0.22,
 * mxfp8 0.31-0.35 -> 0.25. */
static AVX512 void decode_row_avx512(int kind, const weight *w, int64_t r, float *out) {
    int gs = quant_format_group(w->format, w->group_size);
    int64_t ng = w->cols / gs;
    const uint8_t *row = w->data + (size_t)r * w->row_stride, *sp = w->scales + (size_t)r * w->scale_stride;
    const uint8_t *bp = w->biases ? w->biases + (size_t)r * w->scale_stride : NULL;
    float sc[16], bi[16] = {0};
    for (int64_t g0 = 0; g0 < ng; g0 += 16) {
        int64_t n = ng - g0 < 16 ? ng - g0 : 16;
        if (n == 16) {
            _mm512_storeu_ps(sc, scales16(w, sp, g0));
            if (bp) _mm512_storeu_ps(bi, scales16(w, bp, g0));
        } else {   /* the row's last groups: never read past its scales */
            for (int64_t j = 0; j < n; j++) {
                sc[j] = group_scale(w, sp, g0 + j);
                if (bp) bi[j] = group_scale(w, bp, g0 + j);
            }
        }
        for (int64_t j = 0; j < n; j++) {
            __m512 s = _mm512_set1_ps(sc[j]), b = _mm512_set1_ps(bi[j]);
            for (int64_t c = (g0 + j) * gs; c < (g0 + j + 1) * gs; c += 16) {
                __m512 v = codes16(kind, row, c);
                if (kind == K_A4 || kind == K_A8) v = _mm512_add_ps(_mm512_mul_ps(s, v), b);
                else v = _mm512_mul_ps(v, s);
                _mm512_storeu_ps(out + c, v);
            }
        }
    }
}

/* The AVX-512 rows and decode where the kernels in use are the AVX-512 ones
 * (so GLMLITE_KERNELS=avx2 keeps every path on AVX2). */
static int avx512_rows(void) { return kernels_using_avx512(); }

/* An mxfp8 row with AVX2. Decoding the E4M3 codes bounds this loop, so, as
 * in the AVX-512 row, each code is decoded where it lies in its 32-bit lane
 * (fp8_group): per 32 codes one load, and per code a 16-bit arithmetic shift
 * (shared by two codes), a mask and for two of the four a 32-bit shift, which
 * leave its sign at bit 31 and its 7 other bits at 26..20: an f32 whose
 * value is the code's times 2^-120, exactly (subnormal codes give f32
 * denormals, slower but rare among a group's codes). x comes in that order
 * and, where every |x| < 2^8, already times 2^120 (fp8_x_order32), so x' v'
 * = x v exactly and no multiply is left; a vector with a larger |x| takes
 * the multiply instead (scaled = 0), the same bits. A NaN code (0x7F/0xFF:
 * low 7 bits all set) makes the row's dot NaN, found at the row's end from
 * the largest low-7-bit value; the row's E8M0 scales are decoded first
 * (fp4_scales). One thread, against widening 8 codes at a time (cvtepi8_epi32) with a NaN test
 * per group: 11.4-12.4 -> 16.1-16.4 GB/s of rows in L2, 8.1-8.5 -> 10.0-10.2
 * from DRAM (Intel Xeon, GLMLITE_KERNELS=avx2; a byte shuffle per code
 * instead of the shared 16-bit shifts: 14.2-16.0 in L2); widening through
 * fp16 bits (vcvtph2ps) had been slower than that widening. */
static inline __attribute__((always_inline)) __m256 e4m3_bits(__m256i bits, int scaled) {
    __m256 v = _mm256_castsi256_ps(bits);
    return scaled ? v : _mm256_mul_ps(v, _mm256_castsi256_ps(_mm256_set1_epi32(0x7b800000)));
}

/* Longest row the hot kernels take. */
#define MAX_ROW 16384

static void fp4_scales(const weight *w, const uint8_t *p, int64_t n, float *out);

/* tot + s * (the group's 32 codes at p against xr), the codes' low 7 bits
 * folded into *most. Codes 1 and 3 of each lane are the high bytes of its
 * 16-bit halves: one 16-bit arithmetic shift leaves both in place for two
 * masks (code 1's then moved to the top); codes 0 and 2 go through the same
 * after a 16-bit shift up. */
static inline __attribute__((always_inline)) __m256 fp8_group(const uint8_t *p, const float *xr, float s, __m256 tot,
                                                              __m256i *most, int scaled) {
    const __m256i top = _mm256_set1_epi32((int)0x87f00000), low = _mm256_set1_epi32(0x87f0);
    __m256i q = _mm256_loadu_si256((const __m256i *)p);
    *most = _mm256_max_epu8(*most, _mm256_and_si256(q, _mm256_set1_epi8(0x7f)));
    __m256i odd = _mm256_srai_epi16(q, 4), even = _mm256_srai_epi16(_mm256_slli_epi16(q, 8), 4);
    __m256 a = _mm256_mul_ps(_mm256_loadu_ps(xr), e4m3_bits(_mm256_slli_epi32(_mm256_and_si256(even, low), 16), scaled));
    a = _mm256_fmadd_ps(_mm256_loadu_ps(xr + 8), e4m3_bits(_mm256_slli_epi32(_mm256_and_si256(odd, low), 16), scaled), a);
    a = _mm256_fmadd_ps(_mm256_loadu_ps(xr + 16), e4m3_bits(_mm256_and_si256(even, top), scaled), a);
    a = _mm256_fmadd_ps(_mm256_loadu_ps(xr + 24), e4m3_bits(_mm256_and_si256(odd, top), scaled), a);
    return _mm256_fmadd_ps(_mm256_set1_ps(s), a, tot);
}

static inline __attribute__((always_inline)) float fp8_row_avx2_any(const weight *w, int64_t r, const float *xr,
                                                                     const uint8_t *pf, int scaled) {
    const uint8_t *row = w->data + (size_t)r * w->row_stride, *sp = w->scales + (size_t)r * w->scale_stride;
    int64_t ng = w->cols / 32;
    __m256 tot0 = _mm256_setzero_ps(), tot1 = _mm256_setzero_ps();
    __m256i most = _mm256_setzero_si256();
    float sc[MAX_ROW / 32];
    fp4_scales(w, sp, ng, sc);
    for (int64_t g = 0; g < ng; g += 2) {   /* two groups (a line of codes) a step, on two sums */
        if (pf) row_prefetch_line(pf + 32 * g);
        tot0 = fp8_group(row + 32 * g, xr + 32 * g, sc[g], tot0, &most, scaled);
        if (g + 1 < ng) tot1 = fp8_group(row + 32 * g + 32, xr + 32 * g + 32, sc[g + 1], tot1, &most, scaled);
    }
    __m256i nan = _mm256_cmpeq_epi8(most, _mm256_set1_epi8(0x7f));
    return _mm256_testz_si256(nan, nan) ? hsum(_mm256_add_ps(tot0, tot1)) : NAN;
}

static float fp8_row_avx2(const weight *w, int64_t r, const float *xr, int scaled, const uint8_t *pf) {
    return scaled ? fp8_row_avx2_any(w, r, xr, pf, 1) : fp8_row_avx2_any(w, r, xr, pf, 0);
}

/* x in the order fp8_row_avx2 meets it: per 32 elements, lane l of vector
 * k holds element 4 l + k. Times 2^120 where every |x| < 2^8 (returns 1),
 * else as it is (returns 0). */
static int fp8_x_order32(const float *x, int64_t cols, float *xr) {
    int scaled = 1;
    for (int64_t c = 0; c < cols && scaled; c++) scaled = fabsf(x[c]) < 256.0f;   /* NaN: not scaled */
    float f = scaled ? quant_bits_f32(0x7b800000u) : 1.0f;
    for (int64_t c = 0; c + 32 <= cols; c += 32)
        for (int k = 0; k < 4; k++)
            for (int l = 0; l < 8; l++) xr[c + 8 * k + l] = x[c + 4 * l + k] * f;
    return scaled;
}

/* The kind as a constant, so each loop specializes; xr is x as the mxfp8
 * rows meet it (fp8_x_order for fp8_row_avx512; fp8_x_order32, times 2^120
 * where scaled, for fp8_row_avx2); pf: a row to request ahead, or NULL. */
static float hot_row_any(int kind, const weight *w, int64_t r, const float *x, const float *xsum, const float *xr,
                         int scaled, const uint8_t *pf) {
    switch (kind) {
    case K_A4: return hot_row(K_A4, w, r, x, xsum, pf);
    case K_A8: return hot_row(K_A8, w, r, x, xsum, pf);
    case K_FP4: return hot_row(K_FP4, w, r, x, xsum, pf);
    default: return avx512_rows() ? fp8_row_avx512(w, r, x, xr, pf) : fp8_row_avx2(w, r, xr, scaled, pf);
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
    if (avx512_rows()) {   /* the kind as a constant, so each loop specializes */
        switch (kind) {
        case K_A4: decode_row_avx512(K_A4, w, r, out); break;
        case K_A8: decode_row_avx512(K_A8, w, r, out); break;
        case K_FP4: decode_row_avx512(K_FP4, w, r, out); break;
        default: decode_row_avx512(K_FP8, w, r, out); break;
        }
        return 0;
    }
    int gs = quant_format_group(w->format, w->group_size);
    const uint8_t *row = w->data + (size_t)r * w->row_stride, *sp = w->scales + (size_t)r * w->scale_stride;
    const uint8_t *bp = w->biases ? w->biases + (size_t)r * w->scale_stride : NULL;
    float fs[MAX_ROW / 16];   /* the fp formats' scales, decoded 16 (nvfp4: 0.53-0.59 -> 0.40-0.43 ms an expert) or 8 at a time */
    int vec_scales = w->format != WF_AFFINE && w->cols <= MAX_ROW;
    if (vec_scales) fp4_scales(w, sp, w->cols / gs, fs);
    for (int64_t g = 0; g < w->cols / gs; g++) {
        __m256 s = _mm256_set1_ps(vec_scales ? fs[g] : group_scale(w, sp, g));
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

/* What hot_row_any needs of x besides x: the affine rows' group sums
 * (xsum), or x in the mxfp8 rows' order (xr); returns `scaled`. */
static int hot_row_input(int kind, const weight *w, const float *x, float *xsum, float *xr) {
    if (kind == K_A4 || kind == K_A8) group_sums(x, w->cols, w->group_size, xsum);
    if (kind != K_FP8) return 0;
    if (!avx512_rows()) return fp8_x_order32(x, w->cols, xr);
    fp8_x_order(x, w->cols, xr);
    return 0;
}

float quant_dot_avx2(const weight *w, int64_t row, const float *x) {
    int kind = hot_kind(w);
    if (kind < 0 || w->cols > MAX_ROW) return generic_row(w, row, x) * quant_global(w);
    float xsum[MAX_GROUPS], xr[MAX_ROW];
    int scaled = hot_row_input(kind, w, x, xsum, xr);
    return hot_row_any(kind, w, row, x, xsum, xr, scaled, NULL) * quant_global(w);
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
    float xsum[MAX_GROUPS], xr[MAX_ROW];
    for (int t = 0; t < n_x; t++) {
        const float *xt = x + (size_t)t * x_stride;
        int scaled = hot_row_input(kind, w, xt, xsum, xr);
        for (int64_t r = row0; r < row1; r++)
            y[(size_t)t * y_stride + r] =
                hot_row_any(kind, w, r, xt, xsum, xr, scaled, t == 0 ? row_ahead(w, r, row1) : NULL) * g;
    }
}

/* ---- int8 activations (quant.h) --------------------------------------------- */

/* One block of 32 activations quantized as quant_act_quantize does (the
 * product x * id rounded by cvtps, which rounds to nearest even), stored as
 * 32 int8 in element order. */
static inline void act_block(const float *x, int8_t *q, float *d) {
    const __m256 nosign = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fffffff));
    __m256 v0 = _mm256_loadu_ps(x), v1 = _mm256_loadu_ps(x + 8), v2 = _mm256_loadu_ps(x + 16), v3 = _mm256_loadu_ps(x + 24);
    __m256 m = _mm256_max_ps(_mm256_max_ps(_mm256_and_ps(v0, nosign), _mm256_and_ps(v1, nosign)),
                             _mm256_max_ps(_mm256_and_ps(v2, nosign), _mm256_and_ps(v3, nosign)));
    __m128 h = _mm_max_ps(_mm256_castps256_ps128(m), _mm256_extractf128_ps(m, 1));
    h = _mm_max_ps(h, _mm_movehl_ps(h, h));
    h = _mm_max_ss(h, _mm_movehdup_ps(h));
    float amax = _mm_cvtss_f32(h);
    float id = amax != 0.0f ? 127.0f / amax : 0.0f;
    *d = amax / 127.0f;
    __m256 vid = _mm256_set1_ps(id);
    __m256i i0 = _mm256_cvtps_epi32(_mm256_mul_ps(v0, vid)), i1 = _mm256_cvtps_epi32(_mm256_mul_ps(v1, vid));
    __m256i i2 = _mm256_cvtps_epi32(_mm256_mul_ps(v2, vid)), i3 = _mm256_cvtps_epi32(_mm256_mul_ps(v3, vid));
    /* packs work per 128-bit lane: fix the order with one cross-lane permute */
    __m256i p = _mm256_packs_epi16(_mm256_packs_epi32(i0, i1), _mm256_packs_epi32(i2, i3));
    p = _mm256_permutevar8x32_epi32(p, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
    _mm256_storeu_si256((__m256i *)q, p);
}

int quant_avx512_vnni(void) {
    return avx512_rows() && __builtin_cpu_supports("avx512vnni") && __builtin_cpu_supports("avx512bw") &&
           __builtin_cpu_supports("avx512vl");
}

/* The sum of n quantized activations (exact in int). */
static inline int q_sum(const int8_t *q, int64_t n) {
    int s = 0;
    for (int64_t i = 0; i < n; i++) s += q[i];
    return s;
}

/* For the mxfp8 rows with bf16 activations (fp8_rows_bf16, below): the low
 * and high bytes of the bf16 bits of the E4M3 magnitudes 0x00..0x7f (0x7f:
 * NaN), built once. */
static uint8_t e4m3_bf16_lo[128], e4m3_bf16_hi[128];
static pthread_once_t e4m3_bf16_once = PTHREAD_ONCE_INIT;
static void build_e4m3_bf16(void) {
    for (int c = 0; c < 128; c++) {
        uint16_t b = f32_to_bf16(quant_e4m3((uint8_t)c));
        e4m3_bf16_lo[c] = (uint8_t)b;
        e4m3_bf16_hi[c] = (uint8_t)(b >> 8);
    }
}
static void fp8_x_order_bf16(uint16_t *xb, int64_t cols);

void quant_act_prepare_avx2(const weight *w, const float *x, quant_act *a) {
    int64_t cols = a->cols, nb = cols / QUANT_ACT_BLOCK;
    if (a->kind == QA_FP8) {   /* mxfp8: x rounded to bf16 (fp8_rows_bf16) */
        pthread_once(&e4m3_bf16_once, build_e4m3_bf16);
        kernels_active()->round_bf16(x, a->xb, cols);
        fp8_x_order_bf16(a->xb, cols);
        return;
    }
    a->vnni = quant_avx512_vnni();
    a->vex = !a->vnni && quant_avx_vnni();
    for (int64_t b = 0; b < nb; b++) act_block(x + b * QUANT_ACT_BLOCK, a->q + b * QUANT_ACT_BLOCK, a->d + b);
    if (a->kind == QA_A8 && a->vex)   /* step32_8bit's VEX form takes the codes as stored and subtracts these */
        for (int64_t j = 0; j < cols / 4; j++) a->qc[j] = 128 * q_sum(a->q + 4 * j, 4);
    int C = a->kind == QA_A8 ? 128 : a->kind == QA_A4 ? 8 : 12;
    if (a->kind != QA_A8 && !a->vnni) {
        /* The 4-bit codes' offset (affine: C = 8; fp4: the table's 12) times
           the sum of q over each run of elements whose lanes are scaled alike
           (a block, or nvfp4's group of 16), in the run's first lane (a lane
           holds 8 elements), to subtract there; the VNNI rows use xres
           instead (below), the 8-bit rows centre their codes themselves
           (step32_8bit) */
        int64_t run = quant_format_group(w->format, w->group_size) == 16 ? 16 : QUANT_ACT_BLOCK;
        memset(a->kc, 0, (size_t)cols / 8 * sizeof *a->kc);
        for (int64_t u = 0; u < cols / run; u++) a->kc[u * run / 8] = C * q_sum(a->q + u * run, run);
    }
    if (a->kind != QA_A8) {   /* the 8-bit rows read q as it is */
        /* 4-bit codes: byte j of 64 elements holds elements 2j (low nibble) and
           2j+1 (high), so per 64 elements the kernel wants the even elements
           (32 bytes) then the odd ones; its scales are [d0 x4, d1 x4] to match
           the int32 lanes of madd (lanes 0-3 come from the first 32 elements). */
        int8_t *k = a->k;
        const __m256i split = _mm256_setr_epi8(0, 2, 4, 6, 8, 10, 12, 14, 1, 3, 5, 7, 9, 11, 13, 15,
                                               0, 2, 4, 6, 8, 10, 12, 14, 1, 3, 5, 7, 9, 11, 13, 15);
        for (int64_t c = 0; c < cols; c += 64) {
            __m256i A = _mm256_shuffle_epi8(_mm256_loadu_si256((const __m256i *)(a->q + c)), split);       /* e0 o0 | e1 o1 */
            __m256i B = _mm256_shuffle_epi8(_mm256_loadu_si256((const __m256i *)(a->q + c + 32)), split);  /* e2 o2 | e3 o3 */
            __m256i ev = _mm256_permute4x64_epi64(_mm256_unpacklo_epi64(A, B), 0xd8);   /* e0 e2 | e1 e3 -> e0 e1 e2 e3 */
            __m256i od = _mm256_permute4x64_epi64(_mm256_unpackhi_epi64(A, B), 0xd8);
            /* VNNI takes 128 elements a step: [evens of c, of c + 64 | odds of c, of c + 64] */
            int64_t b = c - c % 128, e = c, o = c + 32;
            if (a->vnni && b + 128 <= cols) e = b + c % 128 / 2, o = e + 64;
            _mm256_storeu_si256((__m256i *)(k + e), ev);
            _mm256_storeu_si256((__m256i *)(k + o), od);
            __m128 d0 = _mm_set1_ps(a->d[c / 32]), d1 = _mm_set1_ps(a->d[c / 32 + 1]);
            _mm256_storeu_ps(a->kd + c / 8, _mm256_set_m128(d1, d0));
        }
    }
    if (a->vnni && a->kind == QA_FP4) {
        /* fp4 groups (16 or 32) lie in one block: kd holds d per group, which
           the VNNI rows fold into each chunk's scales (times 2^8 for nvfp4,
           whose scales they widen at 2^-8, e4m3x16_half); xres_g = -12 * sum
           of q over g, for the table's offset */
        int gs = quant_format_group(w->format, w->group_size);
        float unit = w->format == WF_NVFP4 ? 256.0f : 1.0f;
        for (int64_t g = 0; g < cols / gs; g++) {
            a->kd[g] = a->d[g * gs / QUANT_ACT_BLOCK] * unit;
            a->xres[g] = -12.0f * (float)q_sum(a->q + g * gs, gs);
        }
    }
    if (w->format != WF_AFFINE) return;
    group_sums(x, cols, w->group_size, a->xsum);
    if (a->vnni) {   /* xres_g = C * (xsum_g - sum over g's blocks of d_b * sum q_b), for the VNNI rows */
        int64_t per_group = w->group_size / QUANT_ACT_BLOCK;
        for (int64_t g = 0; g < cols / w->group_size; g++) {
            float dq = 0.0f;
            for (int64_t b = g * per_group; b < (g + 1) * per_group; b++)
                dq += a->d[b] * (float)q_sum(a->q + b * QUANT_ACT_BLOCK, QUANT_ACT_BLOCK);
            a->xres[g] = (float)C * (a->xsum[g] - dq);
        }
    }
}

/* 8 affine group scales (or biases) from p, starting at group g, as f32. */
static inline __m256 affine_scales8(const uint8_t *p, dtype dt, int64_t g) {
    switch (dt) {
    case DT_F32: return _mm256_loadu_ps((const float *)(const void *)(p + 4 * g));
    case DT_F16: return _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(p + 2 * g)));
    default: return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)(p + 2 * g))), 16));
    }
}

/* An fp row's n group scales as f32 (E4M3 for nvfp4, else E8M0). */
static void fp4_scales(const weight *w, const uint8_t *p, int64_t n, float *out) {
    int64_t i = 0;
    switch (w->format) {
    case WF_NVFP4:
        for (; i + 16 <= n; i += 16) {
            __m256 v0, v1;
            e4m3x16_ps(_mm_loadu_si128((const __m128i *)(p + i)), &v0, &v1);
            _mm256_storeu_ps(out + i, v0);
            _mm256_storeu_ps(out + i + 8, v1);
        }
        for (; i < n; i++) out[i] = quant_e4m3(p[i]);
        break;
    default:   /* E8M0: 2^(code-127), code 0 -> 2^-127, 0xff -> NaN */
        for (; i + 8 <= n; i += 8) {
            __m256i c = _mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)(p + i)));
            __m256i v = _mm256_slli_epi32(c, 23);
            v = _mm256_blendv_epi8(v, _mm256_set1_epi32(0x400000), _mm256_cmpeq_epi32(c, _mm256_setzero_si256()));
            v = _mm256_blendv_epi8(v, _mm256_set1_epi32(0x7fc00000), _mm256_cmpeq_epi32(c, _mm256_set1_epi32(0xff)));
            _mm256_storeu_ps(out + i, _mm256_castsi256_ps(v));
        }
        for (; i < n; i++) out[i] = quant_e8m0(p[i]);
        break;
    }
}

/* The group scales for the 8 int32 lanes of a 64-element step: lanes 0-3
 * hold elements 0-31, lanes 4-5/6-7 hold 32-47/48-63 (pairs for groups of 16). */
static inline __m256 lane_scales(int gs, const float *sc, int64_t c) {
    switch (gs) {
    case 16:
        return _mm256_permutevar8x32_ps(_mm256_castps128_ps256(_mm_loadu_ps(sc + c / 16)),
                                        _mm256_setr_epi32(0, 0, 1, 1, 2, 2, 3, 3));
    case 32:
        return _mm256_permutevar8x32_ps(_mm256_castps128_ps256(_mm_castpd_ps(_mm_load_sd((const double *)(const void *)(sc + c / 32)))),
                                        _mm256_setr_epi32(0, 0, 0, 0, 1, 1, 1, 1));
    default: return _mm256_broadcast_ss(sc + c / gs);
    }
}

/* With AVX-VNNI (Intel's cores since Alder Lake, without AVX-512), one VEX
 * vpdpbusd adds the four products of unsigned and signed bytes into each
 * int32 lane: the same integers maddubs, the 16-bit add and madd give (they
 * cannot saturate here), in one instruction instead of up to four. Written
 * in assembly so that this file needs no AVX-VNNI target; run only after
 * quant_avx_vnni() says the CPU has it. */
static inline __attribute__((always_inline)) __m256i dpbusd_vex(__m256i acc, __m256i u8, __m256i s8) {
    __asm__("%{vex%} vpdpbusd %2, %1, %0" : "+x"(acc) : "x"(u8), "x"(s8));
    return acc;
}

/* 64 elements of 4-bit codes against the split activations: int32 lanes of
 * sum(code * q) - kc, where the code is the affine code (0..15) or, for fp4,
 * 2 * e2m1 + 12 from a table (0..24), and kc takes off the offset (8 or 12)
 * times q's sum (quant_act_prepare_avx2). Unsigned codes need no sign moves
 * for maddubs, which cannot saturate (pairs of at most 2 * 24 * 127): the
 * fp4 rows that moved each table value's sign onto q (four vpsignb a step)
 * ran 14-19% slower (1 thread in L2, nvfp4 and mxfp4). */
static inline __attribute__((always_inline)) __m256i step64_4bit(int fp4, const uint8_t *codes, const int8_t *k,
                                                                 const int32_t *kc, const int VEX) {
    const __m256i m4 = _mm256_set1_epi8(0x0f);
    __m256i bytes = _mm256_loadu_si256((const __m256i *)codes);
    __m256i lo = _mm256_and_si256(bytes, m4), hi = _mm256_and_si256(_mm256_srli_epi16(bytes, 4), m4);
    __m256i xe = _mm256_loadu_si256((const __m256i *)k), xo = _mm256_loadu_si256((const __m256i *)(k + 32));
    if (fp4) {
        const __m256i lut = _mm256_setr_epi8(12, 13, 14, 15, 16, 18, 20, 24, 12, 11, 10, 9, 8, 6, 4, 0,
                                             12, 13, 14, 15, 16, 18, 20, 24, 12, 11, 10, 9, 8, 6, 4, 0);
        lo = _mm256_shuffle_epi8(lut, lo);
        hi = _mm256_shuffle_epi8(lut, hi);
    }
    __m256i kcv = _mm256_loadu_si256((const __m256i *)kc);
    if (VEX) return _mm256_sub_epi32(dpbusd_vex(dpbusd_vex(_mm256_setzero_si256(), lo, xe), hi, xo), kcv);
    __m256i p = _mm256_add_epi16(_mm256_maddubs_epi16(lo, xe), _mm256_maddubs_epi16(hi, xo));
    return _mm256_sub_epi32(_mm256_madd_epi16(p, _mm256_set1_epi16(1)), kcv);
}

/* 32 8-bit codes against 32 activations: int32 lanes of sum((code - 128) * q).
 * The centred code w = code ^ 0x80 is signed, so maddubs gets |w| (-128 gives
 * 0x80, read as 128) against q with w's sign: pairs of at most 2 * 128 * 127,
 * which cannot saturate. Against codes widened to 16 bits for madd_epi16,
 * with C * sum(q) subtracted per block: 1 thread, rows in L2, +12% (768
 * columns) to +28% (5120), 2048 columns 33 -> 40 GB/s. With AVX-VNNI
 * (VEX), vpdpbusd takes the codes as stored (unsigned) against q, and qc,
 * 128 times each lane's four q, comes off: the same lanes. */
static inline __attribute__((always_inline)) __m256i step32_8bit(const uint8_t *codes, const int8_t *q, const int32_t *qc,
                                                                 const int VEX) {
    __m256i c = _mm256_loadu_si256((const __m256i *)codes), x = _mm256_loadu_si256((const __m256i *)q);
    if (VEX) return _mm256_sub_epi32(dpbusd_vex(_mm256_setzero_si256(), c, x), _mm256_loadu_si256((const __m256i *)qc));
    __m256i w = _mm256_xor_si256(c, _mm256_set1_epi8((char)0x80));
    return _mm256_madd_epi16(_mm256_maddubs_epi16(_mm256_sign_epi8(w, w), _mm256_sign_epi8(x, w)), _mm256_set1_epi16(1));
}

/* Row r against one prepared vector: f32 partial sums per 64 (4-bit) or 32
 * (8-bit) elements, two accumulators so the FMA latency does not bound the
 * loop. sc/bi: the row's group scales and biases as f32. */
static inline __attribute__((always_inline)) float q8_row(int kind, int gs, const uint8_t *row, const float *sc,
                                                          const float *bi, const quant_act *a, const uint8_t *pf,
                                                          const int VEX) {
    int64_t cols = a->cols;
    __m256 t0 = _mm256_setzero_ps(), t1 = _mm256_setzero_ps();
    if (kind == QA_A8) {
        int64_t c = 0;
        for (; c < cols; c += 64) {
            if (pf) row_prefetch_line(pf + c);
            for (int h = 0; h < 2; h++) {
                int64_t e = c + 32 * h;
                __m256i i = step32_8bit(row + e, a->q + e, a->qc + e / 4, VEX);
                __m256 f = _mm256_mul_ps(_mm256_cvtepi32_ps(i), _mm256_broadcast_ss(a->d + e / 32));
                if (h == 0) t0 = _mm256_fmadd_ps(f, _mm256_broadcast_ss(sc + e / gs), t0);
                else t1 = _mm256_fmadd_ps(f, _mm256_broadcast_ss(sc + e / gs), t1);
            }
        }
    } else {
        const int8_t *k = a->k;
        int fp4 = kind == QA_FP4;
        int64_t c = 0;
        for (; c + 128 <= cols; c += 128) {
            if (pf) row_prefetch_line(pf + c / 2);
            __m256 f0 = _mm256_mul_ps(_mm256_cvtepi32_ps(step64_4bit(fp4, row + c / 2, k + c, a->kc + c / 8, VEX)), _mm256_loadu_ps(a->kd + c / 8));
            __m256 f1 = _mm256_mul_ps(_mm256_cvtepi32_ps(step64_4bit(fp4, row + c / 2 + 32, k + c + 64, a->kc + c / 8 + 8, VEX)),
                                      _mm256_loadu_ps(a->kd + c / 8 + 8));
            t0 = _mm256_fmadd_ps(f0, lane_scales(gs, sc, c), t0);
            t1 = _mm256_fmadd_ps(f1, lane_scales(gs, sc, c + 64), t1);
        }
        if (c < cols) {
            if (pf) row_prefetch_line(pf + c / 2);
            __m256 f0 = _mm256_mul_ps(_mm256_cvtepi32_ps(step64_4bit(fp4, row + c / 2, k + c, a->kc + c / 8, VEX)), _mm256_loadu_ps(a->kd + c / 8));
            t0 = _mm256_fmadd_ps(f0, lane_scales(gs, sc, c), t0);
        }
    }
    float s = hsum(_mm256_add_ps(t0, t1));
    if (kind == QA_FP4) return 0.5f * s;                           /* sums of 2*e2m1 * q (kc took the 12 off) */
    return s + dot_vec(bi, a->xsum, cols / gs);                    /* + sum_g b_g * xsum_g */
}

/* A row's group scales as f32 in sc and, for the affine kinds, its biases
 * plus the centred codes' common part (C * scale, C = 2^(bits-1)) in bi, in
 * one pass (three passes took a quarter of a 4-bit row's time in cache). Mul
 * then add, as the scalar tail: no FMA, the same bits. */
static inline __attribute__((always_inline)) void row_factors(int kind, const weight *w, int64_t r, int64_t ng, float *sc,
                                                              float *bi) {
    const uint8_t *sp = w->scales + (size_t)r * w->scale_stride;
    if (kind == QA_FP4) {
        fp4_scales(w, sp, ng, sc);
        return;
    }
    const uint8_t *bp = w->biases + (size_t)r * w->scale_stride;
    dtype dt = w->scale_dtype;
    float C = (float)(1 << (w->bits - 1));
    int64_t g = 0;
    for (; g + 8 <= ng; g += 8) {
        __m256 s = affine_scales8(sp, dt, g);
        _mm256_storeu_ps(sc + g, s);
        _mm256_storeu_ps(bi + g, _mm256_add_ps(affine_scales8(bp, dt, g), _mm256_mul_ps(_mm256_set1_ps(C), s)));
    }
    for (; g < ng; g++) {
        sc[g] = load_scale(sp + (size_t)g * scale_size(dt), dt);
        bi[g] = load_scale(bp + (size_t)g * scale_size(dt), dt) + C * sc[g];
    }
}

void quant_row_factors_avx2(const weight *w, int64_t r, float *sc, float *bi) {
    row_factors(w->format == WF_AFFINE ? QA_A4 : QA_FP4, w, r, w->cols / quant_format_group(w->format, w->group_size), sc, bi);
}

/* ---- the affine kinds with AVX-512 VNNI: vpdpbusd multiplies 64 unsigned
 * codes by 64 signed activations and adds them in fours into int32 lanes,
 * one instruction for what takes three on AVX2. The lanes line up with the
 * AVX2 layouts (8 lanes per 32-element block for 8-bit, 4 for 4-bit), so kd
 * serves both. The 4-bit activations are laid out per 128 elements (two
 * 64-element halves' evens, then their odds: one load each), and the codes
 * are not centred (a8_row_vnni). 1 thread, rows in L2, against the AVX2
 * layout, the centred codes and a scalar scale tail: 4-bit rows +7% (2048
 * columns) and +28% (1536), 8-bit +19% and +46%. */
#define VNNI __attribute__((target("avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma")))

/* The group scale of each of the 16 int32 lanes of an 8-bit step at element
 * c (4 elements a lane; reads up to 4 scales, only the needed ones count). */
static inline VNNI __m512 vnni_group_scales(int gs, const float *sc, int64_t c) {
    if (gs >= 64) return _mm512_set1_ps(sc[c / gs]);
    return _mm512_permutexvar_ps(_mm512_setr_epi32(0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1),
                                 _mm512_castps128_ps512(_mm_loadu_ps(sc + c / gs)));
}

/* The group scales (or biases) g..g+15 from p as f32, those in mask m
 * (the others 0 and not read). A full mask takes plain loads: masked ones
 * for every 16 streamed 8-bit rows 5-9% slower from DRAM. */
static inline __attribute__((always_inline)) VNNI __m512 vnni_scales16(const uint8_t *p, dtype dt, int64_t g, __mmask16 m) {
    if (m == 0xffff) return affine_scales16(p, dt, g);
    switch (dt) {
    case DT_F32: return _mm512_maskz_loadu_ps(m, p + 4 * g);
    case DT_F16: return _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(m, p + 2 * g));
    default: return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(_mm256_maskz_loadu_epi16(m, p + 2 * g)), 16));
    }
}

/* A row's group scales and biases as f32, 16 at a time, the last ones
 * masked: a scalar tail took half of a 1536-column 4-bit row's time in cache. */
static inline __attribute__((always_inline)) VNNI void vnni_row_factors(const weight *w, int64_t r, int64_t ng,
                                                                        float *sc, float *bi) {
    const uint8_t *sp = w->scales + (size_t)r * w->scale_stride, *bp = w->biases + (size_t)r * w->scale_stride;
    dtype dt = w->scale_dtype;
    int64_t g = 0;
    for (; g + 16 <= ng; g += 16) {
        _mm512_storeu_ps(sc + g, vnni_scales16(sp, dt, g, 0xffff));
        _mm512_storeu_ps(bi + g, vnni_scales16(bp, dt, g, 0xffff));
    }
    if (g < ng) {
        __mmask16 m = first_lanes16(ng - g);
        _mm512_mask_storeu_ps(sc + g, m, vnni_scales16(sp, dt, g, m));
        _mm512_mask_storeu_ps(bi + g, m, vnni_scales16(bp, dt, g, m));
    }
}

/* An 8-bit row against one vector: sum_g s_g * sum_b d_b * sum(code * q)
 * from the integer products, plus sum_g (b_g * xsum_g + s_g * xres_g) in the
 * same lanes. The codes are not centred here (vpdpbusd cannot saturate): xres
 * carries C * (xsum - sum d * q) per group, which makes the result the
 * centred one's (quant.h), without subtracting C * sum q at every step.
 * sc/bi: the row's scales and biases (vnni_row_factors); pf: a row to
 * request into L2 a line per step (row_ahead), or NULL. */
static inline __attribute__((always_inline)) VNNI float a8_row_vnni(int gs, const uint8_t *row, const float *sc,
                                                                    const float *bi, const quant_act *a, const uint8_t *pf) {
    int64_t cols = a->cols;
    __m512 t = _mm512_setzero_ps(), t1 = _mm512_setzero_ps();   /* two chains: the FMA latency would bound one */
    for (int64_t c = 0; c < cols; c += 64) {   /* 64 elements a step: two blocks of 8 lanes */
        if (pf) row_prefetch_line(pf + c);
        __m512i i = _mm512_dpbusd_epi32(_mm512_setzero_si512(), _mm512_loadu_si512(row + c), _mm512_loadu_si512(a->q + c));
        __m512 d = _mm512_mask_blend_ps(0xff00, _mm512_set1_ps(a->d[c / 32]), _mm512_set1_ps(a->d[c / 32 + 1]));
        __m512 f = _mm512_mul_ps(_mm512_mul_ps(_mm512_cvtepi32_ps(i), d), vnni_group_scales(gs, sc, c));
        if (c & 64) t1 = _mm512_add_ps(t1, f);
        else t = _mm512_add_ps(t, f);
    }
    int64_t ng = cols / gs;
    for (int64_t g = 0; g < ng; g += 16) {
        __mmask16 m = first_lanes16(ng - g);
        t = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(m, bi + g), _mm512_maskz_loadu_ps(m, a->xsum + g), t);
        t1 = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(m, sc + g), _mm512_maskz_loadu_ps(m, a->xres + g), t1);
    }
    return _mm512_reduce_add_ps(_mm512_add_ps(t, t1));
}

/* 64 nibbles against 64 activations into the int32 lanes of acc: affine
 * codes as they are; E2M1 codes (fp4) as 2 * e2m1 + 12 from a table, in
 * 0..24, the unsigned side of vpdpbusd. The offset's part, 12 * sum(q) per
 * group, is taken off once per vector (xres). Moving each code's sign onto
 * the activation instead took a test and a masked subtraction per 64
 * codes: 1 thread in L2, 2048-column nvfp4 rows 30 -> 34 GB/s, mxfp4 34 -> 41. */
static inline __attribute__((always_inline)) VNNI __m512i nibble_dot(int fp4, __m512i acc, __m512i nib, __m512i x) {
    if (!fp4) return _mm512_dpbusd_epi32(acc, nib, x);
    const __m512i lut = _mm512_broadcast_i32x4(_mm_setr_epi8(12, 13, 14, 15, 16, 18, 20, 24, 12, 11, 10, 9, 8, 6, 4, 0));
    return _mm512_dpbusd_epi32(acc, _mm512_shuffle_epi8(lut, nib), x);
}

/* A row of 4-bit codes against one vector, 128 elements (64 bytes of
 * nibbles, four blocks of 4 lanes) a step and 16 groups at a time: each
 * chunk's scales (and biases) are decoded straight into registers and each
 * step takes its lanes' scales by one permute. Affine (QA_A4): the sum of
 * a8_row_vnni, its bias terms added in the chunk's registers. Converting a
 * row's factors into scratch first and reading them back (as the 8-bit rows
 * do) took a fifth of a 2048-column row's time in L2; this way 4-bit rows ran
 * 14% (2048 columns, groups of 64) to 25-35% (1536) faster there, and
 * 1536-column rows 9-10% faster from DRAM on one thread (2048: +0-3%; on two
 * threads of a busy host, no change). nvfp4/mxfp4 (QA_FP4): 0.5 * sum_g s_g *
 * d_g * (sum((2 * e2m1 + 12) * q) + xres_g), which equals q8_row's sum; each
 * chunk's scales come with their groups' d (kd) already multiplied in, which
 * saved a load and a multiply a step (1 thread in L2: nvfp4 +5-19%, mxfp4
 * +4-6%). */
static inline __attribute__((always_inline)) VNNI float nibble_row_vnni(int kind, int gs, const weight *w, int64_t r,
                                                                        const uint8_t *row, const quant_act *a,
                                                                        const uint8_t *pf) {
    const uint8_t *sp = w->scales + (size_t)r * w->scale_stride;
    const uint8_t *ahead = pf ? pf : row;   /* without a row ahead, a harmless request for this one */
    const __m512i m4 = _mm512_set1_epi8(0x0f);
    const int8_t *k = a->k;
    int fp4 = kind == QA_FP4;
    int64_t cols = a->cols, ng = cols / gs;
    /* lane l of a step covers elements 8l..8l+7: its group within the step is 8l / gs */
    __m512i first = _mm512_srli_epi32(_mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15),
                                      gs == 16 ? 1 : gs == 32 ? 2 : gs == 64 ? 3 : 4);
    __m512 t = _mm512_setzero_ps(), t1 = _mm512_setzero_ps(), tb = _mm512_setzero_ps();
    for (int64_t g0 = 0; g0 < ng; g0 += 16) {
        __mmask16 m = first_lanes16(ng - g0);
        __m512 S;
        if (fp4) {
            __m128i codes = m == 0xffff ? _mm_loadu_si128((const __m128i *)(sp + g0)) : _mm_maskz_loadu_epi8(m, sp + g0);
            __m512 s = gs == 16 ? _mm512_cvtph_ps(e4m3x16_half(codes)) : e8m0x16(codes);   /* nvfp4's at 2^-8 */
            S = _mm512_mul_ps(s, _mm512_maskz_loadu_ps(m, a->kd + g0));
            tb = _mm512_fmadd_ps(S, _mm512_maskz_loadu_ps(m, a->xres + g0), tb);   /* - s_g * d_b * 12 * sum_g q */
        } else {
            const uint8_t *bp = w->biases + (size_t)r * w->scale_stride;
            S = vnni_scales16(sp, w->scale_dtype, g0, m);
            __m512 B = vnni_scales16(bp, w->scale_dtype, g0, m);
            tb = _mm512_fmadd_ps(B, _mm512_maskz_loadu_ps(m, a->xsum + g0), tb);
            tb = _mm512_fmadd_ps(S, _mm512_maskz_loadu_ps(m, a->xres + g0), tb);
        }
        int64_t c = g0 * gs, end = (g0 + 16) * gs < cols ? (g0 + 16) * gs : cols;
        __m512i idx = first;
        for (; c + 128 <= end; c += 128, idx = _mm512_add_epi32(idx, _mm512_set1_epi32(128 / gs))) {
            row_prefetch_line(ahead + c / 2);
            __m512i bytes = _mm512_loadu_si512(row + c / 2);
            __m512i lo = _mm512_and_si512(bytes, m4), hi = _mm512_and_si512(_mm512_srli_epi16(bytes, 4), m4);
            __m512i i = nibble_dot(fp4, nibble_dot(fp4, _mm512_setzero_si512(), lo, _mm512_loadu_si512(k + c)), hi,
                                   _mm512_loadu_si512(k + c + 64));
            __m512 f = _mm512_cvtepi32_ps(i);
            if (!fp4) f = _mm512_mul_ps(f, _mm512_loadu_ps(a->kd + c / 8));
            if (c & 128) t1 = _mm512_fmadd_ps(f, _mm512_permutexvar_ps(idx, S), t1);
            else t = _mm512_fmadd_ps(f, _mm512_permutexvar_ps(idx, S), t);
        }
        if (c < end) {   /* a last 64 elements, laid out [even 32 | odd 32]: the low 8 lanes */
            row_prefetch_line(ahead + c / 2);
            __m512i bytes = _mm512_zextsi256_si512(_mm256_loadu_si256((const __m256i *)(row + c / 2)));
            __m512i lo = _mm512_and_si512(bytes, m4), hi = _mm512_and_si512(_mm512_srli_epi16(bytes, 4), m4);
            __m512i xe = _mm512_zextsi256_si512(_mm256_loadu_si256((const __m256i *)(k + c)));
            __m512i xo = _mm512_zextsi256_si512(_mm256_loadu_si256((const __m256i *)(k + c + 32)));
            __m512i i = nibble_dot(fp4, nibble_dot(fp4, _mm512_setzero_si512(), lo, xe), hi, xo);
            __m512 f = fp4 ? _mm512_maskz_mov_ps(0x00ff, _mm512_cvtepi32_ps(i))
                           : _mm512_maskz_mul_ps(0x00ff, _mm512_cvtepi32_ps(i), _mm512_castps256_ps512(_mm256_loadu_ps(a->kd + c / 8)));
            t = _mm512_fmadd_ps(f, _mm512_permutexvar_ps(idx, S), t);
        }
    }
    float sum = _mm512_reduce_add_ps(_mm512_add_ps(_mm512_add_ps(t, t1), tb));
    return fp4 ? 0.5f * sum : sum;
}

static VNNI void q8_rows_vnni(int kind, int gs, const weight *w, int64_t row0, int64_t row1, const quant_act *a,
                              int n_x, float *y, size_t y_stride) {
    float sc[QUANT_ACT_MAX_COLS / 16], bi[QUANT_ACT_MAX_COLS / 32];
    float g = quant_global(w);
    int64_t ng = w->cols / gs;
    for (int64_t r = row0; r < row1; r++) {
        const uint8_t *row = w->data + (size_t)r * w->row_stride, *next = row_ahead(w, r, row1);
        if (kind == QA_A8) vnni_row_factors(w, r, ng, sc, bi);
        for (int t = 0; t < n_x; t++) {
            const uint8_t *pf = t == 0 ? next : NULL;   /* one request per line */
            float v;
            switch (kind * 256 + gs) {   /* constants, so each loop specializes */
            case QA_A4 * 256 + 32: v = nibble_row_vnni(QA_A4, 32, w, r, row, &a[t], pf); break;
            case QA_A4 * 256 + 64: v = nibble_row_vnni(QA_A4, 64, w, r, row, &a[t], pf); break;
            case QA_A4 * 256 + 128: v = nibble_row_vnni(QA_A4, 128, w, r, row, &a[t], pf); break;
            case QA_FP4 * 256 + 16: v = nibble_row_vnni(QA_FP4, 16, w, r, row, &a[t], pf); break;
            case QA_FP4 * 256 + 32: v = nibble_row_vnni(QA_FP4, 32, w, r, row, &a[t], pf); break;
            case QA_A8 * 256 + 32: v = a8_row_vnni(32, row, sc, bi, &a[t], pf); break;
            case QA_A8 * 256 + 64: v = a8_row_vnni(64, row, sc, bi, &a[t], pf); break;
            default: v = a8_row_vnni(128, row, sc, bi, &a[t], pf); break;
            }
            y[(size_t)t * y_stride + r] = v * g;
        }
    }
}

/* The kind, group size and instructions (VEX: AVX-VNNI) as constants, so
 * each loop specializes. */
static inline __attribute__((always_inline)) float q8_row_any(int kind, int gs, const uint8_t *row, const float *sc,
                                                              const float *bi, const quant_act *a, const uint8_t *pf,
                                                              const int VEX) {
    switch (kind * 256 + gs) {
    case QA_A4 * 256 + 32: return q8_row(QA_A4, 32, row, sc, bi, a, pf, VEX);
    case QA_A4 * 256 + 64: return q8_row(QA_A4, 64, row, sc, bi, a, pf, VEX);
    case QA_A4 * 256 + 128: return q8_row(QA_A4, 128, row, sc, bi, a, pf, VEX);
    case QA_A8 * 256 + 32: return q8_row(QA_A8, 32, row, sc, bi, a, pf, VEX);
    case QA_A8 * 256 + 64: return q8_row(QA_A8, 64, row, sc, bi, a, pf, VEX);
    case QA_A8 * 256 + 128: return q8_row(QA_A8, 128, row, sc, bi, a, pf, VEX);
    case QA_FP4 * 256 + 16: return q8_row(QA_FP4, 16, row, sc, bi, a, pf, VEX);
    default: return q8_row(QA_FP4, 32, row, sc, bi, a, pf, VEX);
    }
}

static void q8_rows(int kind, int gs, const weight *w, int64_t row0, int64_t row1, const quant_act *a, int n_x,
                    float *y, size_t y_stride) {
    if (a->vnni) {
        q8_rows_vnni(kind, gs, w, row0, row1, a, n_x, y, y_stride);
        return;
    }
    float sc[QUANT_ACT_MAX_COLS / 16], bi[QUANT_ACT_MAX_COLS / 32];
    float g = quant_global(w);
    int64_t ng = w->cols / gs;
    int vex = a[0].vex;
    for (int64_t r = row0; r < row1; r++) {
        const uint8_t *row = w->data + (size_t)r * w->row_stride, *next = row_ahead(w, r, row1);
        row_factors(kind, w, r, ng, sc, bi);
        for (int t = 0; t < n_x; t++) {
            const uint8_t *pf = t == 0 ? next : NULL;   /* one request per line */
            float v = vex ? q8_row_any(kind, gs, row, sc, bi, &a[t], pf, 1) : q8_row_any(kind, gs, row, sc, bi, &a[t], pf, 0);
            y[(size_t)t * y_stride + r] = v * g;
        }
    }
}

/* ---- mxfp8 rows against bf16 activations (AVX512-BF16 and -VBMI).
 * Decoding E4M3 into f32 lanes bounds the f32-activation rows
 * (fp8_row_avx512: ~25 GB/s a core in L2). Here byte tables give each
 * code's bf16 value, which is exact (3 mantissa bits; magnitudes 2^-9..448
 * are all normal in bf16), and vdpbf16ps multiplies them by activations
 * rounded to bf16 once per product. The activations' rounding, at most 2^-9
 * of each |x_i|, is the only change from the exact dot (quant.h). */
#define BF16ROW __attribute__((target("avx512f,avx512bw,avx512bf16,avx512vbmi,avx2,fma")))

/* The AVX-512 table has round_bf16 only on CPUs with AVX512-BW and -BF16; the
 * lookup also needs VBMI (vpermt2b). */
int quant_act_fp8_available(void) { return kernels_active()->round_bf16 != NULL && __builtin_cpu_supports("avx512vbmi"); }

/* Per 64 elements, x in the order fp8_row_bf16 meets the codes' bf16 words:
 * the unpacks interleave bytes within each 16-byte lane, so the first vector
 * holds elements 0-7, 16-23, 32-39, 48-55 and the second 8-15, 24-31, ... */
static BF16ROW void fp8_x_order_bf16(uint16_t *xb, int64_t cols) {
    uint16_t i0[32], i1[32];   /* word k of each: element 16 * (k / 8) + k % 8 (+ 8) of the 64 */
    for (int k = 0; k < 32; k++) {
        i0[k] = (uint16_t)(16 * (k / 8) + k % 8);
        i1[k] = (uint16_t)(i0[k] + 8);
    }
    __m512i first = _mm512_loadu_si512(i0), second = _mm512_loadu_si512(i1);
    for (int64_t c = 0; c < cols; c += 64) {
        __m512i a = _mm512_loadu_si512(xb + c), b = _mm512_loadu_si512(xb + c + 32);
        _mm512_storeu_si512(xb + c, _mm512_permutex2var_epi16(a, first, b));
        _mm512_storeu_si512(xb + c + 32, _mm512_permutex2var_epi16(a, second, b));
    }
}

/* Row r: 64 codes a step, both bytes of each code's bf16 looked up by its
 * low 7 bits (vpermt2b), the sign added to the high byte, the bytes
 * interleaved into words: two vdpbf16ps give 16 lanes, 0-7 of group j and
 * 8-15 of group j + 1, scaled by one permute of the chunk's scales. Against
 * a lookup of 16-bit words per 32 codes (two vpermt2w, a blend and a sign
 * move), 1 thread in L2: 29 -> 48 GB/s at 2048 columns, 32 -> 53 at 5120.
 * Groups come in pairs (cols % 64 == 0). pf: a row to request a line of per
 * 64 bytes, or NULL. */
static BF16ROW float fp8_row_bf16(const weight *w, int64_t r, const uint16_t *xb, const __m512i tab[4], const uint8_t *pf) {
    const uint8_t *row = w->data + (size_t)r * w->row_stride, *sp = w->scales + (size_t)r * w->scale_stride;
    const __m512i halves = _mm512_setr_epi32(0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1);
    int64_t ng = w->cols / 32;
    __m512 tot = _mm512_setzero_ps(), tot1 = _mm512_setzero_ps();
    for (int64_t g0 = 0; g0 < ng; g0 += 16) {
        int64_t n = ng - g0 < 16 ? ng - g0 : 16;
        __m512 S = e8m0_chunk(sp, g0, n);
        for (int64_t j = 0; j < n; j += 2) {
            int64_t c = (g0 + j) * 32;
            if (pf) row_prefetch_line(pf + c);
            __m512i q = _mm512_loadu_si512(row + c);
            __m512i lo = _mm512_permutex2var_epi8(tab[0], q, tab[1]);
            __m512i hi = _mm512_ternarylogic_epi32(_mm512_permutex2var_epi8(tab[2], q, tab[3]), q,
                                                   _mm512_set1_epi8((char)0x80), 0xf8);   /* hi | (q & sign) */
            __m512 v = _mm512_dpbf16_ps(_mm512_setzero_ps(), (__m512bh)_mm512_unpacklo_epi8(lo, hi),
                                        (__m512bh)_mm512_loadu_si512(xb + c));
            v = _mm512_dpbf16_ps(v, (__m512bh)_mm512_unpackhi_epi8(lo, hi), (__m512bh)_mm512_loadu_si512(xb + c + 32));
            __m512 sc = _mm512_permutexvar_ps(_mm512_add_epi32(halves, _mm512_set1_epi32((int)j)), S);
            if (j & 2) tot1 = _mm512_fmadd_ps(v, sc, tot1);
            else tot = _mm512_fmadd_ps(v, sc, tot);
        }
    }
    return _mm512_reduce_add_ps(_mm512_add_ps(tot, tot1));
}

static BF16ROW void fp8_rows_bf16(const weight *w, int64_t row0, int64_t row1, const quant_act *a, int n_x, float *y,
                                  size_t y_stride) {
    __m512i tab[4] = {_mm512_loadu_si512(e4m3_bf16_lo), _mm512_loadu_si512(e4m3_bf16_lo + 64),
                      _mm512_loadu_si512(e4m3_bf16_hi), _mm512_loadu_si512(e4m3_bf16_hi + 64)};
    float g = quant_global(w);
    for (int64_t r = row0; r < row1; r++) {
        const uint8_t *next = row_ahead(w, r, row1);
        for (int t = 0; t < n_x; t++) y[(size_t)t * y_stride + r] = fp8_row_bf16(w, r, a[t].xb, tab, t == 0 ? next : NULL) * g;
    }
}

void quant_matmul_rows_q8_avx2(const weight *w, int64_t row0, int64_t row1, const quant_act *a, int n_x, float *y,
                               size_t y_stride) {
    if (a->kind == QA_FP8) fp8_rows_bf16(w, row0, row1, a, n_x, y, y_stride);
    else q8_rows(a->kind, quant_format_group(w->format, w->group_size), w, row0, row1, a, n_x, y, y_stride);
}

#else /* not built for AVX2: never called (quant.c checks the CPU first) */

float quant_dot_avx2(const weight *w, int64_t row, const float *x) { return quant_dot_ref(w, row, x); }
int quant_decode_row_avx2(const weight *w, int64_t r, float *out) { (void)w; (void)r; (void)out; return -1; }
void quant_matmul_rows_avx2(const weight *w, int64_t row0, int64_t row1, const float *x, int n_x,
                            size_t x_stride, float *y, size_t y_stride) {
    for (int64_t r = row0; r < row1; r++)
        for (int t = 0; t < n_x; t++) y[(size_t)t * y_stride + r] = quant_dot_ref(w, r, x + (size_t)t * x_stride);
}

int quant_act_fp8_available(void) { return 0; }
int quant_avx512_vnni(void) { return 0; }
void quant_row_factors_avx2(const weight *w, int64_t r, float *sc, float *bi) { (void)w; (void)r; (void)sc; (void)bi; }
void quant_act_prepare_avx2(const weight *w, const float *x, quant_act *a) { (void)w; (void)x; (void)a; }
void quant_matmul_rows_q8_avx2(const weight *w, int64_t row0, int64_t row1, const quant_act *a, int n_x, float *y,
                               size_t y_stride) {
    (void)w; (void)row0; (void)row1; (void)a; (void)n_x; (void)y; (void)y_stride;
}

#endif
