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

TEST(chat_render_errors_are_reported) {
    const char *bad[] = {
        "{\"messages\": {}}",
        "{\"messages\": [{\"role\": \"robot\", \"content\": \"x\"}]}",
        "{\"messages\": [{\"content\": \"x\"}]}",
        "{\"messages\": [\"hi\"]}",
        "{\"messages\": [], \"tools\": {}}",
        "{\"messages\": [], \"enable_thinking\": \"yes\"}",
        "{\"messages\": [{\"role\": \"assistant\", \"tool_calls\": {\"a\": 1}}]}",
        "{\"messages\": [{\"role\": \"assistant\", \"tool_calls\": [{\"function\": {\"name\": 3, \"arguments\": {}}}]}]}",
        "{\"messages\": [{\"role\": \"assistant\", \"tool_calls\": [{\"function\": {\"name\": \"f\", \"arguments\": \"[1]\"}}]}]}",
        "{\"messages\": [{\"role\": \"assistant\", \"tool_calls\": [{\"function\": {\"name\": \"f\", \"arguments\": \"{bad\"}}]}]}",
        "{\"messages\": [{\"role\": \"assistant\", \"tool_calls\": [{\"function\": {\"name\": \"f\"}}]}]}",
        "{\"messages\": [{\"role\": \"tool\", \"content\": 5}]}",
        "[]",
        "{}",
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        char err[256] = "";
        char *got = render_text(bad[i], strlen(bad[i]), 0, err, sizeof err);
        CHECKF(!got && strstr(err, "chat template"), "accepted %s", bad[i]);
        free(got);
    }
    /* template-exact mode: a null tool content is the template's TypeError */
    const char *t = "{\"messages\": [{\"role\": \"tool\", \"content\": null}]}";
    char err[256] = "";
    char *got = render_text(t, strlen(t), CHAT_RENDER_EXACT, err, sizeof err);
    CHECK(!got && err[0]);
    free(got);
    got = render_text(t, strlen(t), 0, err, sizeof err);
    CHECK_STR(got, "[gMASK]<sop><|observation|><tool_response></tool_response>");
    free(got);
}

/* str() of a dict escapes what Python's str.isprintable() rejects: format
 * characters outside the BMP's common ones and noncharacters included
 * (expected text from repr() in Python 3.11 and 3.12). */
TEST(chat_render_repr_escapes_format_chars) {
    const char *req = "{\"messages\": [{\"role\": \"user\", \"content\": {\"s\": "
                      "\"\\u0890\\u0891\\u08e2\\ud804\\udcbd\\ud804\\udccd\\ud80d\\udc30\\ud80d\\udc38\\ud82f\\udca0"
                      "\\ud834\\udd73\\ud834\\udd7a\\ufdd0\\uffff\\ud83f\\udffe\\ud834\\udd72\\u00e9\"}}]}";
    char err[256] = "";
    char *got = render_text(req, strlen(req), 0, err, sizeof err);
    CHECK_STR(got, "[gMASK]<sop><|user|>{'s': '\\u0890\\u0891\\u08e2\\U000110bd\\U000110cd\\U00013430\\U00013438"
                   "\\U0001bca0\\U0001d173\\U0001d17a\\ufdd0\\uffff\\U0001fffe\xF0\x9D\x85\xB2\xC3\xA9'}");
    free(got);
}

