/* server_request.c — API request bodies to generation parameters and a
 * prompt (see server_request.h). OpenAI and Ollama messages are rewritten
 * into the chat template's input (Ollama "thinking" becomes
 * "reasoning_content", OpenAI "developer" becomes "system", images are
 * dropped), then rendered. */
#include "server_request.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "chat.h"

static const char *const JSON_HINT = "Respond with a single valid JSON object and nothing else.";

static int bad(api_request *r, char *err, size_t errlen, const char *param, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));
static int bad(api_request *r, char *err, size_t errlen, const char *param, const char *fmt, ...) {
    snprintf(r->param, sizeof r->param, "%s", param);
    if (err && errlen) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err, errlen, fmt, ap);
        va_end(ap);
    }
    return -1;
}

static int absent(const json_value *v) { return !v || v->type == JSON_NULL; }

/* A number field within [lo, hi]: 0 absent, 1 set, -1 wrong type or range. */
static int get_num(const json_value *obj, const char *key, double lo, double hi, double *out) {
    const json_value *v = json_get(obj, key);
    if (absent(v)) return 0;
    if (v->type != JSON_NUMBER || !isfinite(v->number) || v->number < lo || v->number > hi) return -1;
    *out = v->number;
    return 1;
}

static int get_int(const json_value *obj, const char *key, int64_t lo, int64_t hi, int64_t *out) {
    const json_value *v = json_get(obj, key);
    if (absent(v)) return 0;
    if (!json_is_int(v) || !json_get_int64(v, out) || *out < lo || *out > hi) return -1;
    return 1;
}

static int get_bool(const json_value *obj, const char *key, int *out) {
    const json_value *v = json_get(obj, key);
    if (absent(v)) return 0;
    if (v->type != JSON_BOOL) return -1;
    *out = v->boolean;
    return 1;
}

/* The sampling keys shared by OpenAI bodies and Ollama "options". prefix
 * names the object for messages ("" or "options."). */
static int decode_sampling(api_request *r, const json_value *o, const char *prefix, char *err, size_t errlen) {
    double d;
    int64_t i;
    char name[64];
#define NUMF(key, lo, hi, field)                                                                      \
    do {                                                                                              \
        int rc_ = get_num(o, key, lo, hi, &d);                                                        \
        snprintf(name, sizeof name, "%s%s", prefix, key);                                             \
        if (rc_ < 0) return bad(r, err, errlen, name, "'%s' must be a number in [%g, %g]", name, (double)(lo), (double)(hi)); \
        if (rc_ > 0) r->sp.field = (float)d;                                                          \
    } while (0)
    NUMF("temperature", 0, 100, temperature);
    NUMF("top_p", 0, 1, top_p);
    NUMF("min_p", 0, 1, min_p);
    NUMF("presence_penalty", -2, 2, presence_penalty);
    NUMF("frequency_penalty", -2, 2, frequency_penalty);
    NUMF("repeat_penalty", 0.01, 100, repeat_penalty);
#undef NUMF
    if (r->sp.top_p <= 0) r->sp.top_p = 1;   /* top_p 0 would keep nothing: treat as off, as Ollama does */
    int rc = get_int(o, "top_k", INT32_MIN, 1 << 30, &i);
    snprintf(name, sizeof name, "%stop_k", prefix);
    if (rc < 0) return bad(r, err, errlen, name, "'%s' must be an integer", name);
    if (rc > 0) r->sp.top_k = i > 0 ? (int)i : 0;   /* 0 or less (vLLM's -1): off */
    rc = get_int(o, "repeat_last_n", -1, 1 << 20, &i);
    snprintf(name, sizeof name, "%srepeat_last_n", prefix);
    if (rc < 0) return bad(r, err, errlen, name, "'%s' must be an integer >= -1", name);
    if (rc > 0 && i >= 0) r->sp.repeat_last_n = (int)i;
    const json_value *s = json_get(o, "seed");
    snprintf(name, sizeof name, "%sseed", prefix);
    if (!absent(s)) {
        /* any integer (OpenAI's are int64; past 2^53 JSON numbers arrive rounded, the same each time) */
        if (s->type != JSON_NUMBER || s->number != floor(s->number) || s->number < -9223372036854775808.0 ||
            s->number >= 18446744073709551616.0)
            return bad(r, err, errlen, name, "'%s' must be an integer", name);
        r->sp.seed = s->number < 0 ? (uint64_t)(int64_t)s->number : (uint64_t)s->number;
        r->has_seed = 1;
    }
    /* stop: a string or a list of strings */
    const json_value *st = json_get(o, "stop");
    snprintf(name, sizeof name, "%sstop", prefix);
    if (!absent(st)) {
        const json_value *one = st->type == JSON_STRING ? st : NULL;
        size_t n = one ? 1 : st->type == JSON_ARRAY ? st->len : 0;
        if (!one && st->type != JSON_ARRAY) return bad(r, err, errlen, name, "'%s' must be a string or an array of strings", name);
        if (n > API_MAX_STOP) return bad(r, err, errlen, name, "'%s' has more than %d strings", name, API_MAX_STOP);
        for (size_t k = 0; k < n; k++) {
            const json_value *v = one ? one : &st->items[k];
            if (v->type != JSON_STRING) return bad(r, err, errlen, name, "'%s' must be a string or an array of strings", name);
            if (!v->len) continue;
            if (strlen(v->str) != v->len) return bad(r, err, errlen, name, "'%s' strings must not contain NUL", name);
            r->stop[r->n_stop++] = strdup(v->str);
        }
    }
    return 0;
}

