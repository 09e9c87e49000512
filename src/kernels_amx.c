/* kernels_amx.c — bf16 products on Intel AMX tiles, where the CPU has
 * AMX-BF16 and Linux grants the tiles: attention's gemm_bf16_bf16 (scores)
 * and weighted_sum_bf16_bf16 (value sums), the same arithmetic as the
 * AVX512-BF16 versions (bf16 products, f32 sums), and prefill's
 * gemm_bf16_split over rows exact in bf16, with the f32 vectors split
 * exactly into bf16 parts (split_bf16).
 *
 * One tdpbf16ps multiplies a 16 x 32 bf16 tile by a 32 x 16 one into 16 x 16
 * f32 sums: on an Intel Xeon one core ran 1,217 G multiply-adds a second
 * against 105 G with FMAs and 52 G with vdpbf16ps. The right operand is laid
 * out in pairs of its rows ("VNNI": row k2 holds, per column, rows 2 k2 and
 * 2 k2 + 1), so each kernel first packs the operand that lacks that layout:
 * the queries for the scores (small, and a cached key row is already a left
 * operand row), the cached rows for prefill's value sums (decode's read them
 * as stored, weighted_sum_bf16_few).
 *
 * Each output is one chain over its columns in 32-wide steps from column 0
 * (zeros past the end), whatever its tile, so a result does not depend on
 * the tiles it falls in. */
#include "kernels.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#if defined(__x86_64__) && defined(__linux__)
#include <cpuid.h>
#include <immintrin.h>
#include <pthread.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "tile_config.h"

#define AMX __attribute__((target("amx-tile,amx-bf16,avx512f,avx512bw,avx512dq,avx512vl,avx512bf16,avx2,fma")))

#define ARCH_REQ_XCOMP_PERM 0x1023   /* Linux: ask for an extended state component */
#define XFEATURE_XTILEDATA 18        /* the tiles' data */

/* Every kernel here: 8 tiles of 16 rows x 64 bytes. */
static AMX void tiles_on(void) {
    static const uint16_t colsb[8] = {64, 64, 64, 64, 64, 64, 64, 64};
    static const uint8_t rows[8] = {16, 16, 16, 16, 16, 16, 16, 16};
    tile_config_load(colsb, rows);
}

/* The four sum tiles (0-3) every product here accumulates in. */
static inline AMX void zero_sums(void) {
    _tile_zero(0);
    _tile_zero(1);
    _tile_zero(2);
    _tile_zero(3);
}

static inline AMX void store_sums(float out[4][256]) {
    _tile_stored(0, out[0], 64);
    _tile_stored(1, out[1], 64);
    _tile_stored(2, out[2], 64);
    _tile_stored(3, out[3], 64);
}

/* Per-thread packing buffers, grown as needed (attention's shapes are
 * fixed, so this happens once per thread) and freed when the thread ends.
 * NULL when out of memory: the kernels then fall back to the AVX512-BF16
 * versions (fallback). */
static pthread_key_t pack_key;
static pthread_once_t pack_key_once = PTHREAD_ONCE_INIT;
static void make_pack_key(void) { (void)pthread_key_create(&pack_key, free); }
static __thread uint16_t *pack_buf;
static __thread size_t pack_cap;
static const kernel_table *fallback;

static uint16_t *pack_space(size_t n) {
    if (n > pack_cap) {
        pthread_once(&pack_key_once, make_pack_key);
        free(pack_buf);
        pack_buf = aligned_alloc(64, (n * sizeof *pack_buf + 63) & ~(size_t)63);
        pack_cap = pack_buf ? n : 0;
        (void)pthread_setspecific(pack_key, pack_buf);
    }
    return pack_buf;
}

/* A 16 x 16 tile's element offsets down one of its columns. */
static inline AMX __m512i tile_column(void) {
    return _mm512_setr_epi32(0, 16, 32, 48, 64, 80, 96, 112, 128, 144, 160, 176, 192, 208, 224, 240);
}

/* A 16 x 16 f32 sum tile out[i * 16 + t] (row i, vector t) stored with the
 * vectors as rows: y[t * ys + i] for i < rn, t < tn. */
static AMX void store_transposed(const float out[256], int rn, int tn, float *y, size_t ys) {
    __mmask16 m = first_lanes16(rn);
    for (int t = 0; t < tn; t++) _mm512_mask_storeu_ps(y + (size_t)t * ys, m, _mm512_i32gather_ps(tile_column(), out + t, 4));
}

/* The sum tiles of 2 x 2 left and right tiles stored to y with the vectors
 * as rows: out[2 i + j][l * 16 + t] is row r0 + 16 i + l, vector 16 (g0 +
 * j) + t. */
static AMX void store_sums_transposed(float out[4][256], int r0, int rows, int two_rows, int g0, int n, int two_groups,
                                      float *y, size_t ys) {
    store_sums(out);
    for (int i = 0; i <= two_rows; i++) {
        int ri = r0 + 16 * i, rn = rows - ri < 16 ? rows - ri : 16;
        for (int j = 0; j <= two_groups; j++) {
            int t0 = 16 * (g0 + j), tn = n - t0 < 16 ? n - t0 : 16;
            store_transposed(out[2 * i + j], rn, tn, y + (size_t)t0 * ys + ri, ys);
        }
    }
}

