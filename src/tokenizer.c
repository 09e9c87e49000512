/* tokenizer.c — tokenizer.json loading, added-token matching, the two known
 * pre-tokenizer regexes (hand-written matchers, no regex engine), byte-level
 * BPE and decoding. See tokenizer.h for the behaviour contract. */
#include "tokenizer.h"
#include "json.h"
#include "unicode.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_TOKENS (1 << 24)   /* ids above this are rejected at load (untrusted files) */

enum { PRE_NONE, PRE_GLM4, PRE_QWEN2, PRE_GPT2 };

static const char RE_GLM4[] =
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
static const char RE_QWEN2[] =
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";

typedef struct {
    int32_t id;
    uint32_t off, len;         /* content in t->arena */
    uint32_t noff, nlen;       /* normalized content (== content without a normalizer) */
    unsigned char special, lstrip, rstrip, single_word, normalized;
} added_token;

typedef struct { int32_t first_child, next_sibling, token; unsigned char byte; } trie_node;
typedef struct { trie_node *n; size_t len, cap; } trie;

typedef struct { uint64_t key; int32_t rank, new_id; } merge_slot;   /* key 0 = empty (ids+1 used) */
typedef struct { uint32_t off, len; int32_t id; } vocab_slot;        /* id -1 = empty */

struct tokenizer {
    char *arena; size_t arena_len, arena_cap;   /* all strings */
    int32_t n_tokens;
    uint32_t *text_off, *text_len;              /* per id: raw vocab string; len UINT32_MAX = hole */
    uint32_t *dec_off, *dec_len;                /* per id: decoded bytes */
    unsigned char *flags;                       /* per id: 1 added, 2 special */
    vocab_slot *vocab; size_t vocab_cap;        /* model vocab string -> id */
    merge_slot *merges; size_t merges_cap;
    int32_t byte_id[256];
    added_token *added; size_t n_added;
    trie trie_raw, trie_norm;                   /* added tokens matched before / after normalization */
    int pre[2]; int n_pre;                      /* regex stages in order */
    int prefix_stage;                           /* stage whose input gets ByteLevel's add_prefix_space */
    int add_prefix_space, nfc, ignore_merges;
    int32_t unk_id;
    size_t max_tok_len;                         /* longest model vocab string */
    char bl_str[256][3];                        /* byte -> byte-level UTF-8 */
    unsigned char bl_len[256];
    int16_t cp_byte[324];                       /* byte-level code point -> byte */
};

/* ---- small helpers ---- */