/* Python's repr(float) checked against /usr/bin/python3 itself on awkward values. */
TEST(chat_py_float_repr_matches_python) {
    double vals[400];
    int n = 0;
    double fixed[] = {1.5, 100000.0, 1e16, 1e15, 1e-4, 1e-5, 0.1, 0.3, 5e-324, 1.7976931348623157e308, 2.0, 1e22,
                      9007199254740993.0, 123456789.125, 0.000123, 1e-7, 4.35, 2.675, 1e300, 8.988465674311579e307};
    for (size_t i = 0; i < sizeof fixed / sizeof *fixed; i++) { vals[n++] = fixed[i]; vals[n++] = -fixed[i]; }
    unsigned long long x = 0x9E3779B97F4A7C15ull;
    while (n < 400) {
        x ^= x << 13; x ^= x >> 7; x ^= x << 17;
        double d;
        if (n % 3 == 0) { unsigned long long bits = x & 0x7FEFFFFFFFFFFFFFull; memcpy(&d, &bits, 8); }
        else if (n % 3 == 1) d = ldexp(1.0, (int)(x % 200) - 100); /* powers of two: lopsided intervals */
        else d = (double)(x % 1000000) / 1000.0 * pow(10.0, (double)((int)(x >> 40) % 40 - 20));
        vals[n++] = d;
    }
    char path[256], cmd[600];
    snprintf(path, sizeof path, "%s/floats.txt", test_tmpdir());
    FILE *f = fopen(path, "w");
    REQUIRE(f);
    for (int i = 0; i < n; i++) fprintf(f, "%a\n", vals[i]);
    fclose(f);
    snprintf(cmd, sizeof cmd,
             "%s -c \"import sys\nfor l in open('%s'): print(repr(float.fromhex(l.strip())))\" > %s/floats_py.txt",
             test_python(), path, test_tmpdir());
    REQUIRE(test_run(cmd) == 0);
    snprintf(path, sizeof path, "%s/floats_py.txt", test_tmpdir());
    char *want = test_read_file(path, NULL);
    REQUIRE(want);
    char *line = want;
    for (int i = 0; i < n; i++) {
        char *nl = strchr(line, '\n');
        REQUIRE(nl);
        *nl = 0;
        buf b = {0};
        chat_py_float_repr(&b, vals[i]);
        CHECKF(strcmp(b.data, line) == 0, "%a: got %s, Python %s", vals[i], b.data, line);
        buf_free(&b);
        line = nl + 1;
    }
    free(want);
}

/* ---------------------------------------------------------------- parser */

typedef struct {
    buf reasoning, content, calls, errors; /* calls: "name(args)\n" per call */
    int n_events, bad_delta, bad_index, next_index;
    chat_event_kind last;
} collect;

