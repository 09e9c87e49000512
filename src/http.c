/* http.c — HTTP/1.1 request parser and response builders (see http.h).
 *
 * The parser is strict where leniency enables request smuggling or unbounded
 * memory (Content-Length + Transfer-Encoding together, conflicting lengths,
 * obsolete header folding, non-digit lengths), and lenient where real
 * clients differ harmlessly (bare LF line ends, blank lines before a request
 * line, header names in any case). */
#include "http.h"

#include <ctype.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

void http_limits_default(http_limits *l) {
    l->max_request_line = 8192;
    l->max_header_bytes = 32768;
    l->max_headers = 100;
    l->max_body = 8u << 20;
}

void http_parser_init(http_parser *p, const http_limits *lim) {
    memset(p, 0, sizeof *p);
    if (lim) p->lim = *lim;
    else http_limits_default(&p->lim);
    if (p->lim.max_headers > HTTP_MAX_HEADERS_CAP) p->lim.max_headers = HTTP_MAX_HEADERS_CAP;
}

void http_parser_reset(http_parser *p) {
    http_limits lim = p->lim;
    buf head = p->head, line = p->line, body = p->body;
    free(p->path_buf);
    buf_clear(&head);
    buf_clear(&line);
    buf_clear(&body);
    memset(p, 0, sizeof *p);
    p->lim = lim;
    p->head = head;
    p->line = line;
    p->body = body;
}

void http_parser_free(http_parser *p) {
    free(p->path_buf);
    buf_free(&p->head);
    buf_free(&p->line);
    buf_free(&p->body);
    memset(p, 0, sizeof *p);
}

static int fail(http_parser *p, int status, const char *msg) {
    p->state = HTTP_PARSE_ERROR;
    p->status = status;
    snprintf(p->error, sizeof p->error, "%s", msg);
    return -1;
}

static int is_tchar(int c) {
    return isalnum(c) || (c && strchr("!#$%&'*+-.^_`|~", c) != NULL);
}

const char *http_header_get(const http_parser *p, const char *name) {
    for (int i = 0; i < p->n_headers; i++)
        if (!strcasecmp(p->headers[i].name, name)) return p->headers[i].value;
    return NULL;
}

/* Does the comma-separated list in v contain token tok (case-insensitive)? */
static int list_has(const char *v, const char *tok) {
    size_t tl = strlen(tok);
    while (*v) {
        while (*v == ' ' || *v == '\t' || *v == ',') v++;
        const char *s = v;
        while (*v && *v != ',') v++;
        const char *e = v;
        while (e > s && (e[-1] == ' ' || e[-1] == '\t')) e--;
        if ((size_t)(e - s) == tl && !strncasecmp(s, tok, tl)) return 1;
    }
    return 0;
}

