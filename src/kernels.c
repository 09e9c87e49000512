/* kernels.c — scalar reference kernels: obvious loops, the truth every fast
 * variant is tested against. */
#include "kernels.h"

#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "tensor.h"

static float ref_dot_f32(const float *w, const float *x, int64_t n, const void *ahead) {
    (void)ahead;
    float s = 0;
    for (int64_t i = 0; i < n; i++) s += w[i] * x[i];
    return s;
}

static float ref_dot_bf16(const uint16_t *w, const float *x, int64_t n, const void *ahead) {
    (void)ahead;
    float s = 0;
    for (int64_t i = 0; i < n; i++) s += bf16_to_f32(w[i]) * x[i];
    return s;
}

static float ref_dot_f16(const uint16_t *w, const float *x, int64_t n, const void *ahead) {
    (void)ahead;
    float s = 0;
    for (int64_t i = 0; i < n; i++) s += f16_to_f32(w[i]) * x[i];
    return s;
}

static void ref_axpy(float a, const float *x, float *y, int64_t n) {
    for (int64_t i = 0; i < n; i++) y[i] += a * x[i];
}

static void ref_bf16_to_f32(const uint16_t *src, float *dst, int64_t n) {
    for (int64_t i = 0; i < n; i++) dst[i] = bf16_to_f32(src[i]);
}

static void ref_f16_to_f32(const uint16_t *src, float *dst, int64_t n) {
    for (int64_t i = 0; i < n; i++) dst[i] = f16_to_f32(src[i]);
}

static void ref_gemm_f32(const float *w, size_t w_stride, int rows, const float *x, size_t x_stride, int n, int64_t cols,
                         float *y, size_t y_stride, const void *ahead, size_t ahead_bytes) {
    (void)ahead, (void)ahead_bytes;   /* requests ahead: the vector kernels only */
    for (int t = 0; t < n; t++)
        for (int r = 0; r < rows; r++) y[(size_t)t * y_stride + r] = ref_dot_f32(w + (size_t)r * w_stride, x + (size_t)t * x_stride, cols, NULL);
}

static void ref_gemm_bf16(const uint16_t *w, size_t w_stride, int rows, const float *x, size_t x_stride, int n,
                          int64_t cols, float *y, size_t y_stride, const void *ahead, size_t ahead_bytes) {
    (void)ahead, (void)ahead_bytes;   /* requests ahead: the vector kernels only */
    for (int t = 0; t < n; t++)
        for (int r = 0; r < rows; r++)
            y[(size_t)t * y_stride + r] = ref_dot_bf16(w + (size_t)r * w_stride, x + (size_t)t * x_stride, cols, NULL);
}

static void ref_gemm_f32_xt(const float *w, size_t w_stride, int rows, const float *xt, int n, int64_t cols, float *acc,
                            int first) {
    size_t np = (size_t)gemm_xt_lanes(n);
    for (int r = 0; r < rows; r++)
        for (size_t t = 0; t < np; t++) {
            float a = first ? 0 : acc[r * np + t];
            for (int64_t c = 0; c < cols; c++) a = fmaf(w[(size_t)r * w_stride + c], xt[(size_t)c * np + t], a);
            acc[r * np + t] = a;
        }
}

static void ref_weighted_sum(const float *a, size_t as, int nh, const float *x, size_t xs, int n, int64_t cols,
                             float *y, size_t ys, const void *ahead, size_t ahead_bytes) {
    (void)ahead, (void)ahead_bytes;   /* requests ahead: the vector kernels only */
    for (int h = 0; h < nh; h++)
        for (int p = 0; p < n; p++) ref_axpy(a[(size_t)h * as + p], x + (size_t)p * xs, y + (size_t)h * ys, cols);
}

