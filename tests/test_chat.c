/* test_chat.c — the GLM-4.7 chat renderer and the streaming output parser.
 *
 * Renderer oracles: jinja2's renders shipped with the data
 * (chat_template_renders.json), jinja2 renders of generated conversations
 * committed with their generator (tests/data/chat_convs.json from
 * tools/gen_chat_convs.py), and @huggingface/jinja run at test time
 * (tests/node/render_chat.mjs) on both sets. */
#include "test.h"
#include "chat.h"
#include "json.h"

#include <stdlib.h>

#define DATA "/work/shared/data/glm-4.7-flash/"
#define TEMPLATE DATA "chat_template.jinja"
#define CONVS "tests/data/chat_convs.json"

static json_doc *load_json(const char *path) {
    size_t n;
    char *text = test_read_file(path, &n);
    if (!text) return NULL;
    char err[256];
    json_doc *d = json_parse(text, n, err, sizeof err);
    if (!d) printf("    %s: %s\n", path, err);
    free(text);
    return d;
}

static json_doc *parse_str(const char *s, size_t n) {
    char err[256];
    json_doc *d = json_parse(s, n, err, sizeof err);
    if (!d) printf("    parse: %s\n", err);
    return d;
}

/* Renders request text; returns malloc'd prompt or NULL with err filled. */
static char *render_text(const char *req, size_t n, unsigned flags, char *err, size_t errlen) {
    json_doc *d = parse_str(req, n);
    if (!d) { snprintf(err, errlen, "bad request JSON"); return NULL; }
    buf out = {0};
    int rc = chat_render_flags(json_root(d), flags, &out, err, errlen);
    json_free(d);
    if (rc) { buf_free(&out); return NULL; }
    return buf_detach(&out);
}

static void check_same(const char *name, const char *got, const char *want) {
    if (got && want && strcmp(got, want) == 0) return;
    size_t i = 0;
    if (got && want) while (got[i] && got[i] == want[i]) i++;
    test_fail(__FILE__, __LINE__, "%s: mismatch at byte %zu\n      got:  %.120s\n      want: %.120s", name, i,
              got ? got + (i > 20 ? i - 20 : 0) : "(error)", want ? want + (i > 20 ? i - 20 : 0) : "(null)");
}

TEST(chat_render_official_jinja2_renders) {
    json_doc *d = load_json(DATA "chat_template_renders.json");
    REQUIRE(d);
    const json_value *all = json_root(d);
    REQUIRE(all->type == JSON_ARRAY && all->len == 12);
    for (size_t i = 0; i < all->len; i++) {
        const json_value *c = json_at(all, i);
        buf out = {0};
        char err[256];
        CHECKF(chat_render(json_get(c, "kwargs"), &out, err, sizeof err) == 0, "%s", err);
        check_same(json_get_str(json_get(c, "name")), out.data, json_get_str(json_get(c, "rendered")));
        buf_free(&out);
    }
    json_free(d);
}

TEST(chat_render_generated_vs_jinja2) {
    json_doc *d = load_json(CONVS);
    REQUIRE(d);
    const json_value *all = json_root(d);
    REQUIRE(all->type == JSON_ARRAY && all->len >= 62);
    for (size_t i = 0; i < all->len; i++) {
        const json_value *c = json_at(all, i);
        const char *name = json_get_str(json_get(c, "name"));
        const json_value *req = json_get(c, "request"), *want = json_get(c, "jinja2");
        int ok = 0;
        json_get_bool(json_get(want, "ok"), &ok);
        char err[256] = "";
        char *got = render_text(req->str, req->len, CHAT_RENDER_EXACT, err, sizeof err);
        if (ok) {
            if (!got) test_fail(__FILE__, __LINE__, "%s: %s", name, err);
            else check_same(name, got, json_get_str(json_get(want, "text")));
        } else {
            CHECKF(!got && err[0], "%s: jinja2 fails (%s) but we rendered", name, json_get_str(json_get(want, "error")));
        }
        free(got);
    }
    json_free(d);
}

/* Runs the node oracle on every conversation (ours and the official ones)
 * and compares with the default mode (content null renders as "", which is
 * also what @huggingface/jinja prints for null). */
TEST(chat_render_generated_vs_huggingface_jinja) {
    json_doc *d = load_json(CONVS), *off = load_json(DATA "chat_template_renders.json");
    REQUIRE(d && off);
    const json_value *all = json_root(d), *offa = json_root(off);
    buf in = {0};
    buf_putc(&in, '[');
    for (size_t i = 0; i < all->len; i++) {
        const json_value *c = json_at(all, i);
        buf_puts(&in, i ? ",{" : "{");
        buf_puts(&in, "\"request\":");
        json_write_value(&in, json_get(c, "request"), 0, 0);
        if (json_get(c, "oracle_request")) {
            buf_puts(&in, ",\"oracle_request\":");
            json_write_value(&in, json_get(c, "oracle_request"), 0, 0);
        }
        buf_putc(&in, '}');
    }
    for (size_t i = 0; i < offa->len; i++) {
        buf sub = {0};
        json_write_value(&sub, json_get(json_at(offa, i), "kwargs"), 0, 0);
        buf_puts(&in, ",{\"request\":");
        json_write_string(&in, sub.data, sub.len, 0);
        buf_putc(&in, '}');
        buf_free(&sub);
    }
    buf_putc(&in, ']');
    char inpath[256], outpath[256], cmd[1024];
    snprintf(inpath, sizeof inpath, "%s/chat_in.json", test_tmpdir());
    snprintf(outpath, sizeof outpath, "%s/chat_out.json", test_tmpdir());
    FILE *f = fopen(inpath, "wb");
    REQUIRE(f);
    fwrite(in.data, 1, in.len, f);
    fclose(f);
    buf_free(&in);
    snprintf(cmd, sizeof cmd, "node tests/node/render_chat.mjs %s %s %s", TEMPLATE, inpath, outpath);
    REQUIREF(test_run(cmd) == 0, "node oracle failed: %s", cmd);
    json_doc *res = load_json(outpath);
    REQUIRE(res);
    const json_value *r = json_root(res);
    REQUIRE(r->type == JSON_ARRAY && r->len == all->len + offa->len);
    int compared = 0;
    for (size_t i = 0; i < r->len; i++) {
        const json_value *want = json_at(r, i);
        const char *name;
        const json_value *req;
        int node_ok = 1;
        if (i < all->len) {
            const json_value *c = json_at(all, i);
            name = json_get_str(json_get(c, "name"));
            req = json_get(c, "request");
            json_get_bool(json_get(c, "node"), &node_ok);
        } else {
            name = json_get_str(json_get(json_at(offa, i - all->len), "name"));
            req = NULL;
        }
        if (!node_ok) continue;
        int ok = 0;
        json_get_bool(json_get(want, "ok"), &ok);
        CHECKF(ok, "%s: node oracle error %s", name, json_get_str(json_get(want, "error")));
        if (!ok) continue;
        char err[256] = "";
        char *got;
        if (req) {
            got = render_text(req->str, req->len, 0, err, sizeof err);
        } else {
            buf o = {0};
            got = chat_render(json_get(json_at(offa, i - all->len), "kwargs"), &o, err, sizeof err) == 0 ? buf_detach(&o) : NULL;
            buf_free(&o);
        }
        check_same(name, got, json_get_str(json_get(want, "text")));
        free(got);
        compared++;
    }
    CHECKF(compared >= 62, "only %d conversations compared with the node oracle", compared);
    json_free(res);
    json_free(d);
    json_free(off);
}