static void seterr(char *err, size_t errlen, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void seterr(char *err, size_t errlen, const char *fmt, ...) {
    if (!err || !errlen) return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
}

static void *xrealloc(void *p, size_t n) {
    void *q = realloc(p, n ? n : 1);
    if (!q) abort();   /* out of memory: the project's policy (buf.c does the same) */
    return q;
}

static uint32_t arena_add(tokenizer *t, const char *s, size_t n) {
    if (t->arena_len + n + 1 > t->arena_cap) {
        size_t c = t->arena_cap ? t->arena_cap : 1 << 16;
        while (c < t->arena_len + n + 1) c *= 2;
        t->arena = xrealloc(t->arena, c);
        t->arena_cap = c;
    }
    uint32_t off = (uint32_t)t->arena_len;
    memcpy(t->arena + off, s, n);
    t->arena[off + n] = 0;
    t->arena_len += n + 1;
    return off;
}

static uint64_t hash_bytes(const char *s, size_t n) {
    uint64_t h = 0xcbf29ce484222325ull;
    for (size_t i = 0; i < n; i++) { h ^= (unsigned char)s[i]; h *= 0x100000001b3ull; }
    return h ^ (h >> 29);
}

static uint64_t hash_u64(uint64_t x) {
    x ^= x >> 33; x *= 0xff51afd7ed558ccdull; x ^= x >> 33; x *= 0xc4ceb9fe1a85ec53ull; x ^= x >> 33;
    return x;
}

/* GPT-2 bytes_to_unicode: printable Latin-1 bytes map to themselves, the
 * other 68 to U+0100.. in byte order. Filled per tokenizer at load. */
static int printable_byte(unsigned b) { return (b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF); }

static void init_byte_level(tokenizer *t) {
    unsigned extra = 0;
    for (int i = 0; i < 324; i++) t->cp_byte[i] = -1;
    for (unsigned b = 0; b < 256; b++) {
        uint32_t cp = printable_byte(b) ? b : 256 + extra++;
        char tmp[4];
        size_t n = utf8_encode(cp, tmp);
        memcpy(t->bl_str[b], tmp, n);
        t->bl_len[b] = (unsigned char)n;
        t->cp_byte[cp] = (int16_t)b;
    }
}

static int cp_to_byte(const tokenizer *t, uint32_t cp) { return cp < 324 ? t->cp_byte[cp] : -1; }

/* ---- vocab and merge hash tables ---- */

static int32_t vocab_find(const tokenizer *t, const char *s, size_t n) {
    if (!t->vocab_cap) return -1;
    size_t mask = t->vocab_cap - 1, i = hash_bytes(s, n) & mask;
    for (;;) {
        const vocab_slot *v = &t->vocab[i];
        if (v->id < 0) return -1;
        if (v->len == n && memcmp(t->arena + v->off, s, n) == 0) return v->id;
        i = (i + 1) & mask;
    }
}

static void vocab_insert(tokenizer *t, uint32_t off, uint32_t len, int32_t id) {
    size_t mask = t->vocab_cap - 1, i = hash_bytes(t->arena + off, len) & mask;
    for (;;) {
        vocab_slot *v = &t->vocab[i];
        if (v->id < 0) { v->off = off; v->len = len; v->id = id; return; }
        if (v->len == len && memcmp(t->arena + v->off, t->arena + off, len) == 0) { v->id = id; return; }
        i = (i + 1) & mask;
    }
}

static const merge_slot *merge_find(const tokenizer *t, int32_t a, int32_t b) {
    uint64_t key = ((uint64_t)(uint32_t)(a + 1) << 32) | (uint32_t)(b + 1);
    size_t mask = t->merges_cap - 1, i = hash_u64(key) & mask;
    for (;;) {
        const merge_slot *m = &t->merges[i];
        if (m->key == 0) return NULL;
        if (m->key == key) return m;
        i = (i + 1) & mask;
    }
}

/* First occurrence of a pair keeps its rank, as in HF. */
static void merge_insert(tokenizer *t, int32_t a, int32_t b, int32_t rank, int32_t new_id) {
    uint64_t key = ((uint64_t)(uint32_t)(a + 1) << 32) | (uint32_t)(b + 1);
    size_t mask = t->merges_cap - 1, i = hash_u64(key) & mask;
    for (;;) {
        merge_slot *m = &t->merges[i];
        if (m->key == key) return;
        if (m->key == 0) { m->key = key; m->rank = rank; m->new_id = new_id; return; }
        i = (i + 1) & mask;
    }
}

/* ---- added-token trie ---- */

static int32_t trie_child(const trie *tr, int32_t node, unsigned char b) {
    for (int32_t c = tr->n[node].first_child; c >= 0; c = tr->n[c].next_sibling)
        if (tr->n[c].byte == b) return c;
    return -1;
}

static int32_t trie_new(trie *tr, unsigned char b) {
    if (tr->len == tr->cap) { tr->cap = tr->cap ? tr->cap * 2 : 256; tr->n = xrealloc(tr->n, tr->cap * sizeof *tr->n); }
    tr->n[tr->len] = (trie_node){-1, -1, -1, b};
    return (int32_t)tr->len++;
}

static void trie_add(trie *tr, const char *s, size_t n, int32_t token) {
    if (!tr->len) trie_new(tr, 0);
    int32_t node = 0;
    for (size_t i = 0; i < n; i++) {
        int32_t c = trie_child(tr, node, (unsigned char)s[i]);
        if (c < 0) {
            c = trie_new(tr, (unsigned char)s[i]);
            tr->n[c].next_sibling = tr->n[node].first_child;
            tr->n[node].first_child = c;
        }
        node = c;
    }
    if (tr->n[node].token < 0) tr->n[node].token = token;   /* first of duplicate contents wins */
}

/* Longest added token starting at s[0]; returns its length and sets *token. */
static size_t trie_longest(const trie *tr, const char *s, size_t n, int32_t *token) {
    if (!tr->len) return 0;
    int32_t node = 0;
    size_t best = 0;
    for (size_t i = 0; i < n; i++) {
        node = trie_child(tr, node, (unsigned char)s[i]);
        if (node < 0) break;
        if (tr->n[node].token >= 0) { best = i + 1; *token = tr->n[node].token; }
    }
    return best;
}

/* ---- loading ---- */

static int check_bool_false(const json_value *obj, const char *key) {
    const json_value *v = json_get(obj, key);
    int b = 0;
    return !v || v->type == JSON_NULL || (json_get_bool(v, &b) && !b);
}

static int empty_or_null_str(const json_value *v) {
    return !v || v->type == JSON_NULL || (v->type == JSON_STRING && v->len == 0);
}

static int load_normalizer(tokenizer *t, const json_value *n, char *err, size_t errlen) {
    if (!n || n->type == JSON_NULL) return 0;
    const char *type = json_get_str(json_get(n, "type"));
    if (type && strcmp(type, "NFC") == 0) { t->nfc = 1; return 0; }
    if (type && strcmp(type, "Sequence") == 0) {
        const json_value *list = json_get(n, "normalizers");
        if (!list || list->type != JSON_ARRAY) { seterr(err, errlen, "tokenizer.json: normalizer Sequence without a normalizers list"); return -1; }
        for (size_t i = 0; i < list->len; i++)
            if (load_normalizer(t, json_at(list, i), err, errlen)) return -1;
        return 0;
    }
    seterr(err, errlen, "tokenizer.json: unsupported normalizer type \"%s\" (only NFC is supported)", type ? type : "?");
    return -1;
}

static int load_pretok_one(tokenizer *t, const json_value *p, int *have_byte_level, char *err, size_t errlen) {
    const char *type = json_get_str(json_get(p, "type"));
    if (!type) { seterr(err, errlen, "tokenizer.json: pre_tokenizer without a type"); return -1; }
    if (strcmp(type, "Sequence") == 0) {
        const json_value *list = json_get(p, "pretokenizers");
        if (!list || list->type != JSON_ARRAY) { seterr(err, errlen, "tokenizer.json: pre_tokenizer Sequence without a pretokenizers list"); return -1; }
        for (size_t i = 0; i < list->len; i++)
            if (load_pretok_one(t, json_at(list, i), have_byte_level, err, errlen)) return -1;
        return 0;
    }
    if (*have_byte_level) { seterr(err, errlen, "tokenizer.json: pre-tokenizer \"%s\" after ByteLevel is not supported", type); return -1; }
    if (strcmp(type, "Split") == 0) {
        const json_value *pat = json_get(p, "pattern");
        const char *re = json_get_str(json_get(pat, "Regex"));
        const char *beh = json_get_str(json_get(p, "behavior"));
        if (!re) { seterr(err, errlen, "tokenizer.json: Split pre-tokenizer without a Regex pattern is not supported"); return -1; }
        int kind = strcmp(re, RE_GLM4) == 0 ? PRE_GLM4 : strcmp(re, RE_QWEN2) == 0 ? PRE_QWEN2 : PRE_NONE;
        if (kind == PRE_NONE) { seterr(err, errlen, "tokenizer.json: unknown pre-tokenizer regex \"%.200s\" (only the GLM-4/Llama-3 and Qwen-2 patterns are supported)", re); return -1; }
        if (!beh || strcmp(beh, "Isolated") != 0 || !check_bool_false(p, "invert")) {
            seterr(err, errlen, "tokenizer.json: Split must have behavior Isolated and invert false"); return -1;
        }
        if (t->n_pre >= 2) { seterr(err, errlen, "tokenizer.json: too many Split pre-tokenizers"); return -1; }
        t->pre[t->n_pre++] = kind;
        return 0;
    }
    if (strcmp(type, "ByteLevel") == 0) {
        const json_value *ur = json_get(p, "use_regex");
        int use_regex = 1, aps = 0;
        if (ur && !json_get_bool(ur, &use_regex)) { seterr(err, errlen, "tokenizer.json: ByteLevel use_regex is not a boolean"); return -1; }
        const json_value *ap = json_get(p, "add_prefix_space");
        if (ap && ap->type != JSON_NULL && !json_get_bool(ap, &aps)) { seterr(err, errlen, "tokenizer.json: ByteLevel add_prefix_space is not a boolean"); return -1; }
        if (use_regex) {
            if (t->n_pre >= 2) { seterr(err, errlen, "tokenizer.json: too many pre-tokenizer regexes"); return -1; }
            t->pre[t->n_pre++] = PRE_GPT2;
        }
        /* HF prepends the space to each piece ByteLevel receives, before its own regex. */
        t->prefix_stage = use_regex ? t->n_pre - 1 : t->n_pre;
        t->add_prefix_space = aps;
        *have_byte_level = 1;
        return 0;
    }
    seterr(err, errlen, "tokenizer.json: unsupported pre-tokenizer type \"%s\"", type);
    return -1;
}

static int add_flag(const json_value *o, const char *key, int dflt, unsigned char *out, char *err, size_t errlen) {
    const json_value *v = json_get(o, key);
    int b = dflt;
    if (v && v->type != JSON_NULL && !json_get_bool(v, &b)) { seterr(err, errlen, "tokenizer.json: added token field %s is not a boolean", key); return -1; }
    *out = (unsigned char)b;
    return 0;
}

static int32_t token_lookup_for_merge(const tokenizer *t, const char *s, size_t n, size_t rank, char *err, size_t errlen) {
    int32_t id = vocab_find(t, s, n);
    if (id < 0) seterr(err, errlen, "tokenizer.json: merge %zu uses \"%.*s\", which is not in the vocab", rank, (int)(n > 100 ? 100 : n), s);
    return id;
}

static int load_model(tokenizer *t, const json_value *m, char *err, size_t errlen) {
    if (!m || m->type != JSON_OBJECT) { seterr(err, errlen, "tokenizer.json: no model object"); return -1; }
    const char *type = json_get_str(json_get(m, "type"));
    if (type && strcmp(type, "BPE") != 0) { seterr(err, errlen, "tokenizer.json: unsupported model type \"%s\" (only BPE)", type); return -1; }
    const json_value *vocab = json_get(m, "vocab"), *merges = json_get(m, "merges");
    if (!vocab || vocab->type != JSON_OBJECT || !merges || merges->type != JSON_ARRAY) {
        seterr(err, errlen, "tokenizer.json: model needs a vocab object and a merges array"); return -1;
    }
    double dropout = 0;
    const json_value *dv = json_get(m, "dropout");
    if (dv && dv->type != JSON_NULL && (!json_get_double(dv, &dropout) || dropout != 0)) {
        seterr(err, errlen, "tokenizer.json: BPE dropout is not supported"); return -1;
    }
    if (!empty_or_null_str(json_get(m, "continuing_subword_prefix")) || !empty_or_null_str(json_get(m, "end_of_word_suffix"))) {
        seterr(err, errlen, "tokenizer.json: continuing_subword_prefix / end_of_word_suffix are not supported"); return -1;
    }
    const json_value *im = json_get(m, "ignore_merges");
    if (im && im->type != JSON_NULL && !json_get_bool(im, &t->ignore_merges)) { seterr(err, errlen, "tokenizer.json: ignore_merges is not a boolean"); return -1; }

    size_t cap = 16;
    while (cap < vocab->len * 2) cap *= 2;
    t->vocab_cap = cap;
    t->vocab = xrealloc(NULL, cap * sizeof *t->vocab);
    for (size_t i = 0; i < cap; i++) t->vocab[i].id = -1;
    int32_t max_id = -1;
    for (size_t i = 0; i < vocab->len; i++) {
        const json_member *mb = &vocab->members[i];
        int64_t id;
        if (!json_get_int64(&mb->value, &id) || id < 0 || id >= MAX_TOKENS) {
            seterr(err, errlen, "tokenizer.json: vocab entry \"%.100s\" has a bad id", mb->key); return -1;
        }
        uint32_t off = arena_add(t, mb->key, mb->key_len);
        vocab_insert(t, off, (uint32_t)mb->key_len, (int32_t)id);
        if (mb->key_len > t->max_tok_len) t->max_tok_len = mb->key_len;
        if (id > max_id) max_id = (int32_t)id;
    }
    t->n_tokens = max_id + 1;

    cap = 16;
    while (cap < merges->len * 2) cap *= 2;
    t->merges_cap = cap;
    t->merges = xrealloc(NULL, cap * sizeof *t->merges);
    memset(t->merges, 0, cap * sizeof *t->merges);
    buf tmp = {0};
    for (size_t r = 0; r < merges->len; r++) {
        const json_value *e = json_at(merges, r);
        const char *a, *b;
        size_t alen, blen;
        if (e->type == JSON_STRING) {
            const char *sp = memchr(e->str, ' ', e->len);
            if (!sp || memchr(sp + 1, ' ', e->len - (size_t)(sp + 1 - e->str))) {
                seterr(err, errlen, "tokenizer.json: merge %zu is not \"a b\"", r); buf_free(&tmp); return -1;
            }
            a = e->str; alen = (size_t)(sp - e->str); b = sp + 1; blen = e->len - alen - 1;
        } else if (e->type == JSON_ARRAY && e->len == 2 && e->items[0].type == JSON_STRING && e->items[1].type == JSON_STRING) {
            a = e->items[0].str; alen = e->items[0].len; b = e->items[1].str; blen = e->items[1].len;
        } else {
            seterr(err, errlen, "tokenizer.json: merge %zu is neither \"a b\" nor [\"a\",\"b\"]", r); buf_free(&tmp); return -1;
        }
        int32_t ia = token_lookup_for_merge(t, a, alen, r, err, errlen);
        int32_t ib = ia < 0 ? -1 : token_lookup_for_merge(t, b, blen, r, err, errlen);
        buf_clear(&tmp); buf_append(&tmp, a, alen); buf_append(&tmp, b, blen);
        int32_t inew = ib < 0 ? -1 : token_lookup_for_merge(t, tmp.data, tmp.len, r, err, errlen);
        if (inew < 0) { buf_free(&tmp); return -1; }
        merge_insert(t, ia, ib, (int32_t)r, inew);
    }
    buf_free(&tmp);

    t->unk_id = -1;
    const char *unk = json_get_str(json_get(m, "unk_token"));
    if (unk) t->unk_id = vocab_find(t, unk, strlen(unk));
    return 0;
}

static int load_added(tokenizer *t, const json_value *list, char *err, size_t errlen) {
    if (!list || list->type == JSON_NULL) return 0;
    if (list->type != JSON_ARRAY) { seterr(err, errlen, "tokenizer.json: added_tokens is not an array"); return -1; }
    t->added = xrealloc(NULL, (list->len + 1) * sizeof *t->added);
    buf nb = {0};
    for (size_t i = 0; i < list->len; i++) {
        const json_value *o = json_at(list, i);
        const json_value *cv = json_get(o, "content");
        int64_t id;
        if (!cv || cv->type != JSON_STRING || cv->len == 0 || !json_get_int64(json_get(o, "id"), &id) || id < 0 || id >= MAX_TOKENS) {
            seterr(err, errlen, "tokenizer.json: added token %zu needs a non-empty content and a valid id", i); buf_free(&nb); return -1;
        }
        added_token *a = &t->added[t->n_added];
        memset(a, 0, sizeof *a);
        a->id = (int32_t)id;
        if (add_flag(o, "special", 0, &a->special, err, errlen) || add_flag(o, "lstrip", 0, &a->lstrip, err, errlen) ||
            add_flag(o, "rstrip", 0, &a->rstrip, err, errlen) || add_flag(o, "single_word", 0, &a->single_word, err, errlen) ||
            add_flag(o, "normalized", !a->special, &a->normalized, err, errlen)) { buf_free(&nb); return -1; }
        a->off = arena_add(t, cv->str, cv->len);
        a->len = (uint32_t)cv->len;
        a->noff = a->off; a->nlen = a->len;
        if (a->normalized && t->nfc) {
            buf_clear(&nb);
            uc_nfc_append(&nb, cv->str, cv->len);
            a->noff = arena_add(t, nb.data, nb.len);
            a->nlen = (uint32_t)nb.len;
        }
        if (a->id >= t->n_tokens) t->n_tokens = a->id + 1;
        t->n_added++;
    }
    buf_free(&nb);
    for (size_t i = 0; i < t->n_added; i++) {
        const added_token *a = &t->added[i];
        if (a->normalized) trie_add(&t->trie_norm, t->arena + a->noff, a->nlen, (int32_t)i);
        else trie_add(&t->trie_raw, t->arena + a->off, a->len, (int32_t)i);
    }
    return 0;
}

/* Per-id text and decoded bytes. HF's ByteLevel decoder maps a token's
 * characters back to bytes when every character is in the byte map and
 * otherwise emits the token's UTF-8 unchanged (added tokens such as
 * "<|user|>" are printable ASCII, which maps to itself). */
static void build_id_tables(tokenizer *t) {
    size_t n = (size_t)t->n_tokens;
    t->text_off = xrealloc(NULL, n * sizeof *t->text_off);
    t->text_len = xrealloc(NULL, n * sizeof *t->text_len);
    t->dec_off = xrealloc(NULL, n * sizeof *t->dec_off);
    t->dec_len = xrealloc(NULL, n * sizeof *t->dec_len);
    t->flags = xrealloc(NULL, n);
    memset(t->flags, 0, n);
    for (size_t i = 0; i < n; i++) t->text_len[i] = UINT32_MAX;
    for (size_t i = 0; i < t->vocab_cap; i++) {
        const vocab_slot *v = &t->vocab[i];
        if (v->id >= 0) { t->text_off[v->id] = v->off; t->text_len[v->id] = v->len; }
    }
    for (size_t i = 0; i < t->n_added; i++) {
        const added_token *a = &t->added[i];
        t->text_off[a->id] = a->off; t->text_len[a->id] = a->len;
        t->flags[a->id] = (unsigned char)(1 | (a->special ? 2 : 0));
    }
    char *tmp = NULL;
    size_t tmpcap = 0;
    for (size_t id = 0; id < n; id++) {
        if (t->text_len[id] == UINT32_MAX) { t->dec_off[id] = 0; t->dec_len[id] = UINT32_MAX; continue; }
        size_t len = t->text_len[id];
        if (len > tmpcap) { tmpcap = len; tmp = xrealloc(tmp, tmpcap); }
        const unsigned char *s = (const unsigned char *)t->arena + t->text_off[id];
        size_t o = 0, i = 0;
        int ok = 1;
        while (i < len) {
            uint32_t cp;
            i += utf8_decode(s + i, len - i, &cp);
            int b = cp_to_byte(t, cp);
            if (b < 0) { ok = 0; break; }
            tmp[o++] = (char)b;
        }
        if (ok) { t->dec_off[id] = arena_add(t, tmp, o); t->dec_len[id] = (uint32_t)o; }
        else { t->dec_off[id] = t->text_off[id]; t->dec_len[id] = (uint32_t)len; }
    }
    free(tmp);
}

tokenizer *tokenizer_load_mem(const char *json, size_t len, char *err, size_t errlen) {
    char jerr[256];
    json_doc *doc = json_parse(json, len, jerr, sizeof jerr);
    if (!doc) { seterr(err, errlen, "tokenizer.json: %s", jerr); return NULL; }
    const json_value *root = json_root(doc);
    tokenizer *t = calloc(1, sizeof *t);
    if (!t) abort();
    init_byte_level(t);
    int have_byte_level = 0;
    if (!root || root->type != JSON_OBJECT) { seterr(err, errlen, "tokenizer.json: top level is not an object"); goto fail; }
    if (load_normalizer(t, json_get(root, "normalizer"), err, errlen)) goto fail;
    const json_value *pt = json_get(root, "pre_tokenizer");
    if (pt && pt->type != JSON_NULL && load_pretok_one(t, pt, &have_byte_level, err, errlen)) goto fail;
    if (!have_byte_level) { seterr(err, errlen, "tokenizer.json: only byte-level BPE is supported (no ByteLevel pre-tokenizer)"); goto fail; }
    const json_value *dec = json_get(root, "decoder");
    const char *dtype = dec ? json_get_str(json_get(dec, "type")) : NULL;
    if (dec && dec->type != JSON_NULL && (!dtype || strcmp(dtype, "ByteLevel") != 0)) {
        seterr(err, errlen, "tokenizer.json: unsupported decoder type \"%s\" (only ByteLevel)", dtype ? dtype : "?"); goto fail;
    }
    if (load_model(t, json_get(root, "model"), err, errlen)) goto fail;
    if (load_added(t, json_get(root, "added_tokens"), err, errlen)) goto fail;
    if (t->n_tokens <= 0) { seterr(err, errlen, "tokenizer.json: empty vocabulary"); goto fail; }
    for (int b = 0; b < 256; b++) t->byte_id[b] = vocab_find(t, t->bl_str[b], t->bl_len[b]);
    build_id_tables(t);
    json_free(doc);
    return t;
fail:
    json_free(doc);
    tokenizer_free(t);
    return NULL;
}

tokenizer *tokenizer_load(const char *path, char *err, size_t errlen) {
    FILE *f = fopen(path, "rb");
    if (!f) { seterr(err, errlen, "%s: %s", path, strerror(errno)); return NULL; }
    buf b = {0};
    char chunk[1 << 16];
    size_t r;
    while ((r = fread(chunk, 1, sizeof chunk, f)) > 0) buf_append(&b, chunk, r);
    int bad = ferror(f);
    fclose(f);
    if (bad) { seterr(err, errlen, "%s: read error", path); buf_free(&b); return NULL; }
    tokenizer *t = tokenizer_load_mem(b.data ? b.data : "", b.len, err, errlen);
    buf_free(&b);
    return t;
}

void tokenizer_free(tokenizer *t) {
    if (!t) return;
    free(t->arena); free(t->text_off); free(t->text_len); free(t->dec_off); free(t->dec_len);
    free(t->flags); free(t->vocab); free(t->merges); free(t->added);
    free(t->trie_raw.n); free(t->trie_norm.n);
    free(t);
}

/* ---- pre-tokenizer regexes ----
 * Each matcher returns the end (in code points) of the leftmost-first match
 * at i, which for these patterns always exists and is non-empty: every code
 * point is a letter, a number, White_Space or "other". */

enum { C_L = 1, C_N = 2, C_WS = 4 };

typedef struct {
    uint32_t *cp; unsigned char *cls; size_t *off;   /* off[n] = byte length */
    size_t n, cap;
} cpbuf;

static int is_crlf(uint32_t c) { return c == '\r' || c == '\n'; }
static int is_other(unsigned char cls) { return !(cls & (C_L | C_N | C_WS)); }

/* Whitespace alternatives shared by all patterns:
 * \s*[\r\n]+ (GLM/Qwen only) | \s+(?!\S) | \s+ */
static size_t match_space(const cpbuf *b, size_t i, int crlf_alt) {
    size_t e = i;
    while (e < b->n && (b->cls[e] & C_WS)) e++;
    if (e == i) return 0;
    if (crlf_alt) {
        for (size_t k = e; k > i; k--)
            if (is_crlf(b->cp[k - 1])) return k;   /* greedy \s* backs off to the last CR/LF */
    }
    if (e == b->n) return e;
    if (e - 1 > i) return e - 1;                    /* leave one space for the next word */
    return e;
}

static size_t match_contraction(const cpbuf *b, size_t i, int fold) {
    if (b->cp[i] != '\'' || i + 1 >= b->n) return 0;
    uint32_t c1 = fold ? uc_simple_fold(b->cp[i + 1]) : b->cp[i + 1];
    if (c1 == 's' || c1 == 't' || c1 == 'm' || c1 == 'd') return i + 2;
    if (i + 2 >= b->n) return 0;
    uint32_t c2 = fold ? uc_simple_fold(b->cp[i + 2]) : b->cp[i + 2];
    if ((c1 == 'r' && c2 == 'e') || (c1 == 'v' && c2 == 'e') || (c1 == 'l' && c2 == 'l')) return i + 3;
    return 0;
}

static size_t match_glm(const cpbuf *b, size_t i, int max_digits) {
    size_t n = b->n, j;
    if ((j = match_contraction(b, i, 1))) return j;
    /* [^\r\n\p{L}\p{N}]?\p{L}+ */
    j = i;
    if (!(b->cls[j] & (C_L | C_N)) && !is_crlf(b->cp[j]) && j + 1 < n && (b->cls[j + 1] & C_L)) j++;
    if (b->cls[j] & C_L) {
        while (j < n && (b->cls[j] & C_L)) j++;
        return j;
    }
    /* \p{N}{1,max} */
    if (b->cls[i] & C_N) {
        j = i;
        while (j < n && j - i < (size_t)max_digits && (b->cls[j] & C_N)) j++;
        return j;
    }
    /* " ?[^\s\p{L}\p{N}]+[\r\n]*" */
    j = i;
    if (b->cp[j] == ' ' && j + 1 < n && is_other(b->cls[j + 1])) j++;
    if (is_other(b->cls[j])) {
        while (j < n && is_other(b->cls[j])) j++;
        while (j < n && is_crlf(b->cp[j])) j++;
        return j;
    }
    return match_space(b, i, 1);
}

/* GPT-2: 's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+ */
static size_t match_gpt2(const cpbuf *b, size_t i) {
    size_t n = b->n, j;
    if ((j = match_contraction(b, i, 0))) return j;
    size_t s = (b->cp[i] == ' ' && i + 1 < n) ? i + 1 : i;
    for (int pass = 0; pass < 2; pass++) {
        /* try with the optional space first, then without */
        size_t k = pass == 0 ? s : i;
        if (pass == 1 && k == s) break;
        unsigned char c = b->cls[k];
        if (c & C_L) { while (k < n && (b->cls[k] & C_L)) k++; return k; }
        if (c & C_N) { while (k < n && (b->cls[k] & C_N)) k++; return k; }
        if (is_other(c)) { while (k < n && is_other(b->cls[k])) k++; return k; }
    }
    return match_space(b, i, 0);
}

static size_t match_at(int kind, const cpbuf *b, size_t i) {
    size_t e = kind == PRE_GPT2 ? match_gpt2(b, i) : match_glm(b, i, kind == PRE_GLM4 ? 3 : 1);
    return e > i ? e : i + 1;
}

/* ---- BPE ---- */

typedef struct { uint64_t key; int32_t new_id; } heap_item;   /* key = rank << 32 | pos */

typedef struct {
    int32_t *sym, *prev, *next;
    heap_item *heap;
    size_t cap, hcap;
} bpe_scratch;

typedef struct { int32_t *v; size_t n, cap; } idvec;

static void ids_push(idvec *o, int32_t id) {
    if (o->n == o->cap) { o->cap = o->cap ? o->cap * 2 : 256; o->v = xrealloc(o->v, o->cap * sizeof *o->v); }
    o->v[o->n++] = id;
}

static void heap_push(bpe_scratch *s, size_t *hn, heap_item it) {
    if (*hn == s->hcap) { s->hcap = s->hcap ? s->hcap * 2 : 256; s->heap = xrealloc(s->heap, s->hcap * sizeof *s->heap); }
    size_t i = (*hn)++;
    while (i > 0) {
        size_t p = (i - 1) / 2;
        if (s->heap[p].key <= it.key) break;
        s->heap[i] = s->heap[p];
        i = p;
    }
    s->heap[i] = it;
}

static heap_item heap_pop(bpe_scratch *s, size_t *hn) {
    heap_item top = s->heap[0], last = s->heap[--(*hn)];
    size_t i = 0, n = *hn;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= n) break;
        if (c + 1 < n && s->heap[c + 1].key < s->heap[c].key) c++;
        if (s->heap[c].key >= last.key) break;
        s->heap[i] = s->heap[c];
        i = c;
    }
    if (n) s->heap[i] = last;
    return top;
}

