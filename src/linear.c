/* linear.c — matrix products over weights in any format.
 *
 * 1-3 vectors (decode): plain formats dot straight on the stored row;
 * quantized formats go to quant.c, which decodes from the packed codes without
 * a full-size copy, and unless the weight asks for f32 activations the vectors
 * are first quantized to int8 blocks for the integer kernels (quant.h, "int8
 * activations").
 * 4 or more vectors (prefill): the vectors are transposed once per pass
 * (tokens in vector lanes; wide inputs in passes of fewer tokens), and
 * gemm_f32_xt multiplies them (rows other than f32 widened or decoded a
 * block at a time), with no sums across lanes. Each output is one FMA chain
 * in column order, so prefill and decode agree to rounding, not bit for bit.
 * Quantized rows, where the CPU has AVX-512 VNNI or AVX-VNNI, take the
 * vectors quantized to int16 instead (quant.h, "16-bit activations"; mxfp8
 * rows where bf16 pairs are on, kernels.h: rounded to bf16) and pair
 * products at twice the FMA rate. On AMX tiles, bf16 rows and the other
 * mxfp8 rows take the vectors split exactly into bf16 parts (takes_split). */
#include "linear.h"

#include "kernels.h"
#include "quant.h"

#include <string.h>

static int is_plain(const weight *w) { return w->format == WF_F32 || w->format == WF_F16 || w->format == WF_BF16; }

static float dot_plain(const kernel_table *k, const weight *w, int64_t r, int64_t row1, const float *x) {
    const uint8_t *row = w->data + (size_t)r * w->row_stride;
    size_t row_bytes = (size_t)w->cols * (w->format == WF_F32 ? 4 : 2);
    /* lines requested kernels_prefetch.plain_bytes ahead, while that stays inside rows [.., row1) */
    size_t dist = (size_t)kernels_prefetch.plain_bytes;
    const void *ahead = (size_t)(row1 - r) * w->row_stride >= dist + row_bytes ? row + dist : NULL;
    switch (w->format) {
    case WF_F32: return k->dot_f32((const float *)row, x, w->cols, ahead);
    case WF_F16: return k->dot_f16((const uint16_t *)row, x, w->cols, ahead);
    default: return k->dot_bf16((const uint16_t *)row, x, w->cols, ahead);
    }
}

/* Row r as f32: the stored row itself for f32, else widened into tmp. */
static const float *row_as_f32(const kernel_table *k, const weight *w, int64_t r, float *tmp) {
    const uint8_t *row = w->data + (size_t)r * w->row_stride;
    switch (w->format) {
    case WF_F32: return (const float *)row;
    case WF_F16: k->f16_to_f32((const uint16_t *)row, tmp, w->cols); return tmp;
    case WF_BF16: k->bf16_to_f32((const uint16_t *)row, tmp, w->cols); return tmp;
    default: weight_row_f32(w, r, tmp); return tmp;
    }
}

/* Vectors below this count use row dot products straight from the stored
 * (or packed) weights; from here on, the batched product (linear_rows_xt)
 * multiplies each block of rows with all vectors at once. */
#define GEMM_MIN_VECTORS 4

/* Rows whose values bf16 holds exactly, with 4 or more vectors on AMX tiles
 * (kernels.h, gemm_bf16_split): the vectors split into bf16 parts once per
 * pass instead of transposed. bf16 rows are multiplied as stored; mxfp8
 * rows without a global scale (each value an E4M3 code's, 4 significant
 * bits, times a power of two: exact in bf16 down to 2^-126) are decoded a
 * block of rows at a time (linear_rows_split), unless they take bf16 pairs
 * (quant.h, "16-bit activations"), which come first. */
static int takes_split(const kernel_table *k, const weight *w) {
    if (w->exact_act || !k->gemm_bf16_split) return 0;
    return w->format == WF_BF16 || (w->format == WF_MXFP8 && quant_global(w) == 1.0f);
}

/* Rows [row0, row1) times the split vectors: bf16 rows in place, others
 * decoded per LINEAR_ROW_BLOCK rows into bf16 in scratch (exactly: the
 * decoded f32 values hold bf16's precision). */
