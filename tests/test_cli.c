/* test_cli.c — the glmlite command line end to end, on a generated
 * checkpoint: tokenize (against @huggingface/tokenizers), render (against
 * the official template's reference renders), run, chat with its prompt
 * cache, logits, info, and the error exits. */
#include <stdlib.h>

#include "json.h"
#include "test.h"

static const char *glmlite(void) {
    const char *g = getenv("GLMLITE");
    return g && *g ? g : "./glmlite";
}

/* Runs cmd with stdout to a file; returns the exit status, output in *out. */
static int run_capture(const char *cmd, char **out) {
    char path[512], full[4096];
    static int n;
    snprintf(path, sizeof path, "%s/cli-%d.out", test_tmpdir(), n++);
    snprintf(full, sizeof full, "%s > %s", cmd, path);
    int rc = test_run(full);
    *out = test_read_file(path, NULL);
    return rc;
}

TEST(cli_tokenize_matches_hf_tokenizers) {
    const char *dir = test_fixture_model("tiny", "f32");
    REQUIRE(dir);
    const char *texts[] = {"Hello, world! 12345 numbers", "  spaces\n\nand\ttabs  ", "<|user|>special<think>", "caf\xC3\xA9 \xF0\x9F\x98\x80"};
    char path[512], cmd[2048];
    for (size_t i = 0; i < sizeof texts / sizeof *texts; i++) {
        snprintf(path, sizeof path, "%s/tok-%zu.txt", test_tmpdir(), i);
        FILE *f = fopen(path, "wb");
        fputs(texts[i], f);
        fclose(f);
        char *ours, *theirs;
        snprintf(cmd, sizeof cmd, "%s tokenize -m %s < %s", glmlite(), dir, path);
        REQUIRE(run_capture(cmd, &ours) == 0);
        buf js = {0};
        buf_putc(&js, '[');
        json_write_string(&js, texts[i], strlen(texts[i]), 0);
        buf_putc(&js, ']');
        snprintf(path, sizeof path, "%s/tok-%zu.json", test_tmpdir(), i);
        f = fopen(path, "wb");
        fwrite(js.data, 1, js.len, f);
        fclose(f);
        buf_free(&js);
        snprintf(cmd, sizeof cmd, "node tests/node/hf_tokenize.mjs %s < %s", dir, path);
        REQUIRE(run_capture(cmd, &theirs) == 0);
        /* theirs: [{"ids":[...],...}] -> "a b c" */
        json_doc *d = json_parse(theirs, strlen(theirs), NULL, 0);
        REQUIRE(d);
        const json_value *ids = json_get(json_at(json_root(d), 0), "ids");
        buf want = {0};
        for (size_t k = 0; ids && k < ids->len; k++) buf_printf(&want, "%s%s", k ? " " : "", ids->items[k].str);
        buf_putc(&want, '\n');
        CHECKF(strcmp(ours, want.data) == 0, "text %zu: ours '%s' vs HF '%s'", i, ours, want.data);
        buf_free(&want);
        json_free(d);
        free(ours);
        free(theirs);
    }
}

TEST(cli_render_matches_official_template) {
    size_t len;
    char *all = test_read_file("../shared/data/glm-4.7-flash/chat_template_renders.json", &len);
    REQUIRE(all);
    json_doc *d = json_parse(all, len, NULL, 0);
    REQUIRE(d);
    const json_value *cases = json_root(d);
    for (size_t i = 0; i < cases->len; i++) {
        const json_value *c = &cases->items[i];
        char path[512], cmd[1024], *out;
        snprintf(path, sizeof path, "%s/render-%zu.json", test_tmpdir(), i);
        buf b = {0};
        json_write_value(&b, json_get(c, "kwargs"), 1, 0);
        FILE *f = fopen(path, "wb");
        fwrite(b.data, 1, b.len, f);
        fclose(f);
        buf_free(&b);
        snprintf(cmd, sizeof cmd, "%s render < %s", glmlite(), path);
        REQUIRE(run_capture(cmd, &out) == 0);
        const char *want = json_get_str(json_get(c, "rendered"));
        CHECKF(want && strcmp(out, want) == 0, "%s: rendered differently", json_get_str(json_get(c, "name")));
        free(out);
    }
    json_free(d);
    free(all);
}

