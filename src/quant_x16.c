/* quant_x16.c — prefill products of quantized rows with 16-bit activations
 * (quant.h, "16-bit activations"): the vectors quantized per group to int16
 * and laid out with tokens in vector lanes, a block of rows decoded to
 * int16 weight integers, and tiles of rows x token vectors multiplied with
 * vpdpwssd, two multiply-adds per int32 lane and instruction where an f32
 * FMA does one: 512-bit (AVX-512 VNNI) with the AVX-512 kernels, 256-bit
 * (AVX-VNNI) with the AVX2 ones. Both give the same bits. mxfp8 rows take
 * the same layouts and tiles with bf16 values and vdpbf16ps (AVX512-BF16,
 * 512-bit only). On Intel CPUs with AMX-INT8, groups of 32 or more go to
 * AMX tiles instead (quant_amx.c), with the same bits again. Compiled with
 * -mavx2 -mfma -mf16c; each is chosen only after a CPU check
 * (quant_x16_available, bf16_pairs, quant_amx_int8). */
#include "quant.h"

#include <string.h>

#include "kernels.h"

#define ALIGN 64
static size_t up(size_t n) { return (n + ALIGN - 1) & ~(size_t)(ALIGN - 1); }

static size_t lanes(int n) { return (size_t)(n + 15) & ~(size_t)15; }

/* Whether vectors of this key are split into bytes for AMX-INT8 tiles: not
 * for groups of 16 (nvfp4), whose tile products would use a quarter of
 * each tile and whose per-group f32 work made them slower than vpdpwssd. */
static int amx_key(int key) { return !(key & QUANT_X16_BF16) && quant_x16_key_group(key) >= 32 && quant_amx_int8(); }

/* q [cols/2][np][2] int16 | d [ng][np] | xsum [ng][np] | with AMX, qh and ql [np*cols] each */
size_t quant_x16_bytes(int n, int64_t cols, int key) {
    size_t np = lanes(n), ng = (size_t)(cols / quant_x16_key_group(key));
    return ALIGN + up(np * (size_t)cols * 2) + 2 * up(ng * np * 4) + (amx_key(key) ? 2 * up(np * (size_t)cols) : 0);
}

void quant_x16_layout(void *buf, int n, int64_t cols, int key, quant_x16 *a) {
    int group = quant_x16_key_group(key);
    size_t np = lanes(n), ng = (size_t)(cols / group);
    uint8_t *p = (uint8_t *)(((uintptr_t)buf + ALIGN - 1) & ~(uintptr_t)(ALIGN - 1));
    a->n = n;
    a->np = (int)np;
    a->cols = cols;
    a->group = group;
    a->bf16 = (key & QUANT_X16_BF16) != 0;
    a->q = (int16_t *)p;
    p += up(np * (size_t)cols * 2);
    a->d = (float *)p;
    p += up(ng * np * 4);
    a->xsum = (float *)p;
    p += up(ng * np * 4);
    a->qh = a->ql = NULL;
    if (amx_key(key)) {
        a->qh = (int8_t *)p;
        a->ql = (int8_t *)p + up(np * (size_t)cols);
    }
}

/* A row block's buffers in scratch, each laid out so that a tile reaches its
 * rows at fixed offsets from one pointer (no register per row), and each
 * row's part is written in runs: sums [lanes / 48][rows][48] f32, codes
 * [cols / X16_KC][rows][X16_KC] int16, scales and biases
 * [groups / X16_SG][rows][X16_SG] f32; then one row's scales and biases as
 * converted, and its codes as bytes (widths other than 4 and 8 bits). */
#define X16_KC 256
#define X16_LANES 48
#define X16_SG QUANT_X16_SG
static size_t codes_elems(int64_t cols) { return (size_t)QUANT_X16_ROWS * (size_t)((cols + X16_KC - 1) / X16_KC * X16_KC); }
static size_t acc_floats(int n) { return (size_t)QUANT_X16_ROWS * ((lanes(n) + X16_LANES - 1) / X16_LANES * X16_LANES); }
static size_t scale_floats(size_t ng) { return (size_t)QUANT_X16_ROWS * ((ng + X16_SG - 1) / X16_SG * X16_SG); }

size_t quant_x16_scratch_floats(int n, int64_t cols) {
    return ALIGN / 4 + acc_floats(n) + codes_elems(cols) / 2 + 2 * scale_floats((size_t)cols / 16) + 2 * (size_t)cols / 16 +
           (size_t)cols / 4;
}

#if defined(__AVX2__) && defined(__FMA__)
#include <cpuid.h>
#include <immintrin.h>
#include <pthread.h>

/* The AVX-512 kernels, and the 256-bit ones for CPUs with AVX-VNNI but not
 * the AVX-512 kernels (Intel's cores since Alder Lake; GLMLITE_KERNELS=avx2). */
