/* quant_amx.c — prefill products of affine and fp4 rows on Intel's AMX-INT8
 * tiles, with the same 16-bit activations as quant_x16.c and the same
 * results, bit for bit (quant.h, "16-bit activations").
 *
 * The tiles multiply bytes, so each prepared int16 value q is split into its
 * high byte h (signed) and low byte l (unsigned): q = 256 h + l. A group's
 * exact integer sum is then sum_i c_i q_i = 256 sum_i c_i h_i + sum_i c_i l_i,
 * two tile products with the weight integers c_i as signed bytes (tdpbssd
 * with h, tdpbsud with l), each exact in int32 (|c| <= 128, gs <= 128), and
 * the two are added in int32 before the sum meets its factors in f32 in the
 * order of the definition. The rows are the tiles' left operand (16 rows of
 * up to 64 columns), the vectors the right one (16 tokens, 4 columns a
 * lane), so a sum tile's row is one weight row's 16 tokens, the layout of d
 * and xsum.
 *
 * One tdpbssd multiplies 16 x 64 bytes by 64 x 16 (16,384 multiply-adds)
 * in about 20 cycles on an Intel Xeon, 13 times vpdpwssd's rate even with
 * two of them per product. So what bounds this kernel is the rest: per
 * group of 64 columns, 32 rows and 16 tokens (one thread, all in cache)
 * the products took ~31 ns, storing the four sum tiles ~33 and the f32
 * work ~65, and they did not overlap. */
#include "quant.h"

#include <string.h>

#include "kernels.h"

#if defined(__x86_64__) && defined(__linux__)
#include <cpuid.h>
#include <immintrin.h>
#include <pthread.h>

#include "tile_config.h"

#define AMX8 __attribute__((target("amx-tile,amx-int8,avx512f,avx512bw,avx512vl,avx2,fma")))

static int allowed = 1;
void quant_amx_allow(int on) { allowed = on; }

/* CPUID leaf 7, EDX bit 25: AMX-INT8 (read once). The tiles themselves are
 * asked of Linux by kernels_amx(), whose table is the active one only when
 * they were granted and GLMLITE_KERNELS does not leave AMX out (and then
 * they are not asked for at all). */
static pthread_once_t int8_once = PTHREAD_ONCE_INIT;
static int has_int8;
static void read_int8(void) {
    unsigned a, b, c, d;
    has_int8 = __get_cpuid_count(7, 0, &a, &b, &c, &d) && (d >> 25 & 1);
}

int quant_amx_int8(void) {
    if (!allowed || !kernels_using_amx()) return 0;
    pthread_once(&int8_once, read_int8);
    return has_int8;
}

/* Columns [c0, c1) (multiples of 4) of the prepared int16 values split into
 * the planes qh and ql: [np / 16][cols / 4][16 tokens][4 columns] bytes. A
 * 64-byte line of q holds 16 tokens' two columns (q_c in the low half of
 * each 32-bit lane, q_c+1 in the high one); two lines give each lane's four
 * columns' bytes in the order c, c+2, c+1, c+3, put right by one shuffle. */
AMX8 void quant_amx_split(const quant_x16 *a, int64_t c0, int64_t c1) {
    size_t np = (size_t)a->np, quads = (size_t)a->cols / 4;
    const __m512i order = _mm512_broadcast_i32x4(_mm_setr_epi8(0, 2, 1, 3, 4, 6, 5, 7, 8, 10, 9, 11, 12, 14, 13, 15));
    const __m512i low = _mm512_set1_epi32(0x00ff00ff);
    for (size_t t0 = 0; t0 < np; t0 += 16) {
        size_t at = t0 / 16 * quads * 64;
        for (int64_t c = c0; c < c1; c += 4) {
            __m512i v0 = _mm512_loadu_si512(a->q + ((size_t)c / 2 * np + t0) * 2);
            __m512i v1 = _mm512_loadu_si512(a->q + ((size_t)c / 2 * np + np + t0) * 2);
            __m512i l = _mm512_or_si512(_mm512_and_si512(v0, low), _mm512_slli_epi32(_mm512_and_si512(v1, low), 8));
            __m512i h = _mm512_or_si512(_mm512_and_si512(_mm512_srli_epi32(v0, 8), low), _mm512_andnot_si512(low, v1));
            _mm512_storeu_si512(a->qh + at + (size_t)c / 4 * 64, _mm512_shuffle_epi8(h, order));
            _mm512_storeu_si512(a->ql + at + (size_t)c / 4 * 64, _mm512_shuffle_epi8(l, order));
        }
    }
}

/* Row r's weight integers as signed bytes (affine: code - 2^(bits-1); fp4:
 * 2 * E2M1) into row i of codes ([cols / 64][QUANT_X16_ROWS][64]); widths
 * other than 4 and 8 bits unpacked into bytes first. */
