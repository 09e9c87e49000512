/* cli_bench.c — `glmlite bench`: llama-bench-style prompt-processing (ppN)
 * and generation (tgN) throughput, with the bytes of weights read per token,
 * the achieved bandwidth, and that as a fraction of the machine's read
 * bandwidth measured by the same command (a STREAM-style sum) right after
 * each generation run: the mean of the repetitions' ratios. Prefill's
 * GFLOP/s are set against an FMA probe taken right after its runs. As in
 * llama-bench, -p, -n, -t and --depth take comma-separated lists and every
 * combination runs (0 in -p or -n skips that kind of test); rows are printed
 * as their tests finish. --profile adds the time by phase (profile.h), so the
 * matmuls' own FLOP rate can be shown next to the overall one. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <time.h>

#include "buf.h"
#include "cli.h"
#include "glm.h"
#include "kernels.h"
#include "profile.h"
#include "threads.h"

#define LIST_MAX 16   /* values per list option */

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

typedef struct {
    const float *data;
    size_t per_task;
    float *sums;                 /* one per task: tasks never share a slot, whatever the thread count */
} read_job;

static void read_task(void *ctx, int task, int thread) {
    (void)thread;
    read_job *j = ctx;
    j->sums[task] += kernels_active()->sum_f32(j->data + (size_t)task * j->per_task, (int64_t)j->per_task);
}

/* The machine's read bandwidth: a 1 GiB buffer, summed with full-width
 * loads (what the decode kernels use) by the bench's threads. It is measured
 * right after each generation run, because on a shared host the bandwidth
 * left to us drifts within seconds. The buffer is touched before the model
 * loads, so the peak RSS less its size is the model's. */
typedef struct {
    float *data;
    size_t n;
} bandwidth_probe;

static int probe_open(bandwidth_probe *p) {
    p->n = ((size_t)1 << 30) / sizeof(float);
    p->data = aligned_alloc((size_t)2 << 20, p->n * sizeof *p->data);
    if (!p->data) return -1;
#ifdef MADV_HUGEPAGE
    /* 2 MB pages where the system grants them, as the weights get them
       (safetensors.c): 3-7% more bandwidth than 4 KB pages here */
    madvise(p->data, p->n * sizeof *p->data, MADV_HUGEPAGE);
#endif
    for (size_t i = 0; i < p->n; i++) p->data[i] = (float)(i & 1023);   /* touch every page */
    return 0;
}

/* GB/s: the best of 5 passes over the buffer. */
static double probe_run(const bandwidth_probe *p, thread_pool *pool) {
    int tasks = pool_size(pool) * 8;
    read_job j = {p->data, p->n / (size_t)tasks, calloc((size_t)tasks, sizeof(float))};
    double best = 0;
    if (!j.sums) return 0;
    for (int pass = 0; pass < 5; pass++) {
        double t0 = now_s();
        pool_run(pool, read_task, &j, tasks);
        double gbs = (double)j.per_task * (size_t)tasks * sizeof(float) / (now_s() - t0) / 1e9;
        if (gbs > best) best = gbs;
    }
    free(j.sums);
    return best;
}

typedef struct {
    long iters;
    double *flops;               /* one per task (thread): more than 64 threads were counted as 64 */
    float *sink;
} fma_job;

static void fma_task(void *ctx, int task, int thread) {
    (void)thread;
    fma_job *j = ctx;
    j->flops[task] = kernels_active()->fma_probe(j->iters, &j->sink[task]);
}

/* f32 FMA peak in GFLOP/s with the pool's threads: the best of 3 runs of 2e8 FMAs a thread (~25 ms
 * with AVX-512 here). */