#define X16 __attribute__((target("avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma")))
#define X16Y __attribute__((target("avxvnni,avx2,fma")))
#define X16B __attribute__((target("avx512f,avx512bw,avx512vl,avx512vnni,avx512bf16,avx2,fma")))

static int allowed = 1;
void quant_x16_allow(int on) { allowed = on; }

/* AVX-VNNI: CPUID leaf 7, subleaf 1, EAX bit 4 (read directly: not every
 * compiler's __builtin_cpu_supports knows it), once (a CPUID can cost a
 * virtual machine an exit). */
static pthread_once_t vnni_once = PTHREAD_ONCE_INIT;
static int avx_vnni;
static void read_avx_vnni(void) {
    unsigned eax, ebx, ecx, edx;
    avx_vnni = __get_cpuid_count(7, 1, &eax, &ebx, &ecx, &edx) && (eax >> 4 & 1);
}
int quant_avx_vnni(void) {
    pthread_once(&vnni_once, read_avx_vnni);
    return avx_vnni;
}

int quant_x16_available(void) {
    return allowed && quant_using_avx2() && (quant_avx512_vnni() || (kernels_active() == kernels_avx2() && quant_avx_vnni()));
}

/* vdpbf16ps: the 512-bit kernels, and the attention kernels found AVX512-BF16. */
static int bf16_pairs(void) { return quant_avx512_vnni() && kernels_bf16_dot_fast(); }

int quant_x16_group(const weight *w) {
    int fp4 = w->format == WF_NVFP4 || w->format == WF_MXFP4, fp8 = w->format == WF_MXFP8;
    if (!(fp4 || fp8 || (w->format == WF_AFFINE && w->biases && quant_global(w) == 1.0f))) return 0;
    int group = quant_format_group(w->format, w->group_size);
    if (w->exact_act || w->cols <= 0 || group <= 0 || w->cols % group || !quant_x16_available()) return 0;
    if (fp8) return bf16_pairs() && quant_global(w) == 1.0f ? group | QUANT_X16_BF16 : 0;
    return group;
}

/* One group of 16 vectors, transposed into tile (tokens in lanes): its
 * maximum magnitude and sum column by column (each lane's sum in element
 * order), d and xsum for the lanes, then each column pair's two int16
 * values per lane at q (the pair's line, from the first of the 16 lanes). */
static X16 void group_zmm(float (*tile)[16], int gs, float *d, float *xsum, int16_t *q, size_t np) {
    __m512 amax = _mm512_setzero_ps(), sum = _mm512_setzero_ps();
    for (int c = 0; c < gs; c++) {
        __m512 v = _mm512_loadu_ps(tile[c]);
        amax = _mm512_max_ps(amax, _mm512_abs_ps(v));
        sum = _mm512_add_ps(sum, v);
    }
    __mmask16 nz = _mm512_cmp_ps_mask(amax, _mm512_setzero_ps(), _CMP_GT_OQ);
    __m512 id = _mm512_maskz_div_ps(nz, _mm512_set1_ps(32767.0f), amax);
    /* plus 0 * sum: NaN when the group holds a non-finite value */
    _mm512_storeu_ps(d, _mm512_fmadd_ps(sum, _mm512_setzero_ps(), _mm512_div_ps(amax, _mm512_set1_ps(32767.0f))));
    _mm512_storeu_ps(xsum, sum);
    for (int c = 0; c < gs; c += 2) {
        __m512i lo = _mm512_cvtps_epi32(_mm512_mul_ps(_mm512_loadu_ps(tile[c]), id));
        __m512i hi = _mm512_cvtps_epi32(_mm512_mul_ps(_mm512_loadu_ps(tile[c + 1]), id));
        _mm512_storeu_si512(q + (size_t)c / 2 * np * 2,
                            _mm512_or_si512(_mm512_and_si512(lo, _mm512_set1_epi32(0xffff)), _mm512_slli_epi32(hi, 16)));
    }
}

