/* http.h — the HTTP/1.1 wire format for the server: an incremental request
 * parser with hard limits (request line, header count and size, body size;
 * Content-Length and chunked bodies; keep-alive; Expect: 100-continue) and
 * response builders (plain responses, chunked transfer encoding used for
 * SSE and NDJSON streams). No sockets here: the parser eats bytes and the
 * builders append to a buf, so both can be fuzzed and tested in memory. */
#ifndef GLM_HTTP_H
#define GLM_HTTP_H

#include <stddef.h>
#include "buf.h"

typedef struct {
    size_t max_request_line;   /* bytes of "METHOD target HTTP/1.1" */
    size_t max_header_bytes;   /* the whole header section */
    int max_headers;
    size_t max_body;           /* decoded body bytes */
} http_limits;

/* 8 KiB request line, 32 KiB of headers, 100 headers, 8 MiB body. */
void http_limits_default(http_limits *l);

typedef struct {
    const char *name;          /* as sent; compare with strcasecmp */
    const char *value;         /* leading/trailing blanks removed */
} http_header;

#define HTTP_MAX_HEADERS_CAP 256

typedef enum { HTTP_PARSE_HEAD, HTTP_PARSE_BODY, HTTP_PARSE_CHUNK_SIZE, HTTP_PARSE_CHUNK_DATA, HTTP_PARSE_CHUNK_CRLF,
               HTTP_PARSE_TRAILER, HTTP_PARSE_DONE, HTTP_PARSE_ERROR } http_parse_state;

typedef struct {
    http_limits lim;
    http_parse_state state;
    buf head;                  /* raw header section, then split in place */
    size_t scanned;            /* head bytes already searched for the blank line */
    /* the parsed request (valid from headers_done on) */
    const char *method;
    const char *target;        /* the raw request target */
    const char *path;          /* target without the query, NUL-terminated copy */
    char *path_buf;
    int version_minor;         /* HTTP/1.0 or HTTP/1.1 */
    http_header headers[HTTP_MAX_HEADERS_CAP];
    int n_headers;
    int headers_done;
    int keep_alive;            /* what the client asked for (version + Connection) */
    int expect_continue;       /* "Expect: 100-continue" was sent */
    int chunked;
    size_t content_length;
    size_t chunk_left;
    buf line;                  /* a chunk-size or trailer line being collected */
    buf body;                  /* decoded body; NUL-terminated when non-empty */
    /* on error */
    int status;                /* 400, 413, 414, 431, 501, 505 */
    char error[160];
} http_parser;

void http_parser_init(http_parser *p, const http_limits *lim);   /* lim NULL = defaults */
void http_parser_reset(http_parser *p);                          /* ready for the next request, keeps memory */
void http_parser_free(http_parser *p);

/* Feeds bytes. Returns 1 when a whole request has been parsed (*consumed
 * says how much of data belonged to it; the rest starts the next request),
 * 0 when more bytes are needed (all consumed), -1 on a protocol error or a
 * limit (p->status, p->error say which). */
int http_parser_feed(http_parser *p, const char *data, size_t len, size_t *consumed);

/* The value of a header (the first one with that name), or NULL. */
const char *http_header_get(const http_parser *p, const char *name);

const char *http_status_text(int status);

/* A complete response with Content-Length. extra_headers: NULL or lines
 * each ending in "\r\n". For HEAD, pass head_only = 1 (headers only). */
void http_response(buf *out, int status, const char *content_type, const char *body, size_t len, int keep_alive,
                   const char *extra_headers, int head_only);
/* A streamed response. chunked = 1: Transfer-Encoding: chunked (HTTP/1.1).
 * chunked = 0, for HTTP/1.0 clients, which have no chunked coding (RFC 9112
 * §7.1): the raw body, ended by closing the connection (keep_alive must be 0). */
void http_stream_head(buf *out, int status, const char *content_type, int chunked, int keep_alive, const char *extra_headers);
/* One piece of the body (as a chunk: nothing for len 0, an empty chunk would end the body). */
void http_stream_data(buf *out, int chunked, const char *data, size_t len);
/* The end of the body: the terminating zero-length chunk, or nothing (the close ends it). */
void http_stream_end(buf *out, int chunked);

#endif