/* Left tile i (16 rows from r of w, columns 32 kc..): the rows themselves,
 * or, where rows or columns run out, a copy with zeros past them (a tile
 * load never reads past the weights, and no NaN meets a zero). */
static inline const uint16_t *left_tile(const uint16_t *w, size_t ws, int rows, int r, int64_t cols, int64_t kc, uint16_t pad[512],
                                 size_t *stride) {
    int rn = rows - r < 16 ? rows - r : 16;
    int64_t cn = cols - 32 * kc < 32 ? cols - 32 * kc : 32;
    const uint16_t *a = w + (size_t)r * ws + 32 * kc;
    *stride = ws * 2;
    if (rn == 16 && cn == 32) return a;
    memset(pad, 0, 512 * sizeof *pad);
    for (int i = 0; i < rn; i++) memcpy(pad + 32 * i, a + (size_t)i * ws, (size_t)cn * 2);
    *stride = 64;
    return pad;
}

/* ---- scores: y[t * ys + r] = sum_c x[t][c] * w[r][c] ---------------------
 * Left: 16 cached rows x 32 columns (left_tile). Right: the queries packed
 * per 32 columns and 16 queries into pair rows, xp[(kc * G + g) * 256 + k2 *
 * 16 + t] as 32-bit words = (x[16 g + t][32 kc + 2 k2], ... + 1). Per 32
 * rows and 32 queries, four sum tiles: each tile load then feeds two
 * products (with one left tile and four right ones, 1.25 loads a product,
 * prefill's 160 queries over 256 rows took 32 us of products against 24). */
static AMX void pack_queries(const uint16_t *x, size_t xs, int n, int64_t cols, int chunks, int groups, uint32_t *xp) {
    if (xs % 2 == 0 && cols % 2 == 0) {   /* a word gathered from 16 queries per packed row */
        const uint32_t *x32 = (const uint32_t *)x;
        const __m512i qrow = _mm512_mullo_epi32(_mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15),
                                                _mm512_set1_epi32((int)(xs / 2)));
        for (int kc = 0; kc < chunks; kc++)
            for (int g = 0; g < groups; g++) {
                int tn = n - 16 * g < 16 ? n - 16 * g : 16;
                __mmask16 tm = first_lanes16(tn);
                const uint32_t *base = x32 + (size_t)16 * g * (xs / 2);
                uint32_t *dst = xp + ((size_t)kc * groups + g) * 256;
                for (int k2 = 0; k2 < 16; k2++) {
                    int64_t word = 16 * (int64_t)kc + k2;
                    __mmask16 m = word < cols / 2 ? tm : 0;
                    _mm512_storeu_si512(dst + 16 * k2, _mm512_mask_i32gather_epi32(_mm512_setzero_si512(), m, qrow, base + word, 4));
                }
            }
        return;
    }
    memset(xp, 0, (size_t)chunks * groups * 256 * sizeof *xp);
    for (int t = 0; t < n; t++) {
        uint32_t *dst = xp + (size_t)(t / 16) * 256 + t % 16;
        const uint16_t *row = x + (size_t)t * xs;
        for (int64_t c = 0; c < cols; c++) {
            int64_t kc = c / 32, k2 = c % 32 / 2;
            uint16_t *word = (uint16_t *)(dst + (size_t)kc * groups * 256 + k2 * 16);
            word[c % 2] = row[c];
        }
    }
}

static AMX void amx_gemm_bf16_bf16(const uint16_t *w, size_t ws, int rows, const uint16_t *x, size_t xs, int n,
                                   int64_t cols, float *y, size_t ys) {
    int chunks = (int)((cols + 31) / 32), groups = (n + 15) / 16;
    uint16_t *space = pack_space((size_t)chunks * groups * 512);
    if (!space) {
        fallback->gemm_bf16_bf16(w, ws, rows, x, xs, n, cols, y, ys);
        return;
    }
    uint32_t *xp = (uint32_t *)space;
    pack_queries(x, xs, n, cols, chunks, groups, xp);
    uint16_t pad[2][512];
    float out[4][256];
    tiles_on();
    for (int r0 = 0; r0 < rows; r0 += 32) {
        int two_rows = rows - r0 > 16;
        /* the first query groups request the next 32 rows, a line of each per step */
        const char *pf = r0 + 64 <= rows ? (const char *)(w + (size_t)(r0 + 32) * ws) : NULL;
        for (int g0 = 0; g0 < groups; g0 += 2, pf = NULL) {
            int two_groups = groups - g0 > 1;
            zero_sums();
            for (int kc = 0; kc < chunks; kc++) {
                size_t s0, s1;
                if (pf)
                    for (int i = 0; i < 32; i++) _mm_prefetch(pf + (size_t)i * ws * 2 + (size_t)kc * 64, _MM_HINT_T0);
                const uint32_t *b = xp + ((size_t)kc * groups + g0) * 256;
                _tile_loadd(4, left_tile(w, ws, rows, r0, cols, kc, pad[0], &s0), s0);
                _tile_loadd(6, b, 64);
                _tile_dpbf16ps(0, 4, 6);
                if (two_rows) {
                    _tile_loadd(5, left_tile(w, ws, rows, r0 + 16, cols, kc, pad[1], &s1), s1);
                    _tile_dpbf16ps(2, 5, 6);
                }
                if (two_groups) {
                    _tile_loadd(7, b + 256, 64);
                    _tile_dpbf16ps(1, 4, 7);
                    if (two_rows) _tile_dpbf16ps(3, 5, 7);
                }
            }
            store_sums_transposed(out, r0, rows, two_rows, g0, n, two_groups, y, ys);
        }
    }
    _tile_release();
}