static void try_pair(const tokenizer *t, bpe_scratch *s, size_t *hn, int32_t pos) {
    int32_t nx = s->next[pos];
    if (nx < 0) return;
    const merge_slot *m = merge_find(t, s->sym[pos], s->sym[nx]);
    if (m) heap_push(s, hn, (heap_item){((uint64_t)(uint32_t)m->rank << 32) | (uint32_t)pos, m->new_id});
}

/* Merges the bytes p[0..n) and appends the resulting ids. */
static void bpe_word(const tokenizer *t, bpe_scratch *s, const unsigned char *p, size_t n, idvec *out) {
    if (t->ignore_merges && n > 1 && n <= t->max_tok_len && n <= 512) {
        char tmp[1024];
        size_t o = 0;
        for (size_t i = 0; i < n && o + 2 <= sizeof tmp; i++) { memcpy(tmp + o, t->bl_str[p[i]], t->bl_len[p[i]]); o += t->bl_len[p[i]]; }
        int32_t id = o <= t->max_tok_len ? vocab_find(t, tmp, o) : -1;
        if (id >= 0) { ids_push(out, id); return; }
    }
    if (n > s->cap) {
        s->cap = n * 2;
        s->sym = xrealloc(s->sym, s->cap * sizeof *s->sym);
        s->prev = xrealloc(s->prev, s->cap * sizeof *s->prev);
        s->next = xrealloc(s->next, s->cap * sizeof *s->next);
    }
    size_t m = 0;
    for (size_t i = 0; i < n; i++) {
        int32_t id = t->byte_id[p[i]];
        if (id < 0) id = t->unk_id;
        if (id < 0) continue;   /* a byte the vocab lacks, no unk: dropped, as HF does */
        s->sym[m] = id;
        s->prev[m] = (int32_t)m - 1;
        s->next[m] = (int32_t)m + 1;
        m++;
    }
    if (!m) return;
    s->next[m - 1] = -1;
    size_t hn = 0;
    for (size_t i = 0; i + 1 < m; i++) try_pair(t, s, &hn, (int32_t)i);
    while (hn) {
        heap_item it = heap_pop(s, &hn);
        int32_t pos = (int32_t)(uint32_t)it.key;
        if (s->sym[pos] < 0) continue;                 /* merged away */
        int32_t nx = s->next[pos];
        if (nx < 0) continue;
        const merge_slot *ms = merge_find(t, s->sym[pos], s->sym[nx]);
        if (!ms || ms->new_id != it.new_id || (uint32_t)ms->rank != (uint32_t)(it.key >> 32)) continue;   /* stale */
        s->sym[pos] = it.new_id;
        s->sym[nx] = -1;
        s->next[pos] = s->next[nx];
        if (s->next[nx] >= 0) s->prev[s->next[nx]] = pos;
        if (s->prev[pos] >= 0) try_pair(t, s, &hn, s->prev[pos]);
        try_pair(t, s, &hn, pos);
    }
    for (int32_t i = 0; i >= 0; i = s->next[i]) ids_push(out, s->sym[i]);
}

