/* cli_quant.c — the `quantize` and `perplexity` subcommands: flag parsing,
 * the progress bar and the printed report; the work is in quantize.c and
 * perplexity.c. */
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "buf.h"
#include "cli.h"
#include "glm.h"
#include "perplexity.h"
#include "quantize.h"
#include "tokenizer.h"

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

typedef struct {
    double start, last;
} bar_state;

static void progress_bar(void *ctx, size_t done, size_t total) {
    bar_state *b = ctx;
    double t = now_s();
    if (done < total && t - b->last < 0.1) return;
    b->last = t;
    double f = total ? (double)done / (double)total : 1;
    int w = 30, k = (int)(f * w + 0.5);
    char bar[64];
    for (int i = 0; i < w; i++) bar[i] = i < k ? '#' : '.';
    bar[w] = 0;
    double el = t - b->start;
    fprintf(stderr, "\r[%s] %5.1f%%  %.2f / %.2f GB  %.0fs%s", bar, 100 * f, done / 1e9, total / 1e9, el,
            done >= total ? "\n" : "");
    fflush(stderr);
}

static void quantize_usage(FILE *f) {
    fputs("usage: glmlite quantize -m IN_DIR -o OUT_DIR --type int4|int8|nvfp4|mxfp4|mxfp8 [--group-size G]\n"
          "  writes an mlx-lm-layout checkpoint (policy: docs/quantization.md); OUT_DIR must not exist\n",
          f);
}

int cmd_quantize(int argc, char **argv) {
    const char *in = NULL, *out = NULL, *type = NULL;
    quantize_options o = {0};
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i];
        int has = i + 1 < argc;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) { quantize_usage(stdout); return 0; }
        if ((!strcmp(a, "-m") || !strcmp(a, "--model")) && has) in = argv[++i];
        else if ((!strcmp(a, "-o") || !strcmp(a, "--out")) && has) out = argv[++i];
        else if ((!strcmp(a, "--type") || !strcmp(a, "-q")) && has) type = argv[++i];
        else if (!strcmp(a, "--group-size") && has) {
            if (cli_parse_int(argv[++i], 1, INT_MAX, &o.group_size)) {
                fprintf(stderr, "glmlite quantize: --group-size wants a positive integer, got '%s'\n", argv[i]);
                return 2;
            }
        } else {
            fprintf(stderr, "glmlite quantize: unexpected argument '%s'\n", a);
            quantize_usage(stderr);
            return 2;
        }
    }
    if (!in) in = cli_default_model_dir();
    if (!out || !type) { quantize_usage(stderr); return 2; }
    if (quant_type_parse(type, &o.type)) {
        fprintf(stderr, "glmlite quantize: unknown --type '%s' (int4, int8, nvfp4, mxfp4, mxfp8)\n", type);
        return 2;
    }
    bar_state bs = {now_s(), 0};
    if (isatty(2)) { o.progress = progress_bar; o.progress_ctx = &bs; }
    char err[2048];
    if (glm_quantize(in, out, &o, err, sizeof err)) {
        fprintf(stderr, "glmlite quantize: %s\n", err);
        return 1;
    }
    fprintf(stderr, "wrote %s (%s) in %.1fs\n", out, quant_type_name(o.type), now_s() - bs.start);
    return 0;
}

static void ppl_usage(FILE *f) {
    fputs("usage: glmlite perplexity -m DIR -f TEXT_FILE [-c CTX] [--kl-base BASE_DIR] [-t THREADS] [-b N] [--exact-matmul]\n"
          "  perplexity over non-overlapping windows of CTX tokens (default 512), scoring each window's\n"
          "  second half as llama-perplexity does; with --kl-base, also the KL divergence from the base\n"
          "  model's next-token distribution and the top-1 agreement. -b: tokens per forward call\n"
          "  (1-32, default 32); -b 1 measures the decode path (int8 activations on quantized models)\n",
          f);
}

typedef struct { int tty; } ppl_cli;

/* The base model is fed the model's token ids, so its tokenizer (when the base
 * directory has one) must tokenize the text to the same ids; the vocabulary
 * size check in ppl_run does not catch different merges or added tokens. */
static int check_base_tokens(const char *base_dir, const buf *text, const int32_t *ids, size_t n, char *err,
                             size_t errlen) {
    char path[4200];
    snprintf(path, sizeof path, "%s/tokenizer.json", base_dir);
    if (access(path, F_OK)) return 0;
    tokenizer *bt = tokenizer_load(path, err, errlen);
    if (!bt) return -1;
    int32_t *bids = NULL;
    size_t bn = 0;
    int rc = tokenizer_encode(bt, text->data, text->len, 0, &bids, &bn, err, errlen);
    tokenizer_free(bt);
    if (!rc) {
        size_t i = 0;
        while (i < n && i < bn && ids[i] == bids[i]) i++;
        if (i < n || i < bn) {
            snprintf(err, errlen,
                     "the base model's tokenizer (%.1024s/tokenizer.json) tokenizes the text differently from the "
                     "model's (%zu vs %zu tokens, first difference at token %zu)", base_dir, bn, n, i);
            rc = -1;
        }
    }
    free(bids);
    return rc;
}

static void ppl_progress(void *ctx, int w, int n, const ppl_stats *st) {
    ppl_cli *c = ctx;
    double pm, p = ppl_value(st, &pm);
    if (c->tty) fprintf(stderr, "\rwindow %d/%d  ppl %.4f", w, n, p);
    else fprintf(stderr, "[%d] %.4f\n", w, p);
    if (c->tty && w == n) fputc('\n', stderr);
}