/* Splits the header section (p->head[0..len), terminator excluded) in place. */
static int parse_head(http_parser *p, size_t len) {
    char *s = p->head.data;
    if (memchr(s, 0, len)) return fail(p, 400, "NUL byte in the request head");
    s[len] = 0;
    /* request line */
    char *eol = strchr(s, '\n');
    char *next = eol ? eol + 1 : s + len;
    if (eol) *eol = 0;
    size_t ll = strlen(s);
    if (ll && s[ll - 1] == '\r') s[--ll] = 0;
    char *sp1 = strchr(s, ' ');
    char *sp2 = sp1 ? strchr(sp1 + 1, ' ') : NULL;
    if (!sp1 || !sp2 || strchr(sp2 + 1, ' ')) return fail(p, 400, "malformed request line");
    *sp1 = 0;
    *sp2 = 0;
    p->method = s;
    p->target = sp1 + 1;
    const char *ver = sp2 + 1;
    if (!*p->method || strlen(p->method) > 16) return fail(p, 400, "malformed request method");
    for (const char *c = p->method; *c; c++)
        if (!is_tchar((unsigned char)*c)) return fail(p, 400, "malformed request method");
    if (!*p->target) return fail(p, 400, "empty request target");
    for (const char *c = p->target; *c; c++)
        if ((unsigned char)*c <= 0x20 || *c == 0x7f) return fail(p, 400, "malformed request target");
    if (strncmp(ver, "HTTP/1.", 7) != 0 || !isdigit((unsigned char)ver[7]) || ver[8])
        return fail(p, strncmp(ver, "HTTP/", 5) == 0 ? 505 : 400, "unsupported HTTP version");
    p->version_minor = ver[7] - '0';
    size_t ql = strcspn(p->target, "?#");
    p->path_buf = malloc(ql + 1);
    if (!p->path_buf) return fail(p, 500, "out of memory");
    memcpy(p->path_buf, p->target, ql);
    p->path_buf[ql] = 0;
    p->path = p->path_buf;

    /* header lines */
    int have_cl = 0, keep = p->version_minor >= 1;
    char *end = s + len;
    while (next < end) {
        char *line = next;
        eol = memchr(line, '\n', (size_t)(end - line));
        next = eol ? eol + 1 : end;
        if (eol) *eol = 0;
        else *end = 0;
        size_t n = strlen(line);
        if (n && line[n - 1] == '\r') line[--n] = 0;
        if (!n) continue;
        if (line[0] == ' ' || line[0] == '\t') return fail(p, 400, "obsolete header line folding");
        char *colon = strchr(line, ':');
        if (!colon || colon == line) return fail(p, 400, "malformed header line");
        for (char *c = line; c < colon; c++)
            if (!is_tchar((unsigned char)*c)) return fail(p, 400, "malformed header name");
        *colon = 0;
        char *v = colon + 1;
        while (*v == ' ' || *v == '\t') v++;
        char *ve = v + strlen(v);
        while (ve > v && (ve[-1] == ' ' || ve[-1] == '\t')) *--ve = 0;
        if (p->n_headers >= p->lim.max_headers) return fail(p, 431, "too many header fields");
        p->headers[p->n_headers].name = line;
        p->headers[p->n_headers].value = v;
        p->n_headers++;
        if (!strcasecmp(line, "content-length")) {
            if (!*v) return fail(p, 400, "invalid Content-Length");
            size_t cl = 0;
            for (const char *c = v; *c; c++) {
                if (!isdigit((unsigned char)*c)) return fail(p, 400, "invalid Content-Length");
                if (cl > (SIZE_MAX - 9) / 10) return fail(p, 413, "request body too large");
                cl = cl * 10 + (size_t)(*c - '0');
            }
            if (have_cl && cl != p->content_length) return fail(p, 400, "conflicting Content-Length headers");
            have_cl = 1;
            p->content_length = cl;
        } else if (!strcasecmp(line, "transfer-encoding")) {
            if (strcasecmp(v, "chunked") != 0 || p->chunked) return fail(p, 501, "unsupported Transfer-Encoding");
            p->chunked = 1;
        } else if (!strcasecmp(line, "connection")) {
            if (list_has(v, "close")) keep = 0;
            else if (list_has(v, "keep-alive")) keep = 1;
        } else if (!strcasecmp(line, "expect")) {
            if (!strcasecmp(v, "100-continue")) p->expect_continue = 1;
        }
    }
    if (p->chunked && have_cl) return fail(p, 400, "both Content-Length and Transfer-Encoding");
    if (have_cl && p->content_length > p->lim.max_body) return fail(p, 413, "request body too large");
    p->keep_alive = keep;
    p->headers_done = 1;
    if (p->chunked) p->state = HTTP_PARSE_CHUNK_SIZE;
    else if (p->content_length) p->state = HTTP_PARSE_BODY;
    else p->state = HTTP_PARSE_DONE;
    if (p->state != HTTP_PARSE_DONE) buf_reserve(&p->body, p->chunked ? 0 : p->content_length);
    return 0;
}

/* Collects one line (up to '\n') into p->line; returns 1 when complete. */
static int take_line(http_parser *p, const char *d, size_t n, size_t *i, size_t limit) {
    while (*i < n) {
        char c = d[(*i)++];
        if (c == '\n') {
            if (p->line.len && p->line.data[p->line.len - 1] == '\r') p->line.len--;
            buf_putc(&p->line, 0);
            p->line.len--;
            return 1;
        }
        if (p->line.len >= limit) return -1;
        buf_putc(&p->line, c);
    }
    return 0;
}