/* ---- value sums: y[h][j] += sum_p a[h][p] * x[p][j] -----------------------
 * Two kernels. weighted_sum_bf16_bf16 packs the cached rows into key pairs
 * once a call, for many heads (prefill). weighted_sum_bf16_few (decode's 20
 * heads) reads the rows as stored: a right tile is 16 keys x 32 columns,
 * read as 16 column pairs, and a left tile row holds one head's weights of
 * 16 keys at the even (or odd) places only, zeros at the others, so its
 * product gives that head's even (odd) columns. A left tile is 8 heads x
 * both parities, so 20 heads take 3 products a right tile (40 of 48 rows
 * used; 4 with a tile of 16 heads a parity, 20 of 32 rows). That is still
 * more products than packed key pairs, but nothing is written per cached
 * row: with a 256-key block in L2, 9.2-9.9 us against 10.4-11.3 (one
 * thread, 20 heads, 512 columns). A tile product rounds its sum once, so 16
 * keys a product instead of 32 gives other bits than the packed kernel (each
 * kernel's bits never depend on the heads beside an output). */

/* Left tile t, key chunk kc: ap[(kc * tiles + t) * 512 + 32 (2 h + e) + 2 i
 * + e] = a[8 t + h][16 kc + i], zeros elsewhere and past n and nh. */
static AMX void spread_weights(const uint16_t *a, size_t as, int nh, int n, int tiles, int kchunks, uint16_t *ap) {
    for (int t = 0; t < tiles; t++)
        for (int kc = 0; kc < kchunks; kc++) {
            uint16_t *tile = ap + (size_t)(kc * tiles + t) * 512;
            int live = n - 16 * kc;
            __mmask16 m = first_lanes16(live);
            for (int h = 0; h < 8; h++) {
                __m512i v = _mm512_setzero_si512();   /* each 32-bit word: the weight, then a zero */
                if (8 * t + h < nh) v = _mm512_cvtepu16_epi32(_mm256_maskz_loadu_epi16(m, a + (size_t)(8 * t + h) * as + 16 * kc));
                _mm512_store_si512(tile + 64 * h, v);
                _mm512_store_si512(tile + 64 * h + 32, _mm512_slli_epi32(v, 16));
            }
        }
}

/* Right tiles come from the rows as stored, except for a last chunk of fewer
 * than 16 keys (rows_pad: its rows, [16][cols], zeros past n) and a last
 * column tile of fewer than 32 (cols_pad: [keys rounded up to 16][32], zeros
 * past n and cols): copies, so nothing past the rows is read. */
typedef struct {
    const uint16_t *x, *rows_pad, *cols_pad;
    size_t xs;
    int n;
    int64_t cols, full_cols;   /* full_cols: columns in whole tiles */
} right_tiles;

static inline const uint16_t *right_tile(const right_tiles *r, int kc, int64_t jc, size_t *bytes_apart) {
    if (jc >= r->full_cols) {
        *bytes_apart = 64;
        return r->cols_pad + (size_t)16 * kc * 32;
    }
    if (16 * kc + 16 > r->n) {
        *bytes_apart = (size_t)r->cols * 2;
        return r->rows_pad + jc;
    }
    *bytes_apart = r->xs * 2;
    return r->x + (size_t)16 * kc * r->xs + jc;
}

/* Sum tile `sums` (rows 2 h and 2 h + 1: head h's even and odd columns, for
 * the 8 heads of left tile t) added to y at the 32 columns from j0. */
static AMX void add_head_sums(const float sums[256], int t, int nh, int64_t j0, int64_t cols, float *y, size_t ys) {
    const __m512i first = _mm512_setr_epi32(0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23);
    const __m512i second = _mm512_add_epi32(first, _mm512_set1_epi32(8));
    int64_t live = cols - j0;
    __mmask16 m0 = first_lanes16(live);
    __mmask16 m1 = first_lanes16(live - 16);
    for (int h = 0; h < 8 && 8 * t + h < nh; h++) {
        float *yh = y + (size_t)(8 * t + h) * ys + j0;
        __m512 even = _mm512_loadu_ps(sums + 32 * h), odd = _mm512_loadu_ps(sums + 32 * h + 16);
        _mm512_mask_storeu_ps(yh, m0, _mm512_add_ps(_mm512_maskz_loadu_ps(m0, yh), _mm512_permutex2var_ps(even, first, odd)));
        _mm512_mask_storeu_ps(yh + 16, m1, _mm512_add_ps(_mm512_maskz_loadu_ps(m1, yh + 16), _mm512_permutex2var_ps(even, second, odd)));
    }
}

/* Passes over the right tiles, each for up to 2 left tiles and 64 columns
 * at a time (4 sum tiles, 2 left, 2 right: a tile load per product), and
 * where the left tiles are odd in number the last 3 in one pass, 32 columns
 * at a time (3 sum tiles, 3 left, 1 right: 4 loads per 3 products, but each
 * right tile loaded once for them). 20 heads: 3 left tiles, one pass (one
 * thread, a 256-key block in L2: 9.7 us against 11.1 with two passes of 16
 * heads a parity); 16 heads: one pass of 2. */