static double measure_fma_peak(thread_pool *pool) {
    int n_threads = pool_size(pool);
    fma_job j = {20000000, calloc((size_t)n_threads, sizeof(double)), calloc((size_t)n_threads, sizeof(float))};
    double best = 0;
    for (int pass = 0; pass < 3 && j.flops && j.sink; pass++) {
        double t0 = now_s();
        pool_run(pool, fma_task, &j, n_threads);
        double t = now_s() - t0, f = 0;
        for (int i = 0; i < n_threads; i++) f += j.flops[i];
        if (f / t / 1e9 > best) best = f / t / 1e9;
    }
    free(j.flops);
    free(j.sink);
    return best;
}

static void mean_sd(const double *v, int n, double *mean, double *sd) {
    double m = 0, s = 0;
    for (int i = 0; i < n; i++) m += v[i];
    m /= n;
    for (int i = 0; i < n; i++) s += (v[i] - m) * (v[i] - m);
    *mean = m;
    *sd = n > 1 ? sqrt(s / (n - 1)) : 0;
}

typedef struct {
    int n, v[LIST_MAX];
} int_list;

/* "512" or "128,512": every value in [lo, hi]; 0, or -1 if malformed. */
static int parse_list(const char *s, int lo, int hi, int_list *out) {
    if (!s) return -1;
    int_list l = {0};
    for (;;) {
        char item[16];
        size_t len = strcspn(s, ",");
        if (len == 0 || len >= sizeof item || l.n == LIST_MAX) return -1;
        memcpy(item, s, len);
        item[len] = 0;
        if (cli_parse_int(item, lo, hi, &l.v[l.n++])) return -1;
        if (!s[len]) break;
        s += len + 1;
    }
    *out = l;
    return 0;
}

static int list_max(const int_list *l) {
    int m = 0;
    for (int i = 0; i < l->n; i++) m = l->v[i] > m ? l->v[i] : m;
    return m;
}

typedef struct {
    const char *dir;
    int_list prompt, gen, depth, threads;
    int reps, kv_bf16, exact, profile, json;
} bench_args;

/* One loaded model (one thread count) and what its tests share. */
typedef struct {
    const bench_args *a;
    glm_session *s;
    const glm_config *c;
    glm_model_stats st;
    int threads;
    thread_pool *pool;              /* the probes' threads, as many as the model's */
    const bandwidth_probe *probe;   /* NULL without generation tests */
    const int32_t *ids;
    int n_ids;
    float *logits;
    char kernels[64];
    buf *notes;                     /* depth ratios and profiles, printed after the table */
    char err[512];
} bench_run;

/* The process's peak resident memory less the bandwidth probe's buffer
 * (probe NULL when there is none). */
static double peak_rss_bytes(const bandwidth_probe *probe) {
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return ru.ru_maxrss * 1024.0 - (probe ? (double)(probe->n * sizeof(float)) : 0);
}

/* glm_forward of n ids, decode steps when step is set (n forwards of one id). */
static int forward(bench_run *b, int n, int step) {
    int rc = 0;
    if (!step) return glm_forward(b->s, b->ids, n, b->logits, 0, b->err, sizeof b->err);
    for (int i = 0; i < n && !rc; i++) rc = glm_forward(b->s, &b->ids[i % b->n_ids], 1, b->logits, 0, b->err, sizeof b->err);
    return rc;
}

/* The time by phase, summed over the repetitions, as a JSON member or a
 * markdown table in the notes; per run for prefill, per token for generation. */
static void print_profile(bench_run *b, const char *name, const double *phase, double total, int reps, int per_token) {
    static const char *names[PROF_PHASES] = {"matmul", "attention", "moe routing"};
    double other = total, unit = per_token ? 1e3 / per_token : 1;
    for (int i = 0; i < PROF_PHASES; i++) other -= phase[i];
    if (b->a->json) {
        printf(",\"profile_%s\":{", per_token ? "ms_per_token" : "s");
        for (int i = 0; i < PROF_PHASES; i++) printf("\"%s\":%.4f,", names[i], phase[i] * unit / reps);
        printf("\"other\":%.4f}", other * unit / reps);
        return;
    }
    buf_printf(b->notes, "\nprofile of %s, %d threads (wall time by phase, mean per repetition):\n| phase | %s | share |\n|---|---|---|\n",
               name, b->threads, per_token ? "ms/token" : "s");
    for (int i = 0; i <= PROF_PHASES; i++) {
        double t = i < PROF_PHASES ? phase[i] : other;
        buf_printf(b->notes, "| %s | %.3f | %.0f%% |\n", i < PROF_PHASES ? names[i] : "other", t * unit / reps, 100 * t / total);
    }
}