/* The same, 8 lanes at a time (the same values bit for bit). */
static void group_ymm(float (*tile)[16], int gs, float *d, float *xsum, int16_t *q, size_t np) {
    for (int h = 0; h < 16; h += 8) {
        __m256 amax = _mm256_setzero_ps(), sum = _mm256_setzero_ps();
        const __m256 magnitude = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fffffff));
        for (int c = 0; c < gs; c++) {
            __m256 v = _mm256_loadu_ps(tile[c] + h);
            amax = _mm256_max_ps(amax, _mm256_and_ps(v, magnitude));
            sum = _mm256_add_ps(sum, v);
        }
        __m256 nz = _mm256_cmp_ps(amax, _mm256_setzero_ps(), _CMP_GT_OQ);
        __m256 id = _mm256_and_ps(nz, _mm256_div_ps(_mm256_set1_ps(32767.0f), amax));
        _mm256_storeu_ps(d + h, _mm256_fmadd_ps(sum, _mm256_setzero_ps(), _mm256_div_ps(amax, _mm256_set1_ps(32767.0f))));
        _mm256_storeu_ps(xsum + h, sum);
        for (int c = 0; c < gs; c += 2) {
            __m256i lo = _mm256_cvtps_epi32(_mm256_mul_ps(_mm256_loadu_ps(tile[c] + h), id));
            __m256i hi = _mm256_cvtps_epi32(_mm256_mul_ps(_mm256_loadu_ps(tile[c + 1] + h), id));
            _mm256_storeu_si256((__m256i *)(q + ((size_t)c / 2 * np + (size_t)h) * 2),
                                _mm256_or_si256(_mm256_and_si256(lo, _mm256_set1_epi32(0xffff)), _mm256_slli_epi32(hi, 16)));
        }
    }
}

/* One group of 16 vectors as bf16 pairs (no d or xsum). */
static X16B void group_bf16(float (*tile)[16], int gs, int16_t *q, size_t np) {
    for (int c = 0; c < gs; c += 2) {
        __m512i lo = _mm512_cvtepu16_epi32((__m256i)_mm512_cvtneps_pbh(_mm512_loadu_ps(tile[c])));
        __m512i hi = _mm512_cvtepu16_epi32((__m256i)_mm512_cvtneps_pbh(_mm512_loadu_ps(tile[c + 1])));
        _mm512_storeu_si512(q + (size_t)c / 2 * np * 2, _mm512_or_si512(lo, _mm512_slli_epi32(hi, 16)));
    }
}

/* Columns [c0, c1) of the n vectors (group multiples), per 16 tokens and
 * group. */
void quant_x16_prepare(const float *x, size_t x_stride, int64_t c0, int64_t c1, const quant_x16 *a) {
    int gs = a->group, zmm = quant_avx512_vnni();
    size_t np = (size_t)a->np;
    float tile[128][16];
    for (size_t t0 = 0; t0 < np; t0 += 16) {
        size_t tn = (size_t)a->n - t0 < 16 ? (size_t)a->n - t0 : 16;
        for (int64_t g0 = c0; g0 < c1; g0 += gs) {
            for (int c = 0; c < gs; c++) {
                for (size_t t = 0; t < tn; t++) tile[c][t] = x[(t0 + t) * x_stride + (size_t)g0 + (size_t)c];
                for (size_t t = tn; t < 16; t++) tile[c][t] = 0.0f;
            }
            size_t g = (size_t)(g0 / gs);
            int16_t *q = a->q + ((size_t)g0 / 2 * np + t0) * 2;
            if (a->bf16) group_bf16(tile, gs, q, np);
            else if (zmm) group_zmm(tile, gs, a->d + g * np + t0, a->xsum + g * np + t0, q, np);
            else group_ymm(tile, gs, a->d + g * np + t0, a->xsum + g * np + t0, q, np);
        }
    }
    if (a->qh) quant_amx_split(a, c0, c1);
}

/* 32 nibbles (16 bytes at p, the first `bytes` of them read) as int16: each
 * byte's two nibbles become one 32-bit lane's two values, E2M1 codes (FP4)
 * as 2 * E2M1 by table. */
static inline __attribute__((always_inline)) X16 __m512i nibbles32(const uint8_t *p, int bytes, const int FP4) {
    __m512i v = _mm512_cvtepu8_epi32(_mm_maskz_loadu_epi8(first_lanes16(bytes), p));
    v = _mm512_and_si512(_mm512_or_si512(v, _mm512_slli_epi32(v, 12)), _mm512_set1_epi32(0x000f000f));
    if (!FP4) return v;
    const __m512i e2m1x2 = _mm512_broadcast_i64x4(_mm256_setr_epi16(0, 1, 2, 3, 4, 6, 8, 12, 0, -1, -2, -3, -4, -6, -8, -12));
    return _mm512_permutexvar_epi16(v, e2m1x2);
}

/* 32 E4M3 codes as bf16 bits, exactly: for a normal code its 7 magnitude
 * bits under bf16's exponent and mantissa, the exponent bias moved by 120;
 * a subnormal one (exponent 0: m * 2^-9) by table; NaN codes a bf16 NaN;
 * then the sign. */