static AMX void amx_weighted_sum_bf16_few(const uint16_t *a, size_t as, int nh, const uint16_t *x, size_t xs, int n,
                                          int64_t cols, float *y, size_t ys) {
    int kchunks = (n + 15) / 16, tiles = (nh + 7) / 8;
    right_tiles r = {.x = x, .xs = xs, .n = n, .cols = cols, .full_cols = cols & ~(int64_t)31};
    size_t ap_n = (size_t)tiles * kchunks * 512, rows_n = (size_t)16 * cols, cols_n = (size_t)16 * kchunks * 32;
    uint16_t *space = pack_space(ap_n + rows_n + cols_n);
    if (!space) {
        fallback->weighted_sum_bf16_bf16(a, as, nh, x, xs, n, cols, y, ys);
        return;
    }
    uint16_t *ap = space, *rows_pad = ap + ap_n, *cols_pad = rows_pad + rows_n;
    r.rows_pad = rows_pad;
    r.cols_pad = cols_pad;
    spread_weights(a, as, nh, n, tiles, kchunks, ap);
    int last = n - 16 * (kchunks - 1);
    if (kchunks && last < 16) {
        memset(rows_pad, 0, rows_n * sizeof *rows_pad);
        for (int i = 0; i < last; i++) memcpy(rows_pad + (size_t)i * cols, x + (size_t)(n - last + i) * xs, (size_t)cols * 2);
    }
    if (r.full_cols < cols) {
        memset(cols_pad, 0, cols_n * sizeof *cols_pad);
        for (int p = 0; p < n; p++) memcpy(cols_pad + (size_t)p * 32, x + (size_t)p * xs + r.full_cols, (size_t)(cols - r.full_cols) * 2);
    }
    const size_t chunk_apart = (size_t)tiles * 512;   /* from a key chunk's left tiles to the next chunk's */
    float out[4][256];
    size_t bs;
    tiles_on();
    for (int t0 = 0; t0 < tiles;) {
        const uint16_t *left = ap + (size_t)t0 * 512;
        if (tiles - t0 == 3) {
            for (int64_t j0 = 0; j0 < cols; j0 += 32) {
                _tile_zero(0);
                _tile_zero(1);
                _tile_zero(2);
                for (int kc = 0; kc < kchunks; kc++) {
                    _tile_loadd(7, right_tile(&r, kc, j0, &bs), bs);
                    _tile_loadd(4, left + kc * chunk_apart, 64);
                    _tile_dpbf16ps(0, 4, 7);
                    _tile_loadd(5, left + kc * chunk_apart + 512, 64);
                    _tile_dpbf16ps(1, 5, 7);
                    _tile_loadd(6, left + kc * chunk_apart + 1024, 64);
                    _tile_dpbf16ps(2, 6, 7);
                }
                _tile_stored(0, out[0], 64);
                _tile_stored(1, out[1], 64);
                _tile_stored(2, out[2], 64);
                for (int t = 0; t < 3; t++) add_head_sums(out[t], t0 + t, nh, j0, cols, y, ys);
            }
            t0 += 3;
            continue;
        }
        int two_tiles = tiles - t0 >= 2;
        for (int64_t j0 = 0; j0 < cols; j0 += 64) {
            int two_strips = j0 + 32 < cols;
            zero_sums();
            for (int kc = 0; kc < kchunks; kc++) {
                _tile_loadd(4, left + kc * chunk_apart, 64);
                if (two_tiles) _tile_loadd(5, left + kc * chunk_apart + 512, 64);
                _tile_loadd(6, right_tile(&r, kc, j0, &bs), bs);
                _tile_dpbf16ps(0, 4, 6);
                if (two_tiles) _tile_dpbf16ps(2, 5, 6);
                if (two_strips) {
                    _tile_loadd(7, right_tile(&r, kc, j0 + 32, &bs), bs);
                    _tile_dpbf16ps(1, 4, 7);
                    if (two_tiles) _tile_dpbf16ps(3, 5, 7);
                }
            }
            store_sums(out);
            for (int t = 0; t <= two_tiles; t++)
                for (int q = 0; q <= two_strips; q++) add_head_sums(out[2 * t + q], t0 + t, nh, j0 + 32 * q, cols, y, ys);
        }
        t0 += 1 + two_tiles;
    }
    _tile_release();
}

/* weighted_sum_bf16_bf16: the cached rows packed once a call into key pairs,
 * xp[(p / 2) * cp + 2 j + p % 2] with cp = 2 * (cols rounded up to 16),
 * zeros past n and cols, as the right tiles; left: 16 heads x 32 keys of a
 * (copied with zeros past nh and n). Per two head groups and two 16-column
 * strips, four accumulator tiles. */