static void linear_rows_split(const kernel_table *k, const weight *w, int64_t row0, int64_t row1, const uint16_t *xs,
                              int n, float *y, size_t y_stride, float *scratch) {
    if (w->format == WF_BF16) {
        k->gemm_bf16_split((const uint16_t *)(w->data + (size_t)row0 * w->row_stride), w->row_stride / 2,
                           (int)(row1 - row0), w->cols, xs, n, y + row0, y_stride);
        return;
    }
    float *row = scratch;
    uint16_t *block = (uint16_t *)(scratch + w->cols);   /* [LINEAR_ROW_BLOCK][cols] */
    for (int64_t r = row0; r < row1; r += LINEAR_ROW_BLOCK) {
        int rows = (int)(row1 - r < LINEAR_ROW_BLOCK ? row1 - r : LINEAR_ROW_BLOCK);
        for (int i = 0; i < rows; i++) {
            weight_row_f32(w, r + i, row);
            k->round_bf16(row, block + (size_t)i * w->cols, w->cols);
        }
        k->gemm_bf16_split(block, (size_t)w->cols, rows, w->cols, xs, n, y + r, y_stride);
    }
}

/* Decode with int8 activations: each vector quantized once into scratch. */
static int use_q8(const weight *w, int n) { return !w->exact_act && n < GEMM_MIN_VECTORS && quant_act_supported(w); }

static void prepare_q8(const weight *w, const float *x, int n, size_t x_stride, void *scratch, quant_act *a) {
    size_t bytes = quant_act_bytes(w->cols);
    for (int t = 0; t < n; t++) quant_act_prepare(w, x + (size_t)t * x_stride, (uint8_t *)scratch + (size_t)t * bytes, &a[t]);
}

/* Columns [c0, c1) of the vectors transposed for gemm_f32_xt: xt[c * np + t]
 * = x[t][c], zero for n <= t < np (np = n rounded up to 16). In 16 x 16
 * blocks: 16 vectors' runs of 16 columns in, 16 lines of xt out. */
static void pack_columns(const float *x, int n, size_t x_stride, int64_t c0, int64_t c1, float *xt) {
    size_t np = (size_t)gemm_xt_lanes(n);
    for (size_t t0 = 0; t0 < np; t0 += 16) {
        size_t tn = (size_t)n - t0 < 16 ? (size_t)n - t0 : 16;   /* vectors in this block; lanes past them are 0 */
        for (int64_t b = c0; b < c1; b += 16) {
            int64_t be = c1 - b < 16 ? c1 : b + 16;
            for (int64_t c = b; c < be; c++) {
                float *o = xt + (size_t)c * np + t0;
                const float *in = x + t0 * x_stride + c;
                for (size_t t = 0; t < tn; t++) o[t] = in[t * x_stride];
                for (size_t t = tn; t < 16; t++) o[t] = 0;
            }
        }
    }
}

/* The batched product from transposed vectors, per block of
 * LINEAR_ROW_BLOCK rows: partial sums in acc ([rows][np], the kernel's
 * layout), over blocks of LINEAR_KC columns. bf16 and f16 rows are widened
 * one column block at a time into a buffer that stays in L1 (widening whole
 * rows spills them to L2 and costs as much as the multiply for a few tokens;
 * widening bf16 inside the product, an AND per weight and token group, ran
 * at 43-47% of the FMA peak on an Intel Xeon, whose vector ALUs are its two
 * FMA ports); f32 rows are used in place; quantized rows are decoded whole
 * (their blocks need not align with the column blocks). */
static void linear_rows_xt(const kernel_table *k, const weight *w, int64_t row0, int64_t row1, const float *xt, int n,
                           float *y, size_t y_stride, float *row_scratch) {
    size_t np = (size_t)gemm_xt_lanes(n);
    int64_t cols = w->cols;
    float *acc = row_scratch, *wbuf = row_scratch + LINEAR_ROW_BLOCK * np;
    for (int64_t r = row0; r < row1; r += LINEAR_ROW_BLOCK) {
        int rows = (int)(row1 - r < LINEAR_ROW_BLOCK ? row1 - r : LINEAR_ROW_BLOCK);
        const float *block = wbuf;
        size_t stride = (size_t)cols;
        if (w->format == WF_F32) {
            block = (const float *)(w->data + (size_t)r * w->row_stride);
            stride = w->row_stride / sizeof(float);
        } else if (!is_plain(w)) {
            for (int i = 0; i < rows; i++) weight_row_f32(w, r + i, wbuf + (size_t)i * cols);
        }
        if (cols == 0) memset(acc, 0, (size_t)rows * np * sizeof *acc);
        for (int64_t c0 = 0; c0 < cols; c0 += LINEAR_KC) {
            int64_t kc = cols - c0 < LINEAR_KC ? cols - c0 : LINEAR_KC;
            const float *xc = xt + (size_t)c0 * np;
            if (w->format == WF_BF16 || w->format == WF_F16) {
                for (int i = 0; i < rows; i++) {
                    const uint16_t *src = (const uint16_t *)(w->data + (size_t)(r + i) * w->row_stride) + c0;
                    if (w->format == WF_BF16) k->bf16_to_f32(src, wbuf + (size_t)i * LINEAR_KC, kc);
                    else k->f16_to_f32(src, wbuf + (size_t)i * LINEAR_KC, kc);
                }
                k->gemm_f32_xt(wbuf, LINEAR_KC, rows, xc, n, kc, acc, c0 == 0);
            } else {
                k->gemm_f32_xt(block + c0, stride, rows, xc, n, kc, acc, c0 == 0);
            }
        }
        for (int t = 0; t < n; t++)
            for (int i = 0; i < rows; i++) y[(size_t)t * y_stride + r + i] = acc[(size_t)i * np + t];
    }
}