int http_parser_feed(http_parser *p, const char *data, size_t len, size_t *consumed) {
    size_t i = 0;
    *consumed = 0;
    if (p->state == HTTP_PARSE_ERROR) return -1;
    if (p->state == HTTP_PARSE_DONE) return 1;
    if (p->state == HTTP_PARSE_HEAD) {
        /* blank lines before a request line are ignored (RFC 9112 §2.2) */
        while (p->head.len == 0 && i < len && (data[i] == '\r' || data[i] == '\n')) i++;
        size_t old = p->head.len;
        size_t cap = p->lim.max_request_line + p->lim.max_header_bytes + 4;
        size_t take = len - i;
        if (take > cap + 1 - old) take = cap + 1 - old;   /* never buffer beyond the limits */
        buf_append(&p->head, data + i, take);
        size_t from = p->scanned > 3 ? p->scanned - 3 : 0;
        char *h = p->head.data;
        size_t end = 0, hlen = 0;
        for (size_t k = from; k < p->head.len; k++) {
            if (h[k] != '\n') continue;
            if (k >= 1 && h[k - 1] == '\n') { hlen = k - 1; end = k + 1; break; }
            if (k >= 2 && h[k - 1] == '\r' && h[k - 2] == '\n') { hlen = k - 2; end = k + 1; break; }
        }
        p->scanned = p->head.len;
        const char *nl = memchr(h, '\n', end ? hlen + 1 : p->head.len);
        size_t first = nl ? (size_t)(nl - h) : p->head.len;
        if (first > p->lim.max_request_line) return fail(p, 414, "request line too long");
        if (!end) {
            if (p->head.len > cap - 4) return fail(p, 431, "request header section too large");
            *consumed = len;
            return 0;
        }
        if (hlen - (nl ? first : hlen) > p->lim.max_header_bytes) return fail(p, 431, "request header section too large");
        i += end - old;
        if (parse_head(p, hlen)) return -1;
    }
    while (p->state != HTTP_PARSE_DONE) {
        if (p->state == HTTP_PARSE_BODY) {
            size_t want = p->content_length - p->body.len, have = len - i;
            size_t k = want < have ? want : have;
            buf_append(&p->body, data + i, k);
            i += k;
            if (p->body.len == p->content_length) p->state = HTTP_PARSE_DONE;
            else break;
        } else if (p->state == HTTP_PARSE_CHUNK_SIZE) {
            int r = take_line(p, data, len, &i, 1024);
            if (r < 0) return fail(p, 400, "chunk size line too long");
            if (!r) break;
            const char *s = p->line.data;
            size_t sz = 0;
            int digits = 0;
            for (; isxdigit((unsigned char)*s); s++, digits++) {
                if (sz > (SIZE_MAX >> 4)) return fail(p, 413, "request body too large");
                sz = sz * 16 + (size_t)(isdigit((unsigned char)*s) ? *s - '0' : (tolower((unsigned char)*s) - 'a' + 10));
            }
            while (*s == ' ' || *s == '\t') s++;
            if (!digits || (*s && *s != ';')) return fail(p, 400, "malformed chunk size");
            if (sz > p->lim.max_body - p->body.len) return fail(p, 413, "request body too large");
            buf_clear(&p->line);
            p->chunk_left = sz;
            p->state = sz ? HTTP_PARSE_CHUNK_DATA : HTTP_PARSE_TRAILER;
        } else if (p->state == HTTP_PARSE_CHUNK_DATA) {
            size_t have = len - i, k = p->chunk_left < have ? p->chunk_left : have;
            buf_append(&p->body, data + i, k);
            i += k;
            p->chunk_left -= k;
            if (p->chunk_left) break;
            p->state = HTTP_PARSE_CHUNK_CRLF;
        } else if (p->state == HTTP_PARSE_CHUNK_CRLF) {
            int r = take_line(p, data, len, &i, 2);
            if (r < 0 || (r > 0 && p->line.len)) return fail(p, 400, "malformed chunk end");
            if (!r) break;
            buf_clear(&p->line);
            p->state = HTTP_PARSE_CHUNK_SIZE;
        } else if (p->state == HTTP_PARSE_TRAILER) {
            int r = take_line(p, data, len, &i, p->lim.max_header_bytes);
            if (r < 0) return fail(p, 431, "trailer section too large");
            if (!r) break;
            int empty = p->line.len == 0;
            buf_clear(&p->line);
            if (empty) p->state = HTTP_PARSE_DONE;
        } else {
            break;
        }
    }
    *consumed = i;
    if (p->state == HTTP_PARSE_DONE) {
        buf_reserve(&p->body, 1);   /* NUL-terminated even when empty */
        p->body.data[p->body.len] = 0;
        return 1;
    }
    return 0;
}

const char *http_status_text(int status) {
    switch (status) {
    case 100: return "Continue";
    case 200: return "OK";
    case 204: return "No Content";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 408: return "Request Timeout";
    case 413: return "Content Too Large";
    case 414: return "URI Too Long";
    case 431: return "Request Header Fields Too Large";
    case 500: return "Internal Server Error";
    case 501: return "Not Implemented";
    case 503: return "Service Unavailable";
    case 505: return "HTTP Version Not Supported";
    default: return "Unknown";
    }
}

static void head_common(buf *out, int status, const char *content_type, int keep_alive, const char *extra) {
    buf_printf(out, "HTTP/1.1 %d %s\r\nServer: glmlite\r\n", status, http_status_text(status));
    if (content_type) buf_printf(out, "Content-Type: %s\r\n", content_type);
    buf_puts(out, keep_alive ? "Connection: keep-alive\r\n" : "Connection: close\r\n");
    if (extra) buf_puts(out, extra);
}

void http_response(buf *out, int status, const char *content_type, const char *body, size_t len, int keep_alive,
                   const char *extra_headers, int head_only) {
    head_common(out, status, content_type, keep_alive, extra_headers);
    if (status == 204) {   /* no body, and no Content-Length (RFC 9110 §8.6) */
        buf_puts(out, "\r\n");
        return;
    }
    buf_printf(out, "Content-Length: %zu\r\n\r\n", len);
    if (!head_only && len) buf_append(out, body, len);
}

void http_stream_head(buf *out, int status, const char *content_type, int chunked, int keep_alive, const char *extra_headers) {
    head_common(out, status, content_type, keep_alive, extra_headers);
    buf_puts(out, chunked ? "Transfer-Encoding: chunked\r\nCache-Control: no-cache\r\n\r\n" : "Cache-Control: no-cache\r\n\r\n");
}

void http_stream_data(buf *out, int chunked, const char *data, size_t len) {
    if (!len) return;
    if (chunked) buf_printf(out, "%zx\r\n", len);
    buf_append(out, data, len);
    if (chunked) buf_puts(out, "\r\n");
}

void http_stream_end(buf *out, int chunked) {
    if (chunked) buf_puts(out, "0\r\n\r\n");
}
