/* test_quantized_model.c — quantized checkpoints end to end: glmlite's
 * quantizer (library and CLI) and tools/make_quantized.py against each other
 * (byte-identical output), every type and layout against the float64
 * reference run on the exact dequantized weights, KL/top-1 against the bf16
 * model, the global-scale conventions, malformed tensors, the config block,
 * interrupted runs, and perplexity. Uses the tinyq preset (widths that are
 * multiples of 64). */
#include <signal.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "glm.h"
#include "json.h"
#include "perplexity.h"
#include "quant.h"
#include "quantize.h"
#include "safetensors.h"
#include "tensor.h"
#include "test.h"

#define SEQ 24

static const char *TYPES[] = {"int4", "int8", "nvfp4", "mxfp4", "mxfp8"};

static void tokens(int32_t *ids, int n, int vocab, unsigned seed) {
    for (int i = 0; i < n; i++) {
        seed = seed * 1103515245u + 12345u;
        ids[i] = (int32_t)((seed >> 8) % (unsigned)vocab);
    }
}

static glm_model *load_with(const char *dir, int threads, int exact) {
    char err[2048];
    glm_load_options lo = {.n_threads = threads, .exact_matmul = exact};
    glm_model *m = glm_model_load(dir, &lo, err, sizeof err);
    if (!m) test_fail(__FILE__, __LINE__, "load %s: %s", dir, err);
    return m;
}

/* The exact path (f32 activations everywhere): the tests that compare at
 * tight tolerances keep it; the int8-activation decode path has its own
 * tests below. */
static glm_model *load(const char *dir) { return load_with(dir, 2, 1); }

/* All-position logits [n][V] of ids fed `step` tokens per forward call, or NULL. */
static float *logits_in_steps(glm_model *m, const int32_t *ids, int n, int step) {
    char err[1024];
    glm_session_options so = {.n_ctx = n};
    glm_session *s = glm_session_new(m, &so, err, sizeof err);
    if (!s) return NULL;
    int V = glm_model_config(m)->vocab_size;
    float *out = malloc((size_t)n * V * sizeof *out);
    for (int i = 0; i < n; i += step) {
        int k = n - i < step ? n - i : step;
        if (glm_forward(s, ids + i, k, out + (size_t)i * V, 1, err, sizeof err)) {
            test_fail(__FILE__, __LINE__, "forward: %s", err);
            free(out);
            out = NULL;
            break;
        }
    }
    glm_session_free(s);
    return out;
}

/* all at once (prefill products) */
static float *logits_of(glm_model *m, const int32_t *ids, int n) { return logits_in_steps(m, ids, n, n); }

/* glmlite quantize (library) of the tinyq bf16 fixture into TMP/q-TYPE; NULL on failure. */
static const char *quantized(const char *type) {
    static char paths[5][512];
    int k = 0;
    while (k < 5 && strcmp(TYPES[k], type)) k++;
    if (paths[k][0]) return paths[k];
    const char *base = test_fixture_model("tinyq", "bf16");
    if (!base) return NULL;
    char out[512], err[2048];
    snprintf(out, sizeof out, "%s/q-%s", test_tmpdir(), type);
    quantize_options o = {0};
    if (quant_type_parse(type, &o.type)) return NULL;
    if (glm_quantize(base, out, &o, err, sizeof err)) {
        test_fail(__FILE__, __LINE__, "quantize %s: %s", type, err);
        return NULL;
    }
    snprintf(paths[k], sizeof paths[k], "%s", out);
    return paths[k];
}

/* tools/make_quantized.py output; NULL on failure */
static const char *py_layout(const char *layout, const char *type, char *out, size_t outlen) {
    const char *base = test_fixture_model("tinyq", "bf16");
    if (!base) return NULL;
    snprintf(out, outlen, "%s/py-%s-%s", test_tmpdir(), layout, type);
    struct stat st;
    if (stat(out, &st) == 0) return out;
    char cmd[2048];
    snprintf(cmd, sizeof cmd, "%s tools/make_quantized.py --model %s --out %s --layout %s --type %s", test_python(), base,
             out, layout, type);
    if (test_run(cmd) != 0) { test_fail(__FILE__, __LINE__, "failed: %s", cmd); return NULL; }
    return out;
}

/* one token at a time (every product is a decode product) */
static float *decode_logits_of(glm_model *m, const int32_t *ids, int n) { return logits_in_steps(m, ids, n, 1); }

/* Worst per-position relative L2 of the engine's logits against
 * tools/reference.py --dequantize on dir; -1 on failure. mode 0: prefill on
 * the exact path; 1: token-by-token decode, exact path; 2: token-by-token
 * decode with int8 activations (the default); 3: as 2 on one thread; 4:
 * prefill as by default (16-bit activations for affine weights where the
 * CPU has AVX-512 VNNI); 5: as 4 on one thread. */
