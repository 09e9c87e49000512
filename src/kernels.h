/* kernels.h — the numeric building blocks of the forward pass for plain
 * (f32/f16/bf16) data: row dot products, axpy, norms, RoPE, softmax, SiLU.
 *
 * kernels.c holds the scalar reference versions (the truth); kernels_avx2.c
 * holds AVX2/FMA versions with the same signatures, tested against them, and
 * kernels_avx512.c 512-bit versions of the compute-bound ones.
 * kernels_active() is chosen once at start-up from the CPU's features. */
#ifndef GLM_KERNELS_H
#define GLM_KERNELS_H

#include <stddef.h>
#include <stdint.h>

typedef struct {
    const char *name;
    /* decode's row dots; ahead (or NULL): memory to request as the row is
       read, one line at the same byte offset per 64 bytes of w (the AVX-512
       kernels; the others ignore it) */
    float (*dot_f32)(const float *w, const float *x, int64_t n, const void *ahead);
    float (*dot_bf16)(const uint16_t *w, const float *x, int64_t n, const void *ahead);
    float (*dot_f16)(const uint16_t *w, const float *x, int64_t n, const void *ahead);
    void (*axpy)(float a, const float *x, float *y, int64_t n);      /* y += a * x */
    void (*bf16_to_f32)(const uint16_t *src, float *dst, int64_t n);
    void (*f16_to_f32)(const uint16_t *src, float *dst, int64_t n);
    /* y[t * y_stride + r] = dot(w + r * w_stride, x + t * x_stride) for r < rows,
     * t < n, over cols: attention's scores against cached rows (and the prefill
     * absorbed query), register-blocked in the fast version. ahead (or NULL):
     * ahead_bytes of memory the caller reads next (decode: part of its next
     * block of cached rows), requested into L2 a line at a time over the
     * call's work (the AVX2 and AVX-512 kernels, line_requests.h; the
     * reference ignores it). The same for
     * gemm_bf16, weighted_sum and weighted_sum_bf16; it never changes a
     * result. */
    void (*gemm_f32)(const float *w, size_t w_stride, int rows, const float *x, size_t x_stride, int n, int64_t cols,
                     float *y, size_t y_stride, const void *ahead, size_t ahead_bytes);
    /* gemm_f32 over bf16 rows (a bf16 latent cache), widened as they are read:
     * the same bits as gemm_f32 on the widened rows, half the bytes read. */
    void (*gemm_bf16)(const uint16_t *w, size_t w_stride, int rows, const float *x, size_t x_stride, int n, int64_t cols,
                      float *y, size_t y_stride, const void *ahead, size_t ahead_bytes);
    /* The batched product with the vectors transposed (tokens in vector
     * lanes), over one block of columns: for r < rows and t < np =
     * gemm_xt_lanes(n), acc[r * np + t] = (first ? 0 : acc[r * np + t]) +
     * sum_c w[r * w_stride + c] * xt[c * np + t], as one chain of fused
     * multiply-adds over c in order. A chain continued block after block is
     * the same arithmetic whatever the blocks, the variant or the tile an
     * output falls in (thread count, batch split): the same bits. */
    void (*gemm_f32_xt)(const float *w, size_t w_stride, int rows, const float *xt, int n, int64_t cols, float *acc,
                        int first);
    /* y[h][j] += sum_{p<n} a[h * a_stride + p] * x[p * x_stride + j] for h < nh,
     * j < cols: attention's probability-weighted sum of cached rows, for a
     * few heads at once (each row chunk loaded once for all of them). */
    void (*weighted_sum)(const float *a, size_t a_stride, int nh, const float *x, size_t x_stride, int n, int64_t cols,
                         float *y, size_t y_stride, const void *ahead, size_t ahead_bytes);
    /* weighted_sum over bf16 rows, widened as read (the same bits as
     * weighted_sum on the widened rows). */
    void (*weighted_sum_bf16)(const float *a, size_t a_stride, int nh, const uint16_t *x, size_t x_stride, int n,
                              int64_t cols, float *y, size_t y_stride, const void *ahead, size_t ahead_bytes);
    /* Softmax's exponentials: x[i] = exp(x[i] * scale - m) in place (m: the
     * maximum of x times scale, so every term is <= 1); returns their sum. */
    float (*exp_sum)(float *x, int64_t n, float scale, float m);
    /* The largest of x[0..n) (n >= 1): a block of attention scores' maximum. */
    float (*max_f32)(const float *x, int64_t n);
    /* Optional (NULL unless the CPU multiplies bf16 pairs natively,
     * AVX512-BF16): attention over a bf16 cache in bf16 arithmetic, with the
     * queries and probabilities rounded to bf16 as GPU attention kernels and
     * llama.cpp's f16 cache round them; f32 sums. gemm_bf16_bf16 is gemm_bf16
     * with bf16 vectors; weighted_sum_bf16_bf16 is weighted_sum_bf16 with bf16
     * weights a, read in pairs (a row of a holds n rounded up to even values,
     * the one past an odd n 0); round_bf16 rounds to nearest even. */
    void (*gemm_bf16_bf16)(const uint16_t *w, size_t w_stride, int rows, const uint16_t *x, size_t x_stride, int n,
                           int64_t cols, float *y, size_t y_stride);
    void (*weighted_sum_bf16_bf16)(const uint16_t *a, size_t a_stride, int nh, const uint16_t *x, size_t x_stride, int n,
                                   int64_t cols, float *y, size_t y_stride);
    void (*round_bf16)(const float *x, uint16_t *y, int64_t n);
    /* Optional (NULL but on AMX tiles): weighted_sum_bf16_bf16 for few
     * weights' rows (decode's heads), reading the cached rows as stored. Its
     * sums round in other places than weighted_sum_bf16_bf16's, so its bits
     * differ from that kernel's; like them, they never depend on the other
     * rows of a in the call. */
    void (*weighted_sum_bf16_few)(const uint16_t *a, size_t a_stride, int nh, const uint16_t *x, size_t x_stride, int n,
                                  int64_t cols, float *y, size_t y_stride);
    /* Optional (NULL but on AMX tiles): the batched product over bf16 rows
     * with each f32 vector split exactly into three bf16 parts, x = hi + mid
     * + lo (hi = x rounded to nearest even, mid the remainder rounded, lo the
     * rest), so every product of a weight with a part is exact and only the
     * f32 sums round: the f32 product's accuracy at the tiles' rate.
     * split_bf16 lays out columns [c0, c1) (c0 a multiple of 32) of n
     * vectors x[t * x_stride + c] of cols columns in xs (split_bf16_elems(n,
     * cols) values for all columns); gemm_bf16_split then gives y[t *
     * y_stride + r] = sum_c w[r * w_stride + c] * x[t][c] for r < rows, t < n,
     * each output one chain over its columns in order, whatever its tile. */
    void (*split_bf16)(const float *x, size_t x_stride, int n, int64_t cols, int64_t c0, int64_t c1, uint16_t *xs);
    void (*gemm_bf16_split)(const uint16_t *w, size_t w_stride, int rows, int64_t cols, const uint16_t *xs, int n,
                            float *y, size_t y_stride);
    /* Optional (NULL but on AMX tiles): prefill attention over an f32 cache,
     * both operands in exact bf16 parts. gemm_f32_split is gemm_f32 with the
     * vectors given as split_bf16 lays them out (all columns);
     * weighted_sum_split is weighted_sum (no requests ahead). The rows and
     * the weights a are split too, and of the nine products of a left part
     * (a row's for the scores, a weight's for the value sums) with a right
     * part only the six whose orders add up to at most 2 are taken (the
     * other three add up to less than 2^-21 of the product, as a truncated
     * part is below 2^-7 of what it was split from and the third below
     * 2^-15): per 32 columns, and per output in this order, (2,0), (1,0),
     * (1,1), (0,1), (0,2), (0,0) (each step reloads one operand's tiles
     * only). So each output is one chain in a fixed
     * order whatever its tile, with the error of an f32 sum of its exact
     * terms; for a tile of 80 queries the scores ran 1.6 times and the value
     * sums 1.3 times as fast as the FMA kernels. Decode keeps the FMA
     * kernels: with 20 queries and the rows streamed from memory, the parts
     * were no faster (docs/performance.md). work: space for the parts,
     * split_work_elems values. */
    void (*gemm_f32_split)(const float *w, size_t w_stride, int rows, int64_t cols, const uint16_t *xs, int n, float *y,
                           size_t y_stride, uint16_t *work);
    void (*weighted_sum_split)(const float *a, size_t a_stride, int nh, const float *x, size_t x_stride, int n, int64_t cols,
                               float *y, size_t y_stride, uint16_t *work);
    /* SwiGLU's gate: g[i] = silu(g[i]) * u[i]. */
    void (*swiglu)(float *g, const float *u, int64_t n);
    /* The bench's read-bandwidth probe: the sum of x[0..n) with full-width loads. */
    float (*sum_f32)(const float *x, int64_t n);
    /* The bench's FMA peak probe: `iters` rounds of independent multiply-adds
     * in registers; returns the flops done (and folds the result into *sink). */
    double (*fma_probe)(long iters, float *sink);
} kernel_table;