static AMX void pack_key_pairs(const uint16_t *x, size_t xs, int n, int64_t cols, int64_t cp, uint16_t *xp) {
    const __m512i lo = _mm512_setr_epi32(0x00200000, 0x00210001, 0x00220002, 0x00230003, 0x00240004, 0x00250005,
                                         0x00260006, 0x00270007, 0x00280008, 0x00290009, 0x002a000a, 0x002b000b,
                                         0x002c000c, 0x002d000d, 0x002e000e, 0x002f000f);
    const __m512i hi = _mm512_add_epi16(lo, _mm512_set1_epi16(16));
    int pairs = (n + 1) / 2;
    for (int p2 = 0; p2 < pairs; p2++) {
        const uint16_t *r0 = x + (size_t)(2 * p2) * xs, *r1 = 2 * p2 + 1 < n ? r0 + xs : NULL;
        uint16_t *dst = xp + (size_t)p2 * cp;
        for (int64_t j = 0; j < cp / 2; j += 32) {
            int64_t live = cols - j;
            __mmask32 m = live >= 32 ? 0xffffffffu : live <= 0 ? 0 : (__mmask32)((1u << live) - 1);
            __m512i a = _mm512_maskz_loadu_epi16(m, r0 + j);
            __m512i b = r1 ? _mm512_maskz_loadu_epi16(m, r1 + j) : _mm512_setzero_si512();
            _mm512_storeu_si512(dst + 2 * j, _mm512_permutex2var_epi16(a, lo, b));
            if (j + 16 < cp / 2) _mm512_storeu_si512(dst + 2 * j + 32, _mm512_permutex2var_epi16(a, hi, b));
        }
    }
}

static AMX void amx_weighted_sum_bf16_bf16(const uint16_t *a, size_t as, int nh, const uint16_t *x, size_t xs, int n,
                                           int64_t cols, float *y, size_t ys) {
    int kchunks = (n + 31) / 32;
    int64_t c16 = (cols + 15) & ~(int64_t)15, cp = 2 * c16;
    size_t xp_n = (size_t)kchunks * 16 * cp, ap_n = (size_t)32 * kchunks * 32, as_bytes = (size_t)kchunks * 64;
    uint16_t *space = pack_space(xp_n + ap_n);
    if (!space) {
        fallback->weighted_sum_bf16_bf16(a, as, nh, x, xs, n, cols, y, ys);
        return;
    }
    uint16_t *xp = space, *ap = space + xp_n;
    memset(xp + (size_t)((n + 1) / 2) * cp, 0, (xp_n - (size_t)((n + 1) / 2) * cp) * sizeof *xp);
    pack_key_pairs(x, xs, n, cols, cp, xp);
    float out[4][256];
    tiles_on();
    for (int h0 = 0; h0 < nh; h0 += 32) {   /* two head groups (left tiles) */
        int hn = nh - h0 < 32 ? nh - h0 : 32, two_groups = hn > 16;
        memset(ap, 0, ap_n * sizeof *ap);
        for (int h = 0; h < hn; h++) memcpy(ap + (size_t)h * kchunks * 32, a + (size_t)(h0 + h) * as, (size_t)n * 2);
        for (int64_t j0 = 0; j0 < c16; j0 += 32) {   /* two 16-column strips (right tiles) */
            int two_strips = c16 - j0 > 16;
            zero_sums();
            for (int kc = 0; kc < kchunks; kc++) {
                const uint16_t *b = xp + (size_t)kc * 16 * cp + 2 * j0;
                _tile_loadd(4, ap + (size_t)kc * 32, as_bytes);
                _tile_loadd(6, b, (size_t)cp * 2);
                _tile_dpbf16ps(0, 4, 6);
                if (two_groups) {
                    _tile_loadd(5, ap + (size_t)(16 * kchunks + kc) * 32, as_bytes);
                    _tile_dpbf16ps(2, 5, 6);
                }
                if (two_strips) {
                    _tile_loadd(7, b + 32, (size_t)cp * 2);
                    _tile_dpbf16ps(1, 4, 7);
                    if (two_groups) _tile_dpbf16ps(3, 5, 7);
                }
            }
            store_sums(out);
            /* out[2 i + j][h * 16 + c]: head h0 + 16 i + h, column j0 + 16 j + c */
            for (int i = 0; i <= two_groups; i++)
                for (int j = 0; j <= two_strips; j++) {
                    int64_t jc = j0 + 16 * j, live = cols - jc;
                    if (live <= 0) continue;
                    __mmask16 m = first_lanes16(live);
                    for (int h = 16 * i; h < hn && h < 16 * i + 16; h++) {
                        float *yh = y + (size_t)(h0 + h) * ys + jc;
                        _mm512_mask_storeu_ps(yh, m,
                                              _mm512_add_ps(_mm512_maskz_loadu_ps(m, yh), _mm512_loadu_ps(out[2 * i + j] + 16 * (h - 16 * i))));
                    }
                }
        }
    }
    _tile_release();
}

/* ---- bf16 rows' batched product: y[t * ys + r] = sum_c w[r][c] * x[t][c] --
 * Right: the vectors split into hi, mid and lo bf16 parts (kernels.h),
 * xs[((kc * G + g) * 3 + s) * 512 + k2 * 32 + 2 t + e] = part s of x[16 g +
 * t][32 kc + 2 k2 + e], zeros past n and cols: the three parts' tiles of
 * each 32 columns and 16 vectors side by side. Left: 16 weight rows x 32
 * columns, loaded straight from the rows (no widening), or from a
 * zero-padded copy at the ends. */