static double vs_dequantized_reference_mode(const char *dir, int mode, float **keep, double *per_pos) {
    glm_model *m = load_with(dir, mode == 3 || mode == 5 ? 1 : 2, mode < 2);
    if (!m) return -1;
    int V = glm_model_config(m)->vocab_size;
    int32_t ids[SEQ];
    tokens(ids, SEQ, V, 5);
    char toks[SEQ * 8] = "", path[600], cmd[4096];
    for (int i = 0; i < SEQ; i++) sprintf(toks + strlen(toks), "%s%d", i ? "," : "", ids[i]);
    snprintf(path, sizeof path, "%s.ref.f64", dir);
    snprintf(cmd, sizeof cmd, "%s tools/reference.py --dequantize --model %s --tokens %s --out %s", test_python(), dir, toks,
             path);
    double worst = -1;
    float *got = mode == 0 || mode >= 4 ? logits_of(m, ids, SEQ) : decode_logits_of(m, ids, SEQ);
    size_t len = 0;
    struct stat st;
    double *ref = stat(path, &st) == 0 || test_run(cmd) == 0 ? (double *)test_read_file(path, &len) : NULL;
    if (got && ref && len == (size_t)SEQ * V * sizeof(double)) {
        worst = 0;
        for (int t = 0; t < SEQ; t++) {
            double e = test_rel_l2(got + (size_t)t * V, ref + (size_t)t * V, (size_t)V);
            worst = e > worst ? e : worst;
            if (per_pos) per_pos[t] = e;
        }
    } else {
        test_fail(__FILE__, __LINE__, "reference failed: %s", cmd);
    }
    if (keep) *keep = got;
    else free(got);
    free(ref);
    glm_model_free(m);
    return worst;
}

static double vs_dequantized_reference(const char *dir) { return vs_dequantized_reference_mode(dir, 0, NULL, NULL); }

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* Every tensor of a and b identical (names, dtypes, shapes, bytes). */
static int same_tensors(const char *a, const char *b, char *why, size_t whylen) {
    char err[1024];
    safetensors *x = st_open_dir(a, err, sizeof err), *y = st_open_dir(b, err, sizeof err);
    int ok = x && y && st_count(x) == st_count(y);
    if (!ok) snprintf(why, whylen, "cannot open or different tensor counts");
    for (size_t i = 0; ok && i < st_count(x); i++) {
        const st_tensor *t = st_at(x, i), *u = st_find(y, t->name);
        ok = u && u->dtype == t->dtype && u->ndim == t->ndim && u->nbytes == t->nbytes &&
             !memcmp(u->shape, t->shape, sizeof(int64_t) * (size_t)t->ndim) && !memcmp(u->data, t->data, t->nbytes);
        if (!ok) snprintf(why, whylen, "tensor '%s' differs", t->name);
    }
    if (x) st_close(x);
    if (y) st_close(y);
    return ok;
}

TEST(qmodel_each_type_matches_dequantized_reference_and_python_tool) {
    for (int k = 0; k < 5; k++) {
        const char *dir = quantized(TYPES[k]);
        REQUIREF(dir, "quantize %s", TYPES[k]);
        double e = vs_dequantized_reference(dir);
        printf("    %-6s glmlite quantize vs float64 reference on the dequantized weights: relative L2 %.3g\n", TYPES[k], e);
        CHECKF(e >= 0 && e < 1e-2, "%s: relative L2 %.3g", TYPES[k], e);
        /* the Python tool, written from the SPEC with numpy, writes the same bytes and the same config block */
        char py[512], why[600];
        REQUIRE(py_layout("mlx", TYPES[k], py, sizeof py));
        CHECKF(same_tensors(dir, py, why, sizeof why), "%s: glmlite quantize and make_quantized.py differ: %s", TYPES[k], why);
        char pa[600], pb[600];
        snprintf(pa, sizeof pa, "%s/config.json", dir);
        snprintf(pb, sizeof pb, "%s/config.json", py);
        char *ja = test_read_file(pa, NULL), *jb = test_read_file(pb, NULL), err[256];
        json_doc *da = ja ? json_parse(ja, strlen(ja), err, sizeof err) : NULL, *db = jb ? json_parse(jb, strlen(jb), err, sizeof err) : NULL;
        REQUIRE(da && db);
        const json_value *qa = json_get(json_root(da), "quantization"), *qb = json_get(json_root(db), "quantization");
        CHECK(qa && qb && qa->len == qb->len);
        for (size_t i = 0; qa && qb && i < qa->len; i++) {
            buf x = {0}, y = {0};
            const json_value *v = json_get(qb, qa->members[i].key);
            json_write_value(&x, &qa->members[i].value, 0, 0);
            if (v) json_write_value(&y, v, 0, 0);
            CHECKF(v && x.len == y.len && !memcmp(x.data, y.data, x.len), "%s: config entry '%s' differs", TYPES[k],
                   qa->members[i].key);
            buf_free(&x);
            buf_free(&y);
        }
        json_free(da); json_free(db); free(ja); free(jb);
    }
}