static void ref_weighted_sum_bf16(const float *a, size_t as, int nh, const uint16_t *x, size_t xs, int n, int64_t cols,
                                  float *y, size_t ys, const void *ahead, size_t ahead_bytes) {
    (void)ahead, (void)ahead_bytes;   /* requests ahead: the vector kernels only */
    for (int h = 0; h < nh; h++)
        for (int p = 0; p < n; p++)
            for (int64_t j = 0; j < cols; j++) y[(size_t)h * ys + j] += a[(size_t)h * as + p] * bf16_to_f32(x[(size_t)p * xs + j]);
}

static float ref_exp_sum(float *x, int64_t n, float scale, float m) {
    float s = 0;
    for (int64_t i = 0; i < n; i++) {
        x[i] = expf(x[i] * scale - m);
        s += x[i];
    }
    return s;
}

static float ref_max_f32(const float *x, int64_t n) {
    float m = x[0];
    for (int64_t i = 1; i < n; i++) m = x[i] > m ? x[i] : m;
    return m;
}

static void ref_swiglu(float *g, const float *u, int64_t n) {
    for (int64_t i = 0; i < n; i++) g[i] = silu(g[i]) * u[i];
}

static float ref_sum_f32(const float *x, int64_t n) {
    float s = 0;
    for (int64_t i = 0; i < n; i++) s += x[i];
    return s;
}

static double ref_fma_probe(long iters, float *sink) {
    float a[8] = {1, 2, 3, 4, 5, 6, 7, 8};
    for (long i = 0; i < iters; i++)
        for (int k = 0; k < 8; k++) a[k] = a[k] * 0.999999f + 1e-7f;
    for (int k = 0; k < 8; k++) *sink += a[k];
    return 16.0 * (double)iters;
}

static const kernel_table reference_table = {
    "reference", ref_dot_f32, ref_dot_bf16, ref_dot_f16, ref_axpy, ref_bf16_to_f32, ref_f16_to_f32, ref_gemm_f32,
    ref_gemm_bf16, ref_gemm_f32_xt, ref_weighted_sum, ref_weighted_sum_bf16, ref_exp_sum,
    ref_max_f32, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, ref_swiglu, ref_sum_f32, ref_fma_probe,
};

const kernel_table *kernels_reference(void) { return &reference_table; }

/* Chosen once, however many threads ask first (workers call this too). */
static const kernel_table *chosen_table;
static int chosen_avx512, chosen_amx;   /* the AVX-512 table is chosen, with AMX or without */
static pthread_once_t choose_once = PTHREAD_ONCE_INIT;

row_prefetch kernels_prefetch = {0, 6144, 3072};

static void choose_prefetch(void) {
#if defined(__x86_64__) || defined(__i386__)
    if (__builtin_cpu_is("amd")) kernels_prefetch = (row_prefetch){1, 6144, 6144};
#endif
    const char *env = getenv("GLMLITE_PREFETCH");
    if (env && strcmp(env, "nta") == 0) kernels_prefetch.nta = 1;
    if (env && strcmp(env, "t1") == 0) kernels_prefetch.nta = 0;
}

int kernels_decode_ahead(size_t block_bytes) {
    const char *env = getenv("GLMLITE_DECODE_AHEAD");
    if (env && (strcmp(env, "0") == 0 || strcmp(env, "1") == 0)) return env[0] == '1';
    long l2 = sysconf(_SC_LEVEL2_CACHE_SIZE);   /* 0 or -1 where Linux does not say */
    return l2 > 0 && 2 * block_bytes <= (size_t)l2 / 4 * 3;
}

static int bf16_pairs, bf16_dot_fast;

static void choose_bf16_pairs(void) {
    const char *env = getenv("GLMLITE_BF16_PAIRS");
    int amd = 0;
#if defined(__x86_64__) || defined(__i386__)
    amd = __builtin_cpu_is("amd");
#endif
    bf16_dot_fast = amd;
    bf16_pairs = amd || chosen_amx;
    if (env && (strcmp(env, "0") == 0 || strcmp(env, "1") == 0)) bf16_pairs = bf16_dot_fast = env[0] == '1';
    int has = chosen_table->gemm_bf16_bf16 != NULL;
    bf16_pairs = bf16_pairs && has;
    bf16_dot_fast = bf16_dot_fast && has;
}

