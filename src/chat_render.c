/* chat_render.c — the GLM-4.7 prompt renderer (SPEC §7.1–7.4).
 *
 * A hand translation of chat_template.jinja, evaluated with the semantics that
 * template has under transformers' jinja2 set-up: JSON values behave as the
 * Python objects json.loads makes (int vs float, dict key order with duplicate
 * keys, str() / repr() of non-strings, str.strip()'s whitespace set), and
 * tojson is json.dumps(ensure_ascii=False). Comments name the template line
 * each piece reproduces; the whitespace of the template itself vanishes under
 * trim_blocks/lstrip_blocks and the explicit {%- -%} markers, so the only
 * newlines written are those inside the tools preamble. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE 1 /* memmem, qsort_r */
#endif
#include "chat.h"

#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---------------------------------------------------------------- Python values */

/* repr(float): the shortest digit string that reads back to x, laid out the
 * way Python's float_repr_style 'short' does (exponent form when the decimal
 * point position is <= -4 or > 16). */
void chat_py_float_repr(buf *out, double x) {
    if (isnan(x)) { buf_puts(out, "nan"); return; }
    if (isinf(x)) { buf_puts(out, x > 0 ? "inf" : "-inf"); return; }
    if (x == 0) { buf_puts(out, signbit(x) ? "-0.0" : "0.0"); return; }
    int neg = x < 0;
    double ax = fabs(x);
    unsigned long long mant = 0;
    int exp10 = 0, ndig = 0;
    char tmp[64];
    for (int p = 1; p <= 17 && !ndig; p++) {
        snprintf(tmp, sizeof tmp, "%.*e", p - 1, ax);
        /* tmp = d[.ddd]e±XX */
        unsigned long long m = 0;
        const char *s = tmp;
        for (; *s && *s != 'e'; s++)
            if (*s >= '0' && *s <= '9') m = m * 10 + (unsigned)(*s - '0');
        int e = atoi(s + 1) - (p - 1); /* value = m * 10^e */
        /* The correctly rounded p-digit value may miss the round-trip interval
         * while a neighbour hits it (the interval is lopsided at powers of 2). */
        unsigned long long cand[3] = {m, m - 1, m + 1};
        for (int k = 0; k < 3; k++) {
            if (cand[k] == 0) continue;
            snprintf(tmp, sizeof tmp, "%llue%d", cand[k], e);
            if (strtod(tmp, NULL) == ax) { mant = cand[k]; exp10 = e; ndig = p; break; }
        }
    }
    if (!ndig) { /* unreachable for finite doubles; %.17g always round-trips */
        snprintf(tmp, sizeof tmp, "%.17g", x);
        buf_puts(out, tmp);
        return;
    }
    char dig[32];
    int n = snprintf(dig, sizeof dig, "%llu", mant);
    while (n > 1 && dig[n - 1] == '0') { n--; exp10++; }
    dig[n] = 0;
    int decpt = n + exp10; /* value = 0.dig * 10^decpt */
    if (neg) buf_putc(out, '-');
    if (decpt > -4 && decpt <= 16) {
        if (decpt <= 0) {
            buf_puts(out, "0.");
            for (int i = 0; i < -decpt; i++) buf_putc(out, '0');
            buf_append(out, dig, (size_t)n);
        } else if (decpt >= n) {
            buf_append(out, dig, (size_t)n);
            for (int i = 0; i < decpt - n; i++) buf_putc(out, '0');
            buf_puts(out, ".0");
        } else {
            buf_append(out, dig, (size_t)decpt);
            buf_putc(out, '.');
            buf_append(out, dig + decpt, (size_t)(n - decpt));
        }
    } else {
        buf_putc(out, dig[0]);
        if (n > 1) { buf_putc(out, '.'); buf_append(out, dig + 1, (size_t)(n - 1)); }
        int e = decpt - 1;
        buf_printf(out, "e%c%02d", e < 0 ? '-' : '+', e < 0 ? -e : e);
    }
}

/* json.loads makes an int of a number without fraction or exponent. */
static int number_is_int(const json_value *v) {
    return !memchr(v->str, '.', v->len) && !memchr(v->str, 'e', v->len) && !memchr(v->str, 'E', v->len);
}