TEST(qmodel_kl_and_top1_against_bf16_per_type) {
    const char *base = test_fixture_model("tinyq", "bf16");
    REQUIRE(base);
    glm_model *b = load(base);
    REQUIRE(b);
    int V = glm_model_config(b)->vocab_size;
    enum { N = 96 };
    int32_t ids[N];
    tokens(ids, N, V, 9);
    double kl[5];
    size_t top1[5];
    /* a random tiny model has nearly flat next-token distributions, so its top-1 agreement is much lower
       than a trained model's; the figures are for comparing types, not for the README table */
    printf("    type    bits/weight   mean KL      max KL     top-1 agreement (vs bf16, %d positions)\n", N);
    for (int k = 0; k < 5; k++) {
        const char *dir = quantized(TYPES[k]);
        REQUIRE(dir);
        glm_model *m = load(dir);
        REQUIRE(m);
        ppl_stats st;
        /* one window of N; logits of every position scored through ppl_add directly */
        float *lq = logits_of(m, ids, N), *lb = logits_of(b, ids, N);
        REQUIRE(lq && lb);
        memset(&st, 0, sizeof st);
        for (int t = 0; t + 1 < N; t++) ppl_add(&st, lq + (size_t)t * V, lb + (size_t)t * V, V, ids[t + 1]);
        glm_model_stats ms, bs;
        glm_model_get_stats(m, &ms);
        glm_model_get_stats(b, &bs);
        /* as loaded: the dense f32 kv_b rebuilt from embed_q/unembed_out counts too */
        double bpw = 16.0 * (double)ms.weight_bytes / (double)bs.weight_bytes;
        kl[k] = ppl_mean_kl(&st, NULL);
        printf("    %-6s  %6.2f        %.3e    %.3e  %5.1f%%\n", TYPES[k], bpw, kl[k], st.kl_max,
               100.0 * (double)st.top1_same / (double)st.n_kl);
        CHECKF(isfinite(kl[k]) && kl[k] > 0 && kl[k] < 0.1, "%s: mean KL %g", TYPES[k], kl[k]);
        top1[k] = st.top1_same;
        free(lq); free(lb);
        glm_model_free(m);
    }
    /* more bits, less divergence: int8 < int4, mxfp8 < mxfp4 and nvfp4 */
    CHECKF(kl[1] < kl[0], "int8 KL %g not below int4 %g", kl[1], kl[0]);
    CHECKF(kl[4] < kl[3] && kl[4] < kl[2], "mxfp8 KL %g not below mxfp4 %g / nvfp4 %g", kl[4], kl[3], kl[2]);
    CHECKF(top1[1] > top1[0] && top1[4] > top1[3], "top-1 agreement: int8 %zu vs int4 %zu, mxfp8 %zu vs mxfp4 %zu",
           top1[1], top1[0], top1[4], top1[3]);
    glm_model_free(b);
}

static void check_layout(const char *layout, const char *type, const int *want_formats, int n_want) {
    char dir[512];
    REQUIRE(py_layout(layout, type, dir, sizeof dir));
    double e = vs_dequantized_reference(dir);
    printf("    %-9s layout vs float64 reference on the dequantized weights: relative L2 %.3g\n", layout, e);
    CHECKF(e >= 0 && e < 1e-2, "%s: relative L2 %.3g", layout, e);
    glm_model *m = load(dir);
    REQUIRE(m);
    glm_model_stats st;
    glm_model_get_stats(m, &st);
    for (int i = 0; i < n_want; i++)
        CHECKF(st.bytes_by_format[want_formats[i]] > 0, "%s: no weights bound in format %d", layout, want_formats[i]);
    glm_model_free(m);
}

/* mixed: an mxfp4 block, affine 2/3/4/5/6/8-bit, groups 32/64/128, nvfp4 and
 * mxfp8 modules, override dicts without a mode or group size (affine, 64: they
 * take nothing from the block), bf16 holes, and kv_b_proj kept as one
 * quantized matrix */
TEST(qmodel_mixed_checkpoint) {
    int f[] = {WF_BF16, WF_AFFINE, WF_NVFP4, WF_MXFP4, WF_MXFP8};
    check_layout("mixed", "int4", f, 5);
}

/* The NVFP4 layouts carry a global scale G = amax/2688 (~1e-5 here): read
 * with the other convention the weights would be off by G^2 ~ 1e-10 and the
 * logits would not match the reference at all. */
TEST(qmodel_modelopt_nvfp4_direct_global_scale) {
    int f[] = {WF_NVFP4, WF_BF16};
    check_layout("modelopt", "nvfp4", f, 2);
}

TEST(qmodel_compressed_tensors_nvfp4_inverted_global_scale) {
    int f[] = {WF_NVFP4, WF_BF16};
    check_layout("ct", "nvfp4", f, 2);
}