static inline __attribute__((always_inline)) X16 __m512i e4m3x32_bf16(const uint8_t *p) {
    const __m512i subnormal = _mm512_zextsi128_si512(_mm_setr_epi16(0, 0x3b00, 0x3b80, 0x3bc0, 0x3c00, 0x3c20, 0x3c40, 0x3c60));
    __m512i c = _mm512_cvtepu8_epi16(_mm256_loadu_si256((const __m256i *)p));
    __m512i mag = _mm512_and_si512(c, _mm512_set1_epi16(0x7f));
    __m512i v = _mm512_add_epi16(_mm512_slli_epi16(mag, 4), _mm512_set1_epi16(0x3c00));
    v = _mm512_mask_permutexvar_epi16(v, _mm512_testn_epi16_mask(c, _mm512_set1_epi16(0x78)), mag, subnormal);
    v = _mm512_mask_mov_epi16(v, _mm512_cmpeq_epi16_mask(mag, _mm512_set1_epi16(0x7f)), _mm512_set1_epi16(0x7fc0));
    return _mm512_or_si512(v, _mm512_and_si512(_mm512_slli_epi16(c, 8), _mm512_set1_epi16((short)0x8000)));
}

/* Row r's weight integers (affine: code - 2^(bits-1); fp4: 2 * E2M1) or,
 * for mxfp8, bf16 values into row i of each column block of codes, 32 at a
 * time; widths other than 4 and 8 bits unpacked into bytes first. */
static X16 void row_codes_zmm(const weight *w, int64_t r, int16_t *codes, int i, uint8_t *bytes) {
    const uint8_t *row = w->data + (size_t)r * w->row_stride;
    int64_t cols = w->cols;
    int bits = quant_format_bits(w->format, w->bits), fp4 = w->format != WF_AFFINE, fp8 = w->format == WF_MXFP8;
    __m512i centre = _mm512_set1_epi16((short)(fp4 ? 0 : 1 << (bits - 1)));
    if (bits != 4 && bits != 8) {
        quant_unpack_row(row, bits, cols, bytes);
        row = bytes;
        bits = 8;
    }
    for (int64_t c0 = 0; c0 < cols; c0 += X16_KC) {
        int16_t *out = codes + ((size_t)(c0 / X16_KC) * QUANT_X16_ROWS + (size_t)i) * X16_KC;
        int n = cols - c0 < X16_KC ? (int)(cols - c0) : X16_KC;   /* a multiple of 32, or of 16 for nvfp4 */
        const uint8_t *p = row + (bits == 8 ? c0 : c0 / 2);
        if (fp8) {
            for (int c = 0; c < n; c += 32) _mm512_storeu_si512(out + c, e4m3x32_bf16(p + c));
        } else if (bits == 8) {
            for (int c = 0; c < n; c += 32)
                _mm512_storeu_si512(out + c, _mm512_sub_epi16(_mm512_cvtepu8_epi16(_mm256_loadu_si256((const __m256i *)(p + c))), centre));
        } else if (fp4) {
            for (int c = 0; c < n; c += 32) _mm512_storeu_si512(out + c, nibbles32(p + c / 2, n - c >= 32 ? 16 : (n - c) / 2, 1));
        } else {
            for (int c = 0; c < n; c += 32)
                _mm512_storeu_si512(out + c, _mm512_sub_epi16(nibbles32(p + c / 2, 16, 0), centre));
        }
    }
}

/* 16 values from 8 bytes at p: nibbles (each byte's two becoming one 32-bit
 * lane's two values; E2M1 codes as 2 * E2M1 by table) or, for 8-bit codes,
 * 16 bytes widened. */
static inline __attribute__((always_inline)) __m256i values16(const uint8_t *p, const int KIND) {
    if (KIND == 8) return _mm256_cvtepu8_epi16(_mm_loadu_si128((const __m128i *)p));
    __m128i b = _mm_loadl_epi64((const __m128i *)p);
    if (KIND == 4) {
        __m256i v = _mm256_cvtepu8_epi32(b);
        return _mm256_and_si256(_mm256_or_si256(v, _mm256_slli_epi32(v, 12)), _mm256_set1_epi32(0x000f000f));
    }
    /* fp4: the nibbles in order as bytes, their values by table, widened */
    const __m128i e2m1x2 = _mm_setr_epi8(0, 1, 2, 3, 4, 6, 8, 12, 0, -1, -2, -3, -4, -6, -8, -12);
    __m128i n = _mm_unpacklo_epi8(_mm_and_si128(b, _mm_set1_epi8(15)), _mm_and_si128(_mm_srli_epi16(b, 4), _mm_set1_epi8(15)));
    return _mm256_cvtepi8_epi16(_mm_shuffle_epi8(e2m1x2, n));
}

