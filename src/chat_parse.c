/* chat_parse.c — streaming parser for GLM-4.7 output text (SPEC §7.6, §9.8–9).
 *
 * Input is the decoded text of the generated tokens, fed in arbitrary pieces;
 * special tokens arrive as their literal text. Output is a sequence of events:
 * reasoning deltas, content deltas, complete tool calls and errors.
 *
 * States: REASONING (thinking on: the prompt ended with <think>) until
 * </think>, or until <tool_call> (which also ends reasoning); CONTENT until
 * <tool_call>; CALL until </tool_call>, after which CONTENT resumes.
 * Tolerated: a <think> before any text (either mode) enters REASONING; a
 * </think> in CONTENT before any content text is dropped. Elsewhere tags are
 * ordinary text (e.g. a second </think> inside an answer).
 *
 * Whitespace: every reasoning or content segment (the text between two
 * boundaries: start, a tag, end of stream) is trimmed of ASCII whitespace
 * (space, \t, \n, \v, \f, \r) at both ends, which is what the template's
 * .strip() does to them on the next turn. So a delta never starts a segment
 * with whitespace and whitespace inside a segment is sent once non-space text
 * follows it. Held back between feeds: only trailing whitespace, a suffix
 * that could begin a tag, and an incomplete UTF-8 sequence (so each delta is
 * whole UTF-8 when the input is).
 *
 * Tool calls: name<arg_key>k</arg_key><arg_value>v</arg_value>...; the name
 * and keys are trimmed; values are raw. Values of parameters the tool's
 * schema admits a string (directly, in a type list, or in an anyOf/oneOf
 * branch) stay strings verbatim; others are JSON-decoded,
 * falling back to the string. Repairs (walking the expected tag cycle):
 * missing </arg_value> (value ends at the next <arg_key> or the end, trailing
 * whitespace trimmed), missing <arg_key> (the text after </arg_value> up to
 * </arg_key> is the key), missing </arg_key> (key ends at <arg_value>),
 * missing <arg_value> (the text after </arg_key> is the value), and a
 * <tool_call> inside an open call closes it. A call still open at the end of
 * the stream is accepted only if it names a declared tool and has all its
 * required arguments. A call that cannot be accepted yields an ERROR event
 * followed by its raw text as CONTENT, so nothing is dropped silently. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE 1 /* memmem, qsort_r */
#endif
#include "chat.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { ST_REASONING, ST_CONTENT, ST_CALL };

struct chat_parser {
    int state;
    int at_start;     /* nothing but whitespace seen in the whole output */
    int seg_started;  /* the current text segment has emitted text */
    int ncalls;
    buf pend;         /* text states: held-back text; ST_CALL: the call body so far */
    size_t scan;      /* ST_CALL: bytes of pend already searched for a tag */
    json_doc *tools;  /* our copy of the request's tools, or NULL */
    buf scratch;
};

static const char T_THINK[] = "<think>", T_ENDTHINK[] = "</think>", T_CALL[] = "<tool_call>",
                  T_ENDCALL[] = "</tool_call>", T_KEY[] = "<arg_key>", T_ENDKEY[] = "</arg_key>",
                  T_VAL[] = "<arg_value>", T_ENDVAL[] = "</arg_value>";

