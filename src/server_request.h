/* server_request.h — decoding an API request body (OpenAI chat/completions,
 * Ollama chat/generate) into generation parameters and a rendered prompt.
 * Needs no model: the server calls it before it touches the engine, and the
 * fuzz target calls it on arbitrary bytes. Every problem is reported with the
 * request field it concerns, for a 400 the client can act on. */
#ifndef GLM_SERVER_REQUEST_H
#define GLM_SERVER_REQUEST_H

#include <stddef.h>
#include <stdint.h>

#include "buf.h"
#include "json.h"
#include "sampler.h"
#include "tokenizer.h"

typedef enum { API_OPENAI_CHAT, API_OPENAI_COMPLETION, API_OLLAMA_CHAT, API_OLLAMA_GENERATE } api_kind;

#define API_MAX_STOP 16
/* JSON values in one request body: a long chat is thousands, an Ollama "context"
 * array one per token (GLM-4.7-Flash: up to 202,752); the parse tree of this
 * many costs ~65 MB, against ~0.43 GB for 8 MiB of "[0,0,...". */
#define API_MAX_JSON_VALUES (1 << 20)

typedef struct {
    api_kind kind;
    json_doc *doc;               /* the parsed body (tools point into it) */
    char model[128];             /* the requested model name ("" if none) */
    int stream;                  /* OpenAI default off, Ollama default on */
    int include_usage;           /* OpenAI stream_options.include_usage */
    int max_tokens;              /* 0 = until the context is full */
    sampler_params sp;           /* defaults overridden by the request */
    int has_seed;                /* the request gave a seed */
    char *stop[API_MAX_STOP];    /* owned copies */
    int n_stop;
    int chat;                    /* output goes through the chat parser (else raw text) */
    int thinking;                /* the prompt ends in <think>: output starts as reasoning */
    const json_value *tools;     /* tools given to the parser (NULL: none, or tool_choice "none") */
    int force_tool;              /* tool_choice "required" or a named function: the answer starts with a call */
    char force_tool_name[128];   /* the named function ("" for "required") */
    int load_only;               /* Ollama: no prompt at all (a "load the model" request) */
    buf prompt;                  /* the prompt text */
    buf spans;                   /* request-text byte ranges of a rendered prompt (size_t pairs) */
    int rendered;                /* prompt came from the chat template (spans apply) */
    char param[64];              /* on error: the offending field, or "" */
} api_request;

/* Decodes body as a request of the given kind. defaults: the model's
 * sampling defaults. Returns 0, or -1 with a message in err naming the field
 * (and the field alone in r->param). r must be freed with api_request_free
 * either way. */
int api_request_decode(api_kind kind, const char *body, size_t len, const sampler_params *defaults, api_request *r,
                       char *err, size_t errlen);
void api_request_free(api_request *r);

/* Tokenizes r->prompt: rendered chat prompts keep special-token literals of
 * request text as plain text (a user cannot inject "<|assistant|>"); raw
 * prompts (/v1/completions, Ollama raw) are the client's own template text
 * and match special tokens. */
int api_encode_prompt(const tokenizer *t, const api_request *r, int32_t **ids, size_t *n_ids, char *err, size_t errlen);

#endif