/* A 16-lane mask of the first `live` lanes (none when live <= 0, all from
 * 16): where a row of 16 values runs out. */
static inline uint16_t first_lanes16(int64_t live) {
    return live >= 16 ? 0xffff : live <= 0 ? 0 : (uint16_t)((1u << live) - 1);
}

/* Lanes of gemm_f32_xt's transposed vectors: n rounded up to 16. */
static inline int gemm_xt_lanes(int n) { return (n + 15) & ~15; }

/* Values of split_bf16's layout for n vectors of cols columns: per 32
 * columns and 16 vectors, three tiles (hi, mid, lo) of 16 x 32 bf16. */
static inline size_t split_bf16_elems(int n, int64_t cols) {
    return (size_t)((cols + 31) / 32) * (size_t)((n + 15) / 16) * 3 * 512;
}

/* Work values for gemm_f32_split over cols columns, or weighted_sum_split
 * (0 cols) of nh heads over n rows: three 16 x 32 bf16 tiles per 32 columns
 * of 32 rows, or per 16 heads (and per 2 x 16 columns) and 32 rows. */
static inline size_t split_work_elems(int64_t cols, int nh, int n) {
    size_t scores = (size_t)2 * (size_t)((cols + 31) / 32) * 1536;
    size_t sums = (size_t)((nh + 15) / 16 + 2) * (size_t)((n + 31) / 32) * 1536;
    return scores > sums ? scores : sums;
}