void linear_rows(const weight *w, int64_t row0, int64_t row1, const float *x, int n, size_t x_stride, float *y,
                 size_t y_stride, float *row_scratch) {
    const kernel_table *k = kernels_active();
    if (n < GEMM_MIN_VECTORS) {
        if (use_q8(w, n)) {
            quant_act a[GEMM_MIN_VECTORS];
            prepare_q8(w, x, n, x_stride, row_scratch, a);
            quant_matmul_rows_q8(w, row0, row1, a, n, y, y_stride);
            return;
        }
        if (!is_plain(w)) {
            quant_matmul_rows(w, row0, row1, x, n, x_stride, y, y_stride);
            return;
        }
        for (int t = 0; t < n; t++)
            for (int64_t r = row0; r < row1; r++) y[(size_t)t * y_stride + r] = dot_plain(k, w, r, row1, x + (size_t)t * x_stride);
        return;
    }
    float *xt = row_scratch + linear_rows_scratch_floats(n, w->cols);
    int pass = linear_pass_tokens(n, w->cols), x16 = quant_x16_group(w);
    for (int t0 = 0; t0 < n; t0 += pass) {
        int m = n - t0 < pass ? n - t0 : pass;
        if (x16) {
            quant_x16 a;
            quant_x16_layout(xt, m, w->cols, x16, &a);
            quant_x16_prepare(x + (size_t)t0 * x_stride, x_stride, 0, w->cols, &a);
            quant_x16_matmul_rows(w, row0, row1, &a, y + (size_t)t0 * y_stride, y_stride, row_scratch);
            continue;
        }
        if (takes_split(k, w)) {
            k->split_bf16(x + (size_t)t0 * x_stride, x_stride, m, w->cols, 0, w->cols, (uint16_t *)xt);
            linear_rows_split(k, w, row0, row1, (const uint16_t *)xt, m, y + (size_t)t0 * y_stride, y_stride, row_scratch);
            continue;
        }
        pack_columns(x + (size_t)t0 * x_stride, m, x_stride, 0, w->cols, xt);
        linear_rows_xt(k, w, row0, row1, xt, m, y + (size_t)t0 * y_stride, y_stride, row_scratch);
    }
}

void linear_transposed_rows(const weight *w, int64_t row0, int64_t nrows, const float *x, int n, size_t x_stride,
                            float *y, size_t y_stride, float *row_scratch) {
    const kernel_table *k = kernels_active();
    for (int64_t r = 0; r < nrows; r++) {
        const float *wr = row_as_f32(k, w, row0 + r, row_scratch);
        for (int t = 0; t < n; t++) k->axpy(x[(size_t)t * x_stride + r], wr, y + (size_t)t * y_stride, w->cols);
    }
}

/* Several weights' row tasks in one parallel section: SwiGLU's gate and up
 * over vectors quantized or transposed once for both, or (decode) the gate
 * and up, then the down, of every expert a token chose, so the threads
 * share out all of them with one start and one wait. 18: the gate and up
 * of 8 routed experts and a shared one. */
#define LINEAR_MAX_WEIGHTS 18

typedef struct {
    const weight *w[LINEAR_MAX_WEIGHTS];
    const float *x[LINEAR_MAX_WEIGHTS];
    float *y[LINEAR_MAX_WEIGHTS];
    int64_t rows_per_task[LINEAR_MAX_WEIGHTS];
    int tasks[LINEAR_MAX_WEIGHTS];
    int n;
    size_t x_stride, y_stride;
    float *scratch;
    size_t scratch_stride;
    const quant_act *act[LINEAR_MAX_WEIGHTS];   /* the quantized vectors per weight, or NULL */
    const float *xt;                            /* the transposed vectors (4 or more), or NULL */
    const uint16_t *split;                      /* or the vectors split for bf16 rows on AMX tiles, or NULL */
    const quant_x16 *x16;                       /* or the vectors quantized to int16 for every weight, or NULL */
} linear_job;

