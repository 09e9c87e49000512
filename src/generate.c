/* generate.c — the runtime and the decode loop (see generate.h). */
#include "generate.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "buf.h"
#include "json.h"

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* Sampling defaults from generation_config.json (temperature, top_p, top_k). */
static void read_generation_defaults(const char *dir, sampler_params *p) {
    char path[1200];
    snprintf(path, sizeof path, "%s/generation_config.json", dir);
    buf b = {0};
    if (buf_read_file(&b, path, 1u << 20) == 0) {
        json_doc *d = json_parse(b.data, b.len, NULL, 0);
        const json_value *r = json_root(d);
        double v;
        int do_sample = 1;
        json_get_bool(json_get(r, "do_sample"), &do_sample);
        if (json_get_double(json_get(r, "temperature"), &v) && v >= 0) p->temperature = (float)v;
        if (json_get_double(json_get(r, "top_p"), &v) && v > 0) p->top_p = (float)v;
        if (json_get_double(json_get(r, "top_k"), &v) && v >= 0) p->top_k = (int)v;
        if (json_get_double(json_get(r, "repetition_penalty"), &v) && v > 0) p->repeat_penalty = (float)v;
        if (!do_sample) p->temperature = 0;
        json_free(d);
    }
    buf_free(&b);
}

int runtime_open(glm_runtime *rt, const char *dir, int n_threads, char *err, size_t errlen) {
    glm_load_options lo = {.n_threads = n_threads};
    return runtime_open_opts(rt, dir, &lo, err, errlen);
}

int runtime_open_opts(glm_runtime *rt, const char *dir, const glm_load_options *opts, char *err, size_t errlen) {
    memset(rt, 0, sizeof *rt);
    snprintf(rt->dir, sizeof rt->dir, "%s", dir);
    size_t l = strlen(rt->dir);
    while (l > 1 && rt->dir[l - 1] == '/') rt->dir[--l] = 0;
    const char *base = strrchr(rt->dir, '/');
    snprintf(rt->name, sizeof rt->name, "%.255s", base ? base + 1 : rt->dir);
    rt->model = glm_model_load(dir, opts, err, errlen);
    if (!rt->model) return -1;
    char path[1200], terr[512];
    snprintf(path, sizeof path, "%s/tokenizer.json", rt->dir);
    rt->tok = tokenizer_load(path, terr, sizeof terr);
    if (!rt->tok) {
        snprintf(err, errlen, "%s: %s", path, terr);
        glm_model_free(rt->model);
        rt->model = NULL;
        return -1;
    }
    int V = glm_model_config(rt->model)->vocab_size;
    rt->n_valid = tokenizer_n_tokens(rt->tok) < V ? tokenizer_n_tokens(rt->tok) : V;
    sampler_params_default(&rt->defaults);
    read_generation_defaults(rt->dir, &rt->defaults);
    /* a model directory whose eos_token_id lists only <|endoftext|> must still end a turn at the
     * next role marker, or the reply runs on into an invented user/tool turn */
    rt->role_stop[0] = tokenizer_token_id(rt->tok, "<|user|>");
    rt->role_stop[1] = tokenizer_token_id(rt->tok, "<|observation|>");
    return 0;
}

void runtime_close(glm_runtime *rt) {
    glm_model_free(rt->model);
    tokenizer_free(rt->tok);
    memset(rt, 0, sizeof *rt);
}

int runtime_is_stop_id(const glm_runtime *rt, int32_t id) {
    const glm_config *c = glm_model_config(rt->model);
    for (int i = 0; i < c->n_eos; i++)
        if (c->eos_ids[i] == id) return 1;
    return id >= 0 && (id == rt->role_stop[0] || id == rt->role_stop[1]);
}

/* Longest suffix of text[0..n) that is a proper prefix of some stop string:
 * that much must be held back until the next token decides. */
static size_t held_suffix(const char *text, size_t n, const char *const *stop, int n_stop) {
    size_t best = 0;
    for (int i = 0; i < n_stop; i++) {
        size_t sl = strlen(stop[i]);
        if (!sl) continue;
        for (size_t k = sl > n + 1 ? n : sl - 1; k > best; k--)
            if (memcmp(text + n - k, stop[i], k) == 0) { best = k; break; }
    }
    return best;
}

/* Earliest occurrence of any stop string in text, or -1. */
static long find_stop(const char *text, size_t n, const char *const *stop, int n_stop) {
    long best = -1;
    for (int i = 0; i < n_stop; i++) {
        size_t sl = strlen(stop[i]);
        if (!sl || sl > n) continue;
        for (size_t p = 0; p + sl <= n; p++)
            if (memcmp(text + p, stop[i], sl) == 0) {
                if (best < 0 || (long)p < best) best = (long)p;
                break;
            }
    }
    return best;
}