/* str() of a JSON number as Python holds it; json.dumps differs only for
 * non-finite floats (Infinity/NaN). */
static void py_number(buf *out, const json_value *v, int for_json) {
    if (number_is_int(v)) {
        if (v->len == 2 && v->str[0] == '-' && v->str[1] == '0') buf_putc(out, '0'); /* int("-0") == 0 */
        else buf_append(out, v->str, v->len);
        return;
    }
    if (for_json && isinf(v->number)) { buf_puts(out, v->number > 0 ? "Infinity" : "-Infinity"); return; }
    chat_py_float_repr(out, v->number);
}

typedef struct { size_t key; size_t val; } dict_item;

static int cmp_member_idx(const void *a, const void *b, void *ctx) {
    const json_member *m = ctx;
    size_t i = *(const size_t *)a, j = *(const size_t *)b;
    size_t li = m[i].key_len, lj = m[j].key_len;
    int c = memcmp(m[i].key, m[j].key, li < lj ? li : lj);
    if (c) return c;
    if (li != lj) return li < lj ? -1 : 1;
    return i < j ? -1 : i > j;
}

/* A JSON object as the dict json.loads builds: each key once, at the place of
 * its first occurrence, holding the value of its last. Returns the count;
 * *items is malloc'd (NULL when the object is empty). */
static size_t py_dict_items(const json_value *obj, dict_item **items) {
    size_t n = obj->len;
    *items = NULL;
    if (!n) return 0;
    dict_item *it = malloc(n * sizeof *it);
    size_t *idx = malloc(n * sizeof *idx);
    size_t *last = malloc(n * sizeof *last);
    if (!it || !idx || !last) { free(it); free(idx); free(last); abort(); }
    for (size_t i = 0; i < n; i++) { idx[i] = i; last[i] = SIZE_MAX; }
    qsort_r(idx, n, sizeof *idx, cmp_member_idx, obj->members);
    for (size_t g = 0; g < n;) {
        size_t h = g + 1;
        while (h < n && obj->members[idx[h]].key_len == obj->members[idx[g]].key_len &&
               memcmp(obj->members[idx[h]].key, obj->members[idx[g]].key, obj->members[idx[g]].key_len) == 0)
            h++;
        last[idx[g]] = idx[h - 1]; /* idx sorted by (key, position): g is first, h-1 last */
        g = h;
    }
    size_t k = 0;
    for (size_t i = 0; i < n; i++)
        if (last[i] != SIZE_MAX) it[k++] = (dict_item){i, last[i]};
    free(idx);
    free(last);
    *items = it;
    return k;
}

/* Decodes one UTF-8 code point (input is valid UTF-8 from the JSON reader;
 * a stray byte decodes as itself so nothing here can overrun). */
static unsigned utf8_next(const unsigned char *s, size_t n, size_t *adv) {
    unsigned c = s[0];
    size_t l = c < 0x80 ? 1 : c >= 0xF0 ? 4 : c >= 0xE0 ? 3 : c >= 0xC0 ? 2 : 1;
    if (l > n) l = 1;
    for (size_t i = 1; i < l; i++)
        if ((s[i] & 0xC0) != 0x80) l = 1;
    *adv = l;
    if (l == 1) return c;
    unsigned cp = c & (0xFF >> (l + 1));
    for (size_t i = 1; i < l; i++) cp = (cp << 6) | (s[i] & 63u);
    return cp;
}

/* Python's str.isspace() set (bidirectional class WS/B/S or category Zs). */
static int py_isspace(unsigned cp) {
    return (cp >= 0x09 && cp <= 0x0D) || (cp >= 0x1C && cp <= 0x20) || cp == 0x85 || cp == 0xA0 ||
           cp == 0x1680 || (cp >= 0x2000 && cp <= 0x200A) || cp == 0x2028 || cp == 0x2029 || cp == 0x202F ||
           cp == 0x205F || cp == 0x3000;
}

/* Code points Python's str.isprintable() rejects, as far as a table-free
 * check can tell: controls, non-ASCII separators, every format character (Cf)
 * of Unicode 14/15 (the ones added since were unassigned before, hence
 * non-printable in older Pythons too), surrogates, private use and the
 * noncharacters. Other unassigned code points are not detected. */