/* compressed-tensors MX layouts: E8M0 scales as U8, one per 32 columns, no global scale */
TEST(qmodel_compressed_tensors_mxfp4_and_mxfp8) {
    int f4[] = {WF_MXFP4, WF_BF16}, f8[] = {WF_MXFP8, WF_BF16};
    check_layout("ct", "mxfp4", f4, 2);
    check_layout("ct", "mxfp8", f8, 2);
}

static void check_malformed(const char *from, const char *kind) {
    char out[512], cmd[2048], tfile[600];
    snprintf(out, sizeof out, "%s/bad-%s", test_tmpdir(), kind);
    snprintf(tfile, sizeof tfile, "%s.target", out);
    snprintf(cmd, sizeof cmd, "%s tools/make_quantized.py --model %s --out %s --corrupt %s > %s", test_python(), from, out,
             kind, tfile);
    REQUIREF(test_run(cmd) == 0, "failed: %s", cmd);
    char *target = test_read_file(tfile, NULL);
    REQUIRE(target);
    target[strcspn(target, "\n")] = 0;
    *strrchr(target, '.') = 0;   /* the module path: the message names .weight or .scales */
    char err[2048] = "";
    glm_model *m = glm_model_load(out, NULL, err, sizeof err);
    CHECKF(!m, "%s: the malformed checkpoint loaded", kind);
    CHECKF(strstr(err, target) != NULL, "%s: error does not name '%s': %s", kind, target, err);
    printf("    %-13s %s\n", kind, err);
    glm_model_free(m);
    free(target);
}

TEST(qmodel_malformed_tensors_named_in_errors) {
    const char *q4 = quantized("int4"), *nv = quantized("nvfp4");
    char ct[512], mo[512];
    REQUIRE(q4 && nv && py_layout("ct", "nvfp4", ct, sizeof ct) && py_layout("modelopt", "nvfp4", mo, sizeof mo));
    const char *kinds[] = {"packed_width", "scales_shape", "group_divide", "config_bits", "config_false"};
    for (int i = 0; i < 5; i++) check_malformed(q4, kinds[i]);
    check_malformed(nv, "nan_scale");
    check_malformed(ct, "global_zero");
    check_malformed(mo, "global_missing");
}

