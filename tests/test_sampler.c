/* test_sampler.c — greedy, padding mask, top-k/top-p/min-p supports and
 * frequencies, seeded reproducibility, penalties. */
#include "test.h"

#include <stdlib.h>

#include "sampler.h"

static sampler_params plain(void) {
    sampler_params p;
    sampler_params_default(&p);
    p.top_p = 1.0f;
    p.seed = 12345;
    return p;
}

static uint64_t lcg = 99;
static float rnd_logit(void) {
    lcg = lcg * 6364136223846793005ull + 1442695040888963407ull;
    return (float)((lcg >> 40) & 0xffff) / 4096.0f - 8.0f;
}

TEST(sampler_greedy_argmax) {
    sampler_params p = plain();
    p.temperature = 0.0f;
    sampler *s = sampler_new(&p, 10, 10);
    REQUIRE(s);
    float l[10] = {0, 1, 5, 2, 5, -1, 3, 4, 0, 0};
    CHECK_EQ_INT(sampler_sample(s, l), 2);   /* ties: lowest id */
    float m[10] = {NAN, -INFINITY, 1, 7, NAN, 7.5f, 0, 0, 0, 0};
    CHECK_EQ_INT(sampler_sample(s, m), 5);
    sampler_free(s);
    CHECK(sampler_new(&p, 10, 11) == NULL && sampler_new(&p, 10, 0) == NULL);
}

TEST(sampler_padding_never_sampled) {
    enum { V = 64, NV = 50 };
    float l[V];
    for (int mode = 0; mode < 3; mode++) {
        sampler_params p = plain();
        if (mode == 0) p.temperature = 0.0f;
        if (mode == 2) { p.top_p = 0.9f; p.top_k = 40; p.min_p = 0.01f; }
        sampler *s = sampler_new(&p, V, NV);
        REQUIRE(s);
        int bad = 0;
        for (int it = 0; it < 2000; it++) {
            for (int i = 0; i < V; i++) l[i] = i >= NV ? 100.0f : rnd_logit() * 0.2f;
            int32_t t = sampler_sample(s, l);
            if (t < 0 || t >= NV) bad++;
        }
        CHECKF(bad == 0, "mode %d: %d padding ids sampled", mode, bad);
        sampler_free(s);
    }
}

TEST(sampler_top_k1_is_greedy) {
    enum { V = 1000 };
    float l[V], g[V];
    sampler_params p = plain();
    p.top_k = 1;
    sampler_params q = plain();
    q.temperature = 0.0f;
    sampler *a = sampler_new(&p, V, V), *b = sampler_new(&q, V, V);
    REQUIRE(a && b);
    for (int it = 0; it < 200; it++) {
        for (int i = 0; i < V; i++) g[i] = l[i] = rnd_logit();
        CHECK_EQ_INT(sampler_sample(a, l), sampler_sample(b, g));
    }
    sampler_free(a);
    sampler_free(b);
}

/* Sample n times from logits log(probs) and check the support is `allowed`
 * and each allowed token's count is within 5 standard deviations of its
 * renormalized probability (binomial; per-token false-alarm rate < 1e-6,
 * and the seed is fixed, so the test is deterministic). */
static void check_distribution(sampler_params p, const double *probs, const int *allowed, int V, int n) {
    float *l = malloc(sizeof(float) * (size_t)V);
    int *cnt = calloc((size_t)V, sizeof(int));
    sampler *s = sampler_new(&p, V, V);
    for (int it = 0; it < n; it++) {
        for (int i = 0; i < V; i++) l[i] = (float)log(probs[i]);
        cnt[sampler_sample(s, l)]++;
    }
    double mass = 0;
    for (int i = 0; i < V; i++)
        if (allowed[i]) mass += probs[i];
    for (int i = 0; i < V; i++) {
        if (!allowed[i]) { CHECKF(cnt[i] == 0, "token %d outside the support sampled %d times", i, cnt[i]); continue; }
        double q = probs[i] / mass, sd = sqrt(n * q * (1 - q));
        CHECKF(fabs(cnt[i] - n * q) <= 5 * sd + 1, "token %d: %d draws, expected %.1f +- %.1f", i, cnt[i], n * q, sd);
    }
    sampler_free(s);
    free(l);
    free(cnt);
}