static int py_nonprintable(unsigned cp) {
    if (cp < 0x20 || (cp >= 0x7F && cp <= 0xA0) || cp == 0xAD) return 1;
    if ((cp >= 0x600 && cp <= 0x605) || cp == 0x61C || cp == 0x6DD || cp == 0x70F || cp == 0x1680 || cp == 0x180E)
        return 1;
    if (cp == 0x890 || cp == 0x891 || cp == 0x8E2 || cp == 0x110BD || cp == 0x110CD || (cp >= 0x13430 && cp <= 0x1343F) ||
        (cp >= 0x1BCA0 && cp <= 0x1BCA3) || (cp >= 0x1D173 && cp <= 0x1D17A))
        return 1;
    if ((cp >= 0xFDD0 && cp <= 0xFDEF) || (cp & 0xFFFE) == 0xFFFE) return 1; /* noncharacters (always Cn) */
    if ((cp >= 0x2000 && cp <= 0x200F) || (cp >= 0x2028 && cp <= 0x202F) || (cp >= 0x205F && cp <= 0x2064) ||
        (cp >= 0x2066 && cp <= 0x206F) || cp == 0x3000)
        return 1;
    if ((cp >= 0xD800 && cp <= 0xF8FF) || cp == 0xFEFF || (cp >= 0xFFF9 && cp <= 0xFFFB)) return 1;
    if (cp == 0xE0001 || (cp >= 0xE0020 && cp <= 0xE007F) || cp >= 0xF0000) return 1;
    return 0;
}

/* Python's str.strip() with no argument: trims the whitespace set at both ends. */
static void py_strip(const char *s, size_t n, const char **os, size_t *on) {
    size_t a = 0, adv;
    while (a < n && py_isspace(utf8_next((const unsigned char *)s + a, n - a, &adv))) a += adv;
    size_t b = n;
    while (b > a) {
        size_t st = b - 1;
        while (st > a && ((unsigned char)s[st] & 0xC0) == 0x80 && b - st < 4) st--;
        if (!py_isspace(utf8_next((const unsigned char *)s + st, b - st, &adv)) || st + adv != b) break;
        b = st;
    }
    *os = s + a;
    *on = b - a;
}

static void py_repr_str(buf *out, const char *s, size_t n) {
    int has_sq = memchr(s, '\'', n) != NULL, has_dq = memchr(s, '"', n) != NULL;
    char q = has_sq && !has_dq ? '"' : '\'';
    buf_putc(out, q);
    for (size_t i = 0; i < n;) {
        size_t adv;
        unsigned cp = utf8_next((const unsigned char *)s + i, n - i, &adv);
        if (cp == (unsigned char)q || cp == '\\') { buf_putc(out, '\\'); buf_putc(out, (char)cp); }
        else if (cp == '\n') buf_puts(out, "\\n");
        else if (cp == '\r') buf_puts(out, "\\r");
        else if (cp == '\t') buf_puts(out, "\\t");
        else if (py_nonprintable(cp)) {
            if (cp < 0x100) buf_printf(out, "\\x%02x", cp);
            else if (cp < 0x10000) buf_printf(out, "\\u%04x", cp);
            else buf_printf(out, "\\U%08x", cp);
        } else buf_append(out, s + i, adv);
        i += adv;
    }
    buf_putc(out, q);
}

/* Python's json.dumps(v, ensure_ascii=False) (as_json) or repr(v): the same
 * walk, differing only in how scalars and strings are spelt. */