static AMX void amx_split_bf16(const float *x, size_t xs, int n, int64_t cols, int64_t c0, int64_t c1, uint16_t *out) {
    int groups = (n + 15) / 16;
    for (int64_t kc = c0 / 32; kc * 32 < c1; kc++) {
        int64_t live = cols - kc * 32;
        __mmask16 m0 = first_lanes16(live);
        __mmask16 m1 = first_lanes16(live - 16);
        for (int g = 0; g < groups; g++) {
            uint32_t parts[3][16][16];   /* [part][vector][column pair] */
            for (int t = 0; t < 16; t++) {
                int v = 16 * g + t;
                const float *xv = x + (size_t)v * xs + kc * 32;
                __m512 a = v < n ? _mm512_maskz_loadu_ps(m0, xv) : _mm512_setzero_ps();
                __m512 b = v < n ? _mm512_maskz_loadu_ps(m1, xv + 16) : _mm512_setzero_ps();
                for (int p = 0; p < 3; p++) {
                    __m512i h = (__m512i)_mm512_cvtne2ps_pbh(b, a);   /* columns 0-15 low, 16-31 high */
                    _mm512_storeu_si512(parts[p][t], h);
                    __m512 ha = _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(_mm512_castsi512_si256(h)), 16));
                    __m512 hb = _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(_mm512_extracti64x4_epi64(h, 1)), 16));
                    /* the remainders (exact); none after an infinite part, whose x - part would be NaN */
                    a = _mm512_maskz_sub_ps(~_mm512_fpclass_ps_mask(ha, 0x18), a, ha);
                    b = _mm512_maskz_sub_ps(~_mm512_fpclass_ps_mask(hb, 0x18), b, hb);
                }
            }
            uint16_t *dst = out + ((size_t)kc * groups + g) * 1536;
            for (int p = 0; p < 3; p++)
                for (int k2 = 0; k2 < 16; k2++)   /* pair row k2: column pair k2 of the 16 vectors */
                    _mm512_storeu_si512(dst + p * 512 + k2 * 32, _mm512_i32gather_epi32(tile_column(), &parts[p][0][k2], 4));
        }
    }
}

/* Per 32 rows (two left tiles) and 32 vectors (two right ones), four sum
 * tiles over every column: per 32 columns the left tiles are loaded once
 * and meet each part's right tiles. The rows come from memory in the
 * hardware's streams: requesting the next 32 rows' lines ahead, as the
 * scores do, made bf16 prefill's matmuls 5-10% slower on an Intel Xeon
 * (into L1, L2 or further ahead alike), and 16-row blocks 20% slower. */
static AMX void amx_gemm_bf16_split(const uint16_t *w, size_t ws, int rows, int64_t cols, const uint16_t *xs, int n,
                                    float *y, size_t ys) {
    int chunks = (int)((cols + 31) / 32), groups = (n + 15) / 16;
    uint16_t pad[2][512];
    float out[4][256];
    tiles_on();
    for (int r0 = 0; r0 < rows; r0 += 32) {
        int two_rows = rows - r0 > 16;
        for (int g0 = 0; g0 < groups; g0 += 2) {
            int two_groups = groups - g0 > 1;
            zero_sums();
            for (int kc = 0; kc < chunks; kc++) {
                size_t s0, s1;
                _tile_loadd(4, left_tile(w, ws, rows, r0, cols, kc, pad[0], &s0), s0);
                if (two_rows) _tile_loadd(5, left_tile(w, ws, rows, r0 + 16, cols, kc, pad[1], &s1), s1);
                const uint16_t *b = xs + ((size_t)kc * groups + g0) * 1536;
                for (int p = 0; p < 3; p++) {
                    _tile_loadd(6, b + p * 512, 64);
                    _tile_dpbf16ps(0, 4, 6);
                    if (two_rows) _tile_dpbf16ps(2, 5, 6);
                    if (two_groups) {
                        _tile_loadd(7, b + 1536 + p * 512, 64);
                        _tile_dpbf16ps(1, 4, 7);
                        if (two_rows) _tile_dpbf16ps(3, 5, 7);
                    }
                }
            }
            store_sums_transposed(out, r0, rows, two_rows, g0, n, two_groups, y, ys);
        }
    }
    _tile_release();
}

/* ---- prefill attention over an f32 cache, in exact bf16 parts ------------
 * The cached rows (and the probabilities) are split by truncation: part s
 * is the top 16 bits of what the parts before it left, a remainder that is
 * exact in f32, so x = p0 + p1 + p2 exactly (the queries come split by
 * split_bf16). Products (s, p) of a left part s with a right part p are
 * taken for s + p <= 2, in the order kernels.h gives. The tiles read bf16
 * denormals as zero, so parts below 1.2e-38 (of values below ~1e-33) drop
 * out; a cached value that is infinite or NaN makes its products NaN (its
 * remainders are NaN). Per 32 rows (or weights) and 32 vectors (or
 * columns) four sum tiles: 2 left tiles x 2 right ones a product, so no two
 * products in a row wait on the same sum (two sum tiles ran the same work
 * ~15% slower). */
static inline AMX __m512 remainder_after_top(__m512 v) {
    return _mm512_sub_ps(v, _mm512_castsi512_ps(_mm512_and_si512(_mm512_castps_si512(v), _mm512_set1_epi32((int)0xffff0000u))));
}

/* The three parts of 32 values in a and b, each picked into one 64-byte
 * row of its tile (pick: which top halves, in which order) at dst + 512 s. */