TEST(qmodel_quantize_config_block_and_interrupted_run) {
    const char *dir = quantized("int4");
    REQUIRE(dir);
    char path[600];
    snprintf(path, sizeof path, "%s/config.json", dir);
    char *text = test_read_file(path, NULL), err[1024];
    REQUIRE(text);
    json_doc *d = json_parse(text, strlen(text), err, sizeof err);
    REQUIRE(d);
    const json_value *q = json_get(json_root(d), "quantization"), *qc = json_get(json_root(d), "quantization_config");
    REQUIRE(q && qc && q->len == qc->len);
    int64_t v;
    CHECK(json_get_int64(json_get(q, "bits"), &v) && v == 4);
    CHECK(json_get_int64(json_get(q, "group_size"), &v) && v == 64);
    CHECK_STR(json_get_str(json_get(q, "mode")), "affine");
    const char *eight[] = {"lm_head", "model.layers.1.self_attn.q_a_proj", "model.layers.1.self_attn.embed_q",
                           "model.layers.2.self_attn.unembed_out", "model.layers.0.mlp.down_proj",
                           "model.layers.1.mlp.shared_experts.down_proj"};
    for (int i = 0; i < 6; i++) {
        const json_value *e = json_get(q, eight[i]);
        CHECKF(e && json_get_int64(json_get(e, "bits"), &v) && v == 8, "%s is not at 8 bits", eight[i]);
    }
    const json_value *router = json_get(q, "model.layers.1.mlp.gate");
    CHECK(router && router->type == JSON_BOOL && !router->boolean);
    CHECK(!json_get(q, "model.layers.1.mlp.switch_mlp.down_proj"));   /* routed experts stay at the main type */
    CHECK(!json_get(q, "model.embed_tokens"));
    json_free(d);
    free(text);
    /* the embed_q layout carries no kv_b_proj, and the MTP layer is dropped */
    char e2[1024];
    safetensors *st = st_open_dir(dir, e2, sizeof e2);
    REQUIRE(st);
    CHECK(!st_find(st, "model.layers.1.self_attn.kv_b_proj.weight"));
    CHECK(st_find(st, "model.layers.1.self_attn.embed_q.scales") != NULL);
    CHECK(!st_find(st, "model.layers.3.input_layernorm.weight"));
    /* model.safetensors.index.json, as mlx-lm's save_model writes it even for one shard: every tensor
       mapped to its file, total_size their bytes */
    snprintf(path, sizeof path, "%s/model.safetensors.index.json", dir);
    char *idx = test_read_file(path, NULL);
    CHECKF(idx != NULL, "%s is missing", path);
    json_doc *id = idx ? json_parse(idx, strlen(idx), err, sizeof err) : NULL;
    const json_value *wm = id ? json_get(json_root(id), "weight_map") : NULL;
    CHECK(wm && wm->type == JSON_OBJECT && wm->len == st_count(st));
    size_t total = 0;
    for (size_t i = 0; wm && i < st_count(st); i++) {
        const st_tensor *t = st_at(st, i);
        CHECKF(json_get(wm, t->name) != NULL, "%s not in the weight_map", t->name);
        CHECK_STR(json_get_str(json_get(wm, t->name)), "model.safetensors");
        total += t->nbytes;
    }
    int64_t ts = -1;
    CHECK(id && json_get_int64(json_get(json_get(json_root(id), "metadata"), "total_size"), &ts) && (size_t)ts == total);
    json_free(id);
    free(idx);
    st_close(st);

    /* interrupted after 3 tensors: nothing at OUT, and the leftover temporary directory does not load either */
    const char *base = test_fixture_model("tinyq", "bf16");
    char out[512];
    snprintf(out, sizeof out, "%s/interrupted", test_tmpdir());
    fflush(stdout);
    pid_t pid = fork();
    REQUIRE(pid >= 0);
    if (pid == 0) {
        setenv("GLMLITE_QUANTIZE_ABORT_AFTER", "3", 1);
        quantize_options o = {QT_INT4, 0, 0, NULL, NULL};
        char e[1024];
        glm_quantize(base, out, &o, e, sizeof e);
        _exit(0);   /* not reached when the hook works */
    }
    int status;
    waitpid(pid, &status, 0);
    CHECKF(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL, "the quantizer was not killed mid-way (status %d)", status);
    struct stat sb;
    CHECK(stat(out, &sb) != 0);
    glm_model *m = glm_model_load(out, NULL, err, sizeof err);
    CHECK(!m);
    char cmd[1200], list[600];
    snprintf(list, sizeof list, "%s/leftover.txt", test_tmpdir());
    snprintf(cmd, sizeof cmd, "ls -d %s.tmp-* > %s 2>/dev/null", out, list);
    CHECK(test_run(cmd) == 0);   /* the partial output is there, under its temporary name */
    char *left = test_read_file(list, NULL);
    REQUIRE(left);
    left[strcspn(left, "\n")] = 0;
    m = glm_model_load(left, NULL, err, sizeof err);
    CHECKF(!m, "the partial directory %s loads", left);
    glm_model_free(m);
    free(left);
    /* refuses to overwrite, and a bad group size is an error */
    quantize_options o = {QT_INT4, 0, 0, NULL, NULL};
    CHECK(glm_quantize(base, dir, &o, err, sizeof err) != 0 && strstr(err, "exists"));
    o.group_size = 48;
    snprintf(out, sizeof out, "%s/g48", test_tmpdir());
    CHECK(glm_quantize(base, out, &o, err, sizeof err) != 0 && strstr(err, "group"));
    o.type = QT_NVFP4;
    o.group_size = 32;
    CHECK(glm_quantize(base, out, &o, err, sizeof err) != 0 && strstr(err, "16"));
    /* quantizing a quantized checkpoint is refused */
    o.group_size = 0;
    CHECK(glm_quantize(dir, out, &o, err, sizeof err) != 0 && strstr(err, "already quantized"));
}

/* ppl_run against a direct computation from all-position logits, and the KL
 * of a model against itself. */
