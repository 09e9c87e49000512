/* test_json.c — the JSON reader and writer. */
#include "test.h"
#include "json.h"

static json_doc *parse(const char *s) {
    char err[256];
    return json_parse(s, strlen(s), err, sizeof err);
}

TEST(json_parses_nested_values_in_order) {
    json_doc *d = parse(" {\"b\": [1, 2.5, -3e2, true, false, null], \"a\": {\"x\": \"y\"}, \"b2\": \"\\u00e9\\ud83d\\ude00\"} ");
    REQUIRE(d);
    const json_value *r = json_root(d);
    CHECK_EQ_INT(r->type, JSON_OBJECT);
    CHECK_STR(r->members[0].key, "b");
    CHECK_STR(r->members[1].key, "a");
    const json_value *b = json_get(r, "b");
    CHECK_EQ_INT(b->len, 6);
    int64_t i;
    CHECK(json_get_int64(json_at(b, 0), &i) && i == 1);
    CHECK(!json_is_int(json_at(b, 1)));
    CHECK(json_at(b, 2)->number == -300.0);
    CHECK_STR(json_at(b, 2)->str, "-3e2");
    CHECK_STR(json_get_str(json_get(json_get(r, "a"), "x")), "y");
    CHECK_STR(json_get_str(json_get(r, "b2")), "\xC3\xA9\xF0\x9F\x98\x80");
    json_free(d);
}

TEST(json_rejects_malformed_input) {
    const char *bad[] = {"", "{", "[1,]", "{\"a\" 1}", "01", "1.", "-", "\"abc", "\"\\x\"", "tru", "[1] 2",
                         "{\"a\":1,}", "\"\x01\"", "\"\xff\"", "nul", "[\"\\u12\"]", "{1:2}"};
    for (size_t k = 0; k < sizeof bad / sizeof *bad; k++) {
        char err[256] = "";
        json_doc *d = json_parse(bad[k], strlen(bad[k]), err, sizeof err);
        CHECKF(!d, "accepted malformed input %s", bad[k]);
        CHECKF(strstr(err, "JSON error"), "no message for %s", bad[k]);
        json_free(d);
    }
}

TEST(json_limits_nesting_depth) {
    char s[2001];
    memset(s, '[', 1000);
    memset(s + 1000, ']', 1000);
    s[2000] = 0;
    char err[256];
    json_doc *d = json_parse(s, 2000, err, sizeof err);
    CHECK(!d);
    CHECK(strstr(err, "nesting"));
}

TEST(json_writes_python_style) {
    json_doc *d = parse("{\"name\": \"caf\\u00e9 \\\"q\\\"\\n\", \"v\": [1, {\"k\": null}], \"t\": \"\\u0001\"}");
    REQUIRE(d);
    buf b = {0};
    json_write_value(&b, json_root(d), 1, 0);
    CHECK_STR(b.data, "{\"name\": \"caf\xC3\xA9 \\\"q\\\"\\n\", \"v\": [1, {\"k\": null}], \"t\": \"\\u0001\"}");
    buf_clear(&b);
    json_write_value(&b, json_root(d), 0, 1);
    CHECK_STR(b.data, "{\"name\":\"caf\\u00e9 \\\"q\\\"\\n\",\"v\":[1,{\"k\":null}],\"t\":\"\\u0001\"}");
    buf_free(&b);
    json_free(d);
}

TEST(json_ascii_only_escapes_del) {
    buf b = {0};
    json_write_string(&b, "a\x7f", 2, 1);
    CHECK_STR(b.data, "\"a\\u007f\"");
    buf_clear(&b);
    json_write_string(&b, "a\x7f", 2, 0);
    CHECK_STR(b.data, "\"a\x7f\"");
    buf_free(&b);
}

/* json_parse_max counts every value, containers included: [1,[2,3]] is 5 */
TEST(json_parse_max_values) {
    char err[200];
    json_doc *d = json_parse_max("[1,[2,3]]", 9, 5, err, sizeof err);
    CHECK(d != NULL);
    json_free(d);
    CHECK(json_parse_max("[1,[2,3]]", 9, 4, err, sizeof err) == NULL && strstr(err, "more than 4 values"));
}