AMX8 void quant_amx_row_codes(const weight *w, int64_t r, int8_t *codes, int i, uint8_t *bytes) {
    const uint8_t *row = w->data + (size_t)r * w->row_stride;
    int64_t cols = w->cols;
    int bits = quant_format_bits(w->format, w->bits), fp4 = w->format != WF_AFFINE;
    const __m512i centre = _mm512_set1_epi8((char)(fp4 ? 0 : 1 << (bits - 1)));
    const __m512i e2m1x2 = _mm512_broadcast_i32x4(_mm_setr_epi8(0, 1, 2, 3, 4, 6, 8, 12, 0, -1, -2, -3, -4, -6, -8, -12));
    if (bits != 4 && bits != 8) {
        quant_unpack_row(row, bits, cols, bytes);
        row = bytes;
        bits = 8;
    }
    for (int64_t c0 = 0; c0 < cols; c0 += 64) {
        int n = cols - c0 < 64 ? (int)(cols - c0) : 64;   /* a multiple of 16 */
        __m512i v;
        if (bits == 8) {
            v = _mm512_maskz_loadu_epi8(n == 64 ? ~(__mmask64)0 : ((__mmask64)1 << n) - 1, row + c0);
        } else {   /* a byte's two nibbles become two bytes, low one first */
            __m512i b = _mm512_cvtepu8_epi16(_mm256_maskz_loadu_epi8((__mmask32)(n == 64 ? ~0u : (1u << n / 2) - 1), row + c0 / 2));
            v = _mm512_or_si512(_mm512_and_si512(b, _mm512_set1_epi16(15)), _mm512_slli_epi16(_mm512_srli_epi16(b, 4), 8));
        }
        v = fp4 ? _mm512_shuffle_epi8(e2m1x2, v) : _mm512_sub_epi8(v, centre);
        _mm512_storeu_si512(codes + ((size_t)(c0 / 64) * QUANT_X16_ROWS + (size_t)i) * 64, v);
    }
}

/* The tile configuration for groups of gs columns: sums 0-3 (16 rows x 16
 * int32), rows 4-5 (16 x K bytes), vectors 6-7 (K/4 x 64 bytes), K = the
 * group or 64, whichever is less (a product never spans two groups). */
AMX8 void quant_amx_begin(int gs) {
    uint16_t k = (uint16_t)(gs < 64 ? gs : 64);
    const uint16_t colsb[8] = {64, 64, 64, 64, k, k, 64, 64};
    const uint8_t rows[8] = {16, 16, 16, 16, 16, 16, (uint8_t)(k / 4), (uint8_t)(k / 4)};
    tile_config_load(colsb, rows);
}

AMX8 void quant_amx_end(void) { _tile_release(); }

/* Group g's sums of 16 rows x 16 tokens, as stored from the two sum tiles
 * (sums[0] the high bytes', sums[1] the low bytes'), met with their
 * factors into acc (a register a row, 16 tokens in lanes) in the order of
 * quant.h's definition. sg, bg: the rows' first factors. */
static inline __attribute__((always_inline)) AMX8 void add_group(const int32_t (*sums)[256], const quant_x16 *a,
                                                                 int64_t g, size_t t0, const float *sg, const float *bg,
                                                                 int affine, __m512 *acc) {
    size_t np = (size_t)a->np;
    size_t at = (size_t)(g / QUANT_X16_SG) * QUANT_X16_ROWS * QUANT_X16_SG + (size_t)(g % QUANT_X16_SG);
    __m512 d = _mm512_loadu_ps(a->d + (size_t)g * np + t0), xs = _mm512_setzero_ps();
    if (affine) xs = _mm512_loadu_ps(a->xsum + (size_t)g * np + t0);
    _Pragma("GCC unroll 16")
    for (int i = 0; i < 16; i++) {
        __m512i s = _mm512_add_epi32(_mm512_slli_epi32(_mm512_loadu_si512(sums[0] + i * 16), 8), _mm512_loadu_si512(sums[1] + i * 16));
        __m512 v = _mm512_mul_ps(_mm512_cvtepi32_ps(s), d);
        v = _mm512_fmadd_ps(v, _mm512_set1_ps(sg[at + (size_t)i * QUANT_X16_SG]), acc[i]);
        if (affine) v = _mm512_fmadd_ps(xs, _mm512_set1_ps(bg[at + (size_t)i * QUANT_X16_SG]), v);
        acc[i] = v;
    }
}

/* Group g's products for 16 rows (at w) and 16 tokens (at vh, vl) into the
 * sum tiles C0 (high bytes) and C1 (low bytes), in steps of k columns. */
#define GROUP_PRODUCTS(g, C0, C1)                                                                    \
    do {                                                                                           \
        _tile_zero(C0);                                                                            \
        _tile_zero(C1);                                                                            \
        for (int64_t c = (g) * gs; c < ((g) + 1) * gs; c += k) {                                   \
            _tile_loadd(4, w + (size_t)(c / 64) * QUANT_X16_ROWS * 64 + (size_t)(c % 64), 64);     \
            _tile_loadd(6, vh + (size_t)c / 4 * 64, 64);                                           \
            _tile_loadd(7, vl + (size_t)c / 4 * 64, 64);                                           \
            _tile_dpbssd(C0, 4, 6);                                                                \
            _tile_dpbsud(C1, 4, 7);                                                                \
        }                                                                                          \
    } while (0)

