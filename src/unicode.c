/* unicode.c — UTF-8 coding, Unicode property lookups over the generated
 * tables (src/unicode_tables.c) and NFC normalization (decompose, reorder by
 * canonical combining class, recompose; Hangul done arithmetically). */
#include "unicode.h"
#include "unicode_tables.h"

#include <stdlib.h>
#include <string.h>

/* ---- UTF-8 ---- */

size_t utf8_seq_len(unsigned char b) {
    if (b < 0x80) return 1;
    if (b >= 0xC2 && b <= 0xDF) return 2;
    if (b >= 0xE0 && b <= 0xEF) return 3;
    if (b >= 0xF0 && b <= 0xF4) return 4;
    return 0;
}

size_t utf8_decode(const unsigned char *s, size_t len, uint32_t *cp) {
    unsigned char b = s[0];
    size_t n = utf8_seq_len(b);
    if (n == 1) { *cp = b; return 1; }
    if (n == 0) { *cp = UNICODE_REPLACEMENT; return 1; }
    /* The second byte's valid range depends on the lead (excludes overlongs,
     * surrogates and > U+10FFFF); later bytes are plain continuations. */
    unsigned char lo = 0x80, hi = 0xBF;
    if (b == 0xE0) lo = 0xA0;
    else if (b == 0xED) hi = 0x9F;
    else if (b == 0xF0) lo = 0x90;
    else if (b == 0xF4) hi = 0x8F;
    uint32_t c = b & (n == 2 ? 0x1F : n == 3 ? 0x0F : 0x07);
    for (size_t i = 1; i < n; i++) {
        if (i >= len) { *cp = UNICODE_REPLACEMENT; return i; }
        unsigned char x = s[i];
        if (i == 1 ? (x < lo || x > hi) : (x < 0x80 || x > 0xBF)) { *cp = UNICODE_REPLACEMENT; return i; }
        c = (c << 6) | (x & 0x3F);
    }
    *cp = c;
    return n;
}

size_t utf8_encode(uint32_t cp, char *out) {
    unsigned char *o = (unsigned char *)out;
    if (cp < 0x80) { o[0] = (unsigned char)cp; return 1; }
    if (cp < 0x800) { o[0] = (unsigned char)(0xC0 | (cp >> 6)); o[1] = (unsigned char)(0x80 | (cp & 0x3F)); return 2; }
    if (cp < 0x10000) {
        o[0] = (unsigned char)(0xE0 | (cp >> 12)); o[1] = (unsigned char)(0x80 | ((cp >> 6) & 0x3F));
        o[2] = (unsigned char)(0x80 | (cp & 0x3F)); return 3;
    }
    o[0] = (unsigned char)(0xF0 | (cp >> 18)); o[1] = (unsigned char)(0x80 | ((cp >> 12) & 0x3F));
    o[2] = (unsigned char)(0x80 | ((cp >> 6) & 0x3F)); o[3] = (unsigned char)(0x80 | (cp & 0x3F));
    return 4;
}

int utf8_valid(const char *s, size_t len) {
    const unsigned char *u = (const unsigned char *)s;
    size_t i = 0;
    while (i < len) {
        if (u[i] < 0x80) { i++; continue; }
        uint32_t cp;
        size_t n = utf8_decode(u + i, len - i, &cp);
        if (cp == UNICODE_REPLACEMENT && n != 3) return 0;
        if (cp == UNICODE_REPLACEMENT && !(u[i] == 0xEF && u[i + 1] == 0xBF && u[i + 2] == 0xBD)) return 0;
        i += n;
    }
    return 1;
}

void utf8_append_lossy(buf *out, const char *s, size_t len) {
    const unsigned char *u = (const unsigned char *)s;
    size_t i = 0, run = 0;   /* run: start of the pending valid span */
    while (i < len) {
        if (u[i] < 0x80) { i++; continue; }
        uint32_t cp;
        size_t n = utf8_decode(u + i, len - i, &cp);
        int bad = cp == UNICODE_REPLACEMENT && !(n == 3 && u[i] == 0xEF && u[i + 1] == 0xBF && u[i + 2] == 0xBD);
        if (bad) {
            buf_append(out, s + run, i - run);
            buf_append(out, "\xEF\xBF\xBD", 3);
            run = i + n;
        }
        i += n;
    }
    buf_append(out, s + run, len - run);
}

