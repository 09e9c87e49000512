/* test_model.c — the engine against the independent float64 reference
 * (tools/reference.py) on every generator config, and against itself:
 * chunked prefill vs decode, absorbed vs non-absorbed attention, 1 vs 2
 * threads. */
#include <stdlib.h>

#include "glm.h"
#include "kernels.h"
#include "test.h"

#define SEQ 64

static void make_tokens(int32_t *ids, int n, int vocab, unsigned seed) {
    for (int i = 0; i < n; i++) {
        seed = seed * 1103515245u + 12345u;
        ids[i] = (int32_t)((seed >> 8) % (unsigned)vocab);
    }
}

static glm_model *load_model(const char *dir, int threads) {
    char err[1024];
    glm_load_options lo = {.n_threads = threads};
    glm_model *m = glm_model_load(dir, &lo, err, sizeof err);
    if (!m) test_fail(__FILE__, __LINE__, "load %s: %s", dir, err);
    return m;
}

/* Logits for ids fed in chunks of the given sizes (cycled); NULL on error. */
static float *run_logits_cache(glm_model *m, const int32_t *ids, int n, const int *chunks, int n_chunks, int naive,
                               int kv_bf16) {
    char err[1024];
    glm_session_options so = {.n_ctx = n, .naive_attention = naive, .kv_bf16 = kv_bf16};
    glm_session *s = glm_session_new(m, &so, err, sizeof err);
    if (!s) { test_fail(__FILE__, __LINE__, "session: %s", err); return NULL; }
    int V = glm_model_config(m)->vocab_size;
    float *out = malloc((size_t)n * V * sizeof *out);
    for (int i = 0, c = 0; i < n; c++) {
        int k = chunks[c % n_chunks];
        if (k > n - i) k = n - i;
        if (glm_forward(s, ids + i, k, out + (size_t)i * V, 1, err, sizeof err)) {
            test_fail(__FILE__, __LINE__, "forward: %s", err);
            free(out);
            out = NULL;
            break;
        }
        i += k;
    }
    glm_session_free(s);
    return out;
}

static float *run_logits(glm_model *m, const int32_t *ids, int n, const int *chunks, int n_chunks, int naive) {
    return run_logits_cache(m, ids, n, chunks, n_chunks, naive, 0);
}

static double rel_l2_f(const float *a, const float *b, size_t n) {
    double num = 0, den = 0;
    for (size_t i = 0; i < n; i++) {
        double d = (double)a[i] - b[i];
        num += d * d;
        den += (double)b[i] * b[i];
    }
    return sqrt(num / (den > 0 ? den : 1));
}

static void check_against_reference(const char *preset, const char *dtype, double tol) {
    const char *dir = test_fixture_model(preset, dtype);
    REQUIREF(dir, "could not generate the %s/%s checkpoint", preset, dtype);
    glm_model *m = load_model(dir, 2);
    REQUIRE(m);
    int V = glm_model_config(m)->vocab_size;
    int32_t ids[SEQ];
    make_tokens(ids, SEQ, V, 7);
    char toks[SEQ * 8] = "", path[512], cmd[2048];
    for (int i = 0; i < SEQ; i++) sprintf(toks + strlen(toks), "%s%d", i ? "," : "", ids[i]);
    snprintf(path, sizeof path, "%s/ref-%s-%s.f64", test_tmpdir(), preset, dtype);
    snprintf(cmd, sizeof cmd, "%s tools/reference.py --model %s --tokens %s --out %s", test_python(), dir, toks, path);
    REQUIREF(test_run(cmd) == 0, "reference failed: %s", cmd);
    size_t len;
    double *ref = (double *)test_read_file(path, &len);
    REQUIREF(ref && len == (size_t)SEQ * V * sizeof(double), "reference output has %zu bytes", ref ? len : 0);
    int whole[] = {SEQ};
    float *got = run_logits(m, ids, SEQ, whole, 1, 0);
    if (got) {
        double worst = 0;
        int argmax_mismatch = 0;
        for (int t = 0; t < SEQ; t++) {
            double e = test_rel_l2(got + (size_t)t * V, ref + (size_t)t * V, (size_t)V);
            worst = e > worst ? e : worst;
            int a = 0, b = 0;
            for (int v = 1; v < V; v++) {
                if (got[(size_t)t * V + v] > got[(size_t)t * V + a]) a = v;
                if (ref[(size_t)t * V + v] > ref[(size_t)t * V + b]) b = v;
            }
            argmax_mismatch += a != b;
        }
        printf("    %s/%s: worst per-position relative L2 %.3g (limit %.0e), argmax mismatches %d/%d\n", preset, dtype,
               worst, tol, argmax_mismatch, SEQ);
        CHECKF(worst < tol, "%s/%s: relative L2 %.3g >= %.0e", preset, dtype, worst, tol);
        CHECKF(argmax_mismatch == 0, "%s/%s: argmax differs at %d positions", preset, dtype, argmax_mismatch);
    }
    free(got);
    free(ref);
    glm_model_free(m);
}

