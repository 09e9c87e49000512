/* cli_bench.c — `glmlite bench`: llama-bench-style prompt-processing (ppN)
 * and generation (tgN) throughput, with the bytes of weights read per token,
 * the achieved bandwidth, and that as a fraction of the machine's read
 * bandwidth measured by the same command (a STREAM-style sum) right after
 * each generation run: the mean of the repetitions' ratios. --profile adds
 * the time by phase (profile.h), so the matmuls' own FLOP rate can be shown
 * next to the overall one. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <time.h>

#include "cli.h"
#include "glm.h"
#include "kernels.h"
#include "profile.h"
#include "threads.h"

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

typedef struct {
    const float *data;
    size_t per_task;
    float sums[64];
} read_job;

static void read_task(void *ctx, int task, int thread) {
    (void)thread;
    read_job *j = ctx;
    j->sums[task % 64] += kernels_active()->sum_f32(j->data + (size_t)task * j->per_task, (int64_t)j->per_task);
}

/* The machine's read bandwidth with the bench's threads: a 1 GiB buffer,
 * summed with full-width loads (what the decode kernels use). It is measured
 * right after each generation run, because on a shared host the bandwidth
 * left to us drifts within seconds. */
typedef struct {
    float *data;
    size_t n;
    thread_pool *pool;
} bandwidth_probe;

static int probe_open(bandwidth_probe *p, int n_threads) {
    p->n = ((size_t)1 << 30) / sizeof(float);
    p->data = aligned_alloc((size_t)2 << 20, p->n * sizeof *p->data);
    p->pool = p->data ? pool_new(n_threads) : NULL;
    if (!p->pool) { free(p->data); return -1; }
#ifdef MADV_HUGEPAGE
    /* 2 MB pages where the system grants them, as the weights get them
       (safetensors.c): 3-7% more bandwidth than 4 KB pages here */
    madvise(p->data, p->n * sizeof *p->data, MADV_HUGEPAGE);
#endif
    for (size_t i = 0; i < p->n; i++) p->data[i] = (float)(i & 1023);   /* touch every page */
    return 0;
}

/* GB/s: the best of 5 passes over the buffer. */
static double probe_run(bandwidth_probe *p) {
    int tasks = pool_size(p->pool) * 8;
    read_job j = {p->data, p->n / (size_t)tasks, {0}};
    double best = 0;
    for (int pass = 0; pass < 5; pass++) {
        double t0 = now_s();
        pool_run(p->pool, read_task, &j, tasks);
        double gbs = (double)j.per_task * (size_t)tasks * sizeof(float) / (now_s() - t0) / 1e9;
        if (gbs > best) best = gbs;
    }
    return best;
}

static void probe_close(bandwidth_probe *p) {
    pool_free(p->pool);
    free(p->data);
}

typedef struct {
    long iters;
    double flops[64];
    float sink[64];
} fma_job;

static void fma_task(void *ctx, int task, int thread) {
    (void)thread;
    fma_job *j = ctx;
    j->flops[task % 64] = kernels_active()->fma_probe(j->iters, &j->sink[task % 64]);
}