TEST(sampler_filters_restrict_support) {
    static const double probs[6] = {0.4, 0.25, 0.15, 0.1, 0.06, 0.04};
    sampler_params p = plain();
    int all[6] = {1, 1, 1, 1, 1, 1};
    check_distribution(p, probs, all, 6, 20000);
    p.top_p = 0.75f;   /* 0.4 + 0.25 = 0.65 < 0.75 <= 0.80 */
    int tp[6] = {1, 1, 1, 0, 0, 0};
    check_distribution(p, probs, tp, 6, 20000);
    p = plain();
    p.min_p = 0.3f;    /* threshold 0.12 */
    int mp[6] = {1, 1, 1, 0, 0, 0};
    check_distribution(p, probs, mp, 6, 20000);
    p.min_p = 0.2f;    /* threshold 0.08 */
    int mp2[6] = {1, 1, 1, 1, 0, 0};
    check_distribution(p, probs, mp2, 6, 20000);
    p = plain();
    p.top_k = 2;
    int tk[6] = {1, 1, 0, 0, 0, 0};
    check_distribution(p, probs, tk, 6, 20000);
    p = plain();
    p.top_k = 4;
    p.top_p = 0.5f;    /* within the top 4 (mass 0.9): 0.4/0.9 < 0.5 <= 0.65/0.9 */
    int both[6] = {1, 1, 0, 0, 0, 0};
    check_distribution(p, probs, both, 6, 20000);
    /* temperature 2 flattens: sample from probs^(1/2) renormalized */
    p = plain();
    p.temperature = 2.0f;
    double flat[6];
    for (int i = 0; i < 6; i++) flat[i] = sqrt(probs[i]);
    float l[6];
    int cnt[6] = {0};
    sampler *s = sampler_new(&p, 6, 6);
    for (int it = 0; it < 20000; it++) {
        for (int i = 0; i < 6; i++) l[i] = (float)log(probs[i]);
        cnt[sampler_sample(s, l)]++;
    }
    double z = 0;
    for (int i = 0; i < 6; i++) z += flat[i];
    for (int i = 0; i < 6; i++) {
        double qq = flat[i] / z, sd = sqrt(20000 * qq * (1 - qq));
        CHECKF(fabs(cnt[i] - 20000 * qq) <= 5 * sd + 1, "temperature: token %d %d vs %.1f", i, cnt[i], 20000 * qq);
    }
    sampler_free(s);
}

static int cmp_desc(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? 1 : x > y ? -1 : 0;
}

TEST(sampler_top_p_large_vocab) {
    /* GLM's vocabulary size, random logits: every draw must lie in the
       nucleus computed here by a full sort in double */
    enum { V = 154880, NV = 154856 };
    float *l = malloc(sizeof(float) * V);
    double *pr = malloc(sizeof(double) * NV), *sorted = malloc(sizeof(double) * NV);
    sampler_params p = plain();
    p.top_p = 0.95f;
    p.temperature = 0.7f;
    sampler *s = sampler_new(&p, V, NV);
    REQUIRE(s && l && pr && sorted);
    for (int it = 0; it < 20; it++) {
        for (int i = 0; i < V; i++) l[i] = rnd_logit() * (it % 2 ? 3.0f : 0.5f);
        double mx = -1e30, z = 0;
        for (int i = 0; i < NV; i++) mx = fmax(mx, l[i] / 0.7);
        for (int i = 0; i < NV; i++) z += (pr[i] = exp(l[i] / 0.7 - mx));
        memcpy(sorted, pr, sizeof(double) * NV);
        qsort(sorted, NV, sizeof(double), cmp_desc);
        double acc = 0, cut = 0;
        for (int i = 0; i < NV; i++) {
            acc += sorted[i];
            if (acc >= 0.95 * z) { cut = sorted[i]; break; }
        }
        int32_t t = sampler_sample(s, l);
        REQUIRE(t >= 0 && t < NV);
        /* f32 vs double probabilities: allow a hair below the cut */
        CHECKF(pr[t] >= cut * (1 - 1e-4), "iteration %d: token %d (p %.3g) outside the nucleus (cut %.3g)", it, t, pr[t] / z, cut / z);
    }
    sampler_free(s);
    free(l);
    free(pr);
    free(sorted);
}