TEST(model_tiny_f32_matches_reference) { check_against_reference("tiny", "f32", 1e-4); }
TEST(model_tiny_bf16_matches_reference) { check_against_reference("tiny", "bf16", 1e-3); }
TEST(model_tiny_f16_matches_reference) { check_against_reference("tiny", "f16", 1e-3); }
TEST(model_groups_f32_matches_reference) { check_against_reference("groups", "f32", 1e-4); }
TEST(model_groups_bf16_matches_reference) { check_against_reference("groups", "bf16", 1e-3); }
TEST(model_yarn_f32_matches_reference) { check_against_reference("yarn", "f32", 1e-4); }
TEST(model_yarn_bf16_matches_reference) { check_against_reference("yarn", "bf16", 1e-3); }
TEST(model_v2lite_f32_matches_reference) { check_against_reference("v2lite", "f32", 1e-4); }
TEST(model_v2lite_bf16_matches_reference) { check_against_reference("v2lite", "bf16", 1e-3); }

static void check_self_consistency(const char *preset) {
    const char *dir = test_fixture_model(preset, "f32");
    REQUIRE(dir);
    glm_model *m = load_model(dir, 2);
    REQUIRE(m);
    int V = glm_model_config(m)->vocab_size;
    int32_t ids[SEQ];
    make_tokens(ids, SEQ, V, 11);
    int whole[] = {SEQ}, uneven[] = {5, 17, 1, 9, 32}, single[] = {1};
    float *a = run_logits(m, ids, SEQ, whole, 1, 0);
    float *b = run_logits(m, ids, SEQ, uneven, 5, 0);
    float *c = run_logits(m, ids, SEQ, single, 1, 0);
    float *d = run_logits(m, ids, SEQ, uneven, 5, 1);
    if (a && b && c && d) {
        size_t n = (size_t)SEQ * V;
        double eb = rel_l2_f(b, a, n), ec = rel_l2_f(c, a, n), ed = rel_l2_f(d, a, n);
        printf("    %s: chunked %.2g, token-by-token %.2g, non-absorbed %.2g\n", preset, eb, ec, ed);
        CHECKF(eb < 1e-5, "uneven chunks differ from whole prefill: %.3g", eb);
        CHECKF(ec < 1e-5, "token-by-token decode differs from whole prefill: %.3g", ec);
        CHECKF(ed < 1e-5, "non-absorbed attention differs from absorbed: %.3g", ed);
    }
    free(a); free(b); free(c); free(d);
    glm_model_free(m);
}

TEST(model_prefill_chunks_decode_and_naive_attention_agree) {
    check_self_consistency("tiny");
    check_self_consistency("v2lite");
    check_self_consistency("yarn");
}

/* The bf16 cache against the f32 one, decode against prefill, absorbed
 * against non-absorbed, with bf16 pair products (pairs) or the cache widened
 * exactly. */