/* f32 FMA peak in GFLOP/s with n_threads threads (best of 3 half-second runs). */
static double measure_fma_peak(int n_threads) {
    thread_pool *pool = pool_new(n_threads);
    fma_job j = {20000000, {0}, {0}};
    double best = 0;
    for (int pass = 0; pass < 3; pass++) {
        double t0 = now_s();
        pool_run(pool, fma_task, &j, n_threads);
        double t = now_s() - t0, f = 0;
        for (int i = 0; i < n_threads && i < 64; i++) f += j.flops[i];
        if (f / t / 1e9 > best) best = f / t / 1e9;
    }
    pool_free(pool);
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

int cmd_bench(int argc, char **argv) {
    const char *dir = cli_default_model_dir(), *fmt = "md";
    int n_prompt = 512, n_gen = 128, threads = 0, reps = 3, depth = 0, kv_bf16 = 0, exact = 0, profile = 0;
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        int bad = 0;
        if (!strcmp(a, "-m")) bad = !(dir = v);
        else if (!strcmp(a, "-p")) bad = cli_parse_int(v, 1, 1 << 24, &n_prompt);
        else if (!strcmp(a, "-n")) bad = cli_parse_int(v, 1, 1 << 24, &n_gen);
        else if (!strcmp(a, "-t")) bad = cli_parse_int(v, 0, 4096, &threads);
        else if (!strcmp(a, "-r")) bad = cli_parse_int(v, 1, 1000, &reps);
        else if (!strcmp(a, "--depth")) bad = cli_parse_int(v, 0, 1 << 24, &depth);
        else if (!strcmp(a, "--cache-type")) bad = cli_parse_cache_type(v, &kv_bf16);
        else if (!strcmp(a, "-o")) bad = !(fmt = v) || (strcmp(v, "md") && strcmp(v, "json"));
        else if (!strcmp(a, "--exact-matmul")) { exact = 1; continue; }
        else if (!strcmp(a, "--profile")) { profile = 1; continue; }
        else { fprintf(stderr, "glmlite bench: unknown option '%s'\n", a); return 2; }
        if (bad) { fprintf(stderr, "glmlite bench: option '%s' needs a valid value\n", a); return 2; }
        i++;
    }
    char err[1024];
    glm_load_options lo = {.n_threads = threads, .exact_matmul = exact};
    glm_model *m = glm_model_load(dir, &lo, err, sizeof err);
    if (!m) { fprintf(stderr, "glmlite: %s\n", err); return 1; }
    threads = glm_model_threads(m);
    const glm_config *c = glm_model_config(m);
    glm_model_stats st;
    glm_model_get_stats(m, &st);
    int json = !strcmp(fmt, "json");
    int warm = n_prompt;   /* warm-up: the whole prefill (its scratch is touched once) and 4 decode steps */
    int n_ctx = n_prompt > depth + n_gen ? n_prompt : depth + n_gen;
    if (n_ctx < warm + 4) n_ctx = warm + 4;
    glm_session_options so = {.n_ctx = n_ctx, .kv_bf16 = kv_bf16};
    glm_session *s = glm_session_new(m, &so, err, sizeof err);
    if (!s) { fprintf(stderr, "glmlite: %s\n", err); glm_model_free(m); return 1; }
    int n_tok = n_prompt > depth ? n_prompt : depth;
    int32_t *ids = malloc((size_t)(n_tok + 1) * sizeof *ids);
    float *logits = malloc((size_t)c->vocab_size * sizeof *logits);
    unsigned seed = 1;
    int id_range = c->vocab_size < 1000 ? c->vocab_size : 1000;
    for (int i = 0; i <= n_tok; i++) ids[i] = (int32_t)((seed = seed * 1103515245u + 12345u) >> 8) % id_range;
    double *pp = calloc((size_t)reps, sizeof *pp), *tg = calloc((size_t)reps, sizeof *tg), *tg0 = calloc((size_t)reps, sizeof *tg0);
    double *bw = calloc((size_t)reps, sizeof *bw), rss_gb = 0;
    bandwidth_probe probe = {0};
    double pp_phase[PROF_PHASES] = {0}, tg_phase[PROF_PHASES] = {0}, pp_time = 0, tg_time = 0, ph[PROF_PHASES];
    /* warm-up: fault the mapped weights and the session's scratch in, let the caches settle */
    int rc = glm_forward(s, ids, warm, logits, 0, err, sizeof err);
    for (int i = 0; i < 4 && !rc; i++) rc = glm_forward(s, &ids[i % n_tok], 1, logits, 0, err, sizeof err);
    prof_enable(profile);
    for (int r = 0; r < reps && !rc; r++) {
        glm_session_truncate(s, 0);
        prof_reset();
        double t0 = now_s();
        rc = glm_forward(s, ids, n_prompt, logits, 0, err, sizeof err);
        double dt = now_s() - t0;
        pp_time += dt;
        pp[r] = n_prompt / dt;
        prof_get(ph);
        for (int i = 0; i < PROF_PHASES; i++) pp_phase[i] += ph[i];
        glm_session_truncate(s, 0);
        if (depth) {
            /* the same generation at depth 0 in the same repetition, so the
               ratio compares runs a moment apart (the host's load drifts) */
            t0 = now_s();
            for (int i = 0; i < n_gen && !rc; i++) rc = glm_forward(s, &ids[i % n_tok], 1, logits, 0, err, sizeof err);
            tg0[r] = n_gen / (now_s() - t0);
            glm_session_truncate(s, 0);
            if (!rc) rc = glm_forward(s, ids, depth, logits, 0, err, sizeof err);
        }
        prof_reset();
        t0 = now_s();
        for (int i = 0; i < n_gen && !rc; i++) rc = glm_forward(s, &ids[i % n_tok], 1, logits, 0, err, sizeof err);
        dt = now_s() - t0;
        tg_time += dt;
        tg[r] = n_gen / dt;
        prof_get(ph);
        for (int i = 0; i < PROF_PHASES; i++) tg_phase[i] += ph[i];
        if (r == 0 && !rc) {
            struct rusage ru;   /* before the probe's 1 GiB buffer, which is not the model's */
            getrusage(RUSAGE_SELF, &ru);
            rss_gb = ru.ru_maxrss * 1024.0 / 1e9;
            if (probe_open(&probe, threads)) {
                snprintf(err, sizeof err, "cannot allocate the 1 GiB bandwidth probe");
                rc = 1;
            }
        }
        if (!rc) bw[r] = probe_run(&probe);
    }
    prof_enable(0);
    if (rc) fprintf(stderr, "glmlite: %s\n", err);
    else {
        double pm, ps, tm, ts, t0m, t0s, qm, qs, bwm, bws, fm, fs;
        mean_sd(pp, reps, &pm, &ps);
        mean_sd(tg, reps, &tm, &ts);
        mean_sd(tg0, reps, &t0m, &t0s);
        for (int r = 0; r < reps; r++) tg0[r] = tg[r] / tg0[r];   /* each repetition's depth ratio */
        mean_sd(tg0, reps, &qm, &qs);
        /* weights once per token, plus the cached latents the attention reads (mean over the run) */
        double kv_row = (double)st.kv_bytes_per_token / (kv_bf16 ? 2 : 1);
        double bytes = (double)st.active_weight_bytes + kv_row * (depth + n_gen / 2.0);
        mean_sd(bw, reps, &bwm, &bws);
        for (int r = 0; r < reps; r++) bw[r] = bytes * tg[r] / 1e9 / bw[r];   /* each repetition's bandwidth fraction */
        mean_sd(bw, reps, &fm, &fs);
        /* prefill flops in the weight matrices: every layer for every token, the
           LM head for the last token only (attention's own products not counted) */
        double head = (double)c->vocab_size * c->hidden_size;
        double gflops = 2.0 * ((st.active_weight_elems - head) * n_prompt + head) / n_prompt * pm / 1e9;
        double peak = measure_fma_peak(threads);
        char pp_name[32], tg_name[48], kernels[64];
        kernels_describe(kernels, sizeof kernels);
        snprintf(pp_name, sizeof pp_name, "pp%d", n_prompt);
        if (depth) snprintf(tg_name, sizeof tg_name, "tg%d @ d%d", n_gen, depth);
        else snprintf(tg_name, sizeof tg_name, "tg%d", n_gen);
        if (json) {
            printf("{\"test\":\"%s\",\"n_prompt\":%d,\"threads\":%d,\"kernels\":\"%s\",\"avg_ts\":%.3f,\"stddev_ts\":%.3f,"
                   "\"gflops\":%.2f,\"machine_gflops\":%.2f,\"flops_fraction\":%.3f,\"model_bytes\":%zu,\"peak_rss_bytes\":%.0f}\n",
                   pp_name, n_prompt, threads, kernels, pm, ps, gflops, peak, gflops / peak, st.weight_bytes, rss_gb * 1e9);
            printf("{\"test\":\"tg%d\",\"n_gen\":%d,\"depth\":%d,\"threads\":%d,\"kernels\":\"%s\",\"avg_ts\":%.3f,"
                   "\"stddev_ts\":%.3f,\"bytes_per_token\":%.0f,\"gbs\":%.3f,\"machine_gbs\":%.3f,\"bandwidth_fraction\":%.3f,"
                   "\"bandwidth_fraction_stddev\":%.3f,\"peak_rss_bytes\":%.0f}\n",
                   n_gen, n_gen, depth, threads, kernels, tm, ts, bytes, bytes * tm / 1e9, bwm, fm, fs, rss_gb * 1e9);
            if (depth)
                printf("{\"test\":\"tg%d\",\"n_gen\":%d,\"depth\":0,\"threads\":%d,\"avg_ts\":%.3f,\"stddev_ts\":%.3f,"
                       "\"depth_ratio\":%.4f,\"depth_ratio_stddev\":%.4f}\n",
                       n_gen, n_gen, threads, t0m, t0s, qm, qs);
        } else {
            printf("model: %s (%s, %d layers), weights %.2f GB, read per token %.3f GB, threads %d, kernels %s\n", dir,
                   c->model_type, c->num_hidden_layers, st.weight_bytes / 1e9, st.active_weight_bytes / 1e9, threads, kernels);
            printf("machine (same threads): read bandwidth %.1f ± %.1f GB/s (after each generation run), f32 FMA peak %.1f "
                   "GFLOP/s\n\n", bwm, bws, peak);
            printf("| test | t/s | GFLOP/s | of FMA peak | GB/s | of machine GB/s |\n|---|---|---|---|---|---|\n");
            printf("| %s | %.2f ± %.2f | %.1f | %.0f%% | | |\n", pp_name, pm, ps, gflops, 100 * gflops / peak);
            printf("| %s | %.2f ± %.2f | | | %.2f | %.0f%% ± %.0f%% |\n", tg_name, tm, ts, bytes * tm / 1e9, 100 * fm, 100 * fs);
            if (depth)
                printf("| tg%d (depth 0, same repetitions) | %.2f ± %.2f | | | | |\n\ndepth %d / depth 0: %.3f ± %.3f "
                       "(the mean of each repetition's ratio)\n",
                       n_gen, t0m, t0s, depth, qm, qs);
            printf("\npeak RSS %.2f GB (mapped weights are counted as they are touched)\n", rss_gb);
        }
        if (profile) {
            /* the matmul phase does exactly the flops counted above (weights x tokens) */
            double mm_gflops = 2.0 * ((st.active_weight_elems - head) * n_prompt + head) * reps / pp_phase[PROF_MATMUL] / 1e9;
            const char *names[PROF_PHASES] = {"matmul", "attention", "moe routing"};
            double pp_other = pp_time, tg_other = tg_time;
            for (int i = 0; i < PROF_PHASES; i++) pp_other -= pp_phase[i], tg_other -= tg_phase[i];
            if (json) {
                printf("{\"test\":\"profile\",\"pp_s\":{");
                for (int i = 0; i < PROF_PHASES; i++) printf("\"%s\":%.4f,", names[i], pp_phase[i] / reps);
                printf("\"other\":%.4f},\"tg_ms_per_token\":{", pp_other / reps);
                for (int i = 0; i < PROF_PHASES; i++) printf("\"%s\":%.3f,", names[i], 1e3 * tg_phase[i] / reps / n_gen);
                printf("\"other\":%.3f},\"matmul_gflops\":%.2f,\"matmul_flops_fraction\":%.3f}\n", 1e3 * tg_other / reps / n_gen,
                       mm_gflops, mm_gflops / peak);
            } else {
                printf("\nprofile (wall time by phase, mean per rep):\n| phase | %s s | share | %s ms/token | share |\n|---|---|---|---|---|\n",
                       pp_name, tg_name);
                for (int i = 0; i <= PROF_PHASES; i++) {
                    double a = i < PROF_PHASES ? pp_phase[i] : pp_other, b = i < PROF_PHASES ? tg_phase[i] : tg_other;
                    printf("| %s | %.3f | %.0f%% | %.2f | %.0f%% |\n", i < PROF_PHASES ? names[i] : "other", a / reps,
                           100 * a / pp_time, 1e3 * b / reps / n_gen, 100 * b / tg_time);
                }
                printf("%s matmuls alone: %.1f GFLOP/s, %.0f%% of FMA peak\n", pp_name, mm_gflops, 100 * mm_gflops / peak);
            }
        }
    }
    free(pp);
    free(tg);
    free(tg0);
    free(bw);
    if (probe.pool) probe_close(&probe);
    free(ids);
    free(logits);
    glm_session_free(s);
    glm_model_free(m);
    return rc ? 1 : 0;
}
