/* cli.c — main(): the glmlite subcommands. Parses flags, calls the engine
 * through glm.h / generate.h / chat.h, prints. */
#include <errno.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "chat.h"
#include "cli.h"
#include "generate.h"
#include "glm.h"
#include "json.h"
#include "kernels.h"

typedef struct {
    const char *model_dir;
    const char *tokens;
    const char *prompt;
    char *prompt_file_text;  /* -f FILE: owns the prompt */
    const char *system;
    const char *tools_file;
    const char *out;
    int threads;
    int n_ctx;
    int n_predict;
    int think;               /* 1 on (default), 0 off */
    int no_special;          /* tokenize: do not match special-token literals */
    int kv_bf16;             /* --cache-type bf16 */
    int exact_matmul;        /* --exact-matmul: f32 activations for quantized weights */
    sampler_params sp;
    unsigned set;            /* which sampler fields the user gave */
} cli_opts;

enum { SET_TEMP = 1, SET_TOP_P = 2, SET_TOP_K = 4, SET_MIN_P = 8, SET_SEED = 16, SET_REPEAT = 32, SET_PRESENCE = 64,
       SET_FREQUENCY = 128 };

static void usage(FILE *f) {
    fputs("usage: glmlite COMMAND [options]\n"
          "  run       -p TEXT [--system TEXT] [--tools FILE] [--think|--no-think]   one chat turn, streamed\n"
          "  run       --tokens 1,2,3 -n N          greedy continuation of token ids\n"
          "  chat      [--system TEXT] [--tools FILE]   interactive chat (/think /nothink /clear /tool RESULT /quit)\n"
          "  tokenize  [--no-special]              text on stdin -> token ids\n"
          "  render                                JSON request on stdin -> prompt text\n"
          "  logits    --tokens 1,2,3 -o FILE      raw little-endian f32 logits [n_tokens][vocab]\n"
          "  info                                  config, weight formats, memory needs\n"
          "  serve     [--host H] [--port P] [--parallel N] [--api-key K]   OpenAI/Ollama HTTP server (serve -h)\n"
          "  bench     [-p 512] [-n 128] [-r 3] [-d|--depth D] [-o md|json] [--profile]   throughput, achieved\n"
          "            GB/s and GFLOP/s against the machine's measured bandwidth and FMA peak;\n"
          "            -p, -n, -t, -d take lists (128,512: every combination runs; 0 skips pp or tg)\n"
          "  quantize  -o OUT --type int4|int8|nvfp4|mxfp4|mxfp8 [--group-size G]   write an MLX-layout checkpoint\n"
          "  perplexity -f TEXT [-c CTX] [-b N] [--kl-base DIR]   perplexity, KL divergence against a base model\n"
          "common: -m DIR (default: models/demo beside the binary), -t THREADS, -c CTX, -n MAX_TOKENS,\n"
          "        --cache-type f32|bf16 (the latent KV cache; bf16 halves its memory)\n"
          "        --exact-matmul (quantized weights: f32 activations, not int8 blocks or bf16 in decode, int16 in prefill)\n"
          "sampling: --temp T --top-p P --top-k K --min-p P --seed S --repeat-penalty R\n"
          "          --presence-penalty P --frequency-penalty F (defaults: generation_config.json)\n",
          f);
}