TEST(qmodel_perplexity_and_kl_self) {
    const char *dir = quantized("int4"), *base = test_fixture_model("tinyq", "bf16");
    REQUIRE(dir && base);
    glm_model *m = load(dir), *b = load(base);
    REQUIRE(m && b);
    int V = glm_model_config(m)->vocab_size;
    enum { N = 100, CTX = 32 };
    int32_t ids[N];
    tokens(ids, N, V, 3);
    ppl_stats st;
    char err[1024];
    REQUIRE(ppl_run(m, b, ids, N, CTX, PPL_MAX_BATCH, &st, NULL, NULL, err, sizeof err) == 0);
    /* 3 windows of 32, each scoring positions 16..30 */
    CHECK_EQ_INT(st.n, 3 * 15);
    double nll = 0;
    for (int w = 0; w < 3; w++) {
        float *lg = logits_of(m, ids + w * CTX, CTX);
        REQUIRE(lg);
        for (int t = CTX / 2; t < CTX - 1; t++) {
            const float *x = lg + (size_t)t * V;
            double mx = -INFINITY, s = 0;
            for (int v = 0; v < V; v++) mx = x[v] > mx ? x[v] : mx;
            for (int v = 0; v < V; v++) s += exp((double)x[v] - mx);
            nll += mx + log(s) - x[ids[w * CTX + t + 1]];
        }
        free(lg);
    }
    double pm, p = ppl_value(&st, &pm);
    printf("    int4 perplexity %.4f +/- %.4f, bf16 %.4f, mean KL %.3g, top-1 %zu/%zu\n", p, pm, ppl_base_value(&st, NULL),
           ppl_mean_kl(&st, NULL), st.top1_same, st.n_kl);
    /* not bit-exact: ppl_run feeds 31 tokens per window (the last predicts nothing) and the engine's f32
       results at a position depend slightly on the chunk length (~1e-7 relative on logits) */
    CHECKF(fabs(p - exp(nll / 45)) < 1e-6 * p, "perplexity %.12g vs direct %.12g", p, exp(nll / 45));
    CHECK(pm > 0 && pm < p);
    CHECK(ppl_mean_kl(&st, NULL) > 0);
    ppl_stats self;
    REQUIRE(ppl_run(b, b, ids, N, CTX, PPL_MAX_BATCH, &self, NULL, NULL, err, sizeof err) == 0);
    CHECK(ppl_mean_kl(&self, NULL) < 1e-12 && self.top1_same == self.n_kl);
    /* one token per call (the decode path) scores the same predictions; on bf16 weights decode and
       prefill agree to f32 rounding */
    ppl_stats one, all;
    REQUIRE(ppl_run(b, NULL, ids, N, CTX, 1, &one, NULL, NULL, err, sizeof err) == 0);
    REQUIRE(ppl_run(b, NULL, ids, N, CTX, PPL_MAX_BATCH, &all, NULL, NULL, err, sizeof err) == 0);
    CHECK_EQ_INT(one.n, all.n);
    CHECKF(fabs(ppl_value(&one, NULL) - ppl_value(&all, NULL)) < 1e-6 * ppl_value(&all, NULL), "batch 1 %.12g vs 32 %.12g",
           ppl_value(&one, NULL), ppl_value(&all, NULL));
    CHECK(ppl_run(m, NULL, ids, 10, CTX, PPL_MAX_BATCH, &st, NULL, NULL, err, sizeof err) != 0 && strstr(err, "fewer"));
    glm_model_free(m);
    glm_model_free(b);
}

/* The subcommands through the binary (GLMLITE or ./glmlite). */
TEST(qmodel_cli_quantize_and_perplexity) {
    const char *bin = getenv("GLMLITE");
    if (!bin || !*bin) bin = "./glmlite";
    char cmd[4096];
    snprintf(cmd, sizeof cmd, "%s quantize --help > /dev/null 2>&1", bin);
    if (test_run(cmd) != 0) SKIP("the glmlite binary does not dispatch `quantize` (src/cli.c not wired yet)");
    const char *base = test_fixture_model("tinyq", "bf16");
    REQUIRE(base);
    char out[512], text[512], log[600];
    snprintf(out, sizeof out, "%s/cli-mxfp4", test_tmpdir());
    snprintf(cmd, sizeof cmd, "%s quantize -m %s -o %s --type mxfp4 2>/dev/null", bin, base, out);
    REQUIRE(test_run(cmd) == 0);
    const char *lib = quantized("mxfp4");
    char why[600];
    REQUIRE(lib);
    CHECKF(same_tensors(out, lib, why, sizeof why), "CLI and library output differ: %s", why);
    snprintf(text, sizeof text, "%s/text.txt", test_tmpdir());
    FILE *f = fopen(text, "w");
    REQUIRE(f);
    for (int i = 0; i < 60; i++) fprintf(f, "The quick brown fox %d jumps over the lazy dog; hello world. ", i);
    fclose(f);
    snprintf(log, sizeof log, "%s/ppl.txt", test_tmpdir());
    snprintf(cmd, sizeof cmd, "%s perplexity -m %s -f %s -c 64 --kl-base %s -t 2 > %s 2>/dev/null", bin, out, text, base, log);
    REQUIRE(test_run(cmd) == 0);
    char *r = test_read_file(log, NULL);
    REQUIRE(r);
    printf("%s", r);
    CHECK(strstr(r, "perplexity:") && strstr(r, "mean KL:") && strstr(r, "same top-1:"));
    free(r);
    /* a base with the same vocabulary size but another tokenizer (half its merges dropped) would be fed
       the model's ids: refused */
    char other[600];
    snprintf(other, sizeof other, "%s/base-other-tokenizer", test_tmpdir());
    snprintf(cmd, sizeof cmd,
             "%s -c \"import json,shutil,sys; shutil.copytree(sys.argv[1], sys.argv[2], dirs_exist_ok=True); "
             "p=sys.argv[2]+'/tokenizer.json'; t=json.load(open(p)); m=t['model']['merges']; "
             "t['model']['merges']=m[len(m)//2:]; json.dump(t, open(p, 'w'))\" %s %s",
             test_python(), base, other);
    REQUIRE(test_run(cmd) == 0);
    snprintf(cmd, sizeof cmd, "%s perplexity -m %s -f %s -c 64 --kl-base %s -t 2 > %s 2>&1", bin, out, text, other, log);
    CHECK(test_run(cmd) == 1);
    r = test_read_file(log, NULL);
    REQUIRE(r);
    CHECKF(strstr(r, "tokenizes the text differently") != NULL, "got: %s", r);
    free(r);
    snprintf(cmd, sizeof cmd, "%s quantize -m %s -o %s/x --type int3 2>/dev/null", bin, base, test_tmpdir());
    CHECK(test_run(cmd) == 2);
}