TEST(sampler_seed_reproducible) {
    enum { V = 500, N = 200 };
    float l[V];
    int32_t a[N], b[N], c[N];
    for (int run = 0; run < 3; run++) {
        sampler_params p = plain();
        p.seed = run == 2 ? 777 : 42;
        p.top_p = 0.9f;
        sampler *s = sampler_new(&p, V, V);
        lcg = 5;
        for (int i = 0; i < N; i++) {
            for (int k = 0; k < V; k++) l[k] = rnd_logit() * 0.3f;
            (run == 0 ? a : run == 1 ? b : c)[i] = sampler_sample(s, l);
        }
        if (run == 0) {   /* reset restarts the same stream */
            sampler_reset(s);
            lcg = 5;
            for (int k = 0; k < V; k++) l[k] = rnd_logit() * 0.3f;
            CHECK_EQ_INT(sampler_sample(s, l), a[0]);
        }
        sampler_free(s);
    }
    CHECK(memcmp(a, b, sizeof a) == 0);
    CHECK(memcmp(a, c, sizeof a) != 0);
}

TEST(sampler_penalties) {
    enum { V = 8 };
    sampler_params p = plain();
    p.repeat_penalty = 2.0f;
    p.repeat_last_n = 3;
    sampler *s = sampler_new(&p, V, V);
    REQUIRE(s);
    /* history 0 1 2 3 2: window of 3 holds 2, 3, 2 */
    int32_t hist[] = {0, 1, 2, 3, 2};
    for (int i = 0; i < 5; i++) sampler_accept(s, hist[i]);
    float l[V] = {4, 4, 4, -4, 4, 0, 0, 0};
    sampler_apply_penalties(s, l);
    CHECK(l[0] == 4 && l[1] == 4);          /* left the window */
    CHECK(l[2] == 2);                        /* positive: divided, once though seen twice */
    CHECK(l[3] == -8);                       /* negative: multiplied */
    CHECK(l[4] == 4);
    sampler_free(s);

    p = plain();
    p.presence_penalty = 0.5f;
    p.frequency_penalty = 0.25f;
    s = sampler_new(&p, V, V);
    sampler_accept(s, 1);
    sampler_accept(s, 1);
    sampler_accept(s, 5);
    float m[V] = {1, 1, 1, 1, 1, 1, 1, 1};
    sampler_apply_penalties(s, m);
    CHECK(m[1] == 1 - 0.5f - 0.5f);         /* presence + 2 * frequency */
    CHECK(m[5] == 1 - 0.5f - 0.25f);
    CHECK(m[0] == 1 && m[2] == 1);
    /* a penalized greedy step picks the other token */
    sampler_params g = p;
    g.temperature = 0;
    sampler *t = sampler_new(&g, V, V);
    sampler_accept(t, 3);
    float n[V] = {0, 0, 0, 2, 1.5f, 0, 0, 0};
    CHECK_EQ_INT(sampler_sample(t, n), 4);
    sampler_reset(t);
    float o[V] = {0, 0, 0, 2, 1.5f, 0, 0, 0};
    CHECK_EQ_INT(sampler_sample(t, o), 3);  /* reset forgot the history */
    sampler_free(t);
    sampler_free(s);
}
