/* fuzz_http.c — libFuzzer target for the HTTP/1.1 request parser (http.c).
 * The input is fed whole and, in a second parser, split at a point taken from
 * the first byte; both must agree (incremental parsing is split-invariant),
 * and requests are parsed back to back as on a keep-alive connection. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "http.h"

static int run(const uint8_t *data, size_t size, size_t split, int *statuses, size_t max) {
    http_limits lim;
    http_limits_default(&lim);
    lim.max_body = 4096;             /* small limits reach the limit paths */
    lim.max_request_line = 256;
    lim.max_header_bytes = 1024;
    lim.max_headers = 8;
    http_parser p;
    http_parser_init(&p, &lim);
    size_t off = 0, n = 0;
    const char *d = (const char *)data;
    while (off < size && n < max) {
        size_t end = off < split && split < size ? split : size, used;
        int rc = http_parser_feed(&p, d + off, end - off, &used);
        off += used;
        if (rc == 0) {
            if (end < size) continue;   /* the second piece */
            statuses[n++] = 0;
            break;
        }
        if (rc < 0) {
            statuses[n++] = p.status;
            break;
        }
        if (p.body.len && p.body.data[p.body.len] != 0) abort();
        if (!p.method || !p.path || p.body.len > lim.max_body) abort();
        (void)http_header_get(&p, "content-type");
        statuses[n++] = 200 + (int)(p.body.len % 7);
        http_parser_reset(&p);
    }
    http_parser_free(&p);
    return (int)n;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 1) return 0;
    size_t split = data[0] % (size + 1);
    int a[16], b[16];
    int na = run(data + 1, size - 1, (size_t)-1, a, 16);
    int nb = run(data + 1, size - 1, split, b, 16);
    if (na != nb || memcmp(a, b, (size_t)na * sizeof a[0]) != 0) abort();
    buf out = {0};
    http_response(&out, 400, "application/json", (const char *)data, size, 1, NULL, 0);
    http_stream_head(&out, 200, "text/event-stream", 1, 0, NULL);
    http_stream_data(&out, 1, (const char *)data, size);
    http_stream_end(&out, 1);
    buf_free(&out);
    return 0;
}