const kernel_table *kernels_reference(void);
const kernel_table *kernels_avx2(void);      /* NULL when the CPU lacks AVX2+FMA */
/* The AVX2 table with 512-bit row dots (f32/bf16/f16), gemm_f32, gemm_f32_xt,
 * gemm_bf16, bf16/f16 widening, weighted_sum(_bf16), exp_sum, max_f32 and
 * fma_probe; NULL without AVX-512F. */
const kernel_table *kernels_avx512(void);
/* The AVX-512 table with gemm_bf16_bf16 and weighted_sum_bf16_bf16 on AMX
 * tiles, and split_bf16 with gemm_bf16_split; NULL unless the CPU has
 * AMX-BF16 and Linux grants the tiles. */
const kernel_table *kernels_amx(void);
/* The widest available, unless GLMLITE_KERNELS=reference, =avx2 or =avx512
 * (no AMX) asks for less. */
const kernel_table *kernels_active(void);
/* Whether the active table is the AVX-512 one (with AMX or without), so
 * the quantized rows may take their AVX-512 paths too. */
int kernels_using_avx512(void);
/* Whether the active table is the AMX one (so prefill's integer products
 * may take AMX-INT8 tiles too, quant_amx.c). */
int kernels_using_amx(void);
/* The active table's name and, with AVX-512, the extensions the quantized
 * rows (VNNI; VBMI for mxfp8) and the bf16 rows and attention (BF16, AMX)
 * take where the CPU has them: "avx512+vnni+bf16+vbmi+amx", "avx2",
 * "reference". */
void kernels_describe(char *buf, size_t n);