/* ppN: n_prompt tokens in one forward from an empty cache. */
static int test_prompt(bench_run *b, int n_prompt) {
    int reps = b->a->reps, rc = 0;
    double *ts = calloc((size_t)reps, sizeof *ts), phase[PROF_PHASES] = {0}, ph[PROF_PHASES], total = 0;
    if (!ts) return snprintf(b->err, sizeof b->err, "out of memory"), 1;
    for (int r = 0; r < reps && !rc; r++) {
        glm_session_truncate(b->s, 0);
        prof_reset();
        double t0 = now_s();
        rc = forward(b, n_prompt, 0);
        double dt = now_s() - t0;
        total += dt;
        ts[r] = n_prompt / dt;
        prof_get(ph);
        for (int i = 0; i < PROF_PHASES; i++) phase[i] += ph[i];
    }
    if (!rc) {
        double m, sd, peak = measure_fma_peak(b->pool);
        mean_sd(ts, reps, &m, &sd);
        /* flops in the weight matrices: every layer for every token, the LM
           head for the last token only (attention's own products not counted) */
        double head = (double)b->c->vocab_size * b->c->hidden_size;
        double flops = 2.0 * ((b->st.active_weight_elems - head) * n_prompt + head);
        double gflops = flops / n_prompt * m / 1e9, mm_gflops = flops * reps / phase[PROF_MATMUL] / 1e9;
        char name[32];
        snprintf(name, sizeof name, "pp%d", n_prompt);
        if (b->a->json) {
            printf("{\"test\":\"%s\",\"n_prompt\":%d,\"n_gen\":0,\"n_depth\":0,\"threads\":%d,\"kernels\":\"%s\",\"avg_ts\":%.3f,"
                   "\"stddev_ts\":%.3f,\"gflops\":%.2f,\"machine_gflops\":%.2f,\"flops_fraction\":%.3f,\"model_bytes\":%zu,"
                   "\"peak_rss_bytes\":%.0f",
                   name, n_prompt, b->threads, b->kernels, m, sd, gflops, peak, gflops / peak, b->st.weight_bytes, peak_rss_bytes(b->probe));
            if (b->a->profile) {
                print_profile(b, name, phase, total, reps, 0);
                printf(",\"matmul_gflops\":%.2f,\"matmul_flops_fraction\":%.3f", mm_gflops, mm_gflops / peak);
            }
            printf("}\n");
        } else {
            printf("| %s | %d | %.2f ± %.2f | %.1f | %.0f%% of %.0f | | |\n", name, b->threads, m, sd, gflops, 100 * gflops / peak, peak);
            if (b->a->profile) {
                print_profile(b, name, phase, total, reps, 0);
                buf_printf(b->notes, "%s matmuls alone: %.1f GFLOP/s, %.0f%% of FMA peak\n", name, mm_gflops, 100 * mm_gflops / peak);
            }
        }
        fflush(stdout);
    }
    free(ts);
    return rc;
}

/* tgN: n_gen decode steps after depth tokens of context; with a depth, the
 * same steps at depth 0 in each repetition too, so the ratio compares runs a
 * moment apart (the host's load drifts). */