static inline AMX void store_parts(__m512 a, __m512 b, __m512i pick, uint16_t *dst) {
    for (int s = 0; s < 3; s++) {
        _mm512_storeu_si512(dst + s * 512, _mm512_permutex2var_epi16(_mm512_castps_si512(a), pick, _mm512_castps_si512(b)));
        if (s < 2) {
            a = remainder_after_top(a);
            b = remainder_after_top(b);
        }
    }
}

/* Left tiles: rn <= 16 rows of m from m (ms apart), cn <= 32 columns, as
 * parts[s][16][32], zeros past rn and cn. */
static AMX void split_left(const float *m, size_t ms, int rn, int cn, uint16_t *parts) {
    const __m512i top_halves = _mm512_setr_epi32(0x00030001, 0x00070005, 0x000b0009, 0x000f000d, 0x00130011, 0x00170015,
                                                 0x001b0019, 0x001f001d, 0x00230021, 0x00270025, 0x002b0029, 0x002f002d,
                                                 0x00330031, 0x00370035, 0x003b0039, 0x003f003d);
    __mmask16 m0 = first_lanes16(cn);
    __mmask16 m1 = first_lanes16(cn - 16);
    for (int i = 0; i < 16; i++) {
        __m512 a = i < rn ? _mm512_maskz_loadu_ps(m0, m + (size_t)i * ms) : _mm512_setzero_ps();
        __m512 b = i < rn ? _mm512_maskz_loadu_ps(m1, m + (size_t)i * ms + 16) : _mm512_setzero_ps();
        store_parts(a, b, top_halves, parts + 32 * i);
    }
}

/* Right tiles from rows: pn <= 32 rows of x (xs apart), cn <= 16 columns,
 * as parts[s][k2][2 j + e] = part s of row 2 k2 + e, column j; zeros past pn
 * and cn. */
static AMX void split_right(const float *x, size_t xs, int pn, int cn, uint16_t *parts) {
    const __m512i pair_tops = _mm512_setr_epi32(0x00210001, 0x00230003, 0x00250005, 0x00270007, 0x00290009, 0x002b000b,
                                                0x002d000d, 0x002f000f, 0x00310011, 0x00330013, 0x00350015, 0x00370017,
                                                0x00390019, 0x003b001b, 0x003d001d, 0x003f001f);
    __mmask16 m = first_lanes16(cn);
    for (int k2 = 0; k2 < 16; k2++) {
        __m512 a = 2 * k2 < pn ? _mm512_maskz_loadu_ps(m, x + (size_t)(2 * k2) * xs) : _mm512_setzero_ps();
        __m512 b = 2 * k2 + 1 < pn ? _mm512_maskz_loadu_ps(m, x + (size_t)(2 * k2 + 1) * xs) : _mm512_setzero_ps();
        store_parts(a, b, pair_tops, parts + 32 * k2);
    }
}

/* Sum tiles 0-3 += the part products of left parts l0 (and l1, with two_l)
 * with right parts r0 (and r1, with two_r), each three tiles 512 values
 * apart: sum 0 = l0 r0, 1 = l0 r1, 2 = l1 r0, 3 = l1 r1. */
static inline AMX void part_products(const uint16_t *l0, const uint16_t *l1, int two_l, const uint16_t *r0,
                                     const uint16_t *r1, int two_r) {
    /* (s, p) in an order where each step reloads one side only */
    static const int8_t order[6][2] = {{2, 0}, {1, 0}, {1, 1}, {0, 1}, {0, 2}, {0, 0}};
    for (int i = 0; i < 6; i++) {
        int s = order[i][0], p = order[i][1];
        if (i == 0 || s != order[i - 1][0]) {
            _tile_loadd(4, l0 + s * 512, 64);
            if (two_l) _tile_loadd(5, l1 + s * 512, 64);
        }
        if (i == 0 || p != order[i - 1][1]) {
            _tile_loadd(6, r0 + p * 512, 64);
            if (two_r) _tile_loadd(7, r1 + p * 512, 64);
        }
        _tile_dpbf16ps(0, 4, 6);
        if (two_l) _tile_dpbf16ps(2, 5, 6);
        if (two_r) {
            _tile_dpbf16ps(1, 4, 7);
            if (two_l) _tile_dpbf16ps(3, 5, 7);
        }
    }
}

/* Scores: left the cached rows, right the split queries. Per 32 rows, all
 * their columns are split into work once for every pair of query groups. */
static AMX void amx_gemm_f32_split(const float *w, size_t ws, int rows, int64_t cols, const uint16_t *xs, int n, float *y,
                                   size_t ys, uint16_t *left) {
    int chunks = (int)((cols + 31) / 32), groups = (n + 15) / 16;
    float out[4][256];
    tiles_on();
    for (int r0 = 0; r0 < rows; r0 += 32) {
        int two_rows = rows - r0 > 16;
        const float *w0 = w + (size_t)r0 * ws, *w1 = w0 + 16 * ws;
        int rn0 = two_rows ? 16 : rows - r0, rn1 = rows - r0 - 16 < 16 ? rows - r0 - 16 : 16;
        for (int kc = 0; kc < chunks; kc++) {
            int cn = cols - 32 * kc < 32 ? (int)(cols - 32 * kc) : 32;
            split_left(w0 + 32 * kc, ws, rn0, cn, left + (size_t)kc * 1536);
            if (two_rows) split_left(w1 + 32 * kc, ws, rn1, cn, left + ((size_t)chunks + kc) * 1536);
        }
        for (int g0 = 0; g0 < groups; g0 += 2) {
            int two_groups = groups - g0 > 1;
            zero_sums();
            for (int kc = 0; kc < chunks; kc++) {
                const uint16_t *b = xs + ((size_t)kc * groups + g0) * 1536;
                part_products(left + (size_t)kc * 1536, left + ((size_t)chunks + kc) * 1536, two_rows, b, b + 1536,
                              two_groups);
            }
            store_sums_transposed(out, r0, rows, two_rows, g0, n, two_groups, y, ys);
        }
    }
    _tile_release();
}