/* rows (<= QUANT_X16_ROWS) decoded rows times every prepared vector:
 * y[t * y_stride + i] for i < rows, t < a->n. codes: quant_amx_row_codes's
 * layout; sg, bg: the rows' group factors, [groups / QUANT_X16_SG][32][16],
 * those of rows past `rows` in its last 16 zero (their codes may be stale;
 * their sums are not stored). Per 16 rows and 16 tokens the f32 sums stay in registers over the groups.
 * A group's f32 work waits for its products and the next products for the
 * sum tiles, so the groups alternate between two pairs of sum tiles and
 * each group's products are issued before the f32 work of the one before. */
AMX8 void quant_amx_rows(const int8_t *codes, const float *sg, const float *bg, const quant_x16 *a, int affine,
                          int rows, float *y, size_t y_stride) {
    size_t np = (size_t)a->np, quads = (size_t)a->cols / 4;
    int gs = a->group, k = gs < 64 ? gs : 64;
    int64_t ng = a->cols / gs;
    int32_t sums[2][2][256] __attribute__((aligned(64)));
    float out[16][16] __attribute__((aligned(64)));
    for (int i0 = 0; i0 < rows; i0 += 16) {
        const int8_t *w = codes + (size_t)i0 * 64;
        for (size_t t0 = 0; t0 < np; t0 += 16) {
            const int8_t *vh = a->qh + t0 / 16 * quads * 64, *vl = a->ql + t0 / 16 * quads * 64;
            __m512 acc[16];
            _Pragma("GCC unroll 16")
            for (int i = 0; i < 16; i++) acc[i] = _mm512_setzero_ps();
            GROUP_PRODUCTS(0, 0, 1);
            for (int64_t g = 0; g < ng; g++) {
                if (g % 2 == 0) {
                    if (g + 1 < ng) GROUP_PRODUCTS(g + 1, 2, 3);
                    _tile_stored(0, sums[0][0], 64);
                    _tile_stored(1, sums[0][1], 64);
                } else {
                    if (g + 1 < ng) GROUP_PRODUCTS(g + 1, 0, 1);
                    _tile_stored(2, sums[1][0], 64);
                    _tile_stored(3, sums[1][1], 64);
                }
                if (g + 2 < ng)
                    for (int l = 0; l < gs / 4; l++) {
                        _mm_prefetch((const char *)vh + ((size_t)(g + 2) * (size_t)gs / 4 + (size_t)l) * 64, _MM_HINT_T0);
                        _mm_prefetch((const char *)vl + ((size_t)(g + 2) * (size_t)gs / 4 + (size_t)l) * 64, _MM_HINT_T0);
                    }
                add_group((const int32_t (*)[256])sums[g % 2], a, g, t0, sg + (size_t)i0 * QUANT_X16_SG,
                          bg + (size_t)i0 * QUANT_X16_SG, affine, acc);
            }
            /* token t's sums down the rows */
            _Pragma("GCC unroll 16")
            for (int i = 0; i < 16; i++) _mm512_store_ps(out[i], acc[i]);
            const __m512i column = _mm512_setr_epi32(0, 16, 32, 48, 64, 80, 96, 112, 128, 144, 160, 176, 192, 208, 224, 240);
            int tn = (size_t)a->n - t0 < 16 ? (int)((size_t)a->n - t0) : 16, rn = rows - i0 < 16 ? rows - i0 : 16;
            for (int t = 0; t < tn; t++)
                _mm512_mask_storeu_ps(y + (t0 + (size_t)t) * y_stride + i0, first_lanes16(rn),
                                      _mm512_i32gather_ps(column, out[0] + t, 4));
        }
    }
}

#else   /* not x86-64 Linux: never available */

void quant_amx_allow(int on) { (void)on; }
int quant_amx_int8(void) { return 0; }
void quant_amx_split(const quant_x16 *a, int64_t c0, int64_t c1) { (void)a; (void)c0; (void)c1; }
void quant_amx_row_codes(const weight *w, int64_t r, int8_t *codes, int i, uint8_t *bytes) {
    (void)w; (void)r; (void)codes; (void)i; (void)bytes;
}
void quant_amx_begin(int gs) { (void)gs; }
void quant_amx_end(void) {}
void quant_amx_rows(const int8_t *codes, const float *sg, const float *bg, const quant_x16 *a, int affine, int rows,
                    float *y, size_t y_stride) {
    (void)codes; (void)sg; (void)bg; (void)a; (void)affine; (void)rows; (void)y; (void)y_stride;
}

#endif