static int utf8_ok(const char *s, size_t n) {
    for (size_t i = 0; i < n;) {
        unsigned char c = (unsigned char)s[i];
        size_t l = c < 0x80 ? 1 : (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : (c >> 3) == 30 ? 4 : 0;
        if (!l || i + l > n) return 0;
        for (size_t k = 1; k < l; k++)
            if (((unsigned char)s[i + k] & 0xC0) != 0x80) return 0;
        i += l;
    }
    return 1;
}

static void on_event(void *user, const chat_event *ev) {
    collect *c = user;
    c->n_events++;
    switch (ev->kind) {
    case CHAT_EV_REASONING:
    case CHAT_EV_CONTENT: {
        buf *b = ev->kind == CHAT_EV_REASONING ? &c->reasoning : &c->content;
        /* deltas are non-empty, whole UTF-8, and a segment never starts with whitespace */
        if (!ev->len || !utf8_ok(ev->text, ev->len)) c->bad_delta++;
        if (c->last != ev->kind && strchr(" \t\n\r", ev->text[0])) c->bad_delta++;
        buf_append(b, ev->text, ev->len);
        break;
    }
    case CHAT_EV_TOOL_CALL:
        if (ev->index != c->next_index++) c->bad_index++;
        buf_printf(&c->calls, "%s(%s)\n", ev->name, ev->arguments_json);
        break;
    case CHAT_EV_ERROR:
        buf_append(&c->errors, ev->text, ev->len);
        buf_putc(&c->errors, '\n');
        break;
    }
    c->last = ev->kind;
}

static void collect_free(collect *c) {
    buf_free(&c->reasoning); buf_free(&c->content); buf_free(&c->calls); buf_free(&c->errors);
}

static const char *S(buf *b) { return b->data ? b->data : ""; }

static const char *WEATHER_TOOLS =
    "[{\"type\": \"function\", \"function\": {\"name\": \"get_weather\", \"parameters\": {\"type\": \"object\", "
    "\"properties\": {\"city\": {\"type\": \"string\"}, \"unit\": {\"type\": \"string\"}}, \"required\": [\"city\"]}}},"
    "{\"type\": \"function\", \"function\": {\"name\": \"calc\", \"parameters\": {\"type\": \"object\", "
    "\"properties\": {\"expr\": {\"type\": \"string\"}, \"precision\": {\"type\": \"integer\"}, \"scale\": {\"type\": \"number\"}, "
    "\"exact\": {\"type\": \"boolean\"}, \"note\": {\"type\": [\"string\", \"null\"]}}, \"required\": [\"expr\"]}}},"
    "{\"name\": \"now\", \"parameters\": {\"type\": \"object\", \"properties\": {}}}]";

/* mode 0: whole text; 1: one byte at a time; 2+: pseudo-random splits. */
static void parse_with(const char *text, int thinking, int mode, collect *c) {
    json_doc *tools = parse_str(WEATHER_TOOLS, strlen(WEATHER_TOOLS));
    memset(c, 0, sizeof *c);
    c->last = (chat_event_kind)-1;
    chat_parser *p = chat_parser_new(thinking, json_root(tools));
    json_free(tools); /* the parser keeps its own copy */
    size_t n = strlen(text);
    if (mode == 0) chat_parser_feed(p, text, n, on_event, c);
    else {
        unsigned seed = (unsigned)mode * 2654435761u;
        for (size_t i = 0; i < n;) {
            size_t k = 1;
            if (mode > 1) { seed = seed * 1103515245u + 12345u; k = 1 + (seed >> 16) % 7; }
            if (k > n - i) k = n - i;
            chat_parser_feed(p, text + i, k, on_event, c);
            i += k;
        }
    }
    chat_parser_finish(p, on_event, c);
    chat_parser_free(p);
}

typedef struct {
    const char *name, *text;
    int thinking;
    const char *reasoning, *content, *calls, *errors;
} parse_case;

static const parse_case PARSE_CASES[] = {
    {"spec-7.7-output-1", "The user wants the current weather in Paris; call get_weather.</think><tool_call>get_weather<arg_key>city</arg_key><arg_value>Paris</arg_value><arg_key>unit</arg_key><arg_value>celsius</arg_value></tool_call>", 1,
     "The user wants the current weather in Paris; call get_weather.", "", "get_weather({\"city\":\"Paris\",\"unit\":\"celsius\"})\n", ""},
    {"spec-7.7-output-2", "I have the data.</think>It is 18 \xC2\xB0""C and cloudy in Paris right now.", 1,
     "I have the data.", "It is 18 \xC2\xB0""C and cloudy in Paris right now.", "", ""},
    {"thinking-off-plain", "Hello there!\nSecond line.", 0, "", "Hello there!\nSecond line.", "", ""},
    {"thinking-off-leading-think", "  <think>\nquick thought\n</think>\n\nAnswer.", 0, "quick thought", "Answer.", "", ""},
    {"thinking-on-leading-think", "<think>r</think>c", 1, "r", "c", "", ""},
    {"stray-endthink-in-content", "\n</think>Hi", 0, "", "Hi", "", ""},
    {"rethinking-stays-content", "r</think>a</think>b <think>x", 1, "r", "a</think>b <think>x", "", ""},
    {"trim-boundaries", "\n  reason \n inner  \n</think>\n\n answer \n\n more \n", 1, "reason \n inner", "answer \n\n more", "", ""},
    {"zero-arg-call", "ok</think><tool_call>now</tool_call>", 1, "ok", "", "now({})\n", ""},
    {"zero-arg-call-newline", "<tool_call>now\n</tool_call>", 0, "", "", "now({})\n", ""},
    {"two-calls", "r</think>Let me check.\n<tool_call>get_weather<arg_key>city</arg_key><arg_value>Paris</arg_value></tool_call>\n<tool_call>get_weather<arg_key>city</arg_key><arg_value>Rome</arg_value></tool_call>", 1,
     "r", "Let me check.", "get_weather({\"city\":\"Paris\"})\nget_weather({\"city\":\"Rome\"})\n", ""},
    {"call-ends-reasoning", "thinking about it<tool_call>get_weather<arg_key>city</arg_key><arg_value>Oslo</arg_value></tool_call>", 1,
     "thinking about it", "", "get_weather({\"city\":\"Oslo\"})\n", ""},
    {"name-trailing-newline", "<tool_call>get_weather\n<arg_key>city</arg_key>\n<arg_value>Paris</arg_value>\n</tool_call>", 0,
     "", "", "get_weather({\"city\":\"Paris\"})\n", ""},
    {"value-typing", "<tool_call>calc<arg_key>expr</arg_key><arg_value> 2 < 3 && x </arg_value><arg_key>precision</arg_key><arg_value>3</arg_value><arg_key>scale</arg_key><arg_value>0.50</arg_value><arg_key>exact</arg_key><arg_value>true</arg_value><arg_key>extra</arg_key><arg_value>{\"a\": [1, \"\xC3\xA9\"]}</arg_value><arg_key>note</arg_key><arg_value>123</arg_value></tool_call>", 0,
     "", "", "calc({\"expr\":\" 2 < 3 && x \",\"precision\":3,\"scale\":0.50,\"exact\":true,\"extra\":{\"a\":[1,\"\xC3\xA9\"]},\"note\":\"123\"})\n", ""},
    {"value-json-fallback", "<tool_call>calc<arg_key>expr</arg_key><arg_value>1</arg_value><arg_key>precision</arg_key><arg_value>three</arg_value><arg_key>other</arg_key><arg_value></arg_value></tool_call>", 0,
     "", "", "calc({\"expr\":\"1\",\"precision\":\"three\",\"other\":\"\"})\n", ""},
    {"undeclared-tool-closed", "<tool_call>search<arg_key>q</arg_key><arg_value>cats</arg_value><arg_key>n</arg_key><arg_value>5</arg_value></tool_call>", 0,
     "", "", "search({\"q\":\"cats\",\"n\":5})\n", ""},
    {"repair-missing-end-value", "<tool_call>get_weather<arg_key>city</arg_key><arg_value>Paris\n<arg_key>unit</arg_key><arg_value>celsius</arg_value></tool_call>", 0,
     "", "", "get_weather({\"city\":\"Paris\",\"unit\":\"celsius\"})\n", ""},
    {"repair-missing-arg-key", "<tool_call>get_weather<arg_key>city</arg_key><arg_value>Paris</arg_value>unit</arg_key><arg_value>celsius</arg_value></tool_call>", 0,
     "", "", "get_weather({\"city\":\"Paris\",\"unit\":\"celsius\"})\n", ""},
    {"repair-missing-end-key", "<tool_call>get_weather<arg_key>city<arg_value>Paris</arg_value></tool_call>", 0,
     "", "", "get_weather({\"city\":\"Paris\"})\n", ""},
    {"repair-missing-value-tag", "<tool_call>get_weather<arg_key>city</arg_key>Paris</arg_value></tool_call>", 0,
     "", "", "get_weather({\"city\":\"Paris\"})\n", ""},
    {"repair-missing-first-key-tag", "<tool_call>get_weather\ncity</arg_key><arg_value>Paris</arg_value></tool_call>", 0,
     "", "", "get_weather({\"city\":\"Paris\"})\n", ""},
    {"eos-missing-end-call-accepted", "r</think><tool_call>get_weather<arg_key>city</arg_key><arg_value>Paris</arg_value>\n", 1,
     "r", "", "get_weather({\"city\":\"Paris\"})\n", ""},
    {"eos-missing-end-call-and-value", "<tool_call>get_weather<arg_key>city</arg_key><arg_value>Paris\n", 0,
     "", "", "get_weather({\"city\":\"Paris\"})\n", ""},
    {"eos-undeclared-tool-rejected", "<tool_call>search<arg_key>q</arg_key><arg_value>x</arg_value>", 0,
     "", "<tool_call>search<arg_key>q</arg_key><arg_value>x</arg_value>", "", "tool call cut off at the end of output and names no declared tool\n"},
    {"eos-missing-required-rejected", "<tool_call>get_weather<arg_key>unit</arg_key><arg_value>c</arg_value>", 0,
     "", "<tool_call>get_weather<arg_key>unit</arg_key><arg_value>c</arg_value>", "", "tool call cut off at the end of output and lacks a required argument\n"},
    {"eos-bare-open", "Sure.<tool_call>", 0, "", "Sure.<tool_call>", "", "tool call: no function name\n"},
    {"unclosed-then-next-call", "<tool_call>now<tool_call>get_weather<arg_key>city</arg_key><arg_value>Rome</arg_value></tool_call>", 0,
     "", "", "now({})\nget_weather({\"city\":\"Rome\"})\n", ""},
    {"malformed-closed-call", "<tool_call>f<arg_value>x</arg_value></tool_call> after", 0,
     "", "<tool_call>f<arg_value>x</arg_value></tool_call>after", "", "tool call: value without a key\n"},
    {"content-after-call", "<tool_call>now</tool_call>\n\nDone.", 0, "", "Done.", "now({})\n", ""},
    {"partial-tag-at-eos", "answer <tool_", 0, "", "answer <tool_", "", ""},
    {"partial-endthink-at-eos", "reason </thi", 1, "reason </thi", "", "", ""},
    {"unicode-split", "caf\xC3\xA9 \xF0\x9F\x9A\x80 \xE4\xB8\xAD</think>\xE6\x96\x87 \xF0\x9F\x98\x80", 1,
     "caf\xC3\xA9 \xF0\x9F\x9A\x80 \xE4\xB8\xAD", "\xE6\x96\x87 \xF0\x9F\x98\x80", "", ""},
    {"duplicate-keys-last-wins", "<tool_call>get_weather<arg_key>city</arg_key><arg_value>A</arg_value><arg_key>city</arg_key><arg_value>B</arg_value></tool_call>", 0,
     "", "", "get_weather({\"city\":\"B\"})\n", ""},
    {"empty-output", "", 1, "", "", "", ""},
    {"whitespace-only", " \n\t ", 1, "", "", "", ""},
    {"only-reasoning-cut", "still thinking ", 1, "still thinking", "", "", ""},
    {"lt-in-text", "a < b and <b>bold</b> <tool", 0, "", "a < b and <b>bold</b> <tool", "", ""},
};

TEST(chat_parse_cases_whole_and_streamed) {
    for (size_t i = 0; i < sizeof PARSE_CASES / sizeof *PARSE_CASES; i++) {
        const parse_case *pc = &PARSE_CASES[i];
        for (int mode = 0; mode < 6; mode++) {
            collect c;
            parse_with(pc->text, pc->thinking, mode, &c);
            CHECKF(!strcmp(S(&c.reasoning), pc->reasoning), "%s/%d reasoning: [%s] want [%s]", pc->name, mode, S(&c.reasoning), pc->reasoning);
            CHECKF(!strcmp(S(&c.content), pc->content), "%s/%d content: [%s] want [%s]", pc->name, mode, S(&c.content), pc->content);
            CHECKF(!strcmp(S(&c.calls), pc->calls), "%s/%d calls: [%s] want [%s]", pc->name, mode, S(&c.calls), pc->calls);
            CHECKF(!strcmp(S(&c.errors), pc->errors), "%s/%d errors: [%s] want [%s]", pc->name, mode, S(&c.errors), pc->errors);
            CHECKF(!c.bad_delta && !c.bad_index, "%s/%d: %d bad deltas, %d bad indices", pc->name, mode, c.bad_delta, c.bad_index);
            collect_free(&c);
        }
    }
}

/* A parameter whose schema admits a string through anyOf/oneOf (pydantic's
 * Optional[str]) keeps its raw text, as "type": ["string", "null"] does. */
TEST(chat_parse_any_of_string_stays_string) {
    const char *tools = "[{\"type\": \"function\", \"function\": {\"name\": \"lookup\", \"parameters\": {\"type\": \"object\", "
                        "\"properties\": {\"zip\": {\"anyOf\": [{\"type\": \"string\"}, {\"type\": \"null\"}], \"default\": null}, "
                        "\"tag\": {\"oneOf\": [{\"type\": \"integer\"}, {\"type\": \"string\"}]}, "
                        "\"n\": {\"anyOf\": [{\"type\": \"integer\"}, {\"type\": \"null\"}]}}}}}]";
    const char *out = "<tool_call>lookup<arg_key>zip</arg_key><arg_value>12345</arg_value><arg_key>tag</arg_key>"
                      "<arg_value>true</arg_value><arg_key>n</arg_key><arg_value>7</arg_value></tool_call>";
    json_doc *t = parse_str(tools, strlen(tools));
    chat_parser *p = chat_parser_new(0, json_root(t));
    json_free(t);
    collect c = {0};
    c.last = (chat_event_kind)-1;
    chat_parser_feed(p, out, strlen(out), on_event, &c);
    chat_parser_finish(p, on_event, &c);
    chat_parser_free(p);
    CHECK_STR(S(&c.calls), "lookup({\"zip\":\"12345\",\"tag\":\"true\",\"n\":7})\n");
    collect_free(&c);
}

/* Deltas stream: text is released as soon as it cannot be part of a tag or
 * trailing whitespace. */
TEST(chat_parse_streams_early) {
    json_doc *tools = parse_str(WEATHER_TOOLS, strlen(WEATHER_TOOLS));
    chat_parser *p = chat_parser_new(1, json_root(tools));
    collect c = {0};
    c.last = (chat_event_kind)-1;
    chat_parser_feed(p, "Let me think", 12, on_event, &c);
    CHECK_STR(S(&c.reasoning), "Let me think");
    chat_parser_feed(p, " more </th", 10, on_event, &c);
    CHECK_STR(S(&c.reasoning), "Let me think more");
    chat_parser_feed(p, "ink>\n\nThe answer", 16, on_event, &c);
    CHECK_STR(S(&c.content), "The answer");
    chat_parser_feed(p, " is <", 5, on_event, &c);
    CHECK_STR(S(&c.content), "The answer is");
    chat_parser_feed(p, "b>", 2, on_event, &c);
    CHECK_STR(S(&c.content), "The answer is <b>");
    chat_parser_feed(p, "<tool_call>get_weather<arg_key>city</arg_key><arg_value>Paris</arg_value></tool_call>", 85, on_event, &c);
    CHECK_STR(S(&c.calls), "get_weather({\"city\":\"Paris\"})\n");
    chat_parser_finish(p, on_event, &c);
    chat_parser_free(p);
    json_free(tools);
    collect_free(&c);
}

/* Random texts made of tag fragments: every split gives what the whole text gives. */
TEST(chat_parse_random_splits_agree) {
    static const char *frags[] = {"<think>", "</think>", "<tool_call>", "</tool_call>", "<arg_key>", "</arg_key>",
                                  "<arg_value>", "</arg_value>", "get_weather", "city", "Paris", " ", "\n", "x",
                                  "\xC3\xA9", "\xF0\x9F\x98\x80", "<", "</", "{\"a\":1}", "now", "calc", "expr"};
    unsigned seed = 12345;
    for (int it = 0; it < 300; it++) {
        char text[600];
        size_t n = 0;
        seed = seed * 1103515245u + 12345u;
        int parts = 1 + (int)((seed >> 16) % 25);
        for (int k = 0; k < parts; k++) {
            seed = seed * 1103515245u + 12345u;
            const char *f = frags[(seed >> 16) % (sizeof frags / sizeof *frags)];
            size_t l = strlen(f);
            if (n + l >= sizeof text) break;
            memcpy(text + n, f, l);
            n += l;
        }
        text[n] = 0;
        int thinking = it & 1;
        collect whole;
        parse_with(text, thinking, 0, &whole);
        for (int mode = 1; mode < 4; mode++) {
            collect c;
            parse_with(text, thinking, mode, &c);
            CHECKF(!strcmp(S(&c.reasoning), S(&whole.reasoning)) && !strcmp(S(&c.content), S(&whole.content)) &&
                       !strcmp(S(&c.calls), S(&whole.calls)) && !strcmp(S(&c.errors), S(&whole.errors)),
                   "split %d differs on [%s]", mode, text);
            CHECKF(!c.bad_delta, "bad delta on [%s]", text);
            collect_free(&c);
        }
        collect_free(&whole);
    }
}