/* mlx-lm checkpoints carry embed_q/unembed_out instead of kv_b_proj; both
 * attention paths must use them the same way (quantized, no dense copy). */
TEST(qmodel_split_up_projection_absorbed_matches_naive) {
    const char *dir = quantized("int8");
    REQUIRE(dir);
    glm_model *m = load(dir);
    REQUIRE(m);
    int V = glm_model_config(m)->vocab_size, n = 24;
    int32_t ids[24];
    tokens(ids, n, V, 5);
    float *a = logits_of(m, ids, n), *b = NULL;
    char err[1024];
    glm_session_options so = {.n_ctx = n, .naive_attention = 1};
    glm_session *s = glm_session_new(m, &so, err, sizeof err);
    REQUIRE(s && a);
    b = malloc((size_t)n * V * sizeof *b);
    REQUIRE(glm_forward(s, ids, n, b, 1, err, sizeof err) == 0);
    double num = 0, den = 0;
    for (size_t i = 0; i < (size_t)n * V; i++) {
        num += ((double)a[i] - b[i]) * ((double)a[i] - b[i]);
        den += (double)b[i] * b[i];
    }
    printf("    embed_q/unembed_out: absorbed vs non-absorbed relative L2 %.2g\n", sqrt(num / den));
    CHECK(sqrt(num / den) < 1e-5);
    glm_model_stats st;
    glm_model_get_stats(m, &st);
    CHECK(st.bytes_by_format[WF_F32] == 0);   /* no dense f32 up-projection was built */
    glm_session_free(s);
    free(a);
    free(b);
    glm_model_free(m);
}

/* Decode with int8 activations (quant.h) against the float64 reference, per
 * type. Tolerance, a priori: rounding x to 127 levels per block of 32 leaves
 * an error uniform in +-d/2, d = amax/127, i.e. RMS amax/(127*sqrt(12)) per
 * element: 0.6% of the block's RMS for Gaussian-like blocks (amax ~ 2.5 RMS),
 * at most 1.3% (amax <= sqrt(32) RMS). A product's relative error is about
 * that of its input; the ~22 products a token passes through in sequence
 * (3 layers x 7, plus the LM head) add up at most in quadrature:
 * sqrt(22) * 0.6% ~ 2.8%, hence 3e-2 on the median position's relative L2,
 * and 6e-2 (from the 1.3% worst case) on all positions but a few: the MoE
 * router's top-k choice is discontinuous, so where two experts' scores are
 * closer than the perturbation the token takes another expert and its logits
 * move by O(1) (random tiny models have many near ties; measured: 1-2 of 24
 * positions). At most SEQ/8 such positions are allowed. (llama.cpp reports
 * ~1e-3 on trained models; random tiny models are rougher: the median measures
 * 1-2%.) The exact path, decoded token by token, must keep the tight bound of the
 * f32 engine (1e-4: f32 accumulation only; prefill measures ~5e-7). The int8
 * results must differ from the exact ones where a kernel exists (the test
 * would otherwise not test it), and equal bit for bit on 1 and 2 threads. */
TEST(qmodel_int8_activation_decode_matches_reference) {
    for (int k = 0; k < 5; k++) {
        const char *dir = quantized(TYPES[k]);
        REQUIREF(dir, "quantize %s", TYPES[k]);
        float *ex = NULL, *q2 = NULL, *q1 = NULL;
        double pos[SEQ];
        double e_exact = vs_dequantized_reference_mode(dir, 1, &ex, NULL);
        double e_q8 = vs_dequantized_reference_mode(dir, 2, &q2, pos);
        double e_q1 = vs_dequantized_reference_mode(dir, 3, &q1, NULL);
        qsort(pos, SEQ, sizeof *pos, cmp_double);
        int off = 0;
        for (int i = 0; i < SEQ; i++) off += !(pos[i] <= 6e-2);
        printf("    %-6s token-by-token decode vs float64 reference: exact path %.3g; int8 activations median %.3g, "
               "worst %.3g, %d positions above 6e-2\n", TYPES[k], e_exact, pos[SEQ / 2], e_q8, off);
        CHECKF(e_exact >= 0 && e_exact < 1e-4, "%s: exact decode relative L2 %.3g", TYPES[k], e_exact);
        CHECKF(e_q8 >= 0 && pos[SEQ / 2] < 3e-2, "%s: int8-activation decode median relative L2 %.3g", TYPES[k], pos[SEQ / 2]);
        CHECKF(off <= SEQ / 8, "%s: %d positions above 6e-2", TYPES[k], off);
        CHECKF(e_q1 == e_q8, "%s: 1 thread %.9g vs 2 threads %.9g", TYPES[k], e_q1, e_q8);
        REQUIRE(ex && q2 && q1);
        size_t nb = (size_t)SEQ * 512 * sizeof(float);   /* tinyq's vocabulary */
        CHECKF(!memcmp(q1, q2, nb), "%s: logits differ between 1 and 2 threads", TYPES[k]);
        /* mxfp8 rows take bf16 activations where the CPU has AVX512-BF16 (quant.h) */
        int has_kernel = strcmp(TYPES[k], "mxfp8") != 0 || quant_act_fp8_available();
        CHECKF(has_kernel == (memcmp(ex, q2, nb) != 0), "%s: int8 path %s", TYPES[k],
               has_kernel ? "not taken" : "taken without a kernel");
        free(ex); free(q2); free(q1);
    }
}

