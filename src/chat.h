/* chat.h — GLM-4.7 chat formatting: the prompt renderer (chat_render.c) and the
 * streaming output parser (chat_parse.c). SPEC §7.
 *
 * The renderer reproduces the official chat_template.jinja as transformers runs
 * it (jinja2, trim_blocks + lstrip_blocks, tojson = json.dumps(ensure_ascii=False))
 * byte for byte, with Python value semantics (float repr, dict key order,
 * str.strip's whitespace set). Deliberate, documented deviations:
 *   - `content: null` renders as an empty string (the template prints "None";
 *     SPEC §7.3.5) unless CHAT_RENDER_EXACT is given;
 *   - tool-call `arguments` may be a JSON string of an object (decoded first;
 *     an empty or blank string means {}), SPEC §9.13;
 *   - an unknown role or a wrong field type is an error (the template skips
 *     unknown roles silently), and a flag set to JSON null counts as absent.
 *
 * Prompt safety (SPEC §3): the rendered prompt mixes the template's markers
 * (<|user|>, <think>, ...) with request text that may contain the same
 * literals. With a non-NULL spans buffer the renderer records where every
 * piece of request text went (message contents incl. list text parts,
 * reasoning, tool-call names, argument keys and values, tool results, the
 * tools JSON of the preamble); tokenizer_encode_guarded() (tokenizer.h) then
 * keeps special-token literals inside those ranges as plain text. Use it for
 * API requests: a user cannot inject "<|assistant|>".
 *
 * The parser turns generated text (special tokens arrive as their literal text,
 * split anywhere) into reasoning deltas, content deltas and tool calls. */
#ifndef GLM_CHAT_H
#define GLM_CHAT_H

#include <stddef.h>
#include "buf.h"
#include "json.h"

/* ---- renderer ---- */

enum {
    CHAT_RENDER_EXACT = 1, /* render null content as the template does ("None"; error for tool) */
};

/* Flag values for chat_render_parts: -1 = not given (the template's "undefined"). */
typedef struct {
    const json_value *messages;   /* array (required) */
    const json_value *tools;      /* array, or NULL */
    int add_generation_prompt;    /* 0/1 */
    int enable_thinking;          /* -1, 0, 1 */
    int clear_thinking;           /* -1, 0, 1 */
    unsigned flags;               /* CHAT_RENDER_* */
    /* Optional (NULL = not wanted). The renderer appends size_t pairs
     * (offset, length), one per piece of request text written, in increasing
     * order and non-overlapping (pieces may be adjacent); offsets count from
     * out->len as it was when the call began, so they index the text this
     * call appends. Empty pieces get no pair. After an error the pairs
     * appended so far describe the partial render. Read them as
     * (const size_t *)spans->data, count = spans->len / (2 * sizeof(size_t)). */
    buf *spans;
} chat_render_input;

/* request = {"messages": [...], "tools": [...], "enable_thinking": bool,
 * "add_generation_prompt": bool, "clear_thinking": bool}. Appends the prompt
 * text to out. Returns 0 on success; on error returns -1, writes a message to
 * err and leaves out's previous contents plus possibly a partial render. */
int chat_render(const json_value *request, buf *out, char *err, size_t errlen);
int chat_render_flags(const json_value *request, unsigned flags, buf *out, char *err, size_t errlen);
int chat_render_parts(const chat_render_input *in, buf *out, char *err, size_t errlen);
/* chat_render_flags that also appends the request-text spans (see
 * chat_render_input.spans; spans may be NULL). */
int chat_render_spans(const json_value *request, unsigned flags, buf *out, buf *spans, char *err, size_t errlen);

/* Python-compatible serialisation used by the template (exposed for tests and
 * for the server, which echoes tool-call arguments the same way).
 * chat_py_dumps: json.dumps(v, ensure_ascii=False).
 * chat_py_float_repr: repr(float(x)) (shortest round-trip; "inf", "nan"). */
void chat_py_dumps(buf *out, const json_value *v);
void chat_py_float_repr(buf *out, double x);

/* ---- streaming output parser ---- */

typedef enum { CHAT_EV_REASONING, CHAT_EV_CONTENT, CHAT_EV_TOOL_CALL, CHAT_EV_ERROR } chat_event_kind;

typedef struct {
    chat_event_kind kind;
    const char *text;            /* REASONING/CONTENT: the delta; ERROR: message; TOOL_CALL: raw call text */
    size_t len;
    const char *name;            /* TOOL_CALL: function name (NUL-terminated) */
    const char *arguments_json;  /* TOOL_CALL: JSON object text, compact separators */
    int index;                   /* TOOL_CALL: 0, 1, ... within this output */
} chat_event;

typedef void (*chat_event_fn)(void *user, const chat_event *ev);
typedef struct chat_parser chat_parser;

/* thinking: 1 when the prompt ended with <think> (output starts in reasoning).
 * tools: the request's tools array (used for value typing and for the
 * end-of-stream repair check); may be NULL. The parser copies what it needs,
 * so tools may be freed after this call. Returns NULL only on out-of-memory. */
chat_parser *chat_parser_new(int thinking, const json_value *tools);
void chat_parser_feed(chat_parser *p, const char *text, size_t len, chat_event_fn fn, void *user);
void chat_parser_finish(chat_parser *p, chat_event_fn fn, void *user);
void chat_parser_free(chat_parser *p);

#endif