/* Appends one message rewritten for the template. */
static int write_message(api_request *r, buf *out, const json_value *m, size_t idx, int ollama, char *err, size_t errlen) {
    char name[64];
    snprintf(name, sizeof name, "messages[%zu]", idx);
    if (m->type != JSON_OBJECT) return bad(r, err, errlen, name, "'%s' must be an object", name);
    const json_value *role = json_get(m, "role");
    if (!role || role->type != JSON_STRING)
        return bad(r, err, errlen, name, "'%s.role' must be a string", name);
    const char *rs = role->str;
    if (!strcmp(rs, "developer")) rs = "system";
    if (strcmp(rs, "system") && strcmp(rs, "user") && strcmp(rs, "assistant") && strcmp(rs, "tool"))
        return bad(r, err, errlen, name, "'%s.role' must be system, developer, user, assistant or tool", name);
    const json_value *content = json_get(m, "content");
    if (content && content->type != JSON_STRING && content->type != JSON_ARRAY && content->type != JSON_NULL)
        return bad(r, err, errlen, name, "'%s.content' must be a string, an array of parts or null", name);
    buf_puts(out, "{\"role\":");
    json_write_string(out, rs, strlen(rs), 0);
    /* a tool result given as OpenAI text parts is their text: the template
       would print each part (it reads a list there as several results) */
    int tool_parts = !strcmp(rs, "tool") && content && content->type == JSON_ARRAY && content->len > 0;
    for (size_t k = 0; tool_parts && k < content->len; k++) {
        const json_value *part = &content->items[k], *type = json_get(part, "type"), *text = json_get(part, "text");
        tool_parts = type && type->type == JSON_STRING && !strcmp(type->str, "text") && text && text->type == JSON_STRING;
    }
    for (size_t k = 0; k < m->len; k++) {
        const json_member *mm = &m->members[k];
        const char *key = mm->key;
        size_t key_len = mm->key_len;
        /* a key holding NUL ("content\u0000") is a different key: compare and
           write it with its full length, or it would pass for "content" unchecked */
        if (strlen(key) != key_len) {
            buf_putc(out, ',');
            json_write_string(out, key, key_len, 0);
            buf_putc(out, ':');
            json_write_value(out, &mm->value, 0, 0);
            continue;
        }
        if (!strcmp(key, "role") || !strcmp(key, "images")) continue;
        if (tool_parts && !strcmp(key, "content")) {
            buf text = {0};
            for (size_t i = 0; i < content->len; i++) {
                const json_value *t = json_get(&content->items[i], "text");
                buf_append(&text, t->str, t->len);
            }
            buf_puts(out, ",\"content\":");
            json_write_string(out, text.data ? text.data : "", text.len, 0);
            buf_free(&text);
            continue;
        }
        if (ollama && !strcmp(key, "thinking")) key = "reasoning_content";
        else if (ollama && !strcmp(key, "reasoning_content")) continue;
        buf_putc(out, ',');
        json_write_string(out, key, strlen(key), 0);
        buf_putc(out, ':');
        json_write_value(out, &mm->value, 0, 0);
    }
    buf_putc(out, '}');
    return 0;
}

