/* cli.c — main(): the glmlite subcommands. Parses flags, calls the engine
 * through glm.h, prints. */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "glm.h"

typedef struct {
    const char *model_dir;
    const char *tokens;
    const char *out;
    int threads;
    int n_ctx;
    int n_predict;
} cli_opts;

static void usage(FILE *f) {
    fputs("usage: glmlite COMMAND [options]\n"
          "  info     -m DIR                       config, weight formats, memory needs\n"
          "  logits   -m DIR --tokens 1,2,3 -o F   raw little-endian f32 logits [n_tokens][vocab]\n"
          "  run      -m DIR --tokens 1,2,3 -n N   greedy generation from token ids\n"
          "options: -m DIR (default: the demo model), -t THREADS, -c CTX, -n MAX_TOKENS\n",
          f);
}

static const char *default_model_dir(void) {
    static char path[PATH_MAX + 32];
    char exe[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (n <= 0) return "models/demo";
    exe[n] = 0;
    char *slash = strrchr(exe, '/');
    if (slash) *slash = 0;
    snprintf(path, sizeof path, "%s/models/demo", exe);
    return path;
}

static int parse_int(const char *s, int *out) {
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || end == s || *end || v < INT_MIN || v > INT_MAX) return -1;
    *out = (int)v;
    return 0;
}

/* "1,2,3" -> ids; NULL on a malformed list. */
static int32_t *parse_tokens(const char *s, int *n) {
    int cap = 16, k = 0;
    int32_t *ids = malloc((size_t)cap * sizeof *ids);
    const char *p = s;
    while (*p) {
        char *end;
        errno = 0;
        long v = strtol(p, &end, 10);
        if (end == p || errno || v < 0 || v > INT32_MAX || (*end && *end != ',')) { free(ids); return NULL; }
        if (k == cap) ids = realloc(ids, (size_t)(cap *= 2) * sizeof *ids);
        ids[k++] = (int32_t)v;
        p = *end ? end + 1 : end;
    }
    if (!k) { free(ids); return NULL; }
    *n = k;
    return ids;
}

static glm_model *load(const cli_opts *o) {
    char err[1024];
    glm_load_options lo = {o->threads};
    glm_model *m = glm_model_load(o->model_dir, &lo, err, sizeof err);
    if (!m) fprintf(stderr, "glmlite: %s\n", err);
    return m;
}

static int cmd_info(const cli_opts *o) {
    glm_model *m = load(o);
    if (!m) return 1;
    const glm_config *c = glm_model_config(m);
    glm_model_stats st;
    glm_model_get_stats(m, &st);
    int dense = 0;
    for (int i = 0; i < c->num_hidden_layers; i++) dense += c->layer_is_dense[i];
    static const char *fmt_names[] = {"f32", "f16", "bf16", "affine", "nvfp4", "mxfp4", "mxfp8"};
    static const char *score[] = {"sigmoid", "softmax"};
    static const char *topk[] = {"noaux_tc", "greedy", "group_limited_greedy"};
    printf("model_type        %s\n", c->model_type);
    printf("layers            %d (%d dense, %d MoE)\n", c->num_hidden_layers, dense, c->num_hidden_layers - dense);
    printf("hidden            %d, heads %d, vocab %d\n", c->hidden_size, c->num_attention_heads, c->vocab_size);
    printf("attention         MLA: q_lora_rank %d, kv_lora_rank %d, nope %d, rope %d, v %d, scale %.6g\n", c->q_lora_rank,
           c->kv_lora_rank, c->qk_nope_head_dim, c->qk_rope_head_dim, c->v_head_dim, c->softmax_scale);
    printf("rope              theta %g, %s pairs%s\n", c->rope_theta, c->rope_interleave ? "adjacent" : "rotate-half",
           c->yarn ? ", YaRN" : "");
    printf("moe               %d routed (top %d, %s, %s, groups %d/%d), %d shared, width %d, scale %g\n", c->n_routed_experts,
           c->num_experts_per_tok, score[c->scoring_func], topk[c->topk_method], c->topk_group, c->n_group,
           c->n_shared_experts, c->moe_intermediate_size, c->routed_scaling_factor);
    printf("eos ids          ");
    for (int i = 0; i < c->n_eos; i++) printf(" %d", c->eos_ids[i]);
    printf("\n");
    printf("weights           %.3f GB", st.weight_bytes / 1e9);
    for (int f = 0; f < 7; f++)
        if (st.bytes_by_format[f]) printf(", %s %.3f GB", fmt_names[f], st.bytes_by_format[f] / 1e9);
    printf("\n");
    printf("read per token    %.3f GB (non-expert weights + %d routed + shared experts)\n", st.active_weight_bytes / 1e9,
           c->num_experts_per_tok);
    printf("kv cache          %zu bytes per token (%d x %d floats per layer)\n", st.kv_bytes_per_token,
           c->kv_lora_rank + c->qk_rope_head_dim, 1);
    int ctx = o->n_ctx > 0 ? o->n_ctx : 4096;
    printf("memory at -c %d  %.3f GB mapped weights + %.3f GB KV cache\n", ctx, st.weight_bytes / 1e9,
           (double)st.kv_bytes_per_token * ctx / 1e9);
    glm_model_free(m);
    return 0;
}

