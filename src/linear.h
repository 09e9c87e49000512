/* linear.h — y = W x for a batch of activation vectors, split over the thread
 * pool by rows, for every weight format. */
#ifndef GLM_LINEAR_H
#define GLM_LINEAR_H

#include "kernels.h"
#include "quant.h"
#include "tensor.h"
#include "threads.h"

/* The batched product (prefill) works on blocks of LINEAR_ROW_BLOCK rows and
 * LINEAR_KC columns (a block widened to f32 is 16 KB). */
#define LINEAR_ROW_BLOCK 32
#define LINEAR_KC 128

/* y[t][r] = sum_c W[r][c] * x[t][c] for t < n, r < rows. x is [n][cols]
 * (stride x_stride floats), y is [n][y_stride] floats. scratch: per-thread
 * buffers of at least linear_rows_scratch_floats(n, cols) floats each
 * (pool_size of them, scratch_stride floats apart); packed: room for
 * linear_packed_floats(n, cols) floats, the vectors transposed once for all
 * threads (unused below 4 vectors, may then be NULL). Each output row is
 * computed by one thread in a fixed order, so results do not depend on the
 * thread count.
 * Quantized weights with fewer than 4 vectors (decode) quantize the vectors
 * to int8 blocks once per call and use the integer kernels where they exist
 * (quant.h, "int8 activations": ~1e-3 relative error, memory-bound), unless
 * w->exact_act asks for f32 activations (the reference path). With 4+
 * vectors, affine, nvfp4 and mxfp4 weights take them quantized to int16 per
 * group (mxfp8: rounded to bf16) where the CPU has the kernels (quant.h,
 * "16-bit activations"; the packed buffer holds them), unless w->exact_act;
 * plain weights and the rest use f32 activations. On the int8 path the
 * first per-thread buffer holds the quantized vectors (no task widens rows
 * there). */
void linear(thread_pool *pool, const weight *w, const float *x, int n, size_t x_stride, float *y, size_t y_stride,
            float *scratch, size_t scratch_stride, float *packed);

/* count products, each weight w[k] with its own input x[k] and output y[k]
 * (n vectors each, all with the same strides), in as few parallel sections
 * as possible: SwiGLU's gate and up, whose one input is quantized or
 * transposed once for both, or decode's experts, so the threads share out
 * every expert's rows with one start and one wait. With 4 or more vectors
 * and different inputs, one linear() after another. The same bits as count
 * calls of linear(). The first per-thread buffer holds every input's int8
 * vectors: count * n * quant_act_bytes(cols) bytes at most. */
void linear_many(thread_pool *pool, int count, const weight *const *w, const float *const *x, int n, size_t x_stride,
                 float *const *y, size_t y_stride, float *scratch, size_t scratch_stride, float *packed);

/* Floats of one thread's scratch: a block of partial sums [LINEAR_ROW_BLOCK][np]
 * and a block of rows widened to f32 (whole rows, for quantized formats), or
 * what the 16-bit-activation products take (quant.h). */
static inline size_t linear_rows_scratch_floats(int n, int64_t cols) {
    size_t f32 = (size_t)LINEAR_ROW_BLOCK * ((size_t)gemm_xt_lanes(n) + (size_t)(cols > LINEAR_KC ? cols : LINEAR_KC));
    size_t x16 = quant_x16_scratch_floats(n, cols);
    return f32 > x16 ? f32 : x16;
}

/* The transposed vectors are read again for every block of rows, so a pass
 * over the rows takes only as many tokens as keep them within
 * LINEAR_XT_BYTES, in the last-level cache: 512 tokens of o_proj's 5,120 or
 * the dense MLP's 10,240 input columns are done in passes of 192 or 96.
 * Measured (one thread, bf16, 2048 x 10240): 125 GFLOP/s for 512 tokens in
 * one pass, 218 in passes of 96. */
#define LINEAR_XT_BYTES (4 << 20)

/* Tokens per pass of the batched product for n vectors of cols columns: a
 * multiple of 16 (no idle lanes but in the last pass), passes of equal size. */
static inline int linear_pass_tokens(int n, int64_t cols) {
    int64_t most = (int64_t)LINEAR_XT_BYTES / (int64_t)sizeof(float) / (cols > 0 ? cols : 1) / 16 * 16;
    if (most < 16) most = 16;
    if (n <= most) return n;
    int64_t passes = (n + most - 1) / most;
    return gemm_xt_lanes((int)((n + passes - 1) / passes));
}

/* Floats of the vectors transposed for gemm_f32_xt, for a pass of n vectors
 * of any width up to cols: the lanes of a pass (n, or fewer for wide inputs;
 * rounded up to 16) times the width, which stays within LINEAR_XT_BYTES
 * unless a single vector of 16 lanes is wider. */
static inline size_t linear_packed_floats(int n, int64_t cols) {
    size_t all = (size_t)gemm_xt_lanes(n) * (size_t)cols, cap = LINEAR_XT_BYTES / sizeof(float);
    if (cap < 16 * (size_t)cols) cap = 16 * (size_t)cols;
    size_t f32 = all < cap ? all : cap;
    /* or the same pass split into three bf16 parts for bf16 rows on AMX
       tiles (split_bf16_elems): 1.5x, and the columns rounded up to 32 */
    return f32 + f32 / 2 + 47 * (size_t)gemm_xt_lanes(n);
}

/* The same product on the calling thread only, rows [row0, row1);
 * row_scratch holds linear_rows_scratch_floats(n, cols) floats (also enough
 * for up to 3 quantized vectors: quant_act_bytes(cols) <= 4 * cols + 160
 * bytes), plus linear_packed_floats(n, cols) for 4 or more vectors. */
void linear_rows(const weight *w, int64_t row0, int64_t row1, const float *x, int n, size_t x_stride, float *y,
                 size_t y_stride, float *row_scratch);

/* y[t][c] += sum_{r<nrows} x[t][r] * W[row0 + r][c] (a product with the
 * transpose of a block of rows; used for the absorbed MLA query). */
void linear_transposed_rows(const weight *w, int64_t row0, int64_t nrows, const float *x, int n, size_t x_stride,
                            float *y, size_t y_stride, float *row_scratch);

/* A view of rows [row0, row0 + n) of w. */
weight weight_rows(const weight *w, int64_t row0, int64_t n);

#endif
