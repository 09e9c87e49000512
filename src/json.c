/* json.c — JSON reader (RFC 8259, strict) and writer.
 *
 * The whole tree lives in one arena owned by json_doc, so freeing is one call
 * and a parse error leaks nothing. Nesting is limited to JSON_MAX_DEPTH so
 * hostile input cannot exhaust the stack. */
#include "json.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define JSON_MAX_DEPTH 256

typedef struct arena_block {
    struct arena_block *next;
    size_t used, cap;
    _Alignas(16) unsigned char data[];
} arena_block;

struct json_doc {
    arena_block *blocks;
    json_value root;
};

typedef struct {
    const char *p, *end, *start;
    json_doc *doc;
    char *err;
    size_t errlen;
    int failed;
    size_t n_values, max_values; /* json_parse_max's limit */
} parser;

static void *arena_alloc(json_doc *doc, size_t n) {
    n = (n + 15) & ~(size_t)15;
    arena_block *b = doc->blocks;
    if (!b || b->cap - b->used < n) {
        size_t cap = n > 65536 ? n : 65536;
        b = malloc(sizeof *b + cap);
        if (!b) return NULL;
        b->cap = cap;
        b->used = 0;
        b->next = doc->blocks;
        doc->blocks = b;
    }
    void *r = b->data + b->used;
    b->used += n;
    return r;
}

static void fail(parser *ps, const char *fmt, ...) {
    if (ps->failed) return;
    ps->failed = 1;
    if (!ps->err || !ps->errlen) return;
    char msg[200];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    snprintf(ps->err, ps->errlen, "JSON error at byte %zu: %s", (size_t)(ps->p - ps->start), msg);
}

static void skip_ws(parser *ps) {
    while (ps->p < ps->end && (*ps->p == ' ' || *ps->p == '\t' || *ps->p == '\n' || *ps->p == '\r')) ps->p++;
}

static int hex4(const char *s, unsigned *out) {
    unsigned v = 0;
    for (int i = 0; i < 4; i++) {
        char c = s[i];
        v <<= 4;
        if (c >= '0' && c <= '9') v |= (unsigned)(c - '0');
        else if (c >= 'a' && c <= 'f') v |= (unsigned)(c - 'a' + 10);
        else if (c >= 'A' && c <= 'F') v |= (unsigned)(c - 'A' + 10);
        else return 0;
    }
    *out = v;
    return 1;
}

static size_t put_utf8(char *o, unsigned cp) {
    if (cp < 0x80) { o[0] = (char)cp; return 1; }
    if (cp < 0x800) { o[0] = (char)(0xC0 | (cp >> 6)); o[1] = (char)(0x80 | (cp & 63)); return 2; }
    if (cp < 0x10000) {
        o[0] = (char)(0xE0 | (cp >> 12)); o[1] = (char)(0x80 | ((cp >> 6) & 63)); o[2] = (char)(0x80 | (cp & 63));
        return 3;
    }
    o[0] = (char)(0xF0 | (cp >> 18)); o[1] = (char)(0x80 | ((cp >> 12) & 63));
    o[2] = (char)(0x80 | ((cp >> 6) & 63)); o[3] = (char)(0x80 | (cp & 63));
    return 4;
}

/* Length of a valid UTF-8 sequence at s (max n bytes), or 0 if invalid. */
static size_t utf8_valid_len(const unsigned char *s, size_t n) {
    unsigned c = s[0];
    if (c < 0x80) return 1;
    size_t len;
    unsigned cp;
    if (c >= 0xC2 && c <= 0xDF) { len = 2; cp = c & 31; }
    else if (c >= 0xE0 && c <= 0xEF) { len = 3; cp = c & 15; }
    else if (c >= 0xF0 && c <= 0xF4) { len = 4; cp = c & 7; }
    else return 0;
    if (n < len) return 0;
    for (size_t i = 1; i < len; i++) {
        if ((s[i] & 0xC0) != 0x80) return 0;
        cp = (cp << 6) | (s[i] & 63);
    }
    if ((len == 3 && (cp < 0x800 || (cp >= 0xD800 && cp <= 0xDFFF))) || (len == 4 && (cp < 0x10000 || cp > 0x10FFFF)))
        return 0;
    return len;
}

/* Parses a string starting at the opening quote. Decoded bytes are never
 * longer than the source, so one allocation of the source length suffices. */