/* A per-call cache of short pre-tokens: prompts repeat words a lot. */
#define CACHE_SLOTS 4096
#define CACHE_KEY 30
#define CACHE_IDS 8
typedef struct { uint64_t h; unsigned char klen, nids; char key[CACHE_KEY]; int32_t ids[CACHE_IDS]; } cache_slot;

typedef struct {
    const tokenizer *t;
    int match_special;
    idvec out;
    bpe_scratch bs;
    cache_slot *cache;
    tokenizer_piece_fn piece_fn;   /* tokenizer_pieces: report pieces instead of running BPE */
    void *piece_ctx;
    /* tokenizer_encode_guarded: the protected byte ranges of the (lossily
     * fixed) input as sorted, disjoint [start, end) pairs, and that input's
     * start, so the normalize stage can find where its segment lies. */
    const char *raw;
    const size_t *iv;
    size_t niv;
} enc_ctx;

static void encode_pretoken(enc_ctx *c, const char *p, size_t n) {
    if (!n) return;
    if (c->piece_fn) { c->piece_fn(c->piece_ctx, p, n, -1); return; }
    if (n == 1 && c->t->byte_id[(unsigned char)p[0]] >= 0) { ids_push(&c->out, c->t->byte_id[(unsigned char)p[0]]); return; }
    cache_slot *slot = NULL;
    uint64_t h = 0;
    if (c->cache && n <= CACHE_KEY) {
        h = hash_bytes(p, n);
        slot = &c->cache[h & (CACHE_SLOTS - 1)];
        if (slot->h == h && slot->klen == n && slot->nids && memcmp(slot->key, p, n) == 0) {
            for (int i = 0; i < slot->nids; i++) ids_push(&c->out, slot->ids[i]);
            return;
        }
    }
    size_t before = c->out.n;
    bpe_word(c->t, &c->bs, (const unsigned char *)p, n, &c->out);
    size_t k = c->out.n - before;
    if (slot && k > 0 && k <= CACHE_IDS) {
        slot->h = h; slot->klen = (unsigned char)n; slot->nids = (unsigned char)k;
        memcpy(slot->key, p, n);
        memcpy(slot->ids, c->out.v + before, k * sizeof(int32_t));
    }
}