int cmd_perplexity(int argc, char **argv) {
    const char *dir = NULL, *file = NULL, *base_dir = NULL;
    int n_ctx = 512, threads = 0, exact = 0, batch = PPL_MAX_BATCH;
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i];
        int has = i + 1 < argc;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) { ppl_usage(stdout); return 0; }
        if ((!strcmp(a, "-m") || !strcmp(a, "--model")) && has) dir = argv[++i];
        else if ((!strcmp(a, "-f") || !strcmp(a, "--file")) && has) file = argv[++i];
        else if (!strcmp(a, "--kl-base") && has) base_dir = argv[++i];
        else if (!strcmp(a, "--exact-matmul")) exact = 1;
        else if ((!strcmp(a, "-c") || !strcmp(a, "--ctx-size")) && has) {
            if (cli_parse_int(argv[++i], 3, INT_MAX, &n_ctx)) {   /* -c 2 scores no token (ppl 1.0) */
                fprintf(stderr, "glmlite perplexity: -c wants an integer >= 3, got '%s'\n", argv[i]);
                return 2;
            }
        } else if ((!strcmp(a, "-t") || !strcmp(a, "--threads")) && has) {
            if (cli_parse_int(argv[++i], 0, 4096, &threads)) {
                fprintf(stderr, "glmlite perplexity: -t wants a thread count, got '%s'\n", argv[i]);
                return 2;
            }
        } else if ((!strcmp(a, "-b") || !strcmp(a, "--batch-size")) && has) {
            if (cli_parse_int(argv[++i], 1, PPL_MAX_BATCH, &batch)) {
                fprintf(stderr, "glmlite perplexity: -b wants 1 to %d tokens, got '%s'\n", PPL_MAX_BATCH, argv[i]);
                return 2;
            }
        } else {
            fprintf(stderr, "glmlite perplexity: unexpected argument '%s'\n", a);
            ppl_usage(stderr);
            return 2;
        }
    }
    if (!dir) dir = cli_default_model_dir();
    if (!file) { ppl_usage(stderr); return 2; }
    char err[2048], path[4200];
    buf text = {0};
    if (buf_read_file(&text, file, (size_t)1 << 30)) {
        fprintf(stderr, "glmlite perplexity: cannot read %s\n", file);
        buf_free(&text);
        return 1;
    }
    snprintf(path, sizeof path, "%s/tokenizer.json", dir);
    tokenizer *tok = tokenizer_load(path, err, sizeof err);
    if (!tok) {
        fprintf(stderr, "glmlite perplexity: %s\n", err);
        buf_free(&text);
        return 1;
    }
    int32_t *ids = NULL;
    size_t n = 0;
    int rc = tokenizer_encode(tok, text.data, text.len, 0, &ids, &n, err, sizeof err);
    tokenizer_free(tok);
    if (!rc && base_dir) rc = check_base_tokens(base_dir, &text, ids, n, err, sizeof err);
    buf_free(&text);
    if (rc) { fprintf(stderr, "glmlite perplexity: %s\n", err); free(ids); return 1; }
    glm_load_options lo = {.n_threads = threads, .exact_matmul = exact};
    glm_model *m = glm_model_load(dir, &lo, err, sizeof err), *base = NULL;
    if (!m) { fprintf(stderr, "glmlite perplexity: %s\n", err); free(ids); return 1; }
    if (base_dir && !(base = glm_model_load(base_dir, &lo, err, sizeof err))) {
        fprintf(stderr, "glmlite perplexity: %s: %s\n", base_dir, err);
        glm_model_free(m);
        free(ids);
        return 1;
    }
    fprintf(stderr, "%zu tokens, %zu windows of %d\n", n, n / (size_t)n_ctx, n_ctx);
    ppl_stats st;
    ppl_cli pc = {isatty(2)};
    double t0 = now_s();
    rc = ppl_run(m, base, ids, n, n_ctx, batch, &st, ppl_progress, &pc, err, sizeof err);
    if (rc) {
        fprintf(stderr, "glmlite perplexity: %s\n", err);
    } else {
        double pm, p = ppl_value(&st, &pm);
        printf("model:       %s\n", dir);
        printf("tokens:      %zu scored (%zu windows of %d, second halves), %.1fs\n", st.n, n / (size_t)n_ctx, n_ctx,
               now_s() - t0);
        printf("perplexity:  %.4f +/- %.4f\n", p, pm);
        if (base) {
            double bpm, bp = ppl_base_value(&st, &bpm), kpm, kl = ppl_mean_kl(&st, &kpm);
            printf("base:        %s\n", base_dir);
            printf("base ppl:    %.4f +/- %.4f\n", bp, bpm);
            printf("ppl ratio:   %.4f\n", p / bp);
            printf("mean KL:     %.6f +/- %.6f\n", kl, kpm);
            printf("max KL:      %.6f\n", st.kl_max);
            printf("same top-1:  %.2f%% (%zu/%zu)\n", st.n_kl ? 100.0 * (double)st.top1_same / (double)st.n_kl : 0.0,
                   st.top1_same, st.n_kl);
        }
    }
    glm_model_free(m);
    glm_model_free(base);
    free(ids);
    return rc ? 1 : 0;
}