static void py_serialize(buf *out, const json_value *v, int as_json) {
    switch (v->type) {
    case JSON_NULL: buf_puts(out, as_json ? "null" : "None"); break;
    case JSON_BOOL: buf_puts(out, v->boolean ? (as_json ? "true" : "True") : (as_json ? "false" : "False")); break;
    case JSON_NUMBER: py_number(out, v, as_json); break;
    case JSON_STRING:
        if (as_json) json_write_string(out, v->str, v->len, 0);
        else py_repr_str(out, v->str, v->len);
        break;
    case JSON_ARRAY:
        buf_putc(out, '[');
        for (size_t i = 0; i < v->len; i++) {
            if (i) buf_puts(out, ", ");
            py_serialize(out, &v->items[i], as_json);
        }
        buf_putc(out, ']');
        break;
    case JSON_OBJECT: {
        dict_item *it;
        size_t n = py_dict_items(v, &it);
        buf_putc(out, '{');
        for (size_t i = 0; i < n; i++) {
            if (i) buf_puts(out, ", ");
            const json_member *k = &v->members[it[i].key];
            if (as_json) json_write_string(out, k->key, k->key_len, 0);
            else py_repr_str(out, k->key, k->key_len);
            buf_puts(out, ": ");
            py_serialize(out, &v->members[it[i].val].value, as_json);
        }
        buf_putc(out, '}');
        free(it);
        break;
    }
    }
}

void chat_py_dumps(buf *out, const json_value *v) { py_serialize(out, v, 1); }

static void py_repr(buf *out, const json_value *v) { py_serialize(out, v, 0); }

/* {{ v }} in jinja2: str(v). */
static void py_str(buf *out, const json_value *v) {
    if (v->type == JSON_STRING) buf_append(out, v->str, v->len);
    else py_repr(out, v);
}

/* Python truthiness; NULL stands for jinja2's Undefined (falsy). */
static int py_truthy(const json_value *v) {
    if (!v) return 0;
    switch (v->type) {
    case JSON_NULL: return 0;
    case JSON_BOOL: return v->boolean;
    case JSON_NUMBER: return v->number != 0;
    case JSON_STRING: case JSON_ARRAY: case JSON_OBJECT: return v->len != 0;
    }
    return 0;
}

static const char *memfind(const char *h, size_t hn, const char *needle) {
    size_t nn = strlen(needle);
    return memmem(h, hn, needle, nn);
}

static const char *memfind_last(const char *h, size_t hn, const char *needle) {
    size_t nn = strlen(needle);
    const char *last = NULL;
    for (const char *p = h; (p = memmem(p, hn - (size_t)(p - h), needle, nn)); p++) last = p;
    return last;
}

/* ---------------------------------------------------------------- template */

typedef struct {
    buf *out;
    char *err;
    size_t errlen;
    unsigned flags;
    const json_value *messages;
    buf *spans;  /* chat_render_input.spans, or NULL */
    size_t base; /* out->len when the render began: span offsets count from here */
} rctx;

/* Request text (as opposed to the template's own) goes out between
 * span_begin and span_end, so the tokenizer can keep special-token literals
 * in it from matching (tokenizer_encode_guarded). */
static size_t span_begin(const rctx *c) { return c->out->len; }
static void span_end(rctx *c, size_t start) {
    if (!c->spans || c->out->len == start) return;
    size_t pair[2] = {start - c->base, c->out->len - start};
    buf_append(c->spans, pair, sizeof pair);
}

