/* fuzz_json.c — libFuzzer target: parse, write back, and re-parse; the
 * re-written text must parse to the same serialisation. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "json.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    char err[256];
    json_doc *d = json_parse((const char *)data, size, err, sizeof err);
    if (!d) return 0;
    buf a = {0}, b = {0};
    json_write_value(&a, json_root(d), 1, 0);
    json_doc *d2 = json_parse(a.data, a.len, err, sizeof err);
    if (!d2) abort();
    json_write_value(&b, json_root(d2), 1, 0);
    if (a.len != b.len || memcmp(a.data, b.data, a.len) != 0) abort();
    buf_free(&a);
    buf_free(&b);
    json_free(d);
    json_free(d2);
    return 0;
}