static int cmd_logits(const cli_opts *o) {
    if (!o->tokens || !o->out) { fputs("glmlite logits: needs --tokens and -o\n", stderr); return 2; }
    int n;
    int32_t *ids = parse_tokens(o->tokens, &n);
    if (!ids) { fputs("glmlite: --tokens must be a comma-separated list of token ids\n", stderr); return 2; }
    glm_model *m = load(o);
    if (!m) { free(ids); return 1; }
    char err[1024];
    glm_session_options so = {o->n_ctx > 0 ? o->n_ctx : n, 0};
    glm_session *s = glm_session_new(m, &so, err, sizeof err);
    int V = glm_model_config(m)->vocab_size;
    float *logits = s ? malloc((size_t)n * V * sizeof *logits) : NULL;
    int rc = 1;
    if (!s) fprintf(stderr, "glmlite: %s\n", err);
    else if (!logits) fputs("glmlite: out of memory\n", stderr);
    else if (glm_forward(s, ids, n, logits, 1, err, sizeof err)) fprintf(stderr, "glmlite: %s\n", err);
    else {
        FILE *f = fopen(o->out, "wb");
        if (!f || fwrite(logits, sizeof *logits, (size_t)n * V, f) != (size_t)n * V) fprintf(stderr, "glmlite: cannot write %s\n", o->out);
        else rc = 0;
        if (f && fclose(f) != 0) rc = 1;
    }
    free(logits);
    free(ids);
    glm_session_free(s);
    glm_model_free(m);
    return rc;
}

static int argmax(const float *x, int n) {
    int b = 0;
    for (int i = 1; i < n; i++) if (x[i] > x[b]) b = i;
    return b;
}

static int cmd_run_tokens(const cli_opts *o) {
    int n;
    int32_t *ids = parse_tokens(o->tokens, &n);
    if (!ids) { fputs("glmlite: --tokens must be a comma-separated list of token ids\n", stderr); return 2; }
    glm_model *m = load(o);
    if (!m) { free(ids); return 1; }
    const glm_config *c = glm_model_config(m);
    char err[1024];
    int n_predict = o->n_predict > 0 ? o->n_predict : 32;
    glm_session_options so = {o->n_ctx > 0 ? o->n_ctx : n + n_predict, 0};
    glm_session *s = glm_session_new(m, &so, err, sizeof err);
    float *logits = malloc((size_t)c->vocab_size * sizeof *logits);
    int rc = 0;
    if (!s || !logits || glm_forward(s, ids, n, logits, 0, err, sizeof err)) {
        fprintf(stderr, "glmlite: %s\n", s ? err : "cannot create session");
        rc = 1;
    }
    for (int i = 0; !rc && i < n_predict; i++) {
        int32_t next = argmax(logits, c->vocab_size);
        printf("%s%d", i ? " " : "", next);
        fflush(stdout);
        int stop = 0;
        for (int k = 0; k < c->n_eos; k++) stop |= next == c->eos_ids[k];
        if (stop || i + 1 == n_predict) break;
        if (glm_forward(s, &next, 1, logits, 0, err, sizeof err)) { fprintf(stderr, "\nglmlite: %s\n", err); rc = 1; }
    }
    if (!rc) printf("\n");
    free(logits);
    free(ids);
    glm_session_free(s);
    glm_model_free(m);
    return rc;
}

int main(int argc, char **argv) {
    if (argc < 2 || !strcmp(argv[1], "-h") || !strcmp(argv[1], "--help") || !strcmp(argv[1], "help")) {
        usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    const char *cmd = argv[1];
    cli_opts o = {0};
    for (int i = 2; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        int bad = 0;
        if (!strcmp(a, "-m") || !strcmp(a, "--model")) { if (!v) bad = 1; else o.model_dir = v; i++; }
        else if (!strcmp(a, "--tokens")) { if (!v) bad = 1; else o.tokens = v; i++; }
        else if (!strcmp(a, "-o")) { if (!v) bad = 1; else o.out = v; i++; }
        else if (!strcmp(a, "-t") || !strcmp(a, "--threads")) { bad = !v || parse_int(v, &o.threads) || o.threads < 1; i++; }
        else if (!strcmp(a, "-c") || !strcmp(a, "--ctx-size")) { bad = !v || parse_int(v, &o.n_ctx) || o.n_ctx < 1; i++; }
        else if (!strcmp(a, "-n") || !strcmp(a, "--n-predict")) { bad = !v || parse_int(v, &o.n_predict) || o.n_predict < 0; i++; }
        else { fprintf(stderr, "glmlite: unknown option '%s'\n", a); usage(stderr); return 2; }
        if (bad) { fprintf(stderr, "glmlite: option '%s' needs a valid value\n", a); return 2; }
    }
    if (!o.model_dir) o.model_dir = default_model_dir();
    if (!strcmp(cmd, "info")) return cmd_info(&o);
    if (!strcmp(cmd, "logits")) return cmd_logits(&o);
    if (!strcmp(cmd, "run") && o.tokens) return cmd_run_tokens(&o);
    fprintf(stderr, "glmlite: unknown command '%s'\n", cmd);
    usage(stderr);
    return 2;
}