static int rfail(rctx *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int rfail(rctx *c, const char *fmt, ...) {
    if (c->err && c->errlen) {
        char msg[200];
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(msg, sizeof msg, fmt, ap);
        va_end(ap);
        snprintf(c->err, c->errlen, "chat template: %s", msg);
    }
    return -1;
}

/* The visible_text macro: strings as is, lists as their text parts and string
 * items, anything else through str() (the macro's else branch). */
static void visible_text(rctx *c, const json_value *v, buf *dst) {
    if (!v) return; /* Undefined iterates as empty */
    switch (v->type) {
    case JSON_STRING: buf_append(dst, v->str, v->len); break;
    case JSON_NULL:
        if (c->flags & CHAT_RENDER_EXACT) buf_puts(dst, "None");
        break;
    case JSON_ARRAY:
        for (size_t i = 0; i < v->len; i++) {
            const json_value *it = &v->items[i];
            if (it->type == JSON_OBJECT) {
                const json_value *t = json_get(it, "type");
                if (t && t->type == JSON_STRING && t->len == 4 && memcmp(t->str, "text", 4) == 0) {
                    const json_value *tx = json_get(it, "text");
                    if (tx) py_str(dst, tx);
                }
            } else if (it->type == JSON_STRING) {
                buf_append(dst, it->str, it->len);
            }
        }
        break;
    default: py_str(dst, v); break;
    }
}

static const char *role_of(const json_value *m) {
    const json_value *r = json_get(m, "role");
    return r && r->type == JSON_STRING ? r->str : NULL;
}

static const char *const PREAMBLE_HEAD =
    "<|system|>\n# Tools\n\nYou may call one or more functions to assist with the user query.\n\n"
    "You are provided with function signatures within <tools></tools> XML tags:\n<tools>\n";
static const char *const PREAMBLE_TAIL =
    "</tools>\n\nFor each function call, output the function name and arguments within the following XML format:\n"
    "<tool_call>{function-name}<arg_key>{arg-key-1}</arg_key><arg_value>{arg-value-1}</arg_value>"
    "<arg_key>{arg-key-2}</arg_key><arg_value>{arg-value-2}</arg_value>...</tool_call>";

/* {% for tc in m.tool_calls %} ... {% endfor %} */
static int render_tool_calls(rctx *c, size_t mi, const json_value *calls) {
    if (!py_truthy(calls)) return 0; /* {% if m.tool_calls %} */
    if (calls->type != JSON_ARRAY) return rfail(c, "message %zu: tool_calls must be an array", mi);
    for (size_t i = 0; i < calls->len; i++) {
        const json_value *tc = &calls->items[i];
        if (tc->type != JSON_OBJECT) return rfail(c, "message %zu: each tool call must be an object", mi);
        const json_value *f = json_get(tc, "function");
        if (py_truthy(f)) { /* {%- if tc.function %}{%- set tc = tc.function %} */
            if (f->type != JSON_OBJECT)
                return rfail(c, "message %zu: tool call 'function' must be an object", mi);
            tc = f;
        }
        const json_value *name = json_get(tc, "name");
        if (!name || name->type != JSON_STRING)
            return rfail(c, "message %zu: tool call needs a string 'name'", mi);
        const json_value *args = json_get(tc, "arguments");
        json_doc *doc = NULL;
        if (args && args->type == JSON_STRING) {
            /* SPEC §9.13: OpenAI clients send arguments as a JSON string; the
             * template would fail on it, so decode first. Blank means no arguments. */
            const char *s;
            size_t n;
            py_strip(args->str, args->len, &s, &n);
            char jerr[128];
            doc = json_parse(n ? s : "{}", n ? n : 2, jerr, sizeof jerr);
            if (!doc) return rfail(c, "message %zu: tool call arguments are not valid JSON: %s", mi, jerr);
            args = json_root(doc);
        }
        if (!args || args->type != JSON_OBJECT) {
            json_free(doc);
            return rfail(c, "message %zu: tool call arguments must be an object", mi);
        }
        buf_puts(c->out, "<tool_call>");
        size_t sp = span_begin(c);
        buf_append(c->out, name->str, name->len);
        span_end(c, sp);
        dict_item *it;
        size_t n = py_dict_items(args, &it);
        for (size_t k = 0; k < n; k++) {
            const json_member *key = &args->members[it[k].key];
            const json_value *v = &args->members[it[k].val].value;
            buf_puts(c->out, "<arg_key>");
            sp = span_begin(c);
            buf_append(c->out, key->key, key->key_len);
            span_end(c, sp);
            buf_puts(c->out, "</arg_key><arg_value>");
            sp = span_begin(c);
            if (v->type == JSON_STRING) buf_append(c->out, v->str, v->len);
            else chat_py_dumps(c->out, v);
            span_end(c, sp);
            buf_puts(c->out, "</arg_value>");
        }
        free(it);
        buf_puts(c->out, "</tool_call>");
        json_free(doc);
    }
    return 0;
}

static int render_assistant(rctx *c, size_t mi, const json_value *m, size_t last_user, int clear_thinking) {
    buf content = {0};
    visible_text(c, json_get(m, "content"), &content);
    const char *cs = content.data ? content.data : "";
    size_t cn = content.len;
    const char *rs = "";
    size_t rn = 0;
    const json_value *rc = json_get(m, "reasoning_content");
    if (rc && rc->type == JSON_STRING) {
        rs = rc->str;
        rn = rc->len;
    } else {
        const char *close = memfind(cs, cn, "</think>");
        if (close) {
            /* content.split('</think>')[0].rstrip('\n').split('<think>')[-1].lstrip('\n') */
            size_t head = (size_t)(close - cs);
            while (head > 0 && cs[head - 1] == '\n') head--;
            const char *open = memfind_last(cs, head, "<think>");
            rs = open ? open + 7 : cs;
            rn = head - (size_t)(rs - cs);
            while (rn > 0 && *rs == '\n') { rs++; rn--; }
            /* content.split('</think>')[-1].lstrip('\n') */
            const char *lastc = memfind_last(cs, cn, "</think>");
            size_t off = (size_t)(lastc - cs) + 8;
            while (off < cn && cs[off] == '\n') off++;
            cs += off;
            cn -= off;
        }
    }
    buf_puts(c->out, "<|assistant|>");
    /* ((clear_thinking is defined and not clear_thinking) or loop.index0 > ns.last_user_index) and reasoning_content */
    if ((clear_thinking == 0 || last_user == SIZE_MAX || mi > last_user) && rn > 0) {
        const char *s;
        size_t n;
        py_strip(rs, rn, &s, &n);
        buf_puts(c->out, "<think>");
        size_t sp = span_begin(c);
        buf_append(c->out, s, n);
        span_end(c, sp);
        buf_puts(c->out, "</think>");
    } else {
        buf_puts(c->out, "</think>");
    }
    const char *s;
    size_t n;
    py_strip(cs, cn, &s, &n);
    size_t sp = span_begin(c);
    buf_append(c->out, s, n);
    span_end(c, sp);
    buf_free(&content);
    return render_tool_calls(c, mi, json_get(m, "tool_calls"));
}

static int render_tool(rctx *c, size_t mi, const json_value *m) {
    const json_value *v = json_get(m, "content");
    static const json_value empty = {.type = JSON_STRING, .str = "", .len = 0};
    if (v && v->type == JSON_NULL && !(c->flags & CHAT_RENDER_EXACT)) v = &empty;
    if (v && v->type == JSON_STRING) {
        const char *prev = mi > 0 ? role_of(&c->messages->items[mi - 1]) : NULL;
        if (mi == 0 || !prev || strcmp(prev, "tool") != 0) buf_puts(c->out, "<|observation|>");
        buf_puts(c->out, "<tool_response>");
        size_t sp = span_begin(c);
        buf_append(c->out, v->str, v->len);
        span_end(c, sp);
        buf_puts(c->out, "</tool_response>");
        return 0;
    }
    /* <|observation|>{% for tr in m.content %}<tool_response>{{ tr.output if tr.output is defined else tr }}</tool_response>{% endfor %} */
    if (v && v->type != JSON_ARRAY && v->type != JSON_OBJECT)
        return rfail(c, "message %zu: tool message content must be a string or a list", mi);
    buf_puts(c->out, "<|observation|>");
    if (!v) return 0;
    if (v->type == JSON_OBJECT) { /* iterating a dict yields its keys */
        dict_item *it;
        size_t n = py_dict_items(v, &it);
        for (size_t i = 0; i < n; i++) {
            buf_puts(c->out, "<tool_response>");
            size_t sp = span_begin(c);
            buf_append(c->out, v->members[it[i].key].key, v->members[it[i].key].key_len);
            span_end(c, sp);
            buf_puts(c->out, "</tool_response>");
        }
        free(it);
        return 0;
    }
    for (size_t i = 0; i < v->len; i++) {
        const json_value *tr = &v->items[i];
        const json_value *o = tr->type == JSON_OBJECT ? json_get(tr, "output") : NULL;
        buf_puts(c->out, "<tool_response>");
        size_t sp = span_begin(c);
        if (o && o->type == JSON_NULL && !(c->flags & CHAT_RENDER_EXACT)) { /* null as empty */ }
        else py_str(c->out, o ? o : tr);
        span_end(c, sp);
        buf_puts(c->out, "</tool_response>");
    }
    return 0;
}

int chat_render_parts(const chat_render_input *in, buf *out, char *err, size_t errlen) {
    rctx c = {out, err, errlen, in->flags, in->messages, in->spans, out->len};
    if (err && errlen) err[0] = 0;
    const json_value *msgs = in->messages;
    if (!msgs || msgs->type != JSON_ARRAY) return rfail(&c, "'messages' must be an array");
    if (in->tools && in->tools->type != JSON_ARRAY && in->tools->type != JSON_NULL)
        return rfail(&c, "'tools' must be an array");
    size_t last_user = SIZE_MAX;
    for (size_t i = 0; i < msgs->len; i++) {
        const json_value *m = &msgs->items[i];
        if (m->type != JSON_OBJECT) return rfail(&c, "message %zu must be an object%s", i, "");
        const json_value *r = json_get(m, "role");
        if (!r || r->type != JSON_STRING) return rfail(&c, "message %zu needs a string 'role'%s", i, "");
        if (strcmp(r->str, "user") && strcmp(r->str, "assistant") && strcmp(r->str, "system") &&
            strcmp(r->str, "tool"))
            return rfail(&c, "message %zu has unknown role '%.40s'", i, r->str);
        if (!strcmp(r->str, "user")) last_user = i;
    }

    buf_puts(out, "[gMASK]<sop>");
    if (py_truthy(in->tools)) {
        buf_puts(out, PREAMBLE_HEAD);
        for (size_t i = 0; i < in->tools->len; i++) {
            size_t sp = span_begin(&c);
            chat_py_dumps(out, &in->tools->items[i]);
            span_end(&c, sp);
            buf_putc(out, '\n');
        }
        buf_puts(out, PREAMBLE_TAIL);
    }
    for (size_t i = 0; i < msgs->len; i++) {
        const json_value *m = &msgs->items[i];
        const char *role = role_of(m);
        if (!strcmp(role, "user")) {
            buf_puts(out, "<|user|>");
            size_t sp = span_begin(&c);
            visible_text(&c, json_get(m, "content"), out);
            span_end(&c, sp);
        } else if (!strcmp(role, "system")) {
            buf_puts(out, "<|system|>");
            size_t sp = span_begin(&c);
            visible_text(&c, json_get(m, "content"), out);
            span_end(&c, sp);
        } else if (!strcmp(role, "assistant")) {
            if (render_assistant(&c, i, m, last_user, in->clear_thinking)) return -1;
        } else {
            if (render_tool(&c, i, m)) return -1;
        }
    }
    if (in->add_generation_prompt)
        buf_puts(out, in->enable_thinking == 0 ? "<|assistant|></think>" : "<|assistant|><think>");
    return 0;
}

/* A request flag: bool, or absent/null (-1 = the template's "undefined"). */
static int get_flag(const json_value *req, const char *key, int *out, char *err, size_t errlen) {
    const json_value *v = json_get(req, key);
    *out = -1;
    if (!v || v->type == JSON_NULL) return 0;
    if (v->type != JSON_BOOL) {
        if (err && errlen) snprintf(err, errlen, "chat template: '%s' must be a boolean", key);
        return -1;
    }
    *out = v->boolean;
    return 0;
}

int chat_render_flags(const json_value *request, unsigned flags, buf *out, char *err, size_t errlen) {
    return chat_render_spans(request, flags, out, NULL, err, errlen);
}

int chat_render_spans(const json_value *request, unsigned flags, buf *out, buf *spans, char *err, size_t errlen) {
    if (!request || request->type != JSON_OBJECT) {
        if (err && errlen) snprintf(err, errlen, "chat template: the request must be a JSON object");
        return -1;
    }
    chat_render_input in = {json_get(request, "messages"), json_get(request, "tools"), 0, -1, -1, flags, spans};
    int agp;
    if (get_flag(request, "add_generation_prompt", &agp, err, errlen) ||
        get_flag(request, "enable_thinking", &in.enable_thinking, err, errlen) ||
        get_flag(request, "clear_thinking", &in.clear_thinking, err, errlen))
        return -1;
    in.add_generation_prompt = agp == 1;
    if (!in.messages) {
        if (err && errlen) snprintf(err, errlen, "chat template: the request has no 'messages'");
        return -1;
    }
    return chat_render_parts(&in, out, err, errlen);
}

int chat_render(const json_value *request, buf *out, char *err, size_t errlen) {
    return chat_render_flags(request, 0, out, err, errlen);
}