/* row_codes_zmm 16 at a time. */
static void row_codes_ymm(const weight *w, int64_t r, int16_t *codes, int i, uint8_t *bytes) {
    const uint8_t *row = w->data + (size_t)r * w->row_stride;
    int64_t cols = w->cols;
    int bits = quant_format_bits(w->format, w->bits), fp4 = w->format != WF_AFFINE;
    __m256i centre = _mm256_set1_epi16((short)(fp4 ? 0 : 1 << (bits - 1)));
    if (bits != 4 && bits != 8) {
        quant_unpack_row(row, bits, cols, bytes);
        row = bytes;
        bits = 8;
    }
    for (int64_t c0 = 0; c0 < cols; c0 += X16_KC) {
        int16_t *out = codes + ((size_t)(c0 / X16_KC) * QUANT_X16_ROWS + (size_t)i) * X16_KC;
        int n = cols - c0 < X16_KC ? (int)(cols - c0) : X16_KC;
        const uint8_t *p = row + (bits == 8 ? c0 : c0 / 2);
        if (bits == 8)
            for (int c = 0; c < n; c += 16) _mm256_storeu_si256((__m256i *)(out + c), _mm256_sub_epi16(values16(p + c, 8), centre));
        else if (fp4)
            for (int c = 0; c < n; c += 16) _mm256_storeu_si256((__m256i *)(out + c), values16(p + c / 2, 0));
        else
            for (int c = 0; c < n; c += 16) _mm256_storeu_si256((__m256i *)(out + c), _mm256_sub_epi16(values16(p + c / 2, 4), centre));
    }
}

/* acc += pairwise products of w and x (vpdpwssd), in place: GCC 12 copies
 * the accumulator of the intrinsic into a new register at every use. */
static inline __attribute__((always_inline)) X16 __m512i dpwssd(__m512i acc, __m512i w, __m512i x) {
    __asm__("vpdpwssd %2, %1, %0" : "+v"(acc) : "v"(w), "v"(x));
    return acc;
}

/* The same for bf16 pairs into f32 lanes (vdpbf16ps; acc holds f32 bits). */
static inline __attribute__((always_inline)) X16 __m512i dpbf16(__m512i acc, __m512i w, __m512i x) {
    __asm__("vdpbf16ps %2, %1, %0" : "+v"(acc) : "v"(w), "v"(x));
    return acc;
}

/* What a tile's group sums meet: affine scales and biases, fp4 scales, or
 * (bf16 pairs, f32 sums) mxfp8 scales. */
enum { X16_AFFINE, X16_FP4, X16_BF16 };

/* MR rows x NV vectors of 16 tokens over groups [g0, g1) of a column block:
 * per column pair NV loads and MR broadcasts feed MR * NV vpdpwssd; per
 * group each exact integer sum meets its factors in f32, in the order of
 * quant.h's definition, into acc (X16_BF16: vdpbf16ps, each f32 sum times
 * its scale). w: the tile's first row in the block's
 * codes (rows X16_KC apart, from the block's first column c0); sg/bg: its
 * first row's scales and biases (rows X16_SG apart); acc: its first row's
 * sums (rows X16_LANES apart). */
static inline __attribute__((always_inline)) X16 void x16_tile(const int16_t *w, int64_t c0, const float *sg,
                                                               const float *bg, const quant_x16 *a, size_t t0,
                                                               int64_t g0, int64_t g1, float *acc, const int MR,
                                                               const int NV, const int KIND) {
    size_t np = (size_t)a->np;
    int gs = a->group;
    for (int64_t g = g0; g < g1; g++) {
        __m512i s[24][3];
        _Pragma("GCC unroll 24")
        for (int i = 0; i < MR; i++)
            _Pragma("GCC unroll 3")
            for (int j = 0; j < NV; j++) s[i][j] = _mm512_setzero_si512();
        const int16_t *wp = w + (g * gs - c0);
        const int16_t *xp = a->q + ((size_t)(g * gs) / 2 * np + t0) * 2;
        for (int c = 0; c < gs; c += 2, wp += 2, xp += 2 * np) {
            __m512i xv[3];
            _Pragma("GCC unroll 3")
            for (int j = 0; j < NV; j++) xv[j] = _mm512_loadu_si512(xp + 32 * j);
            _Pragma("GCC unroll 24")
            for (int i = 0; i < MR; i++) {
                int32_t pair;
                memcpy(&pair, wp + i * X16_KC, 4);
                __m512i wb = _mm512_set1_epi32(pair);
                _Pragma("GCC unroll 3")
                for (int j = 0; j < NV; j++) s[i][j] = KIND == X16_BF16 ? dpbf16(s[i][j], wb, xv[j]) : dpwssd(s[i][j], wb, xv[j]);
            }
        }
        __m512 dv[3], xs[3];
        _Pragma("GCC unroll 3")
        for (int j = 0; j < NV; j++) {
            if (KIND != X16_BF16) dv[j] = _mm512_loadu_ps(a->d + (size_t)g * np + t0 + 16 * j);
            if (KIND == X16_AFFINE) xs[j] = _mm512_loadu_ps(a->xsum + (size_t)g * np + t0 + 16 * j);
        }
        size_t at = (size_t)(g / X16_SG) * QUANT_X16_ROWS * X16_SG + (size_t)(g % X16_SG);
        _Pragma("GCC unroll 24")
        for (int i = 0; i < MR; i++) {
            __m512 sv = _mm512_set1_ps(sg[at + (size_t)i * X16_SG]);
            __m512 bv = KIND == X16_AFFINE ? _mm512_set1_ps(bg[at + (size_t)i * X16_SG]) : sv;
            _Pragma("GCC unroll 3")
            for (int j = 0; j < NV; j++) {
                float *ap = acc + i * X16_LANES + 16 * j;
                __m512 v = KIND == X16_BF16 ? _mm512_castsi512_ps(s[i][j]) : _mm512_mul_ps(_mm512_cvtepi32_ps(s[i][j]), dv[j]);
                v = _mm512_fmadd_ps(v, sv, _mm512_loadu_ps(ap));
                if (KIND == X16_AFFINE) v = _mm512_fmadd_ps(xs[j], bv, v);
                _mm512_storeu_ps(ap, v);
            }
        }
    }
}