static void cb_reserve(cpbuf *b, size_t n) {
    if (n + 1 <= b->cap) return;
    b->cap = (n + 1) * 2;
    b->cp = xrealloc(b->cp, b->cap * sizeof *b->cp);
    b->cls = xrealloc(b->cls, b->cap);
    b->off = xrealloc(b->off, b->cap * sizeof *b->off);
}

/* pretokenize applies ByteLevel's add_prefix_space at the stage where HF
 * does; run_stage splits valid UTF-8 text with regex stage `stage` and passes
 * each piece on to the next stage (or BPE). */
static void run_stage(enc_ctx *c, const char *p, size_t n, int stage);

static void pretokenize(enc_ctx *c, const char *p, size_t n, int stage) {
    if (!n) return;
    if (stage == c->t->prefix_stage && c->t->add_prefix_space && p[0] != ' ') {
        buf pb = {0};
        buf_putc(&pb, ' ');
        buf_append(&pb, p, n);
        run_stage(c, pb.data, pb.len, stage);
        buf_free(&pb);
        return;
    }
    run_stage(c, p, n, stage);
}

static void run_stage(enc_ctx *c, const char *p, size_t n, int stage) {
    if (stage >= c->t->n_pre) { encode_pretoken(c, p, n); return; }
    /* A private array: the next stage recurses with its own. */
    cpbuf b = {0};
    cb_reserve(&b, n);
    size_t m = 0;
    for (size_t i = 0; i < n;) {
        uint32_t cp;
        size_t k = utf8_decode((const unsigned char *)p + i, n - i, &cp);
        b.cp[m] = cp;
        b.cls[m] = (unsigned char)((uc_is_letter(cp) ? C_L : 0) | (uc_is_number(cp) ? C_N : 0) | (uc_is_space(cp) ? C_WS : 0));
        b.off[m] = i;
        m++;
        i += k;
    }
    b.off[m] = n;
    b.n = m;
    int kind = c->t->pre[stage];
    for (size_t i = 0; i < m;) {
        size_t e = match_at(kind, &b, i);
        pretokenize(c, p + b.off[i], b.off[e] - b.off[i], stage + 1);
        i = e;
    }
    free(b.cp); free(b.cls); free(b.off);
}

