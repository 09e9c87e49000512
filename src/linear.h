/* linear.h — y = W x for a batch of activation vectors, split over the thread
 * pool by rows, for every weight format. */
#ifndef GLM_LINEAR_H
#define GLM_LINEAR_H

#include "kernels.h"
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
 * w->exact_act asks for f32 activations (the reference path). Plain weights
 * and 4+ vectors always use f32 activations. On the int8 path the first
 * per-thread buffer holds the quantized vectors (no task widens rows there). */
void linear(thread_pool *pool, const weight *w, const float *x, int n, size_t x_stride, float *y, size_t y_stride,
            float *scratch, size_t scratch_stride, float *packed);

/* Floats of one thread's scratch: a block of partial sums [LINEAR_ROW_BLOCK][np]
 * and a block of rows widened to f32 (whole rows, for quantized formats). */
static inline size_t linear_rows_scratch_floats(int n, int64_t cols) {
    return (size_t)LINEAR_ROW_BLOCK * ((size_t)gemm_xt_lanes(n) + (size_t)(cols > LINEAR_KC ? cols : LINEAR_KC));
}

/* Floats of the vectors transposed for gemm_f32_xt: n rounded up to 16
 * lanes, times cols. */
static inline size_t linear_packed_floats(int n, int64_t cols) { return (size_t)gemm_xt_lanes(n) * (size_t)cols; }

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