static void check_bf16_cache(glm_model *m, const int32_t *ids, int V, int pairs) {
    int whole[] = {SEQ}, single[] = {1};
    float *f32 = run_logits_cache(m, ids, SEQ, whole, 1, 0, 0);
    float *b = run_logits_cache(m, ids, SEQ, whole, 1, 0, 1);
    float *b_dec = run_logits_cache(m, ids, SEQ, single, 1, 0, 1);
    float *b_naive = run_logits_cache(m, ids, SEQ, whole, 1, 1, 1);
    if (f32 && b && b_dec && b_naive) {
        size_t n = (size_t)SEQ * V;
        double e_round = rel_l2_f(b, f32, n), e_dec = rel_l2_f(b_dec, b, n), e_naive = rel_l2_f(b_naive, b, n);
        printf("    %s: bf16 cache vs f32 cache %.2g; decode vs prefill %.2g; non-absorbed %.2g\n",
               pairs ? "bf16 pairs" : "widened", e_round, e_dec, e_naive);
        CHECKF(e_round > 0 && e_round < 1e-2, "bf16 cache differs from f32 by %.3g", e_round);   /* rounding, not garbage */
        if (pairs) {
            /* bf16 arithmetic: the queries and probabilities are rounded to
               bf16 too, and differently in each path (decode rounds a block's
               unnormalised exponentials, prefill the normalised
               probabilities, the non-absorbed reference nothing), so the
               paths agree to the bf16 cache's own error bound */
            CHECKF(e_dec < 1e-2, "decode differs from prefill by %.3g", e_dec);
            CHECKF(e_naive < 1e-2, "non-absorbed differs by %.3g", e_naive);
        } else {
            /* Decode and prefill compute each new latent to f32 rounding, not
               to the same bits; an element that lands next to a bf16 rounding
               boundary rounds one way in one path and the other way in the
               other, a step of 2^-9 of that element, which later tokens read.
               So the two agree to a small fraction of the cache's own rounding
               error, not to f32 rounding (the non-absorbed path reads the very
               same cache, so it still does). */
            CHECKF(e_dec < e_round / 10, "decode differs from prefill by %.3g", e_dec);
            CHECK(e_naive < 1e-5);
        }
    }
    free(f32); free(b); free(b_dec); free(b_naive);
}

/* Both kinds of arithmetic wherever the CPU has both (which one a session
 * takes by default depends on the CPU: kernels.h). */
TEST(model_bf16_latent_cache) {
    const char *dir = test_fixture_model("tiny", "bf16");
    REQUIRE(dir);
    glm_model *m = load_model(dir, 2);
    REQUIRE(m);
    int V = glm_model_config(m)->vocab_size;
    int32_t ids[SEQ];
    make_tokens(ids, SEQ, V, 13);
    int default_pairs = kernels_bf16_pairs();
    for (int pairs = 0; pairs < 2; pairs++) {
        kernels_set_bf16_pairs(pairs);
        if (kernels_bf16_pairs() == pairs) check_bf16_cache(m, ids, V, pairs);
    }
    kernels_set_bf16_pairs(default_pairs);
    glm_model_free(m);
}

/* Decode splits the cached keys into fixed blocks of 256: past that, block
 * sums are combined. Check against prefill, and 1 vs 2 threads, at 600,
 * with and without requests for each run's next block (decode_ahead: the
 * same bits either way). */
TEST(model_long_decode_matches_prefill) {
    const char *dir = test_fixture_model("tiny", "f32");
    REQUIRE(dir);
    glm_model *m1 = load_model(dir, 1), *m2 = load_model(dir, 2);
    REQUIRE(m1 && m2);
    /* 1100 keys: 5 blocks, enough for 2 threads to take each next block ahead */
    int V = glm_model_config(m1)->vocab_size, n = 1100;
    int32_t *ids = malloc(n * sizeof *ids);
    make_tokens(ids, n, V, 21);
    int whole[] = {n}, tail[] = {1090, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1};   /* prefill 1090, then 10 decodes */
    float *a = run_logits(m2, ids, n, whole, 1, 0);
    float *b = run_logits(m2, ids, n, tail, 11, 0);
    float *c = run_logits(m1, ids, n, tail, 11, 0);
    setenv("GLMLITE_DECODE_AHEAD", "1", 1);   /* read per session, whatever the CPU's L2 would choose */
    float *d = run_logits(m1, ids, n, tail, 11, 0);
    float *d2 = run_logits(m2, ids, n, tail, 11, 0);
    setenv("GLMLITE_DECODE_AHEAD", "0", 1);
    float *e0 = run_logits(m2, ids, n, tail, 11, 0);
    unsetenv("GLMLITE_DECODE_AHEAD");
    if (a && b && c && d && d2 && e0) {
        size_t off = (size_t)1090 * V, cnt = (size_t)10 * V;
        double e = rel_l2_f(b + off, a + off, cnt);
        printf("    decode at 1090..1099 cached keys vs prefill: %.2g\n", e);
        CHECK(e < 1e-5);
        CHECK(memcmp(b, c, (size_t)n * V * sizeof *b) == 0);
        CHECK(memcmp(b, d, (size_t)n * V * sizeof *b) == 0);
        CHECK(memcmp(b, d2, (size_t)n * V * sizeof *b) == 0);
        CHECK(memcmp(b, e0, (size_t)n * V * sizeof *b) == 0);
    }
    free(a); free(b); free(c); free(d); free(d2); free(e0); free(ids);
    glm_model_free(m1);
    glm_model_free(m2);
}

