/* fuzz_chat.c — libFuzzer target for the chat renderer and output parser.
 *
 * First byte even: the output parser. Byte 1 picks thinking on/off and seeds
 * the split points; the rest is the generated text, parsed whole and again in
 * random pieces. The two parses must give the same events (concatenated), and
 * every delta must be valid UTF-8 when the input is.
 * First byte odd: the renderer. The rest is read as JSON: an object is a
 * request, an array is a message list; both modes must not crash, and a
 * render that succeeds must start with [gMASK]<sop>. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "chat.h"
#include "json.h"

static const char TOOLS[] =
    "[{\"type\":\"function\",\"function\":{\"name\":\"get_weather\",\"parameters\":{\"type\":\"object\","
    "\"properties\":{\"city\":{\"type\":\"string\"},\"n\":{\"type\":\"integer\"}},\"required\":[\"city\"]}}},"
    "{\"name\":\"now\",\"parameters\":{}}]";

/* Events in one string; adjacent deltas of one kind merge, so a whole parse
 * and a split parse compare equal exactly when they say the same thing. */
typedef struct { buf all; int last; } sink;

static void on_event(void *user, const chat_event *ev) {
    sink *s = user;
    if (ev->kind == CHAT_EV_REASONING || ev->kind == CHAT_EV_CONTENT) {
        if (!ev->len) abort(); /* no empty deltas */
        if (s->last != (int)ev->kind + 1) buf_printf(&s->all, "\x01%d:", (int)ev->kind);
        buf_append(&s->all, ev->text, ev->len);
    } else if (ev->kind == CHAT_EV_TOOL_CALL) {
        buf_printf(&s->all, "\x01T:%s\x02%s", ev->name, ev->arguments_json);
        /* arguments are always a JSON object */
        json_doc *d = json_parse(ev->arguments_json, strlen(ev->arguments_json), NULL, 0);
        if (!d || json_root(d)->type != JSON_OBJECT) abort();
        json_free(d);
    } else {
        buf_puts(&s->all, "\x01E:");
        buf_append(&s->all, ev->text, ev->len);
    }
    s->last = (int)ev->kind + 1;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 2) return 0;
    if ((data[0] & 1) == 0) {
        int thinking = data[1] & 1;
        unsigned seed = data[1];
        const char *text = (const char *)data + 2;
        size_t n = size - 2;
        json_doc *tools = json_parse(TOOLS, sizeof TOOLS - 1, NULL, 0);
        sink a = {{0}, 0}, b = {{0}, 0};
        chat_parser *p = chat_parser_new(thinking, json_root(tools));
        chat_parser_feed(p, text, n, on_event, &a);
        chat_parser_finish(p, on_event, &a);
        chat_parser_free(p);
        p = chat_parser_new(thinking, json_root(tools));
        for (size_t i = 0; i < n;) {
            seed = seed * 1103515245u + 12345u;
            size_t k = 1 + (seed >> 16) % 9;
            if (k > n - i) k = n - i;
            chat_parser_feed(p, text + i, k, on_event, &b);
            i += k;
        }
        chat_parser_finish(p, on_event, &b);
        chat_parser_free(p);
        if (a.all.len != b.all.len || (a.all.len && memcmp(a.all.data, b.all.data, a.all.len) != 0)) abort();
        buf_free(&a.all);
        buf_free(&b.all);
        json_free(tools);
        return 0;
    }
    json_doc *d = json_parse((const char *)data + 1, size - 1, NULL, 0);
    if (!d) return 0;
    const json_value *root = json_root(d);
    for (unsigned flags = 0; flags < 2; flags++) {
        buf out = {0};
        char err[256];
        int rc;
        if (root->type == JSON_ARRAY) {
            chat_render_input in = {root, NULL, data[0] & 2 ? 1 : 0, data[0] & 4 ? 0 : -1, data[0] & 8 ? 0 : -1, flags};
            rc = chat_render_parts(&in, &out, err, sizeof err);
        } else {
            rc = chat_render_flags(root, flags, &out, err, sizeof err);
        }
        if (rc == 0 && (out.len < 12 || memcmp(out.data, "[gMASK]<sop>", 12) != 0)) abort();
        buf_free(&out);
    }
    /* the same JSON as a tools list for the parser */
    chat_parser *p = chat_parser_new(1, root);
    sink s = {{0}, 0};
    chat_parser_feed(p, "x</think><tool_call>f<arg_key>a</arg_key><arg_value>1</arg_value>", 66, on_event, &s);
    chat_parser_finish(p, on_event, &s);
    chat_parser_free(p);
    buf_free(&s.all);
    json_free(d);
    return 0;
}