static int is_ws(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f'; }

static void trim(const char **s, size_t *n) {
    while (*n && is_ws(**s)) { (*s)++; (*n)--; }
    while (*n && is_ws((*s)[*n - 1])) (*n)--;
}

chat_parser *chat_parser_new(int thinking, const json_value *tools) {
    chat_parser *p = calloc(1, sizeof *p);
    if (!p) return NULL;
    p->state = thinking ? ST_REASONING : ST_CONTENT;
    p->at_start = 1;
    if (tools && tools->type == JSON_ARRAY) {
        buf t = {0};
        json_write_value(&t, tools, 0, 0);
        p->tools = json_parse(t.data, t.len, NULL, 0);
        buf_free(&t);
    }
    return p;
}

void chat_parser_free(chat_parser *p) {
    if (!p) return;
    buf_free(&p->pend);
    buf_free(&p->scratch);
    json_free(p->tools);
    free(p);
}

static void consume(buf *b, size_t n) {
    memmove(b->data, b->data + n, b->len - n);
    b->len -= n;
    b->data[b->len] = 0;
}

static void emit_text(chat_parser *p, const char *s, size_t n, chat_event_fn fn, void *user) {
    if (!n) return;
    chat_event ev = {p->state == ST_REASONING ? CHAT_EV_REASONING : CHAT_EV_CONTENT, s, n, NULL, NULL, 0};
    p->seg_started = 1;
    p->at_start = 0;
    fn(user, &ev);
}

/* The text before a boundary (a tag or the end): trimmed at both ends. */
static void emit_segment(chat_parser *p, const char *s, size_t n, chat_event_fn fn, void *user) {
    if (!p->seg_started)
        while (n && is_ws(*s)) { s++; n--; }
    while (n && is_ws(s[n - 1])) n--;
    emit_text(p, s, n, fn, user);
}

/* ---------------------------------------------------------------- tools schema */

static const json_value *find_tool_params(const chat_parser *p, const char *name, size_t nlen, int *found) {
    *found = 0;
    const json_value *tools = json_root(p->tools);
    if (!tools) return NULL;
    for (size_t i = 0; i < tools->len; i++) {
        const json_value *t = &tools->items[i];
        const json_value *f = json_get(t, "function");
        if (!f) f = t;
        const json_value *nm = json_get(f, "name");
        if (nm && nm->type == JSON_STRING && nm->len == nlen && memcmp(nm->str, name, nlen) == 0) {
            *found = 1;
            return json_get(f, "parameters");
        }
    }
    return NULL;
}

/* A schema that admits a string: "type": "string", a type list naming
 * "string", or an anyOf/oneOf branch that does (pydantic writes Optional[str]
 * as {"anyOf": [{"type": "string"}, {"type": "null"}]}). */
static int schema_is_string(const json_value *s, int depth) {
    if (!s || s->type != JSON_OBJECT || depth > 8) return 0;
    const json_value *t = json_get(s, "type");
    if (t && t->type == JSON_STRING && strcmp(t->str, "string") == 0) return 1;
    if (t && t->type == JSON_ARRAY)
        for (size_t i = 0; i < t->len; i++)
            if (t->items[i].type == JSON_STRING && strcmp(t->items[i].str, "string") == 0) return 1;
    static const char *const alts[] = {"anyOf", "oneOf"};
    for (int a = 0; a < 2; a++) {
        const json_value *l = json_get(s, alts[a]);
        if (l && l->type == JSON_ARRAY)
            for (size_t i = 0; i < l->len; i++)
                if (schema_is_string(&l->items[i], depth + 1)) return 1;
    }
    return 0;
}

static int param_is_string(const json_value *params, const char *key) {
    return schema_is_string(json_get(json_get(params, "properties"), key), 0);
}

/* ---------------------------------------------------------------- call body */

typedef struct { const char *k; size_t kn; const char *v; size_t vn; } arg_pair;

typedef struct {
    const char *name;
    size_t name_len;
    arg_pair *args;
    size_t nargs, cap;
    const char *err;
} call_parse;

static void add_pair(call_parse *c, const char *k, size_t kn, const char *v, size_t vn) {
    if (c->nargs == c->cap) {
        c->cap = c->cap ? c->cap * 2 : 8;
        arg_pair *a = realloc(c->args, c->cap * sizeof *a);
        if (!a) abort();
        c->args = a;
    }
    trim(&k, &kn);
    c->args[c->nargs++] = (arg_pair){k, kn, v, vn};
}

/* The next arg tag at or after s; returns its index (0..3) or -1. */
static const char *const ARG_TAGS[4] = {T_KEY, T_ENDKEY, T_VAL, T_ENDVAL};
static int next_tag(const char *s, size_t n, size_t *pos) {
    int best = -1;
    size_t bp = n;
    for (int t = 0; t < 4; t++) {
        const char *q = memmem(s, bp, ARG_TAGS[t], strlen(ARG_TAGS[t]));
        if (q && (size_t)(q - s) < bp) { bp = (size_t)(q - s); best = t; }
    }
    *pos = bp;
    return best;
}

/* Walks name (<arg_key>k</arg_key> ws <arg_value>v</arg_value>)* with the
 * repairs listed in the file comment. */
static int parse_call_body(const char *s, size_t n, call_parse *c) {
    enum { NAME, KEY, AFTER_KEY, VALUE, BETWEEN } st = NAME;
    const char *k = NULL, *v = NULL;
    size_t kn = 0;
    size_t i = 0;
    c->name = s;
    c->name_len = 0;
    for (;;) {
        size_t pos;
        int tag = next_tag(s + i, n - i, &pos);
        const char *txt = s + i;
        size_t tn = pos;
        const char *ts = txt; /* the text trimmed, to test for blankness */
        size_t tl = tn;
        trim(&ts, &tl);
        switch (st) {
        case NAME:
            c->name = txt;
            c->name_len = tn;
            if (tag == 0) st = KEY;
            else if (tag == 1) {
                /* missing <arg_key> right after the name: "name\nkey</arg_key>" */
                const char *nl = memchr(ts, '\n', tl);
                if (!nl) { c->err = "tool call: cannot separate the function name from the first key"; return -1; }
                c->name = ts;
                c->name_len = (size_t)(nl - ts);
                k = nl + 1;
                kn = (size_t)(ts + tl - k);
                st = AFTER_KEY;
            } else if (tag >= 2) { c->err = "tool call: value without a key"; return -1; }
            break;
        case KEY:
            k = txt;
            kn = tn;
            if (tag == 1) st = AFTER_KEY;
            else if (tag == 2) st = VALUE; /* missing </arg_key> */
            else { c->err = "tool call: unterminated argument key"; return -1; }
            break;
        case AFTER_KEY:
            if (tag == 2 && tl == 0) st = VALUE;
            else if (tag == 3) { add_pair(c, k, kn, txt, tn); st = BETWEEN; } /* missing <arg_value> */
            else if (tag == 0 && tl > 0) { add_pair(c, k, kn, ts, tl); st = KEY; }
            else if (tag < 0 && tl > 0) { add_pair(c, k, kn, ts, tl); st = BETWEEN; }
            else { c->err = "tool call: argument key without a value"; return -1; }
            break;
        case VALUE:
            v = txt;
            if (tag == 3) { add_pair(c, k, kn, v, tn); st = BETWEEN; }
            else if (tag == 0 || tag < 0) { /* missing </arg_value> */
                size_t vn = tn;
                while (vn && is_ws(v[vn - 1])) vn--;
                add_pair(c, k, kn, v, vn);
                st = tag == 0 ? KEY : BETWEEN;
            } else { c->err = "tool call: misplaced tag inside a value"; return -1; }
            break;
        case BETWEEN:
            if (tag == 0 && tl == 0) st = KEY;
            else if (tag == 1 && tl > 0) { k = ts; kn = tl; st = AFTER_KEY; } /* missing <arg_key> */
            else if (tag < 0 && tl == 0) break;
            else { c->err = "tool call: unexpected text between arguments"; return -1; }
            break;
        }
        if (tag < 0) break;
        i += pos + strlen(ARG_TAGS[tag]);
    }
    if (st == KEY || st == AFTER_KEY) { c->err = "tool call: argument key without a value"; return -1; }
    trim(&c->name, &c->name_len);
    if (!c->name_len) { c->err = "tool call: no function name"; return -1; }
    return 0;
}

/* at_eos: the call had no </tool_call>; accept it only when it names a
 * declared tool and carries every required argument. */
static void finish_call(chat_parser *p, const char *body, size_t n, int closed, chat_event_fn fn, void *user) {
    call_parse c = {0};
    int rc = parse_call_body(body, n, &c);
    int declared = 0;
    const json_value *params = rc == 0 ? find_tool_params(p, c.name, c.name_len, &declared) : NULL;
    if (rc == 0 && !closed) {
        if (!declared) { rc = -1; c.err = "tool call cut off at the end of output and names no declared tool"; }
        const json_value *req = json_get(params, "required");
        for (size_t i = 0; rc == 0 && req && req->type == JSON_ARRAY && i < req->len; i++) {
            const json_value *r = &req->items[i];
            if (r->type != JSON_STRING) continue;
            int have = 0;
            for (size_t j = 0; j < c.nargs; j++)
                if (c.args[j].kn == r->len && memcmp(c.args[j].k, r->str, r->len) == 0) have = 1;
            if (!have) { rc = -1; c.err = "tool call cut off at the end of output and lacks a required argument"; }
        }
    }
    if (rc == 0) {
        buf *a = &p->scratch;
        buf_clear(a);
        buf_putc(a, '{');
        int first = 1;
        for (size_t i = 0; i < c.nargs; i++) {
            arg_pair *ap = &c.args[i];
            int later = 0; /* duplicate keys: the last one wins, as in JSON readers */
            for (size_t j = i + 1; j < c.nargs; j++)
                if (c.args[j].kn == ap->kn && memcmp(c.args[j].k, ap->k, ap->kn) == 0) later = 1;
            if (later) continue;
            if (!first) buf_putc(a, ',');
            first = 0;
            json_write_string(a, ap->k, ap->kn, 0);
            buf_putc(a, ':');
            char key[256];
            snprintf(key, sizeof key, "%.*s", (int)(ap->kn < 255 ? ap->kn : 255), ap->k);
            json_doc *d = NULL;
            if (!param_is_string(params, key) && ap->vn > 0) d = json_parse(ap->v, ap->vn, NULL, 0);
            if (d) json_write_value(a, json_root(d), 0, 0);
            else json_write_string(a, ap->v, ap->vn, 0);
            json_free(d);
        }
        buf_putc(a, '}');
        char *name = malloc(c.name_len + 1);
        if (!name) abort();
        memcpy(name, c.name, c.name_len);
        name[c.name_len] = 0;
        chat_event ev = {CHAT_EV_TOOL_CALL, body, n, name, a->data, p->ncalls++};
        fn(user, &ev);
        free(name);
    } else {
        chat_event ev = {CHAT_EV_ERROR, c.err, strlen(c.err), NULL, NULL, 0};
        fn(user, &ev);
        buf raw = {0};
        buf_puts(&raw, T_CALL);
        buf_append(&raw, body, n);
        if (closed) buf_puts(&raw, T_ENDCALL);
        int st = p->state;
        p->state = ST_CONTENT;
        emit_text(p, raw.data, raw.len, fn, user);
        p->state = st;
        buf_free(&raw);
    }
    free(c.args);
}

/* ---------------------------------------------------------------- driver */

static int all_ws(const char *s, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (!is_ws(s[i])) return 0;
    return 1;
}

/* Length of the longest suffix of s[0..n) that is a proper prefix of tag. */
static size_t partial_suffix(const char *s, size_t n, const char *tag) {
    size_t tl = strlen(tag);
    for (size_t l = tl - 1 < n ? tl - 1 : n; l > 0; l--)
        if (memcmp(s + n - l, tag, l) == 0) return l;
    return 0;
}

/* Bytes at the end of s that form an incomplete UTF-8 sequence. */
static size_t utf8_tail(const char *s, size_t n) {
    for (size_t back = 1; back <= 3 && back <= n; back++) {
        unsigned char c = (unsigned char)s[n - back];
        if ((c & 0xC0) == 0x80) continue;
        size_t need = c >= 0xF0 ? 4 : c >= 0xE0 ? 3 : c >= 0xC0 ? 2 : 1;
        return need > back ? back : 0;
    }
    return 0;
}

static void run(chat_parser *p, int final, chat_event_fn fn, void *user) {
    for (;;) {
        buf *b = &p->pend;
        const char *s = b->data ? b->data : "";
        size_t n = b->len;
        if (p->state == ST_CALL) {
            size_t from = p->scan;
            const char *close = memmem(s + from, n - from, T_ENDCALL, sizeof T_ENDCALL - 1);
            const char *open = memmem(s + from, n - from, T_CALL, sizeof T_CALL - 1);
            if (open && (!close || open < close)) { /* a new call opens: the old one lacked </tool_call> */
                size_t k = (size_t)(open - s);
                finish_call(p, s, k, 1, fn, user);
                consume(b, k + sizeof T_CALL - 1);
                p->scan = 0;
                continue;
            }
            if (close) {
                size_t k = (size_t)(close - s);
                finish_call(p, s, k, 1, fn, user);
                consume(b, k + sizeof T_ENDCALL - 1);
                p->state = ST_CONTENT;
                p->seg_started = 0;
                continue;
            }
            if (final) {
                finish_call(p, s, n, 0, fn, user);
                buf_clear(b);
                p->state = ST_CONTENT;
                return;
            }
            p->scan = n >= sizeof T_ENDCALL ? n - (sizeof T_ENDCALL - 1) : 0;
            return;
        }
        /* text states: find the first tag that applies here */
        const char *tags[3];
        int nt = 0;
        tags[nt++] = T_CALL;
        if (p->state == ST_REASONING) tags[nt++] = T_ENDTHINK;
        if (p->at_start) tags[nt++] = T_THINK;
        if (p->state == ST_CONTENT && !p->seg_started) tags[nt++] = T_ENDTHINK;
        size_t best = n;
        const char *btag = NULL;
        for (int t = 0; t < nt; t++) {
            const char *q = memmem(s, best, tags[t], strlen(tags[t]));
            if (!q) continue;
            size_t pos = (size_t)(q - s);
            /* the start-only tags count only after nothing but whitespace */
            if ((tags[t] == T_THINK || (tags[t] == T_ENDTHINK && p->state == ST_CONTENT)) && !all_ws(s, pos)) continue;
            if (pos < best) { best = pos; btag = tags[t]; }
        }
        if (btag) {
            emit_segment(p, s, best, fn, user);
            consume(b, best + strlen(btag));
            p->at_start = 0;
            p->seg_started = 0;
            if (btag == T_CALL) { p->state = ST_CALL; p->scan = 0; }
            else if (btag == T_THINK) p->state = ST_REASONING;
            else p->state = ST_CONTENT; /* </think> (dropped when stray in content) */
            continue;
        }
        if (final) {
            emit_segment(p, s, n, fn, user);
            buf_clear(b);
            p->seg_started = 0;
            return;
        }
        /* hold back what could still become a tag, trailing whitespace, and
         * an incomplete UTF-8 sequence; drop leading whitespace of a segment */
        size_t hold = 0;
        for (int t = 0; t < nt; t++) {
            size_t h = partial_suffix(s, n, tags[t]);
            if (h > hold) hold = h;
        }
        size_t start = 0;
        if (!p->seg_started)
            while (start < n - hold && is_ws(s[start])) start++;
        size_t end = n - hold;
        while (end > start && is_ws(s[end - 1])) end--;
        end -= utf8_tail(s + start, end - start);
        if (end > start) emit_text(p, s + start, end - start, fn, user);
        if (end > start || start > 0) consume(b, end > start ? end : start);
        return;
    }
}

void chat_parser_feed(chat_parser *p, const char *text, size_t len, chat_event_fn fn, void *user) {
    if (!p || !len) return;
    buf_append(&p->pend, text, len);
    run(p, 0, fn, user);
}

void chat_parser_finish(chat_parser *p, chat_event_fn fn, void *user) {
    if (!p) return;
    if (p->state == ST_CALL || p->pend.len) run(p, 1, fn, user);
}