int generate(glm_runtime *rt, glm_session *s, sampler *smp, const int32_t *prompt, int n_prompt, const gen_options *opt,
             const gen_callbacks *cb, gen_stats *st, char *err, size_t errlen) {
    memset(st, 0, sizeof *st);
    st->n_prompt = n_prompt;
    int n_ctx = glm_session_n_ctx(s);
    if (n_prompt <= 0) { snprintf(err, errlen, "the prompt is empty"); return -1; }
    if (n_prompt >= n_ctx) {
        snprintf(err, errlen, "the prompt has %d tokens but the context holds %d (raise -c)", n_prompt, n_ctx);
        return -1;
    }
    /* prompt cache: keep the longest cached prefix, but always recompute the
       last prompt token so that its logits exist */
    int keep = 0, past = glm_session_n_past(s);
    const int32_t *cached = glm_session_tokens(s);
    while (keep < past && keep < n_prompt - 1 && cached[keep] == prompt[keep]) keep++;
    glm_session_truncate(s, keep);
    st->n_cached = keep;
    const glm_config *c = glm_model_config(rt->model);
    float *logits = malloc((size_t)c->vocab_size * sizeof *logits);
    if (!logits) { snprintf(err, errlen, "out of memory"); return -1; }
    double t0 = now_s();
    if (glm_forward(s, prompt + keep, n_prompt - keep, logits, 0, err, errlen)) { free(logits); return -1; }
    st->prefill_s = now_s() - t0;
    sampler_reset(smp);
    for (int i = 0; i < n_prompt; i++) sampler_accept(smp, prompt[i]);

    token_stream ts;
    token_stream_init(&ts, rt->tok);
    buf pending = {0};   /* decoded text not yet handed out (may start a stop string) */
    int max_tokens = opt && opt->max_tokens > 0 ? opt->max_tokens : n_ctx;
    const char *const *stop = opt ? opt->stop : NULL;
    int n_stop = opt ? opt->n_stop : 0;
    int rc = 0, stopped_by_string = 0;
    /* until reasoning_end: the reasoning (counted for usage); then the answer, whose first
       n_prefix tokens are answer_prefix's (prefix_at: the next to emit) */
    int reasoning = opt && opt->reasoning_end >= 0;
    int n_prefix = opt && !opt->forced ? opt->n_answer_prefix : 0, prefix_at = 0;
    st->finish = GEN_LENGTH;
    double t1 = now_s();
    for (;;) {
        if (cb && cb->cancelled && cb->cancelled(cb->user)) { st->finish = GEN_CANCELLED; break; }
        int32_t id;
        if (opt && opt->forced) {
            if (st->n_generated >= opt->n_forced) { st->finish = GEN_STOP; break; }
            id = opt->forced[st->n_generated];
        } else if (!reasoning && prefix_at < n_prefix) {
            id = opt->answer_prefix[prefix_at++];
        } else {
            id = sampler_sample(smp, logits);
        }
        if (runtime_is_stop_id(rt, id)) { st->finish = GEN_STOP; break; }
        sampler_accept(smp, id);
        st->n_generated++;
        st->n_reasoning += reasoning;
        if (reasoning && id == opt->reasoning_end) reasoning = 0;
        token_stream_push(&ts, id, &pending);
        long at = find_stop(pending.data ? pending.data : "", pending.len, stop, n_stop);
        if (at >= 0) {
            if (cb && cb->on_text && at > 0) cb->on_text(cb->user, pending.data, (size_t)at);
            buf_clear(&pending);
            stopped_by_string = 1;
            st->finish = GEN_STOP;
            break;
        }
        size_t hold = held_suffix(pending.data ? pending.data : "", pending.len, stop, n_stop);
        if (pending.len > hold) {
            if (cb && cb->on_text) cb->on_text(cb->user, pending.data, pending.len - hold);
            memmove(pending.data, pending.data + pending.len - hold, hold);
            pending.len = hold;
        }
        if (st->n_generated >= max_tokens || glm_session_n_past(s) >= n_ctx) { st->finish = GEN_LENGTH; break; }
        if (glm_forward(s, &id, 1, logits, 0, err, errlen)) { rc = -1; break; }
    }
    if (!stopped_by_string) {
        token_stream_flush(&ts, &pending);
        if (cb && cb->on_text && pending.len) cb->on_text(cb->user, pending.data, pending.len);
    }
    st->decode_s = now_s() - t1;
    buf_free(&pending);
    free(logits);
    return rc;
}