const char *cli_default_model_dir(void) {
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

int cli_parse_cache_type(const char *v, int *kv_bf16) {
    if (!v || (strcmp(v, "f32") && strcmp(v, "bf16"))) return -1;
    *kv_bf16 = !strcmp(v, "bf16");
    return 0;
}

int cli_parse_int(const char *v, int lo, int hi, int *out) {
    if (!v) return -1;
    char *end;
    errno = 0;
    long x = strtol(v, &end, 10);
    if (errno || end == v || *end || x < lo || x > hi) return -1;
    *out = (int)x;
    return 0;
}

static int parse_float(const char *s, float *out) {
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || end == s || *end || v != v) return -1;
    *out = (float)v;
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

static glm_model *load_model(const cli_opts *o) {
    char err[1024];
    glm_load_options lo = {.n_threads = o->threads, .exact_matmul = o->exact_matmul};
    glm_model *m = glm_model_load(o->model_dir, &lo, err, sizeof err);
    if (!m) fprintf(stderr, "glmlite: %s\n", err);
    return m;
}

static int open_runtime(const cli_opts *o, glm_runtime *rt) {
    char err[1024];
    glm_load_options lo = {.n_threads = o->threads, .exact_matmul = o->exact_matmul};   /* run/chat honour --exact-matmul */
    if (runtime_open_opts(rt, o->model_dir, &lo, err, sizeof err)) {
        fprintf(stderr, "glmlite: %s\n", err);
        return -1;
    }
    return 0;
}

static char *read_stdin(size_t *len) {
    buf b = {0};
    char tmp[65536];
    size_t r;
    while ((r = fread(tmp, 1, sizeof tmp, stdin)) > 0) buf_append(&b, tmp, r);
    buf_reserve(&b, 0);
    *len = b.len;
    return buf_detach(&b);
}

/* ------------------------------------------------------------------ info */

static int cmd_info(const cli_opts *o) {
    glm_model *m = load_model(o);
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
    printf("\nweights           %.3f GB", st.weight_bytes / 1e9);
    for (int f = 0; f < 7; f++)
        if (st.bytes_by_format[f]) printf(", %s %.3f GB", fmt_names[f], st.bytes_by_format[f] / 1e9);
    printf("\nread per token    %.3f GB (non-expert weights, %d routed + shared experts, lm_head)\n",
           st.active_weight_bytes / 1e9, c->num_experts_per_tok);
    printf("kv cache          %zu bytes per token (%d layers x %d floats)\n", st.kv_bytes_per_token, c->num_hidden_layers,
           c->kv_lora_rank + c->qk_rope_head_dim);
    char kernels[64];
    kernels_describe(kernels, sizeof kernels);
    printf("kernels           %s (this CPU)\n", kernels);
    int ctx = o->n_ctx > 0 ? o->n_ctx : 4096;
    glm_session_options so = {.n_ctx = ctx, .kv_bf16 = o->kv_bf16};
    double kv = (double)st.kv_bytes_per_token * ctx / (o->kv_bf16 ? 2 : 1), scratch = (double)glm_session_bytes(m, &so) - kv;
    printf("memory at -c %-5d %.3f GB mapped weights + %.3f GB KV cache (%s)\n"
           "                  + %.3f GB scratch (%d threads) = %.3f GB\n",
           ctx, st.weight_bytes / 1e9, kv / 1e9, o->kv_bf16 ? "bf16" : "f32; half with --cache-type bf16", scratch / 1e9,
           glm_model_threads(m), (st.weight_bytes + kv + scratch) / 1e9);
    glm_model_free(m);
    return 0;
}

/* ---------------------------------------------------------------- logits */

static int cmd_logits(const cli_opts *o) {
    if (!o->tokens || !o->out) { fputs("glmlite logits: needs --tokens and -o\n", stderr); return 2; }
    int n;
    int32_t *ids = parse_tokens(o->tokens, &n);
    if (!ids) { fputs("glmlite: --tokens must be a comma-separated list of token ids\n", stderr); return 2; }
    glm_model *m = load_model(o);
    if (!m) { free(ids); return 1; }
    char err[1024];
    glm_session_options so = {.n_ctx = o->n_ctx > 0 ? o->n_ctx : n, .kv_bf16 = o->kv_bf16};
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

/* ------------------------------------------------------- tokenize/render */

static int cmd_tokenize(const cli_opts *o) {
    char path[PATH_MAX + 32], err[1024];
    snprintf(path, sizeof path, "%s/tokenizer.json", o->model_dir);
    tokenizer *t = tokenizer_load(path, err, sizeof err);
    if (!t) { fprintf(stderr, "glmlite: %s: %s\n", path, err); return 1; }
    size_t len, n;
    /* -p/-f text (llama-tokenize's way), else stdin */
    char *text = o->prompt ? strdup(o->prompt) : read_stdin(&len);
    if (o->prompt) len = strlen(text);
    int32_t *ids = NULL;
    int rc = tokenizer_encode(t, text, len, !o->no_special, &ids, &n, err, sizeof err);
    if (rc) fprintf(stderr, "glmlite: %s\n", err);
    for (size_t i = 0; !rc && i < n; i++) printf("%s%d", i ? " " : "", ids[i]);
    if (!rc) printf("\n");
    free(ids);
    free(text);
    tokenizer_free(t);
    return rc ? 1 : 0;
}

static int cmd_render(void) {
    size_t len;
    char *text = read_stdin(&len);
    char err[1024];
    json_doc *d = json_parse(text, len, err, sizeof err);
    int rc = 1;
    buf out = {0};
    if (!d) fprintf(stderr, "glmlite: %s\n", err);
    else if (chat_render(json_root(d), &out, err, sizeof err)) fprintf(stderr, "glmlite: %s\n", err);
    else {
        fwrite(out.data, 1, out.len, stdout);
        rc = 0;
    }
    buf_free(&out);
    json_free(d);
    free(text);
    return rc;
}

/* ------------------------------------------------------------- run/chat */

static volatile sig_atomic_t interrupted;
static void on_sigint(int sig) { (void)sig; interrupted = 1; }

typedef struct {
    chat_parser *parser;
    int tty;
    int in_reasoning;            /* the dim style is on */
    buf content, reasoning, tool_calls;   /* for the chat history */
    int n_calls;
} turn_printer;

static void print_event(void *user, const chat_event *ev) {
    turn_printer *tp = user;
    if (ev->kind == CHAT_EV_REASONING) {
        if (tp->tty && !tp->in_reasoning) fputs("\033[2m", stdout);
        tp->in_reasoning = 1;
        fwrite(ev->text, 1, ev->len, stdout);
        buf_append(&tp->reasoning, ev->text, ev->len);
        fflush(stdout);
        return;
    }
    if (tp->in_reasoning) {
        fputs(tp->tty ? "\033[0m\n" : "\n", stdout);
        tp->in_reasoning = 0;
    }
    if (ev->kind == CHAT_EV_CONTENT) {
        fwrite(ev->text, 1, ev->len, stdout);
        buf_append(&tp->content, ev->text, ev->len);
    } else if (ev->kind == CHAT_EV_TOOL_CALL) {
        printf("%s[tool call] %s %s%s\n", tp->tty ? "\033[36m" : "", ev->name, ev->arguments_json, tp->tty ? "\033[0m" : "");
        buf_printf(&tp->tool_calls, "%s{\"type\":\"function\",\"function\":{\"name\":", tp->n_calls++ ? "," : "");
        json_write_string(&tp->tool_calls, ev->name, strlen(ev->name), 0);
        buf_printf(&tp->tool_calls, ",\"arguments\":%s}}", ev->arguments_json);
    } else {
        fprintf(stderr, "glmlite: warning: %.*s\n", (int)ev->len, ev->text);
    }
    fflush(stdout);
}

static void feed_text(void *user, const char *text, size_t len) {
    turn_printer *tp = user;
    chat_parser_feed(tp->parser, text, len, print_event, tp);
}

static int is_cancelled(void *user) { (void)user; return interrupted; }

/* Reads the --tools file: a JSON array of tools (OpenAI format). */
static json_doc *load_tools(const char *path) {
    if (!path) return NULL;
    buf b = {0};
    if (buf_read_file(&b, path, 16u << 20) != 0) {
        fprintf(stderr, "glmlite: cannot read %s\n", path);
        buf_free(&b);
        return NULL;
    }
    char err[512];
    json_doc *d = json_parse(b.data, b.len, err, sizeof err);
    buf_free(&b);
    if (!d) fprintf(stderr, "glmlite: %s: %s\n", path, err);
    else if (json_root(d)->type != JSON_ARRAY) {
        fprintf(stderr, "glmlite: %s: expected a JSON array of tools\n", path);
        json_free(d);
        d = NULL;
    }
    return d;
}

typedef struct {
    glm_runtime rt;
    glm_session *session;
    sampler *smp;
    json_doc *tools;             /* may be NULL */
    buf history;                 /* the messages so far, as JSON array items (comma-separated) */
    int think;
} chat_state;

static int chat_state_open(chat_state *cs, const cli_opts *o) {
    memset(cs, 0, sizeof *cs);
    if (o->tools_file && !(cs->tools = load_tools(o->tools_file))) return -1;
    if (open_runtime(o, &cs->rt)) return -1;
    sampler_params sp = cs->rt.defaults;
    if (o->set & SET_TEMP) sp.temperature = o->sp.temperature;
    if (o->set & SET_TOP_P) sp.top_p = o->sp.top_p;
    if (o->set & SET_TOP_K) sp.top_k = o->sp.top_k;
    if (o->set & SET_MIN_P) sp.min_p = o->sp.min_p;
    if (o->set & SET_SEED) sp.seed = o->sp.seed;
    if (o->set & SET_REPEAT) sp.repeat_penalty = o->sp.repeat_penalty;
    if (o->set & SET_PRESENCE) sp.presence_penalty = o->sp.presence_penalty;
    if (o->set & SET_FREQUENCY) sp.frequency_penalty = o->sp.frequency_penalty;
    const glm_config *c = glm_model_config(cs->rt.model);
    cs->smp = sampler_new(&sp, c->vocab_size, cs->rt.n_valid);
    char err[1024];
    int n_ctx = o->n_ctx > 0 ? o->n_ctx : 4096;
    if (n_ctx > c->max_position_embeddings) n_ctx = c->max_position_embeddings;
    glm_session_options so = {.n_ctx = n_ctx, .kv_bf16 = o->kv_bf16};
    cs->session = glm_session_new(cs->rt.model, &so, err, sizeof err);
    if (!cs->smp || !cs->session) {
        fprintf(stderr, "glmlite: %s\n", cs->session ? "invalid sampling parameters" : err);
        return -1;
    }
    cs->think = o->think;
    if (o->system) {
        buf_puts(&cs->history, "{\"role\":\"system\",\"content\":");
        json_write_string(&cs->history, o->system, strlen(o->system), 0);
        buf_puts(&cs->history, "}");
    }
    return 0;
}

static void chat_state_close(chat_state *cs) {
    glm_session_free(cs->session);
    sampler_free(cs->smp);
    if (cs->rt.model) runtime_close(&cs->rt);
    json_free(cs->tools);
    buf_free(&cs->history);
}

static void history_add(chat_state *cs, const char *role, const char *content) {
    if (cs->history.len) buf_putc(&cs->history, ',');
    buf_printf(&cs->history, "{\"role\":\"%s\",\"content\":", role);
    json_write_string(&cs->history, content, strlen(content), 0);
    buf_putc(&cs->history, '}');
}

/* Renders the history, generates one assistant turn, prints it, records it. */
static int chat_turn(chat_state *cs, int n_predict) {
    buf req = {0};
    buf_printf(&req, "{\"messages\":[%s],\"add_generation_prompt\":true,\"enable_thinking\":%s", cs->history.data ? cs->history.data : "",
               cs->think ? "true" : "false");
    if (cs->tools) {
        buf_puts(&req, ",\"tools\":");
        json_write_value(&req, json_root(cs->tools), 0, 0);
    }
    buf_putc(&req, '}');
    char err[1024];
    json_doc *d = json_parse(req.data, req.len, err, sizeof err);
    buf prompt = {0}, spans = {0};
    int rc = -1;
    int32_t *ids = NULL;
    size_t n_ids = 0;
    /* special-token text typed in a message stays text: only the template's markers are special */
    if (!d || chat_render_spans(json_root(d), 0, &prompt, &spans, err, sizeof err) ||
        tokenizer_encode_guarded(cs->rt.tok, prompt.data, prompt.len, (const size_t *)spans.data,
                                 spans.len / (2 * sizeof(size_t)), &ids, &n_ids, err, sizeof err)) {
        fprintf(stderr, "glmlite: %s\n", err);
        goto done;
    }
    turn_printer tp = {0};
    tp.parser = chat_parser_new(cs->think, cs->tools ? json_root(cs->tools) : NULL);
    tp.tty = isatty(STDOUT_FILENO);
    gen_callbacks cb = {feed_text, is_cancelled, &tp};
    gen_options go = {.max_tokens = n_predict, .reasoning_end = -1};
    gen_stats st;
    interrupted = 0;
    rc = generate(&cs->rt, cs->session, cs->smp, ids, (int)n_ids, &go, &cb, &st, err, sizeof err);
    chat_parser_finish(tp.parser, print_event, &tp);
    if (tp.in_reasoning) fputs(tp.tty ? "\033[0m\n" : "\n", stdout);
    printf("\n");
    if (rc) fprintf(stderr, "glmlite: %s\n", err);
    else {
        int prefilled = st.n_prompt - st.n_cached;
        fprintf(stderr, "%s[prompt %d tokens (%d cached), %.1f tok/s | generated %d tokens, %.1f tok/s%s]%s\n",
                tp.tty ? "\033[2m" : "", st.n_prompt, st.n_cached, st.prefill_s > 0 ? prefilled / st.prefill_s : 0.0,
                st.n_generated, st.decode_s > 0 ? st.n_generated / st.decode_s : 0.0,
                st.finish == GEN_CANCELLED ? ", interrupted" : st.finish == GEN_LENGTH ? ", length limit" : "",
                tp.tty ? "\033[0m" : "");
        /* the assistant turn joins the history (reasoning kept as the template decides) */
        if (cs->history.len) buf_putc(&cs->history, ',');
        buf_puts(&cs->history, "{\"role\":\"assistant\",\"content\":");
        json_write_string(&cs->history, tp.content.data ? tp.content.data : "", tp.content.len, 0);
        if (tp.reasoning.len) {
            buf_puts(&cs->history, ",\"reasoning_content\":");
            json_write_string(&cs->history, tp.reasoning.data, tp.reasoning.len, 0);
        }
        if (tp.n_calls) buf_printf(&cs->history, ",\"tool_calls\":[%s]", tp.tool_calls.data);
        buf_putc(&cs->history, '}');
    }
    chat_parser_free(tp.parser);
    buf_free(&tp.content);
    buf_free(&tp.reasoning);
    buf_free(&tp.tool_calls);
done:
    free(ids);
    buf_free(&prompt);
    buf_free(&spans);
    json_free(d);
    buf_free(&req);
    return rc;
}

static int cmd_run_tokens(const cli_opts *o) {
    int n;
    int32_t *ids = parse_tokens(o->tokens, &n);
    if (!ids) { fputs("glmlite: --tokens must be a comma-separated list of token ids\n", stderr); return 2; }
    glm_model *m = load_model(o);
    if (!m) { free(ids); return 1; }
    const glm_config *c = glm_model_config(m);
    char err[1024];
    int n_predict = o->n_predict > 0 ? o->n_predict : 32;
    /* -n is a maximum: size the context like run/chat do (never n + n_predict unbounded) */
    long long want = (long long)n + n_predict;
    int cap_ctx = c->max_position_embeddings > n ? c->max_position_embeddings : n;
    glm_session_options so = {.n_ctx = o->n_ctx > 0 ? o->n_ctx : (int)(want < cap_ctx ? want : cap_ctx), .kv_bf16 = o->kv_bf16};
    err[0] = 0;
    glm_session *s = glm_session_new(m, &so, err, sizeof err);
    float *logits = malloc((size_t)c->vocab_size * sizeof *logits);
    int rc = 0;
    if (!s || !logits || glm_forward(s, ids, n, logits, 0, err, sizeof err)) {
        fprintf(stderr, "glmlite: %s\n", err[0] ? err : "out of memory");
        rc = 1;
    }
    int n_ctx = s ? glm_session_n_ctx(s) : 0;
    for (int i = 0; !rc && i < n_predict; i++) {
        int32_t next = 0;
        for (int v = 1; v < c->vocab_size; v++) if (logits[v] > logits[next]) next = v;
        printf("%s%d", i ? " " : "", next);
        fflush(stdout);
        int stop = 0;
        for (int k = 0; k < c->n_eos; k++) stop |= next == c->eos_ids[k];
        if (stop || i + 1 == n_predict || n + i + 1 > n_ctx) break;   /* the context is full: stop, as run -p does */
        if (glm_forward(s, &next, 1, logits, 0, err, sizeof err)) { fprintf(stderr, "\nglmlite: %s\n", err); rc = 1; }
    }
    if (!rc) printf("\n");
    free(logits);
    free(ids);
    glm_session_free(s);
    glm_model_free(m);
    return rc;
}

static int cmd_run(const cli_opts *o) {
    if (o->tokens) return cmd_run_tokens(o);
    if (!o->prompt) { fputs("glmlite run: needs -p TEXT (or --tokens)\n", stderr); return 2; }
    chat_state cs;
    int rc = 1;
    if (chat_state_open(&cs, o) == 0) {
        signal(SIGINT, on_sigint);
        history_add(&cs, "user", o->prompt);
        rc = chat_turn(&cs, o->n_predict) ? 1 : 0;
    }
    chat_state_close(&cs);
    return rc;
}

static int cmd_chat(const cli_opts *o) {
    chat_state cs;
    if (chat_state_open(&cs, o)) { chat_state_close(&cs); return 1; }
    struct sigaction sa = {0};
    sa.sa_handler = on_sigint;   /* no SA_RESTART: Ctrl-C at the prompt interrupts the read */
    sigaction(SIGINT, &sa, NULL);
    int tty = isatty(STDIN_FILENO);
    if (tty) fprintf(stderr, "glmlite chat — %s. /think /nothink /clear /tool RESULT /quit; Ctrl-C stops a reply, Ctrl-D quits.\n", cs.rt.name);
    char *line = NULL;
    size_t cap = 0;
    for (;;) {
        if (tty) { fputs(cs.think ? "> " : "(no think) > ", stdout); fflush(stdout); }
        interrupted = 0;
        ssize_t got = getline(&line, &cap, stdin);   /* a whole line, however long */
        if (got < 0) {
            if (interrupted) { clearerr(stdin); printf("\n"); continue; }
            break;
        }
        size_t l = (size_t)got;
        while (l && (line[l - 1] == '\n' || line[l - 1] == '\r')) line[--l] = 0;
        if (!l) continue;
        if (!strcmp(line, "/quit") || !strcmp(line, "/exit")) break;
        if (!strcmp(line, "/think")) { cs.think = 1; continue; }
        if (!strcmp(line, "/nothink")) { cs.think = 0; continue; }
        if (!strcmp(line, "/clear")) {
            buf_clear(&cs.history);
            if (o->system) history_add(&cs, "system", o->system);
            glm_session_truncate(cs.session, 0);
            continue;
        }
        size_t before = cs.history.len;
        if (!strncmp(line, "/tool ", 6)) history_add(&cs, "tool", line + 6);   /* a tool's result */
        else history_add(&cs, "user", line);
        /* a failed turn (e.g. the prompt no longer fits) must not stay in the history */
        if (chat_turn(&cs, o->n_predict)) {
            cs.history.len = before;
            if (cs.history.data) cs.history.data[before] = 0;
        }
    }
    free(line);
    chat_state_close(&cs);
    return 0;
}

/* ------------------------------------------------------------------ main */

int main(int argc, char **argv) {
    if (argc < 2 || !strcmp(argv[1], "-h") || !strcmp(argv[1], "--help") || !strcmp(argv[1], "help")) {
        usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    const char *cmd = argv[1];
    /* subcommands with their own flags (cli_*.c) */
    if (!strcmp(cmd, "bench")) return cmd_bench(argc - 2, argv + 2);
    if (!strcmp(cmd, "serve")) return cmd_serve(argc - 2, argv + 2);
    if (!strcmp(cmd, "quantize")) return cmd_quantize(argc - 2, argv + 2);
    if (!strcmp(cmd, "perplexity")) return cmd_perplexity(argc - 2, argv + 2);
    cli_opts o = {0};
    o.think = 1;
    for (int i = 2; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        int bad = 0, takes = 1;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) { usage(stdout); free(o.prompt_file_text); return 0; }
        else if (!strcmp(a, "-m") || !strcmp(a, "--model")) { bad = !v; o.model_dir = v; }
        else if (!strcmp(a, "--tokens")) { bad = !v; o.tokens = v; }
        else if (!strcmp(a, "-p") || !strcmp(a, "--prompt")) { bad = !v; o.prompt = v; }
        else if (!strcmp(a, "-f") || !strcmp(a, "--file")) {   /* llama.cpp: the prompt from a file */
            buf pf = {0};
            bad = !v || buf_read_file(&pf, v, 64u << 20) != 0;
            if (bad) { buf_free(&pf); fprintf(stderr, "glmlite: cannot read prompt file '%s'\n", v ? v : ""); return 2; }
            if (pf.len && pf.data[pf.len - 1] == '\n') pf.len--;   /* as llama.cpp's -f */
            if (pf.len && pf.data[pf.len - 1] == '\r') pf.len--;
            buf_reserve(&pf, 0);
            pf.data[pf.len] = 0;
            free(o.prompt_file_text);
            o.prompt = o.prompt_file_text = buf_detach(&pf);
        }
        else if (!strcmp(a, "--system") || !strcmp(a, "-sys") || !strcmp(a, "--system-prompt")) { bad = !v; o.system = v; }
        else if (!strcmp(a, "--tools")) { bad = !v; o.tools_file = v; }
        else if (!strcmp(a, "-o")) { bad = !v; o.out = v; }
        else if (!strcmp(a, "-t") || !strcmp(a, "--threads")) bad = cli_parse_int(v, 1, 4096, &o.threads);
        else if (!strcmp(a, "-c") || !strcmp(a, "--ctx-size")) bad = cli_parse_int(v, 1, INT_MAX, &o.n_ctx);
        else if (!strcmp(a, "-n") || !strcmp(a, "--n-predict") || !strcmp(a, "--predict")) bad = cli_parse_int(v, 0, INT_MAX, &o.n_predict);
        else if (!strcmp(a, "--cache-type")) bad = cli_parse_cache_type(v, &o.kv_bf16);
        else if (!strcmp(a, "--temp")) { bad = !v || parse_float(v, &o.sp.temperature) || o.sp.temperature < 0; o.set |= SET_TEMP; }
        else if (!strcmp(a, "--top-p")) { bad = !v || parse_float(v, &o.sp.top_p) || o.sp.top_p <= 0; o.set |= SET_TOP_P; }
        else if (!strcmp(a, "--top-k")) { bad = cli_parse_int(v, 0, INT_MAX, &o.sp.top_k); o.set |= SET_TOP_K; }
        else if (!strcmp(a, "--min-p")) { bad = !v || parse_float(v, &o.sp.min_p) || o.sp.min_p < 0; o.set |= SET_MIN_P; }
        else if (!strcmp(a, "--repeat-penalty")) { bad = !v || parse_float(v, &o.sp.repeat_penalty) || o.sp.repeat_penalty <= 0; o.set |= SET_REPEAT; }
        else if (!strcmp(a, "--presence-penalty")) { bad = !v || parse_float(v, &o.sp.presence_penalty); o.set |= SET_PRESENCE; }
        else if (!strcmp(a, "--frequency-penalty")) { bad = !v || parse_float(v, &o.sp.frequency_penalty); o.set |= SET_FREQUENCY; }
        else if (!strcmp(a, "--seed") || !strcmp(a, "-s")) {
            char *end = NULL;
            errno = 0;
            o.sp.seed = v ? strtoull(v, &end, 10) : 0;
            /* digits only: strtoull takes "", " 5" and "-5" (wrapped to 2^64-5) */
            bad = !v || *v < '0' || *v > '9' || errno || *end;
            o.set |= SET_SEED;
        }
        else if (!strcmp(a, "--think")) { o.think = 1; takes = 0; }
        else if (!strcmp(a, "--no-think")) { o.think = 0; takes = 0; }
        else if (!strcmp(a, "--no-special")) { o.no_special = 1; takes = 0; }
        else if (!strcmp(a, "--exact-matmul")) { o.exact_matmul = 1; takes = 0; }
        else { fprintf(stderr, "glmlite: unknown option '%s'\n", a); usage(stderr); free(o.prompt_file_text); return 2; }
        if (bad) { fprintf(stderr, "glmlite: option '%s' needs a valid value\n", a); free(o.prompt_file_text); return 2; }
        i += takes;
    }
    if (!o.model_dir) o.model_dir = cli_default_model_dir();
    int rc = 2;
    if (!strcmp(cmd, "info")) rc = cmd_info(&o);
    else if (!strcmp(cmd, "logits")) rc = cmd_logits(&o);
    else if (!strcmp(cmd, "run")) rc = cmd_run(&o);
    else if (!strcmp(cmd, "chat")) rc = cmd_chat(&o);
    else if (!strcmp(cmd, "tokenize")) rc = cmd_tokenize(&o);
    else if (!strcmp(cmd, "render")) rc = cmd_render();
    else {
        fprintf(stderr, "glmlite: unknown command '%s'\n", cmd);
        usage(stderr);
    }
    free(o.prompt_file_text);
    return rc;
}