/* Whether mxfp8 rows take bf16 activations in prefill here (quant.h). */
static int prefill_bf16_pairs(void) {
    weight w;
    memset(&w, 0, sizeof w);
    w.format = WF_MXFP8;
    w.cols = 64;
    return (quant_x16_group(&w) & QUANT_X16_BF16) != 0;
}

/* Prefill as by default, where the CPU has the 16-bit-activation kernels
 * (quant.h), against prefill without them. The int4 and int8 models'
 * logits move by ~1e-4 at most positions (relative L2; the products with
 * fewer than 4 tokens, an expert's few, take int8 activations either way,
 * and their rounding turns a small change into a larger one, as does a
 * near-tie in the router now and then), so the median position must stay
 * within 1e-3 and every one within 1e-2, and the float64 reference be no
 * further than without them plus 1e-3. Where mxfp8 rows take bf16
 * activations (AVX512-BF16: all of the mxfp8 model; the LM head, MLA
 * projections and down_projs of the nvfp4 and mxfp4 ones), each input's
 * rounding by up to 2^-9 moves them ~4e-3, as it does decode (which takes
 * bf16 activations for those rows too: 4e-3 to 7e-3 from the reference,
 * test above): median within 1e-2, every position within 3e-2, the
 * reference no further than without plus 1e-2. Elsewhere mxfp8 rows do not
 * move. The same bits on 1 and 2 threads. test_quant_int8.c checks the
 * products themselves. */
TEST(qmodel_prefill_16bit_activations) {
    if (!quant_x16_available()) return;   /* then no weight takes them: test_quant_int8.c */
    for (int k = 0; k < 5; k++) {
        const char *dir = quantized(TYPES[k]);
        REQUIREF(dir, "quantize %s", TYPES[k]);
        float *off = NULL, *p2 = NULL, *p1 = NULL;
        quant_x16_allow(0);
        double e_off = vs_dequantized_reference_mode(dir, 4, &off, NULL);
        quant_x16_allow(1);
        double e2 = vs_dequantized_reference_mode(dir, 4, &p2, NULL);
        vs_dequantized_reference_mode(dir, 5, &p1, NULL);
        REQUIRE(off && p2 && p1);
        int V = 512;   /* tinyq's vocabulary */
        double moved[SEQ];
        for (int t = 0; t < SEQ; t++) {
            double num = 0, den = 0;
            for (int v = 0; v < V; v++) {
                double d = (double)p2[t * V + v] - off[t * V + v];
                num += d * d;
                den += (double)off[t * V + v] * off[t * V + v];
            }
            moved[t] = sqrt(num / den);
        }
        qsort(moved, SEQ, sizeof *moved, cmp_double);
        int fp8 = !strcmp(TYPES[k], "mxfp8"), fp = fp8 || strstr(TYPES[k], "fp4") != NULL, bf16 = fp && prefill_bf16_pairs();
        double median = bf16 ? 1e-2 : 1e-3, worst = bf16 ? 3e-2 : 1e-2;
        printf("    %-6s prefill with 16-bit activations%s: moved median %.3g, worst %.3g; vs float64 reference %.3g "
               "(%.3g without)\n", TYPES[k], bf16 ? " (bf16 for mxfp8 rows)" : "", moved[SEQ / 2], moved[SEQ - 1], e2, e_off);
        if (fp8 && !bf16) CHECKF(moved[SEQ - 1] == 0, "%s: moved %.3g", TYPES[k], moved[SEQ - 1]);
        else CHECKF(moved[0] > 0 && moved[SEQ / 2] < median && moved[SEQ - 1] < worst, "%s: moved median %.3g, worst %.3g",
                    TYPES[k], moved[SEQ / 2], moved[SEQ - 1]);
        CHECKF(e2 >= 0 && e2 < e_off + (bf16 ? 1e-2 : 1e-3), "%s: %.3g against the reference, %.3g without", TYPES[k], e2, e_off);
        CHECKF(!memcmp(p1, p2, (size_t)SEQ * V * sizeof(float)), "%s: prefill logits differ between 1 and 2 threads", TYPES[k]);
        free(off); free(p2); free(p1);
    }
}