static void linear_task(void *ctx, int task, int thread) {
    linear_job *j = ctx;
    int k = 0;
    while (task >= j->tasks[k]) task -= j->tasks[k++];
    const weight *w = j->w[k];
    int64_t r0 = (int64_t)task * j->rows_per_task[k];
    int64_t r1 = r0 + j->rows_per_task[k];
    if (r1 > w->rows) r1 = w->rows;
    if (r0 >= r1) return;
    float *row_scratch = j->scratch + (size_t)thread * j->scratch_stride;
    if (j->act[k]) quant_matmul_rows_q8(w, r0, r1, j->act[k], j->n, j->y[k], j->y_stride);
    else if (j->x16) quant_x16_matmul_rows(w, r0, r1, j->x16, j->y[k], j->y_stride, row_scratch);
    else if (j->split) linear_rows_split(kernels_active(), w, r0, r1, j->split, j->n, j->y[k], j->y_stride, row_scratch);
    else if (j->xt) linear_rows_xt(kernels_active(), w, r0, r1, j->xt, j->n, j->y[k], j->y_stride, row_scratch);
    else linear_rows(w, r0, r1, j->x[k], j->n, j->x_stride, j->y[k], j->y_stride, row_scratch);
}

typedef struct {
    const float *x;
    int n;
    size_t x_stride;
    int64_t cols, cols_per_task;
    float *xt;
    const quant_x16 *x16;   /* quantize into this instead of transposing into xt */
    int split;              /* or split into bf16 parts there (split_bf16) */
} pack_job;

static void pack_task(void *ctx, int task, int thread) {
    (void)thread;
    pack_job *j = ctx;
    int64_t c0 = (int64_t)task * j->cols_per_task, c1 = c0 + j->cols_per_task;
    if (c1 > j->cols) c1 = j->cols;
    if (j->x16) quant_x16_prepare(j->x, j->x_stride, c0, c1, j->x16);
    else if (j->split) kernels_active()->split_bf16(j->x, j->x_stride, j->n, j->cols, c0, c1, (uint16_t *)j->xt);
    else pack_columns(j->x, j->n, j->x_stride, c0, c1, j->xt);
}

/* With 4 or more vectors: the key (group size, bf16 or int16) of the 16-bit
 * activations every weight of a call takes, or 0 when none takes them (f32
 * columns for all); -1 when they differ, so one quantized input cannot
 * serve them all. */
static int x16_key(int count, const weight *const *w) {
    int key = quant_x16_group(w[0]);
    for (int k = 1; k < count; k++)
        if (quant_x16_group(w[k]) != key) return -1;
    return key;
}

/* Two weights quantize one input the same way when they share its width,
 * format, bits and group size. */
static int same_act_layout(const weight *a, const weight *b) {
    return a->cols == b->cols && a->format == b->format && a->bits == b->bits && a->group_size == b->group_size;
}

/* count <= LINEAR_MAX_WEIGHTS weights, each with its own input x[k]; with 4
 * or more vectors all of them must be the same input (it is transposed once). */