/* Value sums: left the weights (split into work once a call), right the
 * cached rows' pairs, per 32 columns split once for every pair of head
 * groups. y += each tile's sums. */
static AMX void amx_weighted_sum_split(const float *a, size_t as, int nh, const float *x, size_t xs, int n, int64_t cols,
                                       float *y, size_t ys, uint16_t *work) {
    int kchunks = (n + 31) / 32, groups = (nh + 15) / 16;
    uint16_t *left = work, *right = work + (size_t)groups * kchunks * 1536;
    float out[4][256];
    for (int g = 0; g < groups; g++)
        for (int kc = 0; kc < kchunks; kc++) {
            int hn = nh - 16 * g < 16 ? nh - 16 * g : 16, pn = n - 32 * kc < 32 ? n - 32 * kc : 32;
            split_left(a + (size_t)16 * g * as + 32 * kc, as, hn, pn, left + ((size_t)g * kchunks + kc) * 1536);
        }
    tiles_on();
    for (int64_t j0 = 0; j0 < cols; j0 += 32) {
        int two_strips = cols - j0 > 16;
        int cn0 = two_strips ? 16 : (int)(cols - j0), cn1 = (int)(cols - j0 - 16 < 16 ? cols - j0 - 16 : 16);
        for (int kc = 0; kc < kchunks; kc++) {
            int pn = n - 32 * kc < 32 ? n - 32 * kc : 32;
            const float *xk = x + (size_t)(32 * kc) * xs + j0;
            split_right(xk, xs, pn, cn0, right + (size_t)kc * 1536);
            if (two_strips) split_right(xk + 16, xs, pn, cn1, right + ((size_t)kchunks + kc) * 1536);
        }
        for (int g0 = 0; g0 < groups; g0 += 2) {
            int two_groups = groups - g0 > 1;
            zero_sums();
            for (int kc = 0; kc < kchunks; kc++) {
                const uint16_t *l0 = left + ((size_t)g0 * kchunks + kc) * 1536, *r0 = right + (size_t)kc * 1536;
                part_products(l0, l0 + (size_t)kchunks * 1536, two_groups, r0, r0 + (size_t)kchunks * 1536, two_strips);
            }
            store_sums(out);
            /* out[2 i + j][h * 16 + c]: head 16 (g0 + i) + h, column j0 + 16 j + c */
            for (int i = 0; i <= two_groups; i++) {
                int h0 = 16 * (g0 + i), hn = nh - h0 < 16 ? nh - h0 : 16;
                for (int j = 0; j <= two_strips; j++) {
                    int cn = j ? cn1 : cn0;
                    __mmask16 m = first_lanes16(cn);
                    for (int h = 0; h < hn; h++) {
                        float *yh = y + (size_t)(h0 + h) * ys + j0 + 16 * j;
                        _mm512_mask_storeu_ps(yh, m, _mm512_add_ps(_mm512_maskz_loadu_ps(m, yh), _mm512_loadu_ps(out[2 * i + j] + 16 * h)));
                    }
                }
            }
        }
    }
    _tile_release();
}

/* The AVX-512 table with the two AMX entries, where the CPU has AMX-BF16
 * and Linux lets this process use the tiles (asked once). */
static kernel_table amx_table;
static int amx_usable;
static pthread_once_t amx_once = PTHREAD_ONCE_INIT;

static void build_amx_table(void) {
    const kernel_table *base = kernels_avx512();
    unsigned a, b, c, d;   /* CPUID leaf 7: EDX bit 22 AMX-BF16, bit 24 AMX-TILE */
    if (!base || !base->gemm_bf16_bf16 || !__get_cpuid_count(7, 0, &a, &b, &c, &d) || !(d >> 22 & 1) || !(d >> 24 & 1) ||
        syscall(SYS_arch_prctl, ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA) != 0)
        return;
    fallback = base;
    amx_table = *base;
    amx_table.gemm_bf16_bf16 = amx_gemm_bf16_bf16;
    amx_table.weighted_sum_bf16_bf16 = amx_weighted_sum_bf16_bf16;
    amx_table.weighted_sum_bf16_few = amx_weighted_sum_bf16_few;
    amx_table.split_bf16 = amx_split_bf16;
    amx_table.gemm_bf16_split = amx_gemm_bf16_split;
    amx_table.gemm_f32_split = amx_gemm_f32_split;
    amx_table.weighted_sum_split = amx_weighted_sum_split;
    amx_usable = 1;
}

const kernel_table *kernels_amx(void) {
    pthread_once(&amx_once, build_amx_table);
    return amx_usable ? &amx_table : NULL;
}

#else
const kernel_table *kernels_amx(void) { return NULL; }
#endif