static void choose_kernels(void) {
    const char *env = getenv("GLMLITE_KERNELS");
    int ref = env && strcmp(env, "reference") == 0, avx2 = env && strcmp(env, "avx2") == 0;
    int no_amx = ref || avx2 || (env && strcmp(env, "avx512") == 0);   /* then the tiles are not even asked for */
    const kernel_table *fast = no_amx ? NULL : kernels_amx();
    if (!fast && !ref && !avx2) fast = kernels_avx512();
    if (!fast && !ref) fast = kernels_avx2();
    chosen_table = fast ? fast : &reference_table;
    chosen_amx = !no_amx && fast && fast == kernels_amx();
    chosen_avx512 = fast && (chosen_amx || fast == kernels_avx512());
    choose_prefetch();
    choose_bf16_pairs();
}

const kernel_table *kernels_active(void) {
    pthread_once(&choose_once, choose_kernels);
    return chosen_table;
}

int kernels_using_avx512(void) {
    kernels_active();
    return chosen_avx512;
}

int kernels_using_amx(void) {
    kernels_active();
    return chosen_amx;
}

int kernels_bf16_pairs(void) {
    kernels_active();
    return bf16_pairs;
}

int kernels_bf16_dot_fast(void) {
    kernels_active();
    return bf16_dot_fast;
}

int kernels_set_bf16_pairs(int on) {
    int was = kernels_bf16_pairs();
    bf16_pairs = bf16_dot_fast = on && kernels_active()->gemm_bf16_bf16;
    return was;
}

void kernels_describe(char *buf, size_t n) {
    const char *name = kernels_active()->name;
    int avx512 = strcmp(name, "avx512") == 0;
#if defined(__x86_64__) || defined(__i386__)
    snprintf(buf, n, "%s%s%s%s%s", name, avx512 && __builtin_cpu_supports("avx512vnni") ? "+vnni" : "",
             avx512 && __builtin_cpu_supports("avx512bf16") ? "+bf16" : "",
             avx512 && __builtin_cpu_supports("avx512vbmi") ? "+vbmi" : "", chosen_amx ? "+amx" : "");
#else
    (void)avx512;
    snprintf(buf, n, "%s", name);
#endif
}

void rmsnorm(float *out, const float *x, const float *w, int n, float eps) {
    double ss = 0;   /* statistics in (at least) fp32, as the spec asks; double costs nothing here */
    for (int i = 0; i < n; i++) ss += (double)x[i] * x[i];
    float r = (float)(1.0 / sqrt(ss / n + eps));
    for (int i = 0; i < n; i++) out[i] = x[i] * r * (w ? w[i] : 1.0f);
}

void softmax_inplace(float *x, int n) {
    float m = -INFINITY;
    for (int i = 0; i < n; i++) m = x[i] > m ? x[i] : m;
    double s = 0;
    for (int i = 0; i < n; i++) {
        x[i] = expf(x[i] - m);
        s += x[i];
    }
    float inv = (float)(1.0 / s);
    for (int i = 0; i < n; i++) x[i] *= inv;
}

float silu(float x) { return x / (1.0f + expf(-x)); }

void rope_apply(float *x, int dim, const float *cos_t, const float *sin_t, int interleave) {
    int half = dim / 2;
    for (int i = 0; i < half; i++) {
        int a = interleave ? 2 * i : i;
        int b = interleave ? 2 * i + 1 : i + half;
        float x0 = x[a], x1 = x[b];
        x[a] = x0 * cos_t[i] - x1 * sin_t[i];
        x[b] = x0 * sin_t[i] + x1 * cos_t[i];
    }
}
