/* json.h — a small JSON reader and writer for untrusted input (config files,
 * safetensors headers, HTTP request bodies, tokenizer.json).
 *
 * The reader builds an immutable tree in one arena; object members keep the
 * order they had in the text (the chat template serialises tools in the
 * caller's key order). Numbers keep their source text next to their double
 * value so a writer can reproduce integers exactly. Depth is bounded. */
#ifndef GLM_JSON_H
#define GLM_JSON_H

#include <stddef.h>
#include <stdint.h>
#include "buf.h"

typedef enum { JSON_NULL, JSON_BOOL, JSON_NUMBER, JSON_STRING, JSON_ARRAY, JSON_OBJECT } json_type;

typedef struct json_value json_value;
typedef struct json_member json_member;

struct json_value {
    json_type type;
    int boolean;              /* JSON_BOOL */
    double number;            /* JSON_NUMBER */
    const char *str;          /* JSON_STRING: decoded UTF-8, NUL-terminated (may hold \0 inside);
                                 JSON_NUMBER: the number's source text, NUL-terminated */
    size_t len;               /* JSON_STRING/JSON_NUMBER: byte length of str;
                                 JSON_ARRAY/JSON_OBJECT: element count */
    json_value *items;        /* JSON_ARRAY */
    json_member *members;     /* JSON_OBJECT, in source order */
};

struct json_member {
    const char *key;          /* decoded, NUL-terminated */
    size_t key_len;
    json_value value;
};

typedef struct json_doc json_doc;

/* Parses text[0..len). Returns NULL on error and writes a message with the
 * byte offset into err. The text need not be NUL-terminated. */
json_doc *json_parse(const char *text, size_t len, char *err, size_t errlen);
/* The same, refusing a document of more than max_values values (an HTTP body:
 * each value costs ~50-100 bytes of tree while parsing: 8 MiB of "[0,0,..." took 0.43 GB). */
json_doc *json_parse_max(const char *text, size_t len, size_t max_values, char *err, size_t errlen);
const json_value *json_root(const json_doc *doc);
void json_free(json_doc *doc);

/* Lookups; NULL when absent or when v is not an object/array. For duplicate
 * keys the last one wins, as in Python's json. */
const json_value *json_get(const json_value *obj, const char *key);
const json_value *json_at(const json_value *arr, size_t i);

/* Typed accessors: return 1 when v exists and has the type, else 0. */
int json_is_int(const json_value *v);              /* a number with an integral value */
int json_get_int64(const json_value *v, int64_t *out);
int json_get_double(const json_value *v, double *out);
int json_get_bool(const json_value *v, int *out);
const char *json_get_str(const json_value *v);     /* NULL unless a string */

/* Writing. json_write_string escapes as Python's json.dumps does: with
 * ascii_only=0 (ensure_ascii=False) non-ASCII is written raw; with 1, as \uXXXX.
 * json_write_value serialises a tree with Python's separators ", " and ": "
 * when pretty_separators is 1, or compactly (",", ":") when 0. */
void json_write_string(buf *b, const char *s, size_t len, int ascii_only);
void json_write_value(buf *b, const json_value *v, int pretty_separators, int ascii_only);

#endif