/* ---- properties ---- */

static unsigned class_bits(uint32_t cp) {
    size_t lo = 0, hi = uc_class_starts_len;   /* last entry with start <= cp */
    while (hi - lo > 1) {
        size_t mid = (lo + hi) / 2;
        if ((uc_class_starts[mid] >> 8) <= cp) lo = mid; else hi = mid;
    }
    return uc_class_starts[lo] & 0xFF;
}

static unsigned ascii_bits(uint32_t c) {
    if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')) return UC_L | UC_WORD;
    if (c >= '0' && c <= '9') return UC_N | UC_WORD;
    if (c == ' ' || (c >= 9 && c <= 13)) return UC_WS;
    if (c == '_') return UC_WORD;
    return 0;
}

static inline unsigned bits_of(uint32_t cp) { return cp < 0x80 ? ascii_bits(cp) : class_bits(cp); }

int uc_is_letter(uint32_t cp) { return (bits_of(cp) & UC_L) != 0; }
int uc_is_number(uint32_t cp) { return (bits_of(cp) & UC_N) != 0; }
int uc_is_space(uint32_t cp) { return (bits_of(cp) & UC_WS) != 0; }
int uc_is_word(uint32_t cp) { return (bits_of(cp) & UC_WORD) != 0; }

uint32_t uc_simple_fold(uint32_t cp) {
    if (cp < 0x80) return (cp >= 'A' && cp <= 'Z') ? cp + 32 : cp;
    size_t lo = 0, hi = uc_fold_runs_len;
    while (hi - lo > 1) {
        size_t mid = (lo + hi) / 2;
        if ((uint32_t)uc_fold_runs[4 * mid] <= cp) lo = mid; else hi = mid;
    }
    const int32_t *r = uc_fold_runs + 4 * lo;
    uint32_t start = (uint32_t)r[0], count = (uint32_t)r[1], stride = (uint32_t)r[2];
    if (cp < start || (cp - start) % stride != 0 || (cp - start) / stride >= count) return cp;
    return (uint32_t)((int32_t)cp + r[3]);
}

/* Finds cp in a table of {start, end, value} runs; returns value or 0. */
static uint32_t run_lookup(const uint32_t *t, size_t n, uint32_t cp) {
    size_t lo = 0, hi = n;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (t[3 * mid + 1] < cp) lo = mid + 1;
        else if (t[3 * mid] > cp) hi = mid;
        else return t[3 * mid + 2];
    }
    return 0;
}

int uc_ccc(uint32_t cp) { return cp < 0x300 ? 0 : (int)run_lookup(uc_ccc_runs, uc_ccc_runs_len, cp); }

/* ---- NFC ---- */

enum { SBASE = 0xAC00, LBASE = 0x1100, VBASE = 0x1161, TBASE = 0x11A7,
       LCOUNT = 19, VCOUNT = 21, TCOUNT = 28, NCOUNT = VCOUNT * TCOUNT, SCOUNT = LCOUNT * NCOUNT };

typedef struct { uint32_t *v; size_t n, cap; } cpvec;

static void cp_push(cpvec *a, uint32_t c) {
    if (a->n == a->cap) {
        a->cap = a->cap ? a->cap * 2 : 64;
        a->v = realloc(a->v, a->cap * sizeof *a->v);
        if (!a->v) abort();
    }
    a->v[a->n++] = c;
}

static const uint32_t *decomp_entry(uint32_t cp) {
    size_t lo = 0, hi = uc_decomp_len;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (uc_decomp[3 * mid] < cp) lo = mid + 1;
        else if (uc_decomp[3 * mid] > cp) hi = mid;
        else return uc_decomp + 3 * mid;
    }
    return NULL;
}

static void decompose(cpvec *a, uint32_t cp, int depth) {
    if (cp >= SBASE && cp < SBASE + SCOUNT) {
        uint32_t s = cp - SBASE;
        cp_push(a, LBASE + s / NCOUNT);
        cp_push(a, VBASE + (s % NCOUNT) / TCOUNT);
        if (s % TCOUNT) cp_push(a, TBASE + s % TCOUNT);
        return;
    }
    const uint32_t *e = cp >= 0xC0 && depth < 8 ? decomp_entry(cp) : NULL;
    if (!e) { cp_push(a, cp); return; }
    decompose(a, e[1], depth + 1);
    if (e[2]) decompose(a, e[2], depth + 1);
}