static inline __attribute__((always_inline)) X16Y __m256i dpwssd_ymm(__m256i acc, __m256i w, __m256i x) {
    __asm__("%{vex%} vpdpwssd %2, %1, %0" : "+x"(acc) : "x"(w), "x"(x));
    return acc;
}

/* x16_tile with 256-bit vectors of 8 tokens (16 registers: MR * NV <= 12). */
static inline __attribute__((always_inline)) X16Y void x16_tile_ymm(const int16_t *w, int64_t c0, const float *sg,
                                                                    const float *bg, const quant_x16 *a, size_t t0,
                                                                    int64_t g0, int64_t g1, float *acc, const int MR,
                                                                    const int NV, const int KIND) {
    size_t np = (size_t)a->np;
    int gs = a->group;
    for (int64_t g = g0; g < g1; g++) {
        __m256i s[6][3];
        _Pragma("GCC unroll 6")
        for (int i = 0; i < MR; i++)
            _Pragma("GCC unroll 3")
            for (int j = 0; j < NV; j++) s[i][j] = _mm256_setzero_si256();
        const int16_t *wp = w + (g * gs - c0);
        const int16_t *xp = a->q + ((size_t)(g * gs) / 2 * np + t0) * 2;
        for (int c = 0; c < gs; c += 2, wp += 2, xp += 2 * np) {
            __m256i xv[3];
            _Pragma("GCC unroll 3")
            for (int j = 0; j < NV; j++) xv[j] = _mm256_loadu_si256((const __m256i *)(xp + 16 * j));
            _Pragma("GCC unroll 6")
            for (int i = 0; i < MR; i++) {
                int32_t pair;
                memcpy(&pair, wp + i * X16_KC, 4);
                __m256i wb = _mm256_set1_epi32(pair);
                _Pragma("GCC unroll 3")
                for (int j = 0; j < NV; j++) s[i][j] = dpwssd_ymm(s[i][j], wb, xv[j]);
            }
        }
        size_t at = (size_t)(g / X16_SG) * QUANT_X16_ROWS * X16_SG + (size_t)(g % X16_SG);
        _Pragma("GCC unroll 3")
        for (int j = 0; j < NV; j++) {
            __m256 dv = _mm256_loadu_ps(a->d + (size_t)g * np + t0 + 8 * j), xs = _mm256_setzero_ps();
            if (KIND == X16_AFFINE) xs = _mm256_loadu_ps(a->xsum + (size_t)g * np + t0 + 8 * j);
            _Pragma("GCC unroll 6")
            for (int i = 0; i < MR; i++) {
                float *ap = acc + i * X16_LANES + 8 * j;
                __m256 v = _mm256_fmadd_ps(_mm256_mul_ps(_mm256_cvtepi32_ps(s[i][j]), dv), _mm256_set1_ps(sg[at + (size_t)i * X16_SG]),
                                           _mm256_loadu_ps(ap));
                if (KIND == X16_AFFINE) v = _mm256_fmadd_ps(xs, _mm256_set1_ps(bg[at + (size_t)i * X16_SG]), v);
                _mm256_storeu_ps(ap, v);
            }
        }
    }
}

#define X16_TILES(TILE, MR, ...)                                                                         \
    for (; i + (MR) <= rows; i += (MR))                                                                  \
    TILE(block + (size_t)i * X16_KC, c0, sg + (size_t)i * X16_SG, bg + (size_t)i * X16_SG, a, tl, g0, g1,       \
         accl + (size_t)i * X16_LANES, MR, __VA_ARGS__)