typedef struct { size_t start, stop; int32_t id; } added_match;

static int ends_with_word(const char *s, size_t n) {
    if (!n) return 0;
    size_t i = n - 1;
    while (i > 0 && ((unsigned char)s[i] & 0xC0) == 0x80) i--;
    uint32_t cp;
    utf8_decode((const unsigned char *)s + i, n - i, &cp);
    return uc_is_word(cp);
}

static int starts_with_word(const char *s, size_t n) {
    if (!n) return 0;
    uint32_t cp;
    utf8_decode((const unsigned char *)s, n, &cp);
    return uc_is_word(cp);
}

/* HF AddedVocabulary::find_matches + split: emits ids for added tokens and
 * passes the text between them to `next`. iv/niv: guarded ranges of s
 * (sorted, disjoint [start, end) pairs; niv 0 when unguarded). */
static void split_added(enc_ctx *c, const trie *tr, const char *s, size_t n, const size_t *iv, size_t niv,
                        void (*next)(enc_ctx *, const char *, size_t)) {
    const tokenizer *t = c->t;
    size_t start_offset = 0, i = 0, cur = 0;
    while (i < n) {
        int32_t ti = -1;
        size_t ml = trie_longest(tr, s + i, n - i, &ti);
        if (!ml) { i++; continue; }
        const added_token *a = &t->added[ti];
        size_t start = i, stop = i + ml;
        i = stop;   /* matches never overlap, even when one is skipped */
        if (!c->match_special && a->special) continue;
        if (a->special && niv) {
            /* Match starts only grow, so the first range ending after
             * `start` only moves forward. */
            while (cur < niv && iv[2 * cur + 1] <= start) cur++;
            if (cur < niv && iv[2 * cur] < stop) {
                /* Inside one guarded range: plain text, consumed as a whole
                 * (what match_special=0 does). Straddling a range boundary:
                 * also plain text, but the search resumes at the next byte,
                 * so that a template marker right after guarded text that
                 * ends with a prefix of a literal is still found. */
                if (!(iv[2 * cur] <= start && stop <= iv[2 * cur + 1])) i = start + 1;
                continue;
            }
        }
        if (a->single_word && ((start > 0 && ends_with_word(s, start)) || (stop < n && starts_with_word(s + stop, n - stop)))) continue;
        if (a->lstrip) {
            size_t ns = start;
            while (ns > start_offset) {
                size_t k = ns - 1;
                while (k > 0 && ((unsigned char)s[k] & 0xC0) == 0x80) k--;
                uint32_t cp;
                utf8_decode((const unsigned char *)s + k, ns - k, &cp);
                if (!uc_is_space(cp)) break;
                ns = k;
            }
            start = ns;
        }
        if (a->rstrip) {
            while (stop < n) {
                uint32_t cp;
                size_t k = utf8_decode((const unsigned char *)s + stop, n - stop, &cp);
                if (!uc_is_space(cp)) break;
                stop += k;
            }
        }
        if (start_offset < start) next(c, s + start_offset, start - start_offset);
        if (c->piece_fn) c->piece_fn(c->piece_ctx, t->arena + a->off, a->len, a->id);
        else ids_push(&c->out, a->id);
        /* As HF: the search resumes at the match's end, not after what rstrip
         * swallowed, so an added token inside that whitespace still counts. */
        start_offset = stop;
    }
    if (start_offset < n) next(c, s + start_offset, n - start_offset);
}

