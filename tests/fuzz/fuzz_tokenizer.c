/* fuzz_tokenizer.c — libFuzzer target for src/tokenizer.c and src/unicode.c.
 *
 * First byte odd: the rest is a tokenizer.json for the loader; a file that
 * loads is then used to encode and decode a short fixed text.
 * First byte even: the rest is text for three small fixed tokenizers built
 * once: (A) GLM-4 regex, special added tokens, no normalizer; (B) Qwen-2
 * regex, NFC, added tokens with lstrip/rstrip/single_word; (C) GPT-2
 * ByteLevel regex with add_prefix_space. Each text is encoded with both
 * match_special settings and decoded. Checked: decode output is valid UTF-8;
 * streaming decode (whole tokens and byte by byte) equals one-shot decode;
 * for A, decode(encode(s)) == lossy(s). Guarded encoding (the same text,
 * spans drawn from a generator seeded by the input): no spans gives the
 * match_special=1 ids, one span over everything gives the match_special=0
 * ids, random spans (unsorted, overlapping, empty, out of range, huge
 * lengths) give valid ids (for A, decoding like the plain ones). */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "json.h"
#include "tokenizer.h"
#include "unicode.h"

static void byte_level(buf *b, unsigned x) {
    unsigned cp = x;
    if (!((x >= 0x21 && x <= 0x7E) || (x >= 0xA1 && x <= 0xAC) || x >= 0xAE)) {
        unsigned k = 0;
        for (unsigned y = 0; y < x; y++)
            if (!((y >= 0x21 && y <= 0x7E) || (y >= 0xA1 && y <= 0xAC) || y >= 0xAE)) k++;
        cp = 256 + k;
    }
    char tmp[4];
    buf_append(b, tmp, utf8_encode(cp, tmp));
}

static tokenizer *make(const char *normalizer, const char *pretok, const char *added) {
    buf j = {0};
    buf_printf(&j, "{\"normalizer\":%s,\"pre_tokenizer\":%s,\"decoder\":{\"type\":\"ByteLevel\"},"
                   "\"model\":{\"type\":\"BPE\",\"ignore_merges\":true,\"vocab\":{", normalizer, pretok);
    for (unsigned b = 0; b < 256; b++) {
        buf k = {0};
        byte_level(&k, b);
        json_write_string(&j, k.data, k.len, 0);
        buf_printf(&j, ":%u,", b);
        buf_free(&k);
    }
    buf_puts(&j, "\"\xC4\xA0t\":256,\"he\":257,\"\xC4\xA0the\":258,\"in\":259,\"\xC4\xA0\xC4\xA0\":260},"
                 "\"merges\":[\"\xC4\xA0 t\",[\"h\",\"e\"],\"\xC4\xA0t he\",\"i n\",\"\xC4\xA0 \xC4\xA0\"]},\"added_tokens\":");
    buf_puts(&j, added);
    buf_puts(&j, "}");
    char err[256];
    tokenizer *t = tokenizer_load_mem(j.data, j.len, err, sizeof err);
    if (!t) { fprintf(stderr, "fuzz_tokenizer: %s\n", err); abort(); }
    buf_free(&j);
    return t;
}

static tokenizer *tok[3];

static void init(void) {
    if (tok[0]) return;
    const char *glm = "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\\\r\\\\n\\\\p{L}\\\\p{N}]?\\\\p{L}+|\\\\p{N}{1,3}| ?[^\\\\s\\\\p{L}\\\\p{N}]+[\\\\r\\\\n]*|\\\\s*[\\\\r\\\\n]+|\\\\s+(?!\\\\S)|\\\\s+";
    const char *qwen = "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\\\r\\\\n\\\\p{L}\\\\p{N}]?\\\\p{L}+|\\\\p{N}| ?[^\\\\s\\\\p{L}\\\\p{N}]+[\\\\r\\\\n]*|\\\\s*[\\\\r\\\\n]+|\\\\s+(?!\\\\S)|\\\\s+";
    char pre[1024];
    snprintf(pre, sizeof pre, "{\"type\":\"Sequence\",\"pretokenizers\":[{\"type\":\"Split\",\"pattern\":{\"Regex\":\"%s\"},"
             "\"behavior\":\"Isolated\",\"invert\":false},{\"type\":\"ByteLevel\",\"use_regex\":false}]}", glm);
    tok[0] = make("null", pre,
                  "[{\"id\":300,\"content\":\"<|user|>\",\"special\":true,\"normalized\":false},"
                  "{\"id\":301,\"content\":\"<think>\",\"special\":true,\"normalized\":false},"
                  "{\"id\":302,\"content\":\"<|us\",\"special\":false,\"normalized\":false}]");
    snprintf(pre, sizeof pre, "{\"type\":\"Sequence\",\"pretokenizers\":[{\"type\":\"Split\",\"pattern\":{\"Regex\":\"%s\"},"
             "\"behavior\":\"Isolated\",\"invert\":false},{\"type\":\"ByteLevel\",\"use_regex\":false}]}", qwen);
    tok[1] = make("{\"type\":\"NFC\"}", pre,
                  "[{\"id\":300,\"content\":\"<a>\",\"special\":true,\"lstrip\":true,\"rstrip\":true,\"normalized\":false},"
                  "{\"id\":301,\"content\":\"w\xC3\xA9\",\"special\":false,\"single_word\":true,\"normalized\":true},"
                  "{\"id\":302,\"content\":\"e\xCC\x81x\",\"special\":false,\"normalized\":true}]");
    tok[2] = make("null", "{\"type\":\"ByteLevel\",\"add_prefix_space\":true,\"use_regex\":true}",
                  "[{\"id\":300,\"content\":\"\\n\",\"special\":true,\"normalized\":false}]");
}