static int test_gen(bench_run *b, int n_gen, int depth) {
    int reps = b->a->reps, rc = 0;
    double *tg = calloc((size_t)reps * 3, sizeof *tg), *tg0 = tg + reps, *bw = tg + 2 * reps;
    double phase[PROF_PHASES] = {0}, ph[PROF_PHASES], total = 0;
    if (!tg) return snprintf(b->err, sizeof b->err, "out of memory"), 1;
    for (int r = 0; r < reps && !rc; r++) {
        glm_session_truncate(b->s, 0);
        if (depth) {
            double t0 = now_s();
            rc = forward(b, n_gen, 1);
            tg0[r] = n_gen / (now_s() - t0);
            glm_session_truncate(b->s, 0);
            if (!rc) rc = forward(b, depth, 0);
        }
        prof_reset();
        double t0 = now_s();
        if (!rc) rc = forward(b, n_gen, 1);
        double dt = now_s() - t0;
        total += dt;
        tg[r] = n_gen / dt;
        prof_get(ph);
        for (int i = 0; i < PROF_PHASES; i++) phase[i] += ph[i];
        if (!rc) bw[r] = probe_run(b->probe, b->pool);
    }
    if (!rc) {
        double m, sd, m0, sd0, bwm, bws, fm, fs, qm, qs;
        mean_sd(tg, reps, &m, &sd);
        mean_sd(tg0, reps, &m0, &sd0);
        mean_sd(bw, reps, &bwm, &bws);
        /* weights once per token, plus the cached latents the attention reads (mean over the run) */
        double kv_row = (double)b->st.kv_bytes_per_token / (b->a->kv_bf16 ? 2 : 1);
        double bytes = (double)b->st.active_weight_bytes + kv_row * (depth + n_gen / 2.0);
        for (int r = 0; r < reps; r++) bw[r] = bytes * tg[r] / 1e9 / bw[r];   /* each repetition's bandwidth fraction */
        mean_sd(bw, reps, &fm, &fs);
        for (int r = 0; r < reps; r++) tg0[r] = depth ? tg[r] / tg0[r] : 1;   /* each repetition's depth ratio */
        mean_sd(tg0, reps, &qm, &qs);
        char name[48];
        if (depth) snprintf(name, sizeof name, "tg%d @ d%d", n_gen, depth);
        else snprintf(name, sizeof name, "tg%d", n_gen);
        if (b->a->json) {
            printf("{\"test\":\"tg%d\",\"n_prompt\":0,\"n_gen\":%d,\"n_depth\":%d,\"depth\":%d,\"threads\":%d,\"kernels\":\"%s\","
                   "\"avg_ts\":%.3f,\"stddev_ts\":%.3f,\"bytes_per_token\":%.0f,\"gbs\":%.3f,\"machine_gbs\":%.3f,"
                   "\"bandwidth_fraction\":%.3f,\"bandwidth_fraction_stddev\":%.3f,\"row_prefetch\":\"%s\",\"peak_rss_bytes\":%.0f",
                   n_gen, n_gen, depth, depth, b->threads, b->kernels, m, sd, bytes, bytes * m / 1e9, bwm, fm, fs,
                   kernels_prefetch.nta ? "nta" : "t1", peak_rss_bytes(b->probe));
            if (b->a->profile) print_profile(b, name, phase, total, reps, n_gen);
            printf("}\n");
            if (depth)
                printf("{\"test\":\"tg%d\",\"n_prompt\":0,\"n_gen\":%d,\"n_depth\":0,\"depth\":0,\"threads\":%d,\"avg_ts\":%.3f,"
                       "\"stddev_ts\":%.3f,\"depth_ratio\":%.4f,\"depth_ratio_stddev\":%.4f}\n",
                       n_gen, n_gen, b->threads, m0, sd0, qm, qs);
        } else {
            printf("| %s | %d | %.2f ± %.2f | | | %.2f | %.0f%% ± %.0f%% of %.1f |\n", name, b->threads, m, sd, bytes * m / 1e9,
                   100 * fm, 100 * fs, bwm);
            if (depth) {
                printf("| tg%d (depth 0, same repetitions) | %d | %.2f ± %.2f | | | | |\n", n_gen, b->threads, m0, sd0);
                buf_printf(b->notes, "\ntg%d, %d threads, depth %d / depth 0: %.3f ± %.3f (the mean of each repetition's ratio)\n",
                           n_gen, b->threads, depth, qm, qs);
            }
            if (b->a->profile) print_profile(b, name, phase, total, reps, n_gen);
        }
        fflush(stdout);
    }
    free(tg);
    return rc;
}