TEST(cli_run_streams_and_reports) {
    const char *dir = test_fixture_model("tiny", "bf16");
    REQUIRE(dir);
    char cmd[1024], *out, *err;
    snprintf(cmd, sizeof cmd, "%s run -m %s -p 'Hello there' -n 12 --temp 0 -t 2 2> %s/run.err", glmlite(), dir, test_tmpdir());
    CHECK(run_capture(cmd, &out) == 0);
    char path[512];
    snprintf(path, sizeof path, "%s/run.err", test_tmpdir());
    err = test_read_file(path, NULL);
    REQUIRE(out && err);
    CHECKF(strstr(err, "[prompt ") && strstr(err, "tok/s | generated "), "closing line missing: %s", err);
    /* greedy decoding is deterministic: the same command prints the same text */
    char *out2;
    CHECK(run_capture(cmd, &out2) == 0);
    CHECK(out2 && strcmp(out, out2) == 0);
    free(out); free(out2); free(err);
}

TEST(cli_chat_reuses_the_kv_cache) {
    const char *dir = test_fixture_model("tiny", "f32");
    REQUIRE(dir);
    char cmd[1024], *out, path[512];
    snprintf(path, sizeof path, "%s/chat.err", test_tmpdir());
    snprintf(cmd, sizeof cmd, "printf 'first question\\n/nothink\\nsecond question\\n/clear\\nthird\\n/quit\\n' | %s chat -m %s -n 6 --temp 0 2> %s",
             glmlite(), dir, path);
    CHECK(run_capture(cmd, &out) == 0);
    char *err = test_read_file(path, NULL);
    REQUIRE(err);
    /* three turns: the second reuses the first turn's tokens, the third (after /clear) none */
    int cached[3] = {-1, -1, -1}, n = 0;
    for (const char *p = err; (p = strstr(p, "[prompt ")) && n < 3; p++) sscanf(p, "[prompt %*d tokens (%d cached)", &cached[n++]);
    CHECK_EQ_INT(n, 3);
    CHECK_EQ_INT(cached[0], 0);
    CHECKF(cached[1] > 5, "second turn reused %d tokens", cached[1]);
    CHECK_EQ_INT(cached[2], 0);
    free(out);
    free(err);
}

TEST(cli_errors_exit_cleanly) {
    char cmd[1024];
    snprintf(cmd, sizeof cmd, "%s run --bogus 2>/dev/null", glmlite());
    CHECK_EQ_INT(test_run(cmd), 2);
    snprintf(cmd, sizeof cmd, "%s info -m /nonexistent 2>/dev/null", glmlite());
    CHECK_EQ_INT(test_run(cmd), 1);
    snprintf(cmd, sizeof cmd, "%s logits -m %s --tokens 1,x -o /dev/null 2>/dev/null", glmlite(), test_fixture_model("tiny", "f32"));
    CHECK_EQ_INT(test_run(cmd), 2);
    snprintf(cmd, sizeof cmd, "%s logits -m %s --tokens 1,999999 -o /dev/null 2>/dev/null", glmlite(), test_fixture_model("tiny", "f32"));
    CHECK_EQ_INT(test_run(cmd), 1);
    snprintf(cmd, sizeof cmd, "echo '{\"messages\": 3}' | %s render 2>/dev/null", glmlite());
    CHECK_EQ_INT(test_run(cmd), 1);
    snprintf(cmd, sizeof cmd, "%s frobnicate 2>/dev/null", glmlite());
    CHECK_EQ_INT(test_run(cmd), 2);
}