static void stage_pretok(enc_ctx *c, const char *s, size_t n) { pretokenize(c, s, n, 0); }

/* The guarded ranges of the raw text that meet the segment [off, off+n),
 * clipped and made relative to it. Returns the count; *out is malloc'd. */
static size_t clip_ranges(const enc_ctx *c, size_t off, size_t n, size_t **out) {
    *out = NULL;
    /* The ranges are sorted and disjoint, so those meeting the segment are
     * consecutive: binary search for the first one ending after off (a scan
     * from the start made a prompt with many markers and spans quadratic). */
    size_t lo = 0, hi = c->niv;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (c->iv[2 * mid + 1] <= off) lo = mid + 1;
        else hi = mid;
    }
    size_t e = lo;
    while (e < c->niv && c->iv[2 * e] < off + n) e++;
    if (e == lo) return 0;
    *out = xrealloc(NULL, 2 * (e - lo) * sizeof **out);
    for (size_t r = lo; r < e; r++) {
        size_t a = c->iv[2 * r], b = c->iv[2 * r + 1];
        (*out)[2 * (r - lo)] = a > off ? a - off : 0;
        (*out)[2 * (r - lo) + 1] = (b < off + n ? b : off + n) - off;
    }
    return e - lo;
}

/* Guarded ranges of a segment carried over to its NFC form. Each piece
 * between range boundaries is normalized on its own; when the pieces joined
 * give the normalized segment (composition never crossed a boundary: the
 * usual case, and always for text without combining marks) the boundaries
 * map exactly. Otherwise the whole normalized segment is guarded, which can
 * only turn matches into plain text, never the reverse. */
static void map_ranges_nfc(const char *s, size_t n, const buf *nb, size_t *iv, size_t niv) {
    buf pb = {0};
    size_t prev = 0;
    for (size_t k = 0; k < 2 * niv; k++) {
        size_t b = iv[k];
        if (b > prev) uc_nfc_append(&pb, s + prev, b - prev);
        prev = b > prev ? b : prev;
        iv[k] = pb.len;
    }
    if (prev < n) uc_nfc_append(&pb, s + prev, n - prev);
    if (pb.len != nb->len || (pb.len && memcmp(pb.data, nb->data, pb.len) != 0)) {
        for (size_t k = 0; k < niv; k++) { iv[2 * k] = 0; iv[2 * k + 1] = nb->len; }
    }
    buf_free(&pb);
}

static void stage_normalize(enc_ctx *c, const char *s, size_t n) {
    size_t *iv = NULL, niv = 0;
    if (c->niv) niv = clip_ranges(c, (size_t)(s - c->raw), n, &iv);
    if (c->t->nfc) {
        buf nb = {0};   /* private: split_added below calls back into this context */
        uc_nfc_append(&nb, s, n);
        if (niv) map_ranges_nfc(s, n, &nb, iv, niv);
        split_added(c, &c->t->trie_norm, nb.data ? nb.data : "", nb.len, iv, niv, stage_pretok);
        buf_free(&nb);
    } else {
        split_added(c, &c->t->trie_norm, s, n, iv, niv, stage_pretok);
    }
    free(iv);
}

static int cmp_range(const void *a, const void *b) {
    const size_t *x = a, *y = b;
    if (x[0] != y[0]) return x[0] < y[0] ? -1 : 1;
    return (x[1] > y[1]) - (x[1] < y[1]);
}

/* Sorts [start, end) pairs and merges overlapping or adjacent ones. Returns the count. */
static size_t merge_ranges(size_t *iv, size_t k) {
    qsort(iv, k, 2 * sizeof *iv, cmp_range);
    size_t m = 0;
    for (size_t r = 0; r < k; r++) {
        if (m && iv[2 * r] <= iv[2 * m - 1]) {
            if (iv[2 * r + 1] > iv[2 * m - 1]) iv[2 * m - 1] = iv[2 * r + 1];
            continue;
        }
        iv[2 * m] = iv[2 * r];
        iv[2 * m + 1] = iv[2 * r + 1];
        m++;
    }
    return m;
}

/* spans (offset, length pairs on the caller's text) -> sorted, disjoint,
 * non-empty [start, end) pairs clipped to the text. Returns the count. */
static size_t normalize_ranges(const size_t *spans, size_t n_spans, size_t len, size_t *iv) {
    size_t k = 0;
    for (size_t r = 0; r < n_spans; r++) {
        size_t a = spans[2 * r], l = spans[2 * r + 1];
        if (a >= len || l == 0) continue;
        iv[2 * k] = a;
        iv[2 * k + 1] = l > len - a ? len : a + l;
        k++;
    }
    return merge_ranges(iv, k);
}

/* Carries sorted range boundaries over the lossy UTF-8 repair of text: a
 * boundary inside a (valid or ill-formed) sequence widens its range to the
 * whole sequence. Returns the count after re-merging. */