/* Every test with one thread count: the model loaded with them, one session
 * large enough for all of them, warmed up first. */
static int bench_threads(const bench_args *a, int threads, const bandwidth_probe *probe, buf *notes, int print_header) {
    char err[1024];
    glm_load_options lo = {.n_threads = threads, .exact_matmul = a->exact};
    glm_model *m = glm_model_load(a->dir, &lo, err, sizeof err);
    if (!m) return fprintf(stderr, "glmlite: %s\n", err), 1;
    bench_run b = {.a = a, .c = glm_model_config(m), .threads = glm_model_threads(m), .probe = probe, .notes = notes};
    glm_model_get_stats(m, &b.st);
    kernels_describe(b.kernels, sizeof b.kernels);
    int max_p = list_max(&a->prompt), max_n = list_max(&a->gen), max_d = max_n ? list_max(&a->depth) : 0;
    /* warm-up: the longest prefill (its scratch is touched once), at least 256 tokens so that
       nearly every expert's pages are mapped before a generation test, and 4 decode steps */
    int warm = max_p > 256 ? max_p : 256;
    int n_ctx = max_d + max_n > warm + 4 ? max_d + max_n : warm + 4;
    b.n_ids = max_d > warm ? max_d : warm;
    int32_t *ids = malloc((size_t)b.n_ids * sizeof *ids);
    b.logits = malloc((size_t)b.c->vocab_size * sizeof *b.logits);
    b.pool = pool_new(b.threads);
    glm_session_options so = {.n_ctx = n_ctx, .kv_bf16 = a->kv_bf16};
    b.s = ids && b.logits && b.pool ? glm_session_new(m, &so, b.err, sizeof b.err) : NULL;
    int rc = 1;
    if (b.s) {
        unsigned seed = 1;
        int id_range = b.c->vocab_size < 1000 ? b.c->vocab_size : 1000;
        for (int i = 0; i < b.n_ids; i++) ids[i] = (int32_t)((seed = seed * 1103515245u + 12345u) >> 8) % id_range;
        b.ids = ids;
        if (print_header && !a->json)
            printf("model: %s (%s, %d layers), weights %.2f GB, read per token %.3f GB, kernels %s, rows prefetched %s\n\n"
                   "| test | threads | t/s | GFLOP/s | of FMA peak | GB/s | of machine GB/s |\n|---|---|---|---|---|---|---|\n",
                   a->dir, b.c->model_type, b.c->num_hidden_layers, b.st.weight_bytes / 1e9, b.st.active_weight_bytes / 1e9,
                   b.kernels, kernels_prefetch.nta ? "non-temporally (nta)" : "into L2 (t1)");
        /* fault the mapped weights and the session's scratch in, let the caches settle */
        rc = forward(&b, warm, 0) || forward(&b, 4, 1);
        prof_enable(a->profile);
        for (int i = 0; i < a->prompt.n && !rc; i++)
            if (a->prompt.v[i]) rc = test_prompt(&b, a->prompt.v[i]);
        for (int i = 0; i < a->gen.n && !rc; i++)
            for (int d = 0; d < a->depth.n && !rc && a->gen.v[i]; d++) rc = test_gen(&b, a->gen.v[i], a->depth.v[d]);
        prof_enable(0);
    } else if (!b.err[0]) {
        snprintf(b.err, sizeof b.err, "out of memory");
    }
    if (rc) fprintf(stderr, "glmlite: %s\n", b.err);
    glm_session_free(b.s);
    if (b.pool) pool_free(b.pool);
    free(ids);
    free(b.logits);
    glm_model_free(m);
    return rc;
}