TEST(cli_logits_and_info) {
    const char *dir = test_fixture_model("tiny", "f32");
    REQUIRE(dir);
    char cmd[1024], path[512], *out;
    snprintf(path, sizeof path, "%s/l.f32", test_tmpdir());
    snprintf(cmd, sizeof cmd, "%s logits -m %s --tokens 3,1,4,1,5 -o %s", glmlite(), dir, path);
    REQUIRE(test_run(cmd) == 0);
    size_t len;
    char *l = test_read_file(path, &len);
    CHECK(l && len == 5 * 512 * sizeof(float));
    /* --cache-type bf16 reaches logits' session: the cached latents round, the logits move */
    snprintf(cmd, sizeof cmd, "%s logits -m %s --tokens 3,1,4,1,5 --cache-type bf16 -o %s.bf16", glmlite(), dir, path);
    REQUIRE(test_run(cmd) == 0);
    char bpath[600];
    snprintf(bpath, sizeof bpath, "%s.bf16", path);
    size_t blen;
    char *lb = test_read_file(bpath, &blen);
    CHECK(lb && blen == len && memcmp(lb, l, len) != 0);
    free(lb);
    free(l);
    /* run --tokens fills the context: 5 prompt tokens in -c 6 leave room to decode one more */
    snprintf(cmd, sizeof cmd, "%s run -m %s --tokens 3,1,4,1,5 -n 4 -c 6", glmlite(), dir);
    REQUIRE(run_capture(cmd, &out) == 0);
    int printed = 0;
    for (char *t = strtok(out, " \n"); t; t = strtok(NULL, " \n")) printed++;
    CHECKF(printed == 2, "run --tokens -c 6 printed %d tokens (the first, and one after the cache is full)", printed);
    free(out);
    snprintf(cmd, sizeof cmd, "%s info -m %s", glmlite(), dir);
    REQUIRE(run_capture(cmd, &out) == 0);
    CHECK(strstr(out, "glm4_moe_lite") && strstr(out, "kv cache"));
    CHECK(strstr(out, "480 bytes per token"));   /* 3 layers x (32 + 8) floats x 4 bytes */
    CHECK(strstr(out, "GB scratch"));
    CHECK(strstr(out, "kernels           avx") || strstr(out, "kernels           reference"));
    free(out);
}