static void check_decode(const tokenizer *t, const int32_t *ids, size_t n, buf *whole) {
    buf_clear(whole);
    tokenizer_decode(t, ids, n, whole);
    if (!utf8_valid(whole->data ? whole->data : "", whole->len)) abort();
    /* Byte by byte through the stream decoder: same output. */
    buf raw = {0}, bytewise = {0};
    for (size_t i = 0; i < n; i++) tokenizer_decode_token(t, ids[i], &raw);
    token_stream s;
    token_stream_init(&s, t);
    for (size_t i = 0; i < raw.len; i++) {
        token_stream_push_bytes(&s, raw.data + i, 1, &bytewise);
        if (!utf8_valid(bytewise.data ? bytewise.data : "", bytewise.len)) abort();
    }
    token_stream_flush(&s, &bytewise);
    if (bytewise.len != whole->len || (whole->len && memcmp(bytewise.data, whole->data, whole->len) != 0)) abort();
    buf_free(&raw);
    buf_free(&bytewise);
}

static int same_ids(const int32_t *a, size_t an, const int32_t *b, size_t bn) {
    return an == bn && (an == 0 || memcmp(a, b, an * sizeof *a) == 0);
}

static uint64_t rng_next(uint64_t *s) {   /* splitmix64 */
    uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static void check_guarded(const tokenizer *t, const char *text, size_t len, unsigned sel, int lossless, buf *out) {
    char err[256];
    int32_t *plain, *zero, *g;
    size_t pn, zn, gn;
    if (tokenizer_encode(t, text, len, 1, &plain, &pn, err, sizeof err) != 0) abort();
    if (tokenizer_encode(t, text, len, 0, &zero, &zn, err, sizeof err) != 0) abort();
    if (tokenizer_encode_guarded(t, text, len, NULL, 0, &g, &gn, err, sizeof err) != 0) abort();
    if (!same_ids(g, gn, plain, pn)) abort();
    free(g);
    size_t all[2] = {0, len};
    if (tokenizer_encode_guarded(t, text, len, all, 1, &g, &gn, err, sizeof err) != 0) abort();
    if (!same_ids(g, gn, zero, zn)) abort();
    free(g);
    /* Random spans. */
    uint64_t seed = 0xcbf29ce484222325ull ^ sel;
    for (size_t i = 0; i < len; i++) seed = (seed ^ (unsigned char)text[i]) * 0x100000001b3ull;
    size_t ns = sel % 9, sp[16];
    for (size_t k = 0; k < ns; k++) {
        uint64_t r = rng_next(&seed);
        sp[2 * k] = (size_t)(r % (len + 4));
        sp[2 * k + 1] = (r >> 32) % 23 == 0 ? SIZE_MAX : (size_t)((r >> 40) % 17);
    }
    if (tokenizer_encode_guarded(t, text, len, sp, ns, &g, &gn, err, sizeof err) != 0) abort();
    for (size_t i = 0; i < gn; i++)
        if (g[i] < 0 || g[i] >= tokenizer_n_tokens(t)) abort();
    buf a = {0};
    check_decode(t, g, gn, out);
    check_decode(t, plain, pn, &a);
    /* Tokenizer A keeps the text (no normalizer, stripping or prefix space). */
    if (lossless && (a.len != out->len || (a.len && memcmp(a.data, out->data, a.len) != 0))) abort();
    buf_free(&a);
    free(g);
    free(plain);
    free(zero);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 1) return 0;
    const char *text = (const char *)data + 1;
    size_t len = size - 1;
    char err[256];
    buf out = {0};
    if (data[0] & 1) {
        tokenizer *t = tokenizer_load_mem(text, len, err, sizeof err);
        if (t) {
            int32_t *ids;
            size_t n;
            const char *s = "Hello <|user|> world's 123456 \xC3\xA9\r\n  x";
            if (tokenizer_encode(t, s, strlen(s), 1, &ids, &n, err, sizeof err) == 0) {
                for (size_t i = 0; i < n; i++)
                    if (ids[i] < 0 || ids[i] >= tokenizer_n_tokens(t)) abort();
                check_decode(t, ids, n, &out);
                free(ids);
            }
            tokenizer_free(t);
        }
        buf_free(&out);
        return 0;
    }
    init();
    for (int k = 0; k < 3; k++) {
        for (int special = 0; special <= 1; special++) {
            int32_t *ids;
            size_t n;
            if (tokenizer_encode(tok[k], text, len, special, &ids, &n, err, sizeof err) != 0) abort();
            for (size_t i = 0; i < n; i++)
                if (ids[i] < 0 || ids[i] >= tokenizer_n_tokens(tok[k])) abort();
            check_decode(tok[k], ids, n, &out);
            if (k == 0) {
                buf want = {0};
                utf8_append_lossy(&want, text, len);
                if (want.len != out.len || (want.len && memcmp(want.data, out.data, want.len) != 0)) abort();
                buf_free(&want);
            }
            free(ids);
        }
        check_guarded(tok[k], text, len, data[0] >> 1, k == 0, &out);
    }
    buf_free(&out);
    return 0;
}