/* A system message with the JSON hint, or the hint appended to the first
 * system message (returns 1 when msg was that message and has been written). */
static int write_with_hint(buf *out, const json_value *m) {
    const json_value *c = json_get(m, "content");
    if (!c || c->type != JSON_STRING) return 0;
    buf_puts(out, "{\"role\":\"system\",\"content\":");
    buf t = {0};
    buf_append(&t, c->str, c->len);
    buf_puts(&t, "\n\n");
    buf_puts(&t, JSON_HINT);
    json_write_string(out, t.data, t.len, 0);
    buf_free(&t);
    buf_putc(out, '}');
    return 1;
}

static int render_chat(api_request *r, const json_value *msgs, const char *system, const char *user_prompt, int think,
                       int clear_thinking, int json_hint, int ollama, char *err, size_t errlen) {
    buf req = {0};
    int rc = -1;
    buf_puts(&req, "{\"messages\":[");
    size_t n = 0, start = 0;
    if (system && *system) {
        buf_puts(&req, "{\"role\":\"system\",\"content\":");
        buf t = {0};
        buf_puts(&t, system);
        if (json_hint) { buf_puts(&t, "\n\n"); buf_puts(&t, JSON_HINT); }
        json_write_string(&req, t.data, t.len, 0);
        buf_free(&t);
        buf_putc(&req, '}');
        n++;
    } else if (json_hint) {
        const char *role = msgs && msgs->len && msgs->items[0].type == JSON_OBJECT
                               ? json_get_str(json_get(&msgs->items[0], "role")) : NULL;
        if (role && (!strcmp(role, "system") || !strcmp(role, "developer")) && write_with_hint(&req, &msgs->items[0])) {
            start = 1;
        } else {
            buf_puts(&req, "{\"role\":\"system\",\"content\":");
            json_write_string(&req, JSON_HINT, strlen(JSON_HINT), 0);
            buf_putc(&req, '}');
        }
        n++;
    }
    for (size_t i = start; msgs && i < msgs->len; i++) {
        if (n++) buf_putc(&req, ',');
        if (write_message(r, &req, &msgs->items[i], i, ollama, err, errlen)) goto done;
    }
    if (user_prompt) {
        buf_printf(&req, "%s{\"role\":\"user\",\"content\":", n++ ? "," : "");
        json_write_string(&req, user_prompt, strlen(user_prompt), 0);
        buf_putc(&req, '}');
    }
    buf_puts(&req, "]");
    if (r->tools) {
        buf_puts(&req, ",\"tools\":");
        json_write_value(&req, r->tools, 0, 0);
    }
    buf_printf(&req, ",\"add_generation_prompt\":true,\"enable_thinking\":%s", think ? "true" : "false");
    if (clear_thinking >= 0) buf_printf(&req, ",\"clear_thinking\":%s", clear_thinking ? "true" : "false");
    buf_putc(&req, '}');
    char jerr[256];
    json_doc *d = json_parse(req.data, req.len, jerr, sizeof jerr);
    if (!d) {
        bad(r, err, errlen, "messages", "messages: %s", jerr);
        goto done;
    }
    char rerr[300];
    if (chat_render_spans(json_root(d), 0, &r->prompt, &r->spans, rerr, sizeof rerr)) {
        json_free(d);
        bad(r, err, errlen, "messages", "%s", rerr);
        goto done;
    }
    json_free(d);
    r->rendered = 1;
    r->chat = 1;
    r->thinking = r->prompt.len >= 7 && !memcmp(r->prompt.data + r->prompt.len - 7, "<think>", 7);
    rc = 0;
done:
    buf_free(&req);
    return rc;
}