TEST(cli_bench_json_fields) {
    const char *dir = test_fixture_model("tiny", "bf16");
    REQUIRE(dir);
    char cmd[1024], *out;
    /* GLMLITE_PREFETCH overrides the CPU's kind of row request, and the report says which ran */
    snprintf(cmd, sizeof cmd, "GLMLITE_PREFETCH=nta %s bench -m %s -p 8 -n 4 -r 2 --depth 4 -o json", glmlite(), dir);
    REQUIRE(run_capture(cmd, &out) == 0);
    double v;
    /* one JSON object per line: pp8, tg4 at depth 4, then tg4 at depth 0 from
       the same repetitions with the ratio (no timing is asserted, only the
       report's shape) */
    char *nl = strchr(out, '\n'), *nl2 = nl ? strchr(nl + 1, '\n') : NULL;
    REQUIRE(nl && nl2);
    *nl = *nl2 = 0;
    json_doc *pp = json_parse(out, strlen(out), NULL, 0), *tg = json_parse(nl + 1, strlen(nl + 1), NULL, 0);
    json_doc *tg0 = json_parse(nl2 + 1, strlen(nl2 + 1), NULL, 0);
    REQUIRE(pp && tg && tg0);
    CHECK(json_get_double(json_get(json_root(tg0), "depth"), &v) && v == 0);
    CHECK(json_get_double(json_get(json_root(tg0), "depth_ratio"), &v) && v > 0);
    json_free(tg0);
    CHECK_STR(json_get_str(json_get(json_root(pp), "test")), "pp8");
    for (int i = 0; i < 2; i++) {   /* which kernels ran: the table's name first */
        const char *k = json_get_str(json_get(json_root(i ? tg : pp), "kernels"));
        CHECKF(k && (!strncmp(k, "avx512", 6) || !strcmp(k, "avx2") || !strcmp(k, "reference")), "kernels %s", k ? k : "(none)");
    }
    CHECK_STR(json_get_str(json_get(json_root(tg), "test")), "tg4");
    const char *pp_keys[] = {"avg_ts", "stddev_ts", "gflops", "machine_gflops"};
    const char *tg_keys[] = {"avg_ts", "stddev_ts", "bytes_per_token", "gbs", "machine_gbs", "depth", "bandwidth_fraction"};
    for (size_t i = 0; i < 4; i++) CHECKF(json_get_double(json_get(json_root(pp), pp_keys[i]), &v) && v >= 0, "pp %s", pp_keys[i]);
    for (size_t i = 0; i < 7; i++) CHECKF(json_get_double(json_get(json_root(tg), tg_keys[i]), &v) && v >= 0, "tg %s", tg_keys[i]);
    CHECK(json_get_double(json_get(json_root(tg), "machine_gbs"), &v) && v > 0);   /* a probe ran after each repetition */
    CHECK(json_get_double(json_get(json_root(tg), "bandwidth_fraction"), &v) && v > 0);
    CHECK_STR(json_get_str(json_get(json_root(tg), "row_prefetch")), "nta");
    /* bytes per token = the active weights (from info) + the cached latents read */
    CHECK(json_get_double(json_get(json_root(tg), "bytes_per_token"), &v) && v > 1e5);
    json_free(pp);
    json_free(tg);
    free(out);
}

/* llama-bench's lists: every combination of -t and --depth for each -n, the
 * prompt tests skipped by -p 0; and the malformed lists rejected. */
TEST(cli_bench_lists_and_skips) {
    const char *dir = test_fixture_model("tiny", "bf16");
    REQUIRE(dir);
    char cmd[1024], *out;
    snprintf(cmd, sizeof cmd, "%s bench -m %s -p 0 -n 2 -t 1,2 -d 0,4 -r 1 -o jsonl", glmlite(), dir);
    REQUIRE(run_capture(cmd, &out) == 0);
    /* per thread count: tg2 at depth 0, tg2 at depth 4, its depth-0 companion */
    const int want[6][2] = {{1, 0}, {1, 4}, {1, 0}, {2, 0}, {2, 4}, {2, 0}};
    char *line = out;
    int n = 0;
    for (char *nl; line && (nl = strchr(line, '\n')); line = nl + 1, n++) {
        *nl = 0;
        json_doc *d = json_parse(line, strlen(line), NULL, 0);
        REQUIRE(d);
        double threads = -1, depth = -1, n_prompt = -1;
        CHECK_STR(json_get_str(json_get(json_root(d), "test")), "tg2");
        CHECK(json_get_double(json_get(json_root(d), "threads"), &threads));
        CHECK(json_get_double(json_get(json_root(d), "n_depth"), &depth));
        CHECK(json_get_double(json_get(json_root(d), "n_prompt"), &n_prompt) && n_prompt == 0);
        if (n < 6) CHECKF(threads == want[n][0] && depth == want[n][1], "line %d: threads %g depth %g", n, threads, depth);
        json_free(d);
    }
    CHECK_EQ_INT(n, 6);
    free(out);
    const char *bad[] = {"-p 0 -n 0", "-p 8,,16", "-p 8,", "-n -1", "-t 1,x", "-d 1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17", "-o csv"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        snprintf(cmd, sizeof cmd, "%s bench -m %s %s 2>/dev/null", glmlite(), dir, bad[i]);
        CHECKF(test_run(cmd) == 2, "bench %s", bad[i]);
    }
    snprintf(cmd, sizeof cmd, "%s bench -h", glmlite());
    REQUIRE(run_capture(cmd, &out) == 0);
    CHECK(out && strstr(out, "usage: glmlite bench"));
    free(out);
}