static void bench_usage(FILE *f) {
    fputs("usage: glmlite bench [-m DIR] [-p 512] [-n 128] [-t THREADS] [-r 3] [-d|--depth 0] [-o md|json|jsonl]\n"
          "                     [--cache-type f32|bf16] [--exact-matmul] [--profile]\n"
          "  -p, -n, -t and -d take comma-separated lists (every combination runs; 0 in -p or -n skips that\n"
          "  kind of test). ppN: prefill of N tokens, GFLOP/s against an FMA probe; tgN: N decode steps, GB/s\n"
          "  of weights and cache read against a read-bandwidth probe; with a depth, after that many tokens\n"
          "  of context, beside depth 0 in the same repetitions. json: one object per test and line.\n",
          f);
}

int cmd_bench(int argc, char **argv) {
    bench_args a = {.dir = cli_default_model_dir(), .prompt = {1, {512}}, .gen = {1, {128}}, .depth = {1, {0}},
                    .threads = {1, {0}}, .reps = 3};
    for (int i = 0; i < argc; i++) {
        const char *o = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        int bad = 0;
        if (!strcmp(o, "-h") || !strcmp(o, "--help")) { bench_usage(stdout); return 0; }
        if (!strcmp(o, "-m")) bad = !(a.dir = v);
        else if (!strcmp(o, "-p")) bad = parse_list(v, 0, 1 << 24, &a.prompt);
        else if (!strcmp(o, "-n")) bad = parse_list(v, 0, 1 << 24, &a.gen);
        else if (!strcmp(o, "-t")) bad = parse_list(v, 0, 4096, &a.threads);
        else if (!strcmp(o, "-r")) bad = cli_parse_int(v, 1, 1000, &a.reps);
        else if (!strcmp(o, "--depth") || !strcmp(o, "-d")) bad = parse_list(v, 0, 1 << 24, &a.depth);
        else if (!strcmp(o, "--cache-type")) bad = cli_parse_cache_type(v, &a.kv_bf16);
        else if (!strcmp(o, "-o")) {   /* json: one object per line (llama-bench's jsonl) */
            bad = !v || (strcmp(v, "md") && strcmp(v, "json") && strcmp(v, "jsonl"));
            a.json = !bad && strcmp(v, "md");
        }
        else if (!strcmp(o, "--exact-matmul")) { a.exact = 1; continue; }
        else if (!strcmp(o, "--profile")) { a.profile = 1; continue; }
        else { fprintf(stderr, "glmlite bench: unknown option '%s'\n", o); bench_usage(stderr); return 2; }
        if (bad) { fprintf(stderr, "glmlite bench: option '%s' needs a valid value\n", o); return 2; }
        i++;
    }
    if (!list_max(&a.prompt) && !list_max(&a.gen)) {
        fprintf(stderr, "glmlite bench: -p and -n are both 0: no test to run\n");
        return 2;
    }
    if ((double)list_max(&a.depth) + list_max(&a.gen) > 1 << 24) {
        fprintf(stderr, "glmlite bench: --depth plus -n exceeds %d tokens\n", 1 << 24);
        return 2;
    }
    bandwidth_probe probe = {0};
    if (list_max(&a.gen) && probe_open(&probe)) {
        fprintf(stderr, "glmlite: cannot allocate the 1 GiB bandwidth probe\n");
        return 1;
    }
    buf notes = {0};
    int rc = 0;
    for (int t = 0; t < a.threads.n && !rc; t++) rc = bench_threads(&a, a.threads.v[t], probe.data ? &probe : NULL, &notes, t == 0);
    if (!rc && !a.json) {
        if (notes.len) fputs(notes.data, stdout);
        printf("\npeak RSS %.2f GB (mapped weights are counted as they are touched)\n", peak_rss_bytes(probe.data ? &probe : NULL) / 1e9);
    }
    buf_free(&notes);
    free(probe.data);
    return rc;
}