static void linear_weights(thread_pool *pool, int count, const weight *const *w, const float *const *x, int n,
                           size_t x_stride, float *const *y, size_t y_stride, float *scratch, size_t scratch_stride,
                           float *packed) {
    int threads = pool_size(pool), all_tasks = 0;
    linear_job j = {.n = n, .x_stride = x_stride, .y_stride = y_stride, .scratch = scratch,
                    .scratch_stride = scratch_stride};
    /* A few tasks per thread balance uneven cores: 4 per thread for each
       weight, fewer when there are many (about 8 per thread in all); rows
       stay in blocks of 16 so a task's weights are contiguous and quantized
       blocks stay whole. */
    int64_t tasks = ((int64_t)threads * 8 + count - 1) / count;
    if (tasks > (int64_t)threads * 4) tasks = (int64_t)threads * 4;
    for (int k = 0; k < count; k++) {
        int64_t per = (w[k]->rows + tasks - 1) / tasks;
        per = (per + 15) & ~(int64_t)15;
        if (per < 16) per = 16;
        j.w[k] = w[k];
        j.x[k] = x[k];
        j.y[k] = y[k];
        j.rows_per_task[k] = per;
        j.tasks[k] = (int)((w[k]->rows + per - 1) / per);
        all_tasks += j.tasks[k];
    }
    if (n < GEMM_MIN_VECTORS) {
        /* int8 activations: each input quantized once here (after one another
           in the first thread's scratch; a weight with the same input and
           layout as the one before shares its vectors), shared by every task */
        quant_act a[LINEAR_MAX_WEIGHTS][GEMM_MIN_VECTORS];
        uint8_t *q = (uint8_t *)scratch;
        for (int k = 0; k < count; k++) {
            if (!use_q8(w[k], n)) continue;
            if (k > 0 && j.act[k - 1] && x[k] == x[k - 1] && same_act_layout(w[k], w[k - 1])) {
                j.act[k] = j.act[k - 1];
                continue;
            }
            prepare_q8(w[k], x[k], n, x_stride, q, a[k]);
            q += (size_t)n * quant_act_bytes(w[k]->cols);
            j.act[k] = a[k];
        }
        pool_run(pool, linear_task, &j, all_tasks);
        return;
    }
    /* 4+ vectors, in passes (linear_pass_tokens): each pass's vectors are
       transposed once (column ranges spread over the threads) and shared by
       every task */
    int64_t cols = w[0]->cols;
    int pass = linear_pass_tokens(n, cols), key = x16_key(count, w);
    if (key < 0) key = 0;   /* not from linear_many, which calls linear() for each such weight */
    int split = !key;
    for (int k = 0; k < count; k++) split &= takes_split(kernels_active(), w[k]);
    /* a task's columns: whole groups, 32-column tiles, or 16-column blocks */
    int64_t unit = key ? quant_x16_key_group(key) : split ? 32 : 16;
    int64_t cols_per = ((cols + threads - 1) / threads + unit - 1) / unit * unit;
    if (cols_per <= 0) cols_per = unit;
    for (int t0 = 0; t0 < n; t0 += pass) {
        int m = n - t0 < pass ? n - t0 : pass;
        quant_x16 a;
        pack_job pj = {x[0] + (size_t)t0 * x_stride, m, x_stride, cols, cols_per, packed, NULL, split};
        if (key) {
            quant_x16_layout(packed, m, cols, key, &a);
            pj.x16 = j.x16 = &a;
        } else if (split) {
            j.split = (const uint16_t *)packed;
        } else {
            j.xt = packed;
        }
        pool_run(pool, pack_task, &pj, (int)((cols + cols_per - 1) / cols_per));
        j.n = m;
        for (int k = 0; k < count; k++) j.y[k] = y[k] + (size_t)t0 * y_stride;
        pool_run(pool, linear_task, &j, all_tasks);
    }
}

void linear(thread_pool *pool, const weight *w, const float *x, int n, size_t x_stride, float *y, size_t y_stride,
            float *scratch, size_t scratch_stride, float *packed) {
    linear_weights(pool, 1, &w, &x, n, x_stride, &y, y_stride, scratch, scratch_stride, packed);
}

/* With 4 or more vectors the weights share one transposed (or quantized)
 * input only when they have one input (SwiGLU's gate and up) that they take
 * alike. */
static int one_input(int count, const weight *const *w, const float *const *x) {
    for (int k = 1; k < count; k++)
        if (x[k] != x[0] || w[k]->cols != w[0]->cols) return 0;
    return x16_key(count, w) >= 0;
}

void linear_many(thread_pool *pool, int count, const weight *const *w, const float *const *x, int n, size_t x_stride,
                 float *const *y, size_t y_stride, float *scratch, size_t scratch_stride, float *packed) {
    if (n >= GEMM_MIN_VECTORS && !one_input(count, w, x)) {
        for (int k = 0; k < count; k++) linear(pool, w[k], x[k], n, x_stride, y[k], y_stride, scratch, scratch_stride, packed);
        return;
    }
    for (int k0 = 0; k0 < count; k0 += LINEAR_MAX_WEIGHTS) {
        int m = count - k0 < LINEAR_MAX_WEIGHTS ? count - k0 : LINEAR_MAX_WEIGHTS;
        linear_weights(pool, m, w + k0, x + k0, n, x_stride, y + k0, y_stride, scratch, scratch_stride, packed);
    }
}

weight weight_rows(const weight *w, int64_t row0, int64_t n) {
    weight v = *w;
    v.rows = n;
    v.data = w->data + (size_t)row0 * w->row_stride;
    if (w->scales) v.scales = w->scales + (size_t)row0 * w->scale_stride;
    if (w->biases) v.biases = w->biases + (size_t)row0 * w->scale_stride;
    return v;
}