/* 1 when both commands exit 0 with the same stdout. */
static int same_output(const char *cmd_a, const char *cmd_b) {
    char *a = NULL, *b = NULL;
    int ok = run_capture(cmd_a, &a) == 0 && run_capture(cmd_b, &b) == 0 && a && b && !strcmp(a, b);
    free(a);
    free(b);
    return ok;
}

/* Per-subcommand help, llama.cpp's spellings, run --tokens with a large -n
 * or a full context, and a chat that recovers from a turn that does not fit. */
TEST(cli_help_llama_spellings_and_recovery) {
    const char *dir = test_fixture_model("tiny", "f32");
    REQUIRE(dir);
    char cmd[2048], path[512], *out;
    const char *cmds[] = {"run", "chat", "tokenize", "render", "logits", "info"};
    for (size_t i = 0; i < sizeof cmds / sizeof *cmds; i++) {
        snprintf(cmd, sizeof cmd, "%s %s -h < /dev/null 2>/dev/null", glmlite(), cmds[i]);
        CHECKF(run_capture(cmd, &out) == 0 && strstr(out, "usage:"), "%s -h", cmds[i]);
        free(out);
    }
    /* -n is a maximum: it must not size (or overflow) the context */
    snprintf(cmd, sizeof cmd, "%s run -m %s --tokens 1,2,3 -n 100000000 2>/dev/null", glmlite(), dir);
    CHECK_EQ_INT(run_capture(cmd, &out), 0);
    free(out);
    /* the context filling up ends generation, it is not an error */
    snprintf(cmd, sizeof cmd, "%s run -m %s --tokens 1,2,3 -n 10 -c 5 2>/dev/null", glmlite(), dir);
    CHECK_EQ_INT(run_capture(cmd, &out), 0);
    free(out);
    /* llama.cpp spellings: -f FILE, -s SEED, --predict; tokenize -p */
    snprintf(path, sizeof path, "%s/prompt.txt", test_tmpdir());
    FILE *f = fopen(path, "wb");
    fputs("Hello there\n", f);
    fclose(f);
    char spelled[1024];
    snprintf(spelled, sizeof spelled, "%s run -m %s -f %s -s 7 --predict 6 2>/dev/null", glmlite(), dir, path);
    snprintf(cmd, sizeof cmd, "%s run -m %s -p 'Hello there' --seed 7 -n 6 2>/dev/null", glmlite(), dir);
    CHECK(same_output(spelled, cmd));
    snprintf(spelled, sizeof spelled, "%s tokenize -m %s -p 'Hello there'", glmlite(), dir);
    snprintf(cmd, sizeof cmd, "printf 'Hello there' | %s tokenize -m %s", glmlite(), dir);
    CHECK(same_output(spelled, cmd));
    snprintf(cmd, sizeof cmd, "%s run -m %s -p hi --seed '' 2>/dev/null", glmlite(), dir);
    CHECK_EQ_INT(test_run(cmd), 2);
    /* chat: a message that does not fit is dropped; the next one is answered */
    snprintf(cmd, sizeof cmd,
             "awk 'BEGIN { for (i = 0; i < 200; i++) printf \"word \"; print \"\"; print \"hello\" }' | "
             "%s chat -m %s -c 64 -n 4 --temp 0 2>%s/chat-recover.err",
             glmlite(), dir, test_tmpdir());
    CHECK_EQ_INT(run_capture(cmd, &out), 0);
    free(out);
    snprintf(path, sizeof path, "%s/chat-recover.err", test_tmpdir());
    char *err = test_read_file(path, NULL);
    CHECKF(err && strstr(err, "[prompt "), "second message not answered: %s", err ? err : "");
    free(err);
}