/* How decode asks for the lines of the weight rows it is about to read.
 * Each row is read once a token, from DRAM, so these requests decide how
 * well a core keeps up with the memory stream, and the best kind differs by
 * CPU (2 threads, `glmlite bench -p 0 -n 32`, alternating builds):
 * - AMD (Zen 5): non-temporal (prefetchnta), 6 KB ahead for every row: int4
 *   and int8 decoded 1-12% faster than with prefetcht1, bf16 read 88-92% of
 *   the probe's bandwidth instead of 80-83%.
 * - Intel (a Xeon with AVX-512 and AMX): prefetcht1 (into L2), 6 KB ahead for
 *   quantized rows and 3 KB for plain ones. prefetchnta made decode 2.2x
 *   slower there (int4 40% of the probe against 88%; it fills L1 only, past
 *   the L2 streamer), no prefetch 1.4x slower; bf16 rows read 83-88% at 3 KB,
 *   74-77% at 6 KB.
 * Other CPUs get Intel's, the choice without a cliff. GLMLITE_PREFETCH=nta
 * or =t1 overrides the kind. */
typedef struct {
    int nta;              /* prefetchnta; else prefetcht1 */
    int quant_bytes;      /* how far ahead in quantized rows */
    int plain_bytes;      /* in bf16/f16/f32 rows */
} row_prefetch;
extern row_prefetch kernels_prefetch;   /* set with the kernels (kernels_active) */

/* A request for the line at p, of the kind kernels_prefetch says. */
static inline __attribute__((always_inline)) void row_prefetch_line(const void *p) {
    if (kernels_prefetch.nta) __builtin_prefetch(p, 0, 0);   /* prefetchnta */
    else __builtin_prefetch(p, 0, 2);                        /* prefetcht1 */
}

/* Whether decode attention should request each thread's next block of
 * cached rows (block_bytes) while it multiplies the current one: where a
 * core's L2 holds both with a quarter to spare (an Intel Xeon's 2 MB holds
 * two f32 blocks of 590 KB; Zen 4 and 5's 1 MB does not). On that Xeon it
 * took decode attention at depth 8192 from ~150 to ~100 us a block and
 * thread. GLMLITE_DECODE_AHEAD=0 or =1 overrides it. */
int kernels_decode_ahead(size_t block_bytes);

/* Whether attention over a bf16 cache multiplies bf16 values in pairs
 * (gemm_bf16_bf16, weighted_sum_bf16_bf16: the queries and probabilities
 * rounded to bf16) instead of widening the cache exactly, and whether mxfp8
 * rows' prefill does (kernels_bf16_dot_fast: vdpbf16ps itself). Per CPU,
 * measured: vdpbf16ps does twice the FMA's multiply-adds per instruction on
 * AMD (Zen 4 and 5) but half of them on Intel, where a Xeon ran 1.6 G
 * vdpbf16ps/s (52 G multiply-adds) against 6.6 G FMAs/s (105 G) a core: its
 * vdpbf16ps attention ran at 31-36% of the FMA peak against 51-61% for the
 * same cache widened, its mxfp8 prefill matmuls at 36% against 44-46% with
 * f32 activations. Its AMX tiles (kernels_amx.c) ran 1,217 G a core. So
 * attention takes pairs on AMD and with AMX, mxfp8 prefill on AMD only;
 * GLMLITE_BF16_PAIRS=1 or =0 overrides both (1 needs AVX512-BF16). Decode's
 * mxfp8 rows, bound by memory, take bf16 pairs wherever the CPU has them
 * (74-76% of that Xeon's bandwidth against 61-62% with f32 activations). */
int kernels_bf16_pairs(void);
int kernels_bf16_dot_fast(void);
/* Tests: turns both on (where the CPU has AVX512-BF16) or off; returns
 * kernels_bf16_pairs() before. Sessions read it when created. */
int kernels_set_bf16_pairs(int on);

/* Vector operations (scalar; not hot enough to need variants). silu is also
 * the reference of the swiglu kernel. */
void rmsnorm(float *out, const float *x, const float *w, int n, float eps);   /* w may be NULL (all ones) */
void softmax_inplace(float *x, int n);
float silu(float x);

/* RoPE on one vector of dim rope dims: adjacent pairs (interleave) or
 * rotate-half. cos/sin hold dim/2 values for this position. */
void rope_apply(float *x, int dim, const float *cos_t, const float *sin_t, int interleave);

#endif