TEST(model_results_identical_for_1_and_2_threads) {
    const char *dir = test_fixture_model("groups", "bf16");
    REQUIRE(dir);
    glm_model *m1 = load_model(dir, 1), *m2 = load_model(dir, 2);
    REQUIRE(m1 && m2);
    int V = glm_model_config(m1)->vocab_size;
    int32_t ids[SEQ];
    make_tokens(ids, SEQ, V, 3);
    int chunks[] = {40, 1, 1, 22};
    float *a = run_logits(m1, ids, SEQ, chunks, 4, 0);
    float *b = run_logits(m2, ids, SEQ, chunks, 4, 0);
    if (a && b) CHECK(memcmp(a, b, (size_t)SEQ * V * sizeof *a) == 0);
    free(a); free(b);
    glm_model_free(m1);
    glm_model_free(m2);
}

TEST(model_rejects_bad_tokens_and_full_context) {
    const char *dir = test_fixture_model("tiny", "f32");
    REQUIRE(dir);
    glm_model *m = load_model(dir, 1);
    REQUIRE(m);
    char err[1024];
    glm_session_options so = {.n_ctx = 8};
    glm_session *s = glm_session_new(m, &so, err, sizeof err);
    REQUIRE(s);
    int32_t bad[] = {1, glm_model_config(m)->vocab_size};
    CHECK(glm_forward(s, bad, 2, NULL, 0, err, sizeof err) == -1 && strstr(err, "outside the vocabulary"));
    CHECK_EQ_INT(glm_session_n_past(s), 0);
    int32_t ids[9] = {0};
    CHECK(glm_forward(s, ids, 9, NULL, 0, err, sizeof err) == -1 && strstr(err, "context full"));
    CHECK(glm_forward(s, ids, 8, NULL, 0, err, sizeof err) == 0);
    CHECK_EQ_INT(glm_session_n_past(s), 8);
    glm_session_truncate(s, 3);
    CHECK_EQ_INT(glm_session_n_past(s), 3);
    glm_session_free(s);
    glm_model_free(m);
}

/* glm_session_bytes (what `glmlite info` adds up): the KV cache grows with
 * n_ctx by exactly its bytes per token (plus per-token bookkeeping), the
 * per-thread scratch with the thread count. */
TEST(model_session_bytes_grow_with_context_and_threads) {
    const char *dir = test_fixture_model("tiny", "f32");
    REQUIRE(dir);
    glm_model *m1 = load_model(dir, 1), *m2 = load_model(dir, 2);
    REQUIRE(m1 && m2);
    glm_model_stats st;
    glm_model_get_stats(m1, &st);
    glm_session_options small = {.n_ctx = 64}, big = {.n_ctx = 128};
    size_t b_small = glm_session_bytes(m1, &small), b_big = glm_session_bytes(m1, &big);
    CHECK(b_small > st.kv_bytes_per_token * 64);
    CHECK(b_big - b_small >= st.kv_bytes_per_token * 64);
    CHECK(glm_session_bytes(m2, &small) > b_small);
    char err[256];
    glm_session *s = glm_session_new(m1, &small, err, sizeof err);
    CHECK(s != NULL);
    glm_session_free(s);
    glm_model_free(m1);
    glm_model_free(m2);
}