/* Every row tile of a block of rows over one column block, for the 48 lanes
 * from t0 (the vectors there: 1-3 of 16 tokens). */
static inline __attribute__((always_inline)) X16 void block_tiles(const int16_t *block, int64_t c0, const float *sg,
                                                                  const float *bg, const quant_x16 *a, size_t t0,
                                                                  int64_t g0, int64_t g1, float *accg, int rows, const int KIND) {
    int nv = (size_t)a->np - t0 < X16_LANES ? (int)((size_t)a->np - t0) / 16 : 3, i = 0;
    size_t tl = t0;
    float *accl = accg;
    switch (nv) {
    case 3: X16_TILES(x16_tile, 8, 3, KIND); X16_TILES(x16_tile, 1, 3, KIND); break;
    case 2: X16_TILES(x16_tile, 12, 2, KIND); X16_TILES(x16_tile, 8, 2, KIND); X16_TILES(x16_tile, 1, 2, KIND); break;
    default: X16_TILES(x16_tile, 16, 1, KIND); X16_TILES(x16_tile, 8, 1, KIND); X16_TILES(x16_tile, 1, 1, KIND); break;
    }
}

static X16 void block_zmm(const int16_t *block, int64_t c0, const float *sg, const float *bg, const quant_x16 *a,
                          size_t t0, int64_t g0, int64_t g1, float *accg, int rows, int kind) {
    switch (kind) {
    case X16_AFFINE: block_tiles(block, c0, sg, bg, a, t0, g0, g1, accg, rows, X16_AFFINE); break;
    case X16_FP4: block_tiles(block, c0, sg, bg, a, t0, g0, g1, accg, rows, X16_FP4); break;
    default: block_tiles(block, c0, sg, bg, a, t0, g0, g1, accg, rows, X16_BF16); break;
    }
}

/* The same with vectors of 8 tokens (2, 4 or 6 of them), in runs of 3
 * (tiles of 4 rows) or 2 (tiles of 6 rows); no bf16 pairs. */
static inline __attribute__((always_inline)) X16Y void block_tiles_ymm(const int16_t *block, int64_t c0, const float *sg,
                                                                       const float *bg, const quant_x16 *a, size_t t0,
                                                                       int64_t g0, int64_t g1, float *accg, int rows,
                                                                       const int KIND) {
    int nv = (size_t)a->np - t0 < X16_LANES ? (int)((size_t)a->np - t0) / 8 : 6, run = nv % 3 ? 2 : 3;
    for (int j0 = 0; j0 < nv; j0 += run) {
        int i = 0;
        size_t tl = t0 + 8 * (size_t)j0;
        float *accl = accg + 8 * j0;
        if (run == 3) { X16_TILES(x16_tile_ymm, 4, 3, KIND); X16_TILES(x16_tile_ymm, 1, 3, KIND); }
        else { X16_TILES(x16_tile_ymm, 6, 2, KIND); X16_TILES(x16_tile_ymm, 1, 2, KIND); }
    }
}

static X16Y void block_ymm(const int16_t *block, int64_t c0, const float *sg, const float *bg, const quant_x16 *a,
                           size_t t0, int64_t g0, int64_t g1, float *accg, int rows, int kind) {
    if (kind == X16_AFFINE) block_tiles_ymm(block, c0, sg, bg, a, t0, g0, g1, accg, rows, X16_AFFINE);
    else block_tiles_ymm(block, c0, sg, bg, a, t0, g0, g1, accg, rows, X16_FP4);
}

/* Row r's group factors (quant.h's s_g, b_g) into row i of sg and bg, in
 * runs of X16_SG groups: the int8 rows' conversion (quant_row_factors_avx2,
 * into rs and rb, a row's worth each), then for fp4 half the scale, times
 * the global one (mxfp8: the E8M0 scale); biases for affine rows only. */
static void row_factors(const weight *w, int64_t r, int i, size_t ng, float *rs, float *rb, float *sg, float *bg) {
    quant_row_factors_avx2(w, r, rs, rb);
    int affine = w->format == WF_AFFINE;
    if (w->format == WF_NVFP4 || w->format == WF_MXFP4) {   /* the codes are 2 * E2M1 */
        float global = quant_global(w);
        for (size_t g = 0; g < ng; g++) {
            rs[g] = 0.5f * rs[g];
            if (global != 1.0f) rs[g] = rs[g] * global;
        }
    }
    for (size_t g = 0; g < ng; g += X16_SG) {
        size_t at = ((g / X16_SG) * QUANT_X16_ROWS + (size_t)i) * X16_SG;
        if (ng - g >= X16_SG) {   /* a constant size: copied inline */
            memcpy(sg + at, rs + g, X16_SG * sizeof *rs);
            if (affine) memcpy(bg + at, rb + g, X16_SG * sizeof *rb);
        } else {
            memcpy(sg + at, rs + g, (ng - g) * sizeof *rs);
            if (affine) memcpy(bg + at, rb + g, (ng - g) * sizeof *rb);
        }
    }
}