static int decode_tools(api_request *r, const json_value *root, char *err, size_t errlen) {
    const json_value *tools = json_get(root, "tools");
    if (absent(tools)) return 0;
    if (tools->type != JSON_ARRAY) return bad(r, err, errlen, "tools", "'tools' must be an array");
    for (size_t i = 0; i < tools->len; i++)
        if (tools->items[i].type != JSON_OBJECT) return bad(r, err, errlen, "tools", "'tools[%zu]' must be an object", i);
    r->tools = tools->len ? tools : NULL;
    return 0;
}

/* OpenAI /v1/chat/completions and /v1/completions */
static int decode_openai(api_request *r, const json_value *root, char *err, size_t errlen) {
    int b;
    if (get_bool(root, "stream", &b) < 0) return bad(r, err, errlen, "stream", "'stream' must be a boolean");
    r->stream = get_bool(root, "stream", &b) > 0 && b;
    const json_value *so = json_get(root, "stream_options");
    if (!absent(so)) {
        if (so->type != JSON_OBJECT) return bad(r, err, errlen, "stream_options", "'stream_options' must be an object");
        int iu = 0;
        if (get_bool(so, "include_usage", &iu) < 0)
            return bad(r, err, errlen, "stream_options.include_usage", "'stream_options.include_usage' must be a boolean");
        r->include_usage = iu;
    }
    int64_t i;
    int rc = get_int(root, "n", 1, 1, &i);
    if (rc < 0) return bad(r, err, errlen, "n", "'n' must be 1 (one choice per request)");
    rc = get_int(root, "max_completion_tokens", 1, 1 << 30, &i);
    if (rc < 0) return bad(r, err, errlen, "max_completion_tokens", "'max_completion_tokens' must be a positive integer");
    if (rc > 0) r->max_tokens = (int)i;
    else {
        rc = get_int(root, "max_tokens", 1, 1 << 30, &i);
        if (rc < 0) return bad(r, err, errlen, "max_tokens", "'max_tokens' must be a positive integer");
        if (rc > 0) r->max_tokens = (int)i;
    }
    if (decode_sampling(r, root, "", err, errlen)) return -1;

    if (r->kind == API_OPENAI_COMPLETION) {
        const json_value *p = json_get(root, "prompt");
        if (p && p->type == JSON_ARRAY && p->len == 1) p = &p->items[0];
        if (!p || p->type != JSON_STRING)
            return bad(r, err, errlen, "prompt", "'prompt' must be a string (or an array of one string)");
        if (!p->len) return bad(r, err, errlen, "prompt", "'prompt' is empty");
        buf_append(&r->prompt, p->str, p->len);
        r->chat = 0;
        return 0;
    }
    const json_value *msgs = json_get(root, "messages");
    if (!msgs || msgs->type != JSON_ARRAY) return bad(r, err, errlen, "messages", "'messages' must be an array");
    if (!msgs->len) return bad(r, err, errlen, "messages", "'messages' must not be empty");
    if (decode_tools(r, root, err, errlen)) return -1;
    const json_value *tc = json_get(root, "tool_choice");
    if (!absent(tc)) {
        if (tc->type == JSON_STRING) {
            if (!strcmp(tc->str, "none")) r->tools = NULL;
            else if (!strcmp(tc->str, "required")) r->force_tool = r->tools != NULL;
            else if (strcmp(tc->str, "auto"))
                return bad(r, err, errlen, "tool_choice", "'tool_choice' must be \"none\", \"auto\", \"required\" or an object");
        } else if (tc->type == JSON_OBJECT) {
            /* {"type": "function", "function": {"name": ...}} */
            const json_value *name = json_get(json_get(tc, "function"), "name");
            if (!name || name->type != JSON_STRING || !name->len || name->len >= sizeof r->force_tool_name ||
                strlen(name->str) != name->len)
                return bad(r, err, errlen, "tool_choice", "'tool_choice.function.name' must be a function's name");
            r->force_tool = r->tools != NULL;
            memcpy(r->force_tool_name, name->str, name->len + 1);
        } else {
            return bad(r, err, errlen, "tool_choice", "'tool_choice' must be \"none\", \"auto\", \"required\" or an object");
        }
    }
    int think = 1, clear = -1;
    const json_value *kw = json_get(root, "chat_template_kwargs");
    if (!absent(kw)) {
        if (kw->type != JSON_OBJECT) return bad(r, err, errlen, "chat_template_kwargs", "'chat_template_kwargs' must be an object");
        if (get_bool(kw, "enable_thinking", &think) < 0)
            return bad(r, err, errlen, "chat_template_kwargs.enable_thinking", "'chat_template_kwargs.enable_thinking' must be a boolean");
        if (get_bool(kw, "clear_thinking", &clear) < 0)
            return bad(r, err, errlen, "chat_template_kwargs.clear_thinking", "'chat_template_kwargs.clear_thinking' must be a boolean");
    }
    const json_value *re = json_get(root, "reasoning_effort");
    if (!absent(re)) {
        if (re->type != JSON_STRING) return bad(r, err, errlen, "reasoning_effort", "'reasoning_effort' must be a string");
        if (!strcmp(re->str, "none")) think = 0;
    }
    int json_hint = 0;
    const json_value *rf = json_get(root, "response_format");
    if (!absent(rf)) {
        const char *t = rf->type == JSON_OBJECT ? json_get_str(json_get(rf, "type")) : NULL;
        if (!t) return bad(r, err, errlen, "response_format", "'response_format' must be an object with a string 'type'");
        if (!strcmp(t, "json_object") || !strcmp(t, "json_schema")) json_hint = 1;
        else if (strcmp(t, "text"))
            return bad(r, err, errlen, "response_format.type", "'response_format.type' must be text, json_object or json_schema");
    }
    return render_chat(r, msgs, NULL, NULL, think, clear, json_hint, 0, err, errlen);
}