static uint32_t compose_pair(uint32_t a, uint32_t b) {
    if (a >= LBASE && a < LBASE + LCOUNT && b >= VBASE && b < VBASE + VCOUNT)
        return SBASE + ((a - LBASE) * VCOUNT + (b - VBASE)) * TCOUNT;
    if (a >= SBASE && a < SBASE + SCOUNT && (a - SBASE) % TCOUNT == 0 && b > TBASE && b < TBASE + TCOUNT)
        return a + (b - TBASE);
    size_t lo = 0, hi = uc_comp_len;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        const uint32_t *e = uc_comp + 3 * mid;
        if (e[0] < a || (e[0] == a && e[1] < b)) lo = mid + 1;
        else if (e[0] > a || e[1] > b) hi = mid;
        else return e[2];
    }
    return 0;
}

static int nfc_quick_yes(const unsigned char *s, size_t len) {
    int last = 0;
    size_t i = 0;
    while (i < len) {
        if (s[i] < 0x80) { last = 0; i++; continue; }
        uint32_t cp;
        i += utf8_decode(s + i, len - i, &cp);
        int c = uc_ccc(cp);
        if (c && last > c) return 0;
        if (cp >= 0x300 && run_lookup(uc_nfc_qc_runs, uc_nfc_qc_runs_len, cp)) return 0;
        last = c;
    }
    return 1;
}

void uc_nfc_append(buf *out, const char *s, size_t len) {
    const unsigned char *u = (const unsigned char *)s;
    if (nfc_quick_yes(u, len)) { utf8_append_lossy(out, s, len); return; }
    cpvec d = {0};
    for (size_t i = 0; i < len;) {
        uint32_t cp;
        i += utf8_decode(u + i, len - i, &cp);
        decompose(&d, cp, 0);
    }
    /* Canonical ordering: stable sort of each run of non-starters by ccc.
     * Short runs: insertion sort; long ones: a counting sort (ccc < 256), so
     * a long run of marks (untrusted input) stays linear, not quadratic. */
    for (size_t i = 0; i < d.n;) {
        if (!uc_ccc(d.v[i])) { i++; continue; }
        size_t e = i + 1;
        while (e < d.n && uc_ccc(d.v[e])) e++;
        if (e - i <= 32) {
            for (size_t k = i + 1; k < e; k++) {
                uint32_t x = d.v[k];
                int c = uc_ccc(x);
                size_t j = k;
                while (j > i && uc_ccc(d.v[j - 1]) > c) { d.v[j] = d.v[j - 1]; j--; }
                d.v[j] = x;
            }
        } else {
            size_t cnt[257] = {0};
            uint32_t *tmp = malloc((e - i) * sizeof *tmp);
            if (!tmp) abort();
            for (size_t k = i; k < e; k++) cnt[uc_ccc(d.v[k]) + 1]++;
            for (int b = 1; b < 257; b++) cnt[b] += cnt[b - 1];
            for (size_t k = i; k < e; k++) tmp[cnt[uc_ccc(d.v[k])]++] = d.v[k];
            memcpy(d.v + i, tmp, (e - i) * sizeof *tmp);
            free(tmp);
        }
        i = e;
    }
    /* Canonical composition: a character combines with the last starter when
     * nothing between them blocks it (is a starter or has ccc >= its own). */
    size_t n = 0, starter = (size_t)-1;
    int last_cc = 0;
    for (size_t i = 0; i < d.n; i++) {
        uint32_t c = d.v[i];
        int cc = uc_ccc(c);
        if (starter != (size_t)-1) {
            int adjacent = n == starter + 1;
            if (adjacent || (last_cc != 0 && last_cc < cc)) {
                uint32_t k = compose_pair(d.v[starter], c);
                if (k) { d.v[starter] = k; continue; }
            }
        }
        if (cc == 0) { starter = n; last_cc = 0; }
        else last_cc = cc;
        d.v[n++] = c;
    }
    char tmp[4];
    for (size_t i = 0; i < n; i++) buf_append(out, tmp, utf8_encode(d.v[i], tmp));
    free(d.v);
}