static int parse_string(parser *ps, const char **out, size_t *out_len) {
    ps->p++; /* opening quote */
    const char *s = ps->p;
    const char *q = s;
    while (q < ps->end && *q != '"') {
        if (*q == '\\') q++;
        q++;
    }
    if (q >= ps->end) { fail(ps, "unterminated string"); return 0; }
    char *o = arena_alloc(ps->doc, (size_t)(q - s) + 1);
    if (!o) { fail(ps, "out of memory"); return 0; }
    size_t n = 0;
    while (ps->p < q) {
        unsigned char c = (unsigned char)*ps->p;
        if (c == '\\') {
            char e = ps->p[1];
            ps->p += 2;
            switch (e) {
            case '"': o[n++] = '"'; break;
            case '\\': o[n++] = '\\'; break;
            case '/': o[n++] = '/'; break;
            case 'b': o[n++] = '\b'; break;
            case 'f': o[n++] = '\f'; break;
            case 'n': o[n++] = '\n'; break;
            case 'r': o[n++] = '\r'; break;
            case 't': o[n++] = '\t'; break;
            case 'u': {
                unsigned cp;
                if (q - ps->p < 4 || !hex4(ps->p, &cp)) { fail(ps, "bad \\u escape"); return 0; }
                ps->p += 4;
                if (cp >= 0xD800 && cp <= 0xDBFF && q - ps->p >= 6 && ps->p[0] == '\\' && ps->p[1] == 'u') {
                    unsigned lo;
                    if (hex4(ps->p + 2, &lo) && lo >= 0xDC00 && lo <= 0xDFFF) {
                        cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
                        ps->p += 6;
                    }
                }
                /* A lone surrogate cannot be UTF-8; like most decoders we substitute U+FFFD. */
                if (cp >= 0xD800 && cp <= 0xDFFF) cp = 0xFFFD;
                n += put_utf8(o + n, cp);
                break;
            }
            default: fail(ps, "bad escape"); return 0;
            }
        } else if (c < 0x20) {
            fail(ps, "control character in string");
            return 0;
        } else if (c < 0x80) {
            o[n++] = (char)c;
            ps->p++;
        } else {
            size_t l = utf8_valid_len((const unsigned char *)ps->p, (size_t)(q - ps->p));
            if (!l) { fail(ps, "invalid UTF-8 in string"); return 0; }
            memcpy(o + n, ps->p, l);
            n += l;
            ps->p += l;
        }
    }
    o[n] = 0;
    ps->p = q + 1;
    *out = o;
    *out_len = n;
    return 1;
}

static int parse_number(parser *ps, json_value *v) {
    const char *s = ps->p;
    const char *p = s;
    if (p < ps->end && *p == '-') p++;
    if (p >= ps->end) { fail(ps, "bad number"); return 0; }
    if (*p == '0') p++;
    else if (*p >= '1' && *p <= '9') while (p < ps->end && *p >= '0' && *p <= '9') p++;
    else { fail(ps, "bad number"); return 0; }
    if (p < ps->end && *p == '.') {
        p++;
        if (p >= ps->end || *p < '0' || *p > '9') { fail(ps, "bad number"); return 0; }
        while (p < ps->end && *p >= '0' && *p <= '9') p++;
    }
    if (p < ps->end && (*p == 'e' || *p == 'E')) {
        p++;
        if (p < ps->end && (*p == '+' || *p == '-')) p++;
        if (p >= ps->end || *p < '0' || *p > '9') { fail(ps, "bad number"); return 0; }
        while (p < ps->end && *p >= '0' && *p <= '9') p++;
    }
    size_t n = (size_t)(p - s);
    char *txt = arena_alloc(ps->doc, n + 1);
    if (!txt) { fail(ps, "out of memory"); return 0; }
    memcpy(txt, s, n);
    txt[n] = 0;
    v->type = JSON_NUMBER;
    v->number = strtod(txt, NULL);
    v->str = txt;
    v->len = n;
    ps->p = p;
    return 1;
}

static int parse_value(parser *ps, json_value *v, int depth);

/* Arrays and objects are gathered in a temporary heap vector, then copied to
 * the arena once their size is known. */
static int parse_array(parser *ps, json_value *v, int depth) {
    ps->p++;
    json_value *tmp = NULL;
    size_t n = 0, cap = 0;
    skip_ws(ps);
    if (ps->p < ps->end && *ps->p == ']') { ps->p++; goto done; }
    for (;;) {
        if (n == cap) {
            cap = cap ? cap * 2 : 8;
            json_value *t = realloc(tmp, cap * sizeof *tmp);
            if (!t) { fail(ps, "out of memory"); free(tmp); return 0; }
            tmp = t;
        }
        skip_ws(ps);
        if (!parse_value(ps, &tmp[n], depth + 1)) { free(tmp); return 0; }
        n++;
        skip_ws(ps);
        if (ps->p < ps->end && *ps->p == ',') { ps->p++; continue; }
        if (ps->p < ps->end && *ps->p == ']') { ps->p++; break; }
        fail(ps, "expected ',' or ']'");
        free(tmp);
        return 0;
    }
done:
    v->type = JSON_ARRAY;
    v->len = n;
    v->items = NULL;
    if (n) {
        v->items = arena_alloc(ps->doc, n * sizeof *tmp);
        if (!v->items) { fail(ps, "out of memory"); free(tmp); return 0; }
        memcpy(v->items, tmp, n * sizeof *tmp);
    }
    free(tmp);
    return 1;
}