/* Ollama's think: a boolean, or "low"/"medium"/"high" (all mean on here). */
static int decode_think(api_request *r, const json_value *root, int *think, char *err, size_t errlen) {
    const json_value *t = json_get(root, "think");
    *think = 1;
    if (absent(t)) return 0;
    if (t->type == JSON_BOOL) *think = t->boolean;
    else if (t->type == JSON_STRING && (!strcmp(t->str, "low") || !strcmp(t->str, "medium") || !strcmp(t->str, "high")))
        *think = 1;
    else return bad(r, err, errlen, "think", "'think' must be a boolean or \"low\", \"medium\", \"high\"");
    return 0;
}

static int decode_ollama(api_request *r, const json_value *root, char *err, size_t errlen) {
    int b = 1;
    if (get_bool(root, "stream", &b) < 0) return bad(r, err, errlen, "stream", "'stream' must be a boolean");
    r->stream = b;
    const json_value *opt = json_get(root, "options");
    if (!absent(opt)) {
        if (opt->type != JSON_OBJECT) return bad(r, err, errlen, "options", "'options' must be an object");
        if (decode_sampling(r, opt, "options.", err, errlen)) return -1;
        int64_t i;
        int rc = get_int(opt, "num_predict", -2, 1 << 30, &i);
        if (rc < 0) return bad(r, err, errlen, "options.num_predict", "'options.num_predict' must be an integer >= -2");
        if (rc > 0 && i > 0) r->max_tokens = (int)i;
        if (get_int(opt, "num_ctx", 1, 1 << 30, &i) < 0)
            return bad(r, err, errlen, "options.num_ctx", "'options.num_ctx' must be a positive integer");
    }
    int think;
    if (decode_think(r, root, &think, err, errlen)) return -1;
    int json_hint = 0;
    const json_value *fmt = json_get(root, "format");
    if (!absent(fmt)) {
        if (fmt->type == JSON_OBJECT || (fmt->type == JSON_STRING && !strcmp(fmt->str, "json"))) json_hint = 1;
        else if (!(fmt->type == JSON_STRING && !fmt->len))
            return bad(r, err, errlen, "format", "'format' must be \"json\" or a JSON schema object");
    }
    if (r->kind == API_OLLAMA_CHAT) {
        const json_value *msgs = json_get(root, "messages");
        if (absent(msgs)) { r->load_only = 1; return 0; }
        if (msgs->type != JSON_ARRAY) return bad(r, err, errlen, "messages", "'messages' must be an array");
        if (!msgs->len) { r->load_only = 1; return 0; }
        if (decode_tools(r, root, err, errlen)) return -1;
        return render_chat(r, msgs, NULL, NULL, think, -1, json_hint, 1, err, errlen);
    }
    /* /api/generate */
    const json_value *p = json_get(root, "prompt");
    if (!absent(p) && p->type != JSON_STRING) return bad(r, err, errlen, "prompt", "'prompt' must be a string");
    const json_value *sys = json_get(root, "system");
    if (!absent(sys) && sys->type != JSON_STRING) return bad(r, err, errlen, "system", "'system' must be a string");
    int raw = 0;
    if (get_bool(root, "raw", &raw) < 0) return bad(r, err, errlen, "raw", "'raw' must be a boolean");
    if (absent(p) || !p->len) { r->load_only = 1; return 0; }
    if (strlen(p->str) != p->len) return bad(r, err, errlen, "prompt", "'prompt' must not contain NUL");
    if (raw) {
        buf_append(&r->prompt, p->str, p->len);
        r->chat = 1;
        r->thinking = p->len >= 7 && !memcmp(p->str + p->len - 7, "<think>", 7);
        return 0;
    }
    const char *system = absent(sys) ? NULL : sys->str;
    if (system && strlen(system) != sys->len) return bad(r, err, errlen, "system", "'system' must not contain NUL");
    return render_chat(r, NULL, system, p->str, think, -1, json_hint, 1, err, errlen);
}

