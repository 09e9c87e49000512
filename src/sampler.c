/* sampler.c — penalties, temperature, top-k, top-p, min-p and the seeded draw
 * (semantics and order: sampler.h). Scratch for the whole vocabulary is made
 * once in sampler_new; a step allocates nothing. */
#include "sampler.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    float v;      /* logit, then probability (unnormalized) */
    int32_t id;
} cand;

struct sampler {
    sampler_params p;
    int vocab, n_valid;
    int32_t *ring;           /* last repeat_last_n accepted tokens */
    int ring_cap, ring_len, ring_pos;
    int32_t *count;          /* occurrences of each token in the ring */
    uint32_t *stamp, cur_stamp; /* marks tokens already penalized this step */
    cand *c;
    uint64_t rng[4];
};

void sampler_params_default(sampler_params *p) {
    memset(p, 0, sizeof *p);
    p->temperature = 1.0f;
    p->top_p = 0.95f;
    p->top_k = 0;
    p->min_p = 0.0f;
    p->repeat_penalty = 1.0f;
    p->repeat_last_n = 64;
    p->seed = 0;
}

/* ---- xoshiro256** (Blackman & Vigna), seeded with splitmix64 ---------------- */

static uint64_t splitmix64(uint64_t *x) {
    uint64_t z = (*x += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static inline uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

static uint64_t rng_next(uint64_t s[4]) {
    uint64_t r = rotl(s[1] * 5, 7) * 9, t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return r;
}

static double rng_uniform(uint64_t s[4]) { return (double)(rng_next(s) >> 11) * 0x1p-53; }   /* [0, 1) */

static void rng_seed(sampler *s) {
    uint64_t x = s->p.seed;
    for (int i = 0; i < 4; i++) s->rng[i] = splitmix64(&x);
}

/* ---- lifecycle ------------------------------------------------------------------ */

sampler *sampler_new(const sampler_params *p, int vocab_size, int n_valid) {
    if (!p || vocab_size < 1 || n_valid < 1 || n_valid > vocab_size || p->repeat_last_n < 0) return NULL;
    sampler *s = calloc(1, sizeof *s);
    if (!s) return NULL;
    s->p = *p;
    s->vocab = vocab_size;
    s->n_valid = n_valid;
    s->ring_cap = p->repeat_last_n;
    s->ring = malloc(sizeof(int32_t) * (size_t)(s->ring_cap ? s->ring_cap : 1));
    s->count = calloc((size_t)vocab_size, sizeof(int32_t));
    s->stamp = calloc((size_t)vocab_size, sizeof(uint32_t));
    s->c = malloc(sizeof(cand) * (size_t)vocab_size);
    if (!s->ring || !s->count || !s->stamp || !s->c) {
        sampler_free(s);
        return NULL;
    }
    rng_seed(s);
    return s;
}

void sampler_free(sampler *s) {
    if (!s) return;
    free(s->ring);
    free(s->count);
    free(s->stamp);
    free(s->c);
    free(s);
}

void sampler_reset(sampler *s) {
    memset(s->count, 0, sizeof(int32_t) * (size_t)s->vocab);
    s->ring_len = s->ring_pos = 0;
    rng_seed(s);
}

void sampler_accept(sampler *s, int32_t token) {
    if (s->ring_cap == 0 || token < 0 || token >= s->vocab) return;
    if (s->ring_len == s->ring_cap) s->count[s->ring[s->ring_pos]]--;
    else s->ring_len++;
    s->ring[s->ring_pos] = token;
    s->count[token]++;
    s->ring_pos = (s->ring_pos + 1) % s->ring_cap;
}

/* ---- steps ---------------------------------------------------------------------- */

void sampler_apply_penalties(sampler *s, float *logits) {
    float rp = s->p.repeat_penalty, pp = s->p.presence_penalty, fp = s->p.frequency_penalty;
    if ((rp == 1.0f && pp == 0.0f && fp == 0.0f) || s->ring_len == 0) return;
    if (++s->cur_stamp == 0) {   /* wrapped: old marks could collide */
        memset(s->stamp, 0, sizeof(uint32_t) * (size_t)s->vocab);
        s->cur_stamp = 1;
    }
    for (int i = 0; i < s->ring_len; i++) {
        int32_t t = s->ring[i];
        if (s->stamp[t] == s->cur_stamp) continue;   /* each distinct token once */
        s->stamp[t] = s->cur_stamp;
        float l = logits[t];
        if (rp != 1.0f && rp > 0.0f) l = l > 0.0f ? l / rp : l * rp;
        l -= pp * (s->count[t] > 0 ? 1.0f : 0.0f) + fp * (float)s->count[t];
        logits[t] = l;
    }
}

static int32_t argmax(const float *l, int n) {
    int32_t best = -1;
    for (int i = 0; i < n; i++)
        if (!isnan(l[i]) && (best < 0 || l[i] > l[best])) best = i;
    return best < 0 ? 0 : best;
}

/* a ranks before b: larger value, then smaller id (a total order: the result
 * never depends on the selection algorithm's visiting order) */
static inline int before(const cand *a, const cand *b) { return a->v > b->v || (a->v == b->v && a->id < b->id); }

static int cmp_cand(const void *x, const void *y) {
    const cand *a = x, *b = y;
    return before(a, b) ? -1 : before(b, a) ? 1 : 0;
}

static void swap_cand(cand *a, cand *b) { cand t = *a; *a = *b; *b = t; }

/* Reorder c[0..n) so that c[0..k) are the k best (in no particular order). */
static void select_top(cand *c, int n, int k) {
    int lo = 0, hi = n - 1;
    while (lo < hi) {
        int mid = lo + (hi - lo) / 2;   /* median of three as pivot, moved to hi */
        if (before(&c[mid], &c[lo])) swap_cand(&c[mid], &c[lo]);
        if (before(&c[hi], &c[lo])) swap_cand(&c[hi], &c[lo]);
        if (before(&c[mid], &c[hi])) swap_cand(&c[mid], &c[hi]);
        cand pivot = c[hi];
        int store = lo;
        for (int i = lo; i < hi; i++)
            if (before(&c[i], &pivot)) swap_cand(&c[i], &c[store++]);
        swap_cand(&c[store], &c[hi]);
        if (store == k - 1 || store == k) return;
        if (store < k) lo = store + 1;
        else hi = store - 1;
    }
}

/* Nucleus: keep the smallest best-first prefix of c[0..n) with mass >= target.
 * Sorting all of a 150k vocabulary each step would dominate, so first find a
 * probability threshold whose super-set already holds the target mass: the
 * nucleus lies inside it, and only that set is sorted. Returns the new n. */
static int nucleus(cand *c, int n, float pmax, double target) {
    int m = n;
    for (float thr = pmax * 0x1p-10f; n > 1024 && thr > 0.0f; thr *= 0x1p-10f) {
        double mass = 0;
        int cnt = 0;
        for (int i = 0; i < n; i++)
            if (c[i].v >= thr) { mass += c[i].v; cnt++; }
        if (mass >= target) {
            int j = 0;
            for (int i = 0; i < n; i++)
                if (c[i].v >= thr) swap_cand(&c[i], &c[j++]);
            m = cnt;
            break;
        }
    }
    qsort(c, (size_t)m, sizeof *c, cmp_cand);
    double acc = 0;
    for (int i = 0; i < m; i++) {
        acc += c[i].v;
        if (acc >= target) return i + 1;
    }
    return m;
}

int32_t sampler_sample(sampler *s, float *logits) {
    sampler_apply_penalties(s, logits);
    const sampler_params *p = &s->p;
    if (!(p->temperature > 0.0f) || p->top_k == 1) return argmax(logits, s->n_valid);

    cand *c = s->c;
    int n = 0;
    float inv_t = 1.0f / p->temperature;
    for (int i = 0; i < s->n_valid; i++)
        if (!isnan(logits[i]) && logits[i] > -INFINITY) c[n++] = (cand){logits[i] * inv_t, i};
    if (n == 0) return argmax(logits, s->n_valid);
    if (p->top_k > 0 && p->top_k < n) {
        select_top(c, n, p->top_k);
        n = p->top_k;
    }
    float vmax = c[0].v;
    for (int i = 1; i < n; i++) vmax = c[i].v > vmax ? c[i].v : vmax;
    if (isinf(vmax)) {   /* +inf logits: the mass is all theirs, shared equally */
        for (int i = 0; i < n; i++) c[i].v = c[i].v == vmax ? 1.0f : 0.0f;
    } else {
        for (int i = 0; i < n; i++) c[i].v = expf(c[i].v - vmax);   /* the largest is exactly 1 */
    }
    double total = 0;
    for (int i = 0; i < n; i++) total += c[i].v;
    if (p->top_p < 1.0f) n = nucleus(c, n, 1.0f, (double)(p->top_p > 0.0f ? p->top_p : 0.0f) * total);
    if (p->min_p > 0.0f) {
        float thr = p->min_p;   /* relative to the largest probability, which is 1 here */
        int j = 0;
        for (int i = 0; i < n; i++)
            if (c[i].v >= thr) c[j++] = c[i];
        n = j;   /* the largest always survives (min_p <= 1), so n >= 1 */
        if (n == 0) return argmax(logits, s->n_valid);
    }
    total = 0;
    for (int i = 0; i < n; i++) total += c[i].v;
    double r = rng_uniform(s->rng) * total, acc = 0;
    for (int i = 0; i < n; i++) {
        acc += c[i].v;
        if (r < acc) return c[i].id;
    }
    for (int i = n - 1; i >= 0; i--)   /* rounding left r at the very top: last positive */
        if (c[i].v > 0) return c[i].id;
    return c[0].id;
}