static int parse_object(parser *ps, json_value *v, int depth) {
    ps->p++;
    json_member *tmp = NULL;
    size_t n = 0, cap = 0;
    skip_ws(ps);
    if (ps->p < ps->end && *ps->p == '}') { ps->p++; goto done; }
    for (;;) {
        if (n == cap) {
            cap = cap ? cap * 2 : 8;
            json_member *t = realloc(tmp, cap * sizeof *tmp);
            if (!t) { fail(ps, "out of memory"); free(tmp); return 0; }
            tmp = t;
        }
        skip_ws(ps);
        if (ps->p >= ps->end || *ps->p != '"') { fail(ps, "expected a string key"); free(tmp); return 0; }
        if (!parse_string(ps, &tmp[n].key, &tmp[n].key_len)) { free(tmp); return 0; }
        skip_ws(ps);
        if (ps->p >= ps->end || *ps->p != ':') { fail(ps, "expected ':'"); free(tmp); return 0; }
        ps->p++;
        skip_ws(ps);
        if (!parse_value(ps, &tmp[n].value, depth + 1)) { free(tmp); return 0; }
        n++;
        skip_ws(ps);
        if (ps->p < ps->end && *ps->p == ',') { ps->p++; continue; }
        if (ps->p < ps->end && *ps->p == '}') { ps->p++; break; }
        fail(ps, "expected ',' or '}'");
        free(tmp);
        return 0;
    }
done:
    v->type = JSON_OBJECT;
    v->len = n;
    v->members = NULL;
    if (n) {
        v->members = arena_alloc(ps->doc, n * sizeof *tmp);
        if (!v->members) { fail(ps, "out of memory"); free(tmp); return 0; }
        memcpy(v->members, tmp, n * sizeof *tmp);
    }
    free(tmp);
    return 1;
}

static int match_word(parser *ps, const char *w) {
    size_t n = strlen(w);
    if ((size_t)(ps->end - ps->p) < n || memcmp(ps->p, w, n) != 0) { fail(ps, "unexpected character"); return 0; }
    ps->p += n;
    return 1;
}

static int parse_value(parser *ps, json_value *v, int depth) {
    memset(v, 0, sizeof *v);
    if (depth > JSON_MAX_DEPTH) { fail(ps, "nesting deeper than %d", JSON_MAX_DEPTH); return 0; }
    if (++ps->n_values > ps->max_values) { fail(ps, "more than %zu values", ps->max_values); return 0; }
    skip_ws(ps);
    if (ps->p >= ps->end) { fail(ps, "unexpected end of input"); return 0; }
    switch (*ps->p) {
    case '{': return parse_object(ps, v, depth);
    case '[': return parse_array(ps, v, depth);
    case '"': v->type = JSON_STRING; return parse_string(ps, &v->str, &v->len);
    case 't': v->type = JSON_BOOL; v->boolean = 1; return match_word(ps, "true");
    case 'f': v->type = JSON_BOOL; v->boolean = 0; return match_word(ps, "false");
    case 'n': v->type = JSON_NULL; return match_word(ps, "null");
    default: return parse_number(ps, v);
    }
}

json_doc *json_parse(const char *text, size_t len, char *err, size_t errlen) {
    return json_parse_max(text, len, SIZE_MAX, err, errlen);
}

json_doc *json_parse_max(const char *text, size_t len, size_t max_values, char *err, size_t errlen) {
    json_doc *doc = calloc(1, sizeof *doc);
    if (!doc) {
        if (err && errlen) snprintf(err, errlen, "out of memory");
        return NULL;
    }
    parser ps = {text, text + len, text, doc, err, errlen, 0, 0, max_values};
    if (parse_value(&ps, &doc->root, 0)) {
        skip_ws(&ps);
        if (ps.p != ps.end) fail(&ps, "trailing characters after the value");
    }
    if (ps.failed) {
        json_free(doc);
        return NULL;
    }
    return doc;
}

const json_value *json_root(const json_doc *doc) { return doc ? &doc->root : NULL; }

void json_free(json_doc *doc) {
    if (!doc) return;
    for (arena_block *b = doc->blocks; b;) {
        arena_block *n = b->next;
        free(b);
        b = n;
    }
    free(doc);
}

const json_value *json_get(const json_value *obj, const char *key) {
    if (!obj || obj->type != JSON_OBJECT) return NULL;
    size_t kl = strlen(key);
    for (size_t i = obj->len; i-- > 0;)
        if (obj->members[i].key_len == kl && memcmp(obj->members[i].key, key, kl) == 0) return &obj->members[i].value;
    return NULL;
}