int api_request_decode(api_kind kind, const char *body, size_t len, const sampler_params *defaults, api_request *r,
                       char *err, size_t errlen) {
    memset(r, 0, sizeof *r);
    r->kind = kind;
    r->sp = *defaults;
    if (err && errlen) err[0] = 0;
    char jerr[200];
    r->doc = json_parse_max(body, len, API_MAX_JSON_VALUES, jerr, sizeof jerr);
    if (!r->doc) return bad(r, err, errlen, "", "the request body is not valid JSON: %s", jerr);
    const json_value *root = json_root(r->doc);
    if (root->type != JSON_OBJECT) return bad(r, err, errlen, "", "the request body must be a JSON object");
    const json_value *model = json_get(root, "model");
    if (!absent(model)) {
        if (model->type != JSON_STRING) return bad(r, err, errlen, "model", "'model' must be a string");
        snprintf(r->model, sizeof r->model, "%s", model->str);
    }
    if (kind == API_OPENAI_CHAT || kind == API_OPENAI_COMPLETION) return decode_openai(r, root, err, errlen);
    return decode_ollama(r, root, err, errlen);
}

void api_request_free(api_request *r) {
    json_free(r->doc);
    for (int i = 0; i < r->n_stop; i++) free(r->stop[i]);
    buf_free(&r->prompt);
    buf_free(&r->spans);
    memset(r, 0, sizeof *r);
}

int api_encode_prompt(const tokenizer *t, const api_request *r, int32_t **ids, size_t *n_ids, char *err, size_t errlen) {
    const char *text = r->prompt.data ? r->prompt.data : "";
    if (r->rendered)
        return tokenizer_encode_guarded(t, text, r->prompt.len, (const size_t *)(void *)r->spans.data,
                                        r->spans.len / (2 * sizeof(size_t)), ids, n_ids, err, errlen);
    return tokenizer_encode(t, text, r->prompt.len, 1, ids, n_ids, err, errlen);
}