static size_t map_ranges_lossy(const char *text, size_t len, size_t *iv, size_t niv) {
    size_t i = 0, o = 0, k = 0;
    while (k < 2 * niv) {
        size_t b = iv[k];
        int is_end = k & 1;
        if (i == b || i >= len) { iv[k++] = o; continue; }
        uint32_t cp;
        size_t q = utf8_decode((const unsigned char *)text + i, len - i, &cp);
        size_t oq = cp == UNICODE_REPLACEMENT ? 3 : q;   /* U+FFFD, written or substituted, is 3 bytes */
        if (b > i && b < i + q) { iv[k++] = is_end ? o + oq : o; continue; }   /* inside this sequence */
        i += q;
        o += oq;
    }
    return merge_ranges(iv, niv);   /* two ranges widened into one sequence now touch */
}

static int run_encode(const tokenizer *t, const char *text, size_t len, int match_special, const size_t *spans,
                      size_t n_spans, tokenizer_piece_fn fn, void *fnctx, int32_t **ids, size_t *n_ids,
                      char *err, size_t errlen) {
    *ids = NULL;
    *n_ids = 0;
    if (!t || (!text && len) || (!spans && n_spans) || n_spans > SIZE_MAX / (2 * sizeof(size_t))) {
        seterr(err, errlen, "tokenizer_encode: bad arguments");
        return -1;
    }
    enc_ctx c;
    memset(&c, 0, sizeof c);
    c.t = t;
    c.match_special = match_special;
    c.piece_fn = fn;
    c.piece_ctx = fnctx;
    size_t *iv = NULL;
    if (n_spans) {
        iv = xrealloc(NULL, 2 * n_spans * sizeof *iv);
        c.niv = normalize_ranges(spans, n_spans, len, iv);
    }
    buf lossy = {0};
    if (len && !utf8_valid(text, len)) {
        if (c.niv) c.niv = map_ranges_lossy(text, len, iv, c.niv);
        utf8_append_lossy(&lossy, text, len);
        text = lossy.data;
        len = lossy.len;
    }
    c.iv = iv;
    c.raw = text ? text : "";
    if (len > 4096) c.cache = calloc(CACHE_SLOTS, sizeof *c.cache);
    split_added(&c, &t->trie_raw, c.raw, len, c.iv, c.niv, stage_normalize);
    buf_free(&lossy);
    free(iv);
    free(c.cache);
    free(c.bs.sym); free(c.bs.prev); free(c.bs.next); free(c.bs.heap);
    *ids = c.out.v;
    *n_ids = c.out.n;
    return 0;
}

int tokenizer_encode(const tokenizer *t, const char *text, size_t len, int match_special,
                     int32_t **ids, size_t *n_ids, char *err, size_t errlen) {
    return run_encode(t, text, len, match_special, NULL, 0, NULL, NULL, ids, n_ids, err, errlen);
}

int tokenizer_encode_guarded(const tokenizer *t, const char *text, size_t len, const size_t *spans, size_t n_spans,
                             int32_t **ids, size_t *n_ids, char *err, size_t errlen) {
    return run_encode(t, text, len, 1, spans, n_spans, NULL, NULL, ids, n_ids, err, errlen);
}

int tokenizer_pieces(const tokenizer *t, const char *text, size_t len, int match_special,
                     tokenizer_piece_fn fn, void *ctx, char *err, size_t errlen) {
    int32_t *ids;
    size_t n;
    int rc = run_encode(t, text, len, match_special, NULL, 0, fn, ctx, &ids, &n, err, errlen);
    free(ids);
    return rc;
}

/* ---- lookups and decoding ---- */

int tokenizer_token_id(const tokenizer *t, const char *s) {
    size_t n = strlen(s);
    for (size_t i = 0; i < t->n_added; i++)
        if (t->added[i].len == n && memcmp(t->arena + t->added[i].off, s, n) == 0) return t->added[i].id;
    return vocab_find(t, s, n);
}

const char *tokenizer_token_text(const tokenizer *t, int32_t id, size_t *len) {
    if (id < 0 || id >= t->n_tokens || t->text_len[id] == UINT32_MAX) return NULL;
    if (len) *len = t->text_len[id];
    return t->arena + t->text_off[id];
}

int tokenizer_decode_token(const tokenizer *t, int32_t id, buf *out) {
    if (id < 0 || id >= t->n_tokens || t->dec_len[id] == UINT32_MAX) return -1;
    buf_append(out, t->arena + t->dec_off[id], t->dec_len[id]);
    return 0;
}

void tokenizer_decode(const tokenizer *t, const int32_t *ids, size_t n, buf *out) {
    token_stream s;
    token_stream_init(&s, t);
    for (size_t i = 0; i < n; i++) token_stream_push(&s, ids[i], out);
    token_stream_flush(&s, out);
}

int tokenizer_n_tokens(const tokenizer *t) { return t->n_tokens; }
int tokenizer_is_special(const tokenizer *t, int32_t id) { return id >= 0 && id < t->n_tokens && (t->flags[id] & 2); }
int tokenizer_is_added(const tokenizer *t, int32_t id) { return id >= 0 && id < t->n_tokens && (t->flags[id] & 1); }

/* ---- streaming decoder ---- */

void token_stream_init(token_stream *s, const tokenizer *t) { memset(s, 0, sizeof *s); s->t = t; }

/* Emits every complete or certainly ill-formed sequence held in pend; keeps
 * a proper prefix of a valid sequence unless final. */
static void stream_drain(token_stream *s, buf *out, int final) {
    int i = 0;
    while (i < s->npend) {
        uint32_t cp;
        size_t avail = (size_t)(s->npend - i);
        size_t k = utf8_decode(s->pend + i, avail, &cp);
        int literal_fffd = k == 3 && s->pend[i] == 0xEF && s->pend[i + 1] == 0xBF && s->pend[i + 2] == 0xBD;
        if (cp != UNICODE_REPLACEMENT || literal_fffd) {
            buf_append(out, s->pend + i, k);
        } else {
            if (k == avail && k < utf8_seq_len(s->pend[i]) && !final) break;   /* may still complete */
            buf_append(out, "\xEF\xBF\xBD", 3);
        }
        i += (int)k;
    }
    memmove(s->pend, s->pend + i, (size_t)(s->npend - i));
    s->npend -= i;
}

void token_stream_push_bytes(token_stream *s, const char *b, size_t n, buf *out) {
    for (size_t i = 0; i < n; i++) {
        unsigned char x = (unsigned char)b[i];
        if (s->npend == 0 && x < 0x80) { buf_putc(out, (char)x); continue; }
        s->pend[s->npend++] = x;
        stream_drain(s, out, 0);
    }
}

void token_stream_push(token_stream *s, int32_t id, buf *out) {
    const tokenizer *t = s->t;
    if (id < 0 || id >= t->n_tokens || t->dec_len[id] == UINT32_MAX) return;
    token_stream_push_bytes(s, t->arena + t->dec_off[id], t->dec_len[id], out);
}

void token_stream_flush(token_stream *s, buf *out) { stream_drain(s, out, 1); }