const json_value *json_at(const json_value *arr, size_t i) {
    if (!arr || arr->type != JSON_ARRAY || i >= arr->len) return NULL;
    return &arr->items[i];
}

int json_is_int(const json_value *v) {
    return v && v->type == JSON_NUMBER && isfinite(v->number) && v->number == floor(v->number) &&
           fabs(v->number) <= 9007199254740992.0;
}

int json_get_int64(const json_value *v, int64_t *out) {
    if (!json_is_int(v)) return 0;
    *out = (int64_t)v->number;
    return 1;
}

int json_get_double(const json_value *v, double *out) {
    if (!v || v->type != JSON_NUMBER) return 0;
    *out = v->number;
    return 1;
}

int json_get_bool(const json_value *v, int *out) {
    if (!v || v->type != JSON_BOOL) return 0;
    *out = v->boolean;
    return 1;
}

const char *json_get_str(const json_value *v) { return v && v->type == JSON_STRING ? v->str : NULL; }

void json_write_string(buf *b, const char *s, size_t len, int ascii_only) {
    static const char hex[] = "0123456789abcdef";
    buf_reserve(b, len + 2);
    buf_putc(b, '"');
    for (size_t i = 0; i < len;) {
        unsigned char c = (unsigned char)s[i];
        char esc = 0;
        switch (c) {
        case '"': esc = '"'; break;
        case '\\': esc = '\\'; break;
        case '\n': esc = 'n'; break;
        case '\r': esc = 'r'; break;
        case '\t': esc = 't'; break;
        case '\b': esc = 'b'; break;
        case '\f': esc = 'f'; break;
        default: break;
        }
        if (esc) {
            char e[2] = {'\\', esc};
            buf_append(b, e, 2);
            i++;
        } else if (c < 0x20 || c == 0x7f) {
            /* ensure_ascii=False escapes only < 0x20 (0x7f raw); ensure_ascii=True
               escapes everything outside ' '..'~', so 0x7f too. */
            if (c == 0x7f && !ascii_only) { buf_putc(b, (char)c); i++; continue; }
            char e[6] = {'\\', 'u', '0', '0', hex[c >> 4], hex[c & 15]};
            buf_append(b, e, 6);
            i++;
        } else if (c < 0x80) {
            buf_putc(b, (char)c);
            i++;
        } else {
            size_t l = utf8_valid_len((const unsigned char *)s + i, len - i);
            if (!l) { /* invalid byte: emit U+FFFD rather than invalid JSON */
                if (ascii_only) buf_puts(b, "\\ufffd");
                else buf_puts(b, "\xEF\xBF\xBD");
                i++;
                continue;
            }
            if (!ascii_only) {
                buf_append(b, s + i, l);
            } else {
                const unsigned char *u = (const unsigned char *)s + i;
                unsigned cp = l == 2 ? ((u[0] & 31u) << 6) | (u[1] & 63u)
                            : l == 3 ? ((u[0] & 15u) << 12) | ((u[1] & 63u) << 6) | (u[2] & 63u)
                                     : ((u[0] & 7u) << 18) | ((u[1] & 63u) << 12) | ((u[2] & 63u) << 6) | (u[3] & 63u);
                if (cp >= 0x10000) {
                    cp -= 0x10000;
                    buf_printf(b, "\\u%04x\\u%04x", 0xD800 + (cp >> 10), 0xDC00 + (cp & 0x3FF));
                } else {
                    buf_printf(b, "\\u%04x", cp);
                }
            }
            i += l;
        }
    }
    buf_putc(b, '"');
}

void json_write_value(buf *b, const json_value *v, int pretty_separators, int ascii_only) {
    const char *comma = pretty_separators ? ", " : ",";
    const char *colon = pretty_separators ? ": " : ":";
    switch (v->type) {
    case JSON_NULL: buf_puts(b, "null"); break;
    case JSON_BOOL: buf_puts(b, v->boolean ? "true" : "false"); break;
    case JSON_NUMBER: buf_append(b, v->str, v->len); break;
    case JSON_STRING: json_write_string(b, v->str, v->len, ascii_only); break;
    case JSON_ARRAY:
        buf_putc(b, '[');
        for (size_t i = 0; i < v->len; i++) {
            if (i) buf_puts(b, comma);
            json_write_value(b, &v->items[i], pretty_separators, ascii_only);
        }
        buf_putc(b, ']');
        break;
    case JSON_OBJECT:
        buf_putc(b, '{');
        for (size_t i = 0; i < v->len; i++) {
            if (i) buf_puts(b, comma);
            json_write_string(b, v->members[i].key, v->members[i].key_len, ascii_only);
            buf_puts(b, colon);
            json_write_value(b, &v->members[i].value, pretty_separators, ascii_only);
        }
        buf_putc(b, '}');
        break;
    }
}