void quant_x16_matmul_rows(const weight *w, int64_t row0, int64_t row1, const quant_x16 *a, float *y,
                           size_t y_stride, float *scratch) {
    size_t np = (size_t)a->np, ng = (size_t)(w->cols / a->group);
    int64_t cols = w->cols, kc = X16_KC;
    int zmm = quant_avx512_vnni(), kind = a->bf16 ? X16_BF16 : w->format == WF_AFFINE ? X16_AFFINE : X16_FP4;
    float *acc = (float *)(((uintptr_t)scratch + ALIGN - 1) & ~(uintptr_t)(ALIGN - 1));
    int16_t *codes = (int16_t *)(acc + acc_floats(a->n));
    float *sg = (float *)(codes + codes_elems(cols)), *bg = sg + scale_floats(ng);
    float *rs = bg + scale_floats(ng), *rb = rs + ng;
    uint8_t *bytes = (uint8_t *)(rb + ng);
    int amx = a->qh != NULL;
    if (amx) quant_amx_begin(a->group);
    for (int64_t r = row0; r < row1; r += QUANT_X16_ROWS) {
        int rows = (int)(row1 - r < QUANT_X16_ROWS ? row1 - r : QUANT_X16_ROWS);
        for (int i = 0; i < rows; i++) {
            if (amx) quant_amx_row_codes(w, r + i, (int8_t *)codes, i, bytes);
            else if (zmm) row_codes_zmm(w, r + i, codes, i, bytes);
            else row_codes_ymm(w, r + i, codes, i, bytes);
            row_factors(w, r + i, i, ng, rs, rb, sg, bg);
        }
        if (amx) {
            /* the tiles take 16 rows: zero factors for the rest (a testing branch per row cost 8%) */
            for (int i = rows; i % 16; i++)
                for (size_t g = 0; g < ng; g += X16_SG) {
                    memset(sg + ((g / X16_SG) * QUANT_X16_ROWS + (size_t)i) * X16_SG, 0, X16_SG * sizeof *sg);
                    memset(bg + ((g / X16_SG) * QUANT_X16_ROWS + (size_t)i) * X16_SG, 0, X16_SG * sizeof *bg);
                }
            quant_amx_rows((const int8_t *)codes, sg, bg, a, kind == X16_AFFINE, rows, y + r, y_stride);
            continue;
        }
        memset(acc, 0, acc_floats(a->n) * sizeof *acc);
        for (int64_t c0 = 0; c0 < cols; c0 += kc) {
            const int16_t *block = codes + (size_t)(c0 / kc) * QUANT_X16_ROWS * X16_KC;
            int64_t g0 = c0 / a->group, g1 = (c0 + kc < cols ? c0 + kc : cols) / a->group;
            for (size_t t0 = 0; t0 < np; t0 += X16_LANES) {
                float *accg = acc + t0 / X16_LANES * QUANT_X16_ROWS * X16_LANES;
                if (zmm) block_zmm(block, c0, sg, bg, a, t0, g0, g1, accg, rows, kind);
                else block_ymm(block, c0, sg, bg, a, t0, g0, g1, accg, rows, kind);
            }
        }
        for (int t = 0; t < a->n; t++) {
            const float *at = acc + (size_t)t / X16_LANES * QUANT_X16_ROWS * X16_LANES + (size_t)t % X16_LANES;
            for (int i = 0; i < rows; i++) y[(size_t)t * y_stride + (size_t)(r + i)] = at[(size_t)i * X16_LANES];
        }
    }
    if (amx) quant_amx_end();
}

#else   /* no AVX2 at compile time: never available */

void quant_x16_allow(int on) { (void)on; }
int quant_x16_available(void) { return 0; }
int quant_avx_vnni(void) { return 0; }
int quant_x16_group(const weight *w) { (void)w; return 0; }
void quant_x16_prepare(const float *x, size_t x_stride, int64_t c0, int64_t c1, const quant_x16 *a) {
    (void)x; (void)x_stride; (void)c0; (void)c1; (void)a;
}
void quant_x16_matmul_rows(const weight *w, int64_t row0, int64_t row1, const quant_x16 *a, float *y,
                           size_t y_stride, float *scratch) {
    (void)w; (void)row0; (void)row1; (void)a; (void)y; (void)y_stride; (void)scratch;
}

#endif
