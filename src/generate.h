/* generate.h — text generation on a loaded model, shared by the CLI and the
 * server: the runtime (model + tokenizer + generation defaults) and the
 * decode loop with prompt-cache reuse, stop ids, stop strings and
 * cancellation. */
#ifndef GLM_GENERATE_H
#define GLM_GENERATE_H

#include <stddef.h>
#include <stdint.h>

#include "glm.h"
#include "sampler.h"
#include "tokenizer.h"

typedef struct {
    glm_model *model;
    tokenizer *tok;
    sampler_params defaults;      /* sampler defaults overridden by generation_config.json */
    int n_valid;                  /* ids below this are real tokens; above are padding rows */
    int32_t role_stop[2];         /* <|user|>, <|observation|> (-1 if absent): always stop (SPEC §7.5) */
    char dir[1024];
    char name[256];               /* the model directory's base name */
} glm_runtime;

int runtime_open(glm_runtime *rt, const char *dir, int n_threads, char *err, size_t errlen);
/* The same with every load option (--exact-matmul). */
int runtime_open_opts(glm_runtime *rt, const char *dir, const glm_load_options *opts, char *err, size_t errlen);
void runtime_close(glm_runtime *rt);
int runtime_is_stop_id(const glm_runtime *rt, int32_t id);

typedef enum { GEN_STOP, GEN_LENGTH, GEN_CANCELLED } gen_finish;

typedef struct {
    /* Each piece of generated text, complete UTF-8, stop strings withheld. */
    void (*on_text)(void *user, const char *text, size_t len);
    /* Polled once per token; nonzero ends generation (Ctrl-C, a client gone). */
    int (*cancelled)(void *user);
    void *user;
} gen_callbacks;

typedef struct {
    int max_tokens;               /* <= 0: until the context is full */
    const char *const *stop;      /* stop strings: generation ends before them */
    int n_stop;
    const int32_t *forced;        /* tests: emit these ids in order instead of sampling */
    int n_forced;
    /* reasoning_end: the id that ends the reasoning (</think>), or -1 when the
     * output starts as the answer. answer_prefix: the answer's first tokens,
     * emitted instead of sampled right after reasoning_end, or at once when it
     * is -1 (tool_choice "required" or a named function: "<tool_call>" [name]). */
    const int32_t *answer_prefix;
    int n_answer_prefix;
    int32_t reasoning_end;
} gen_options;

typedef struct {
    int n_prompt;                 /* prompt tokens */
    int n_cached;                 /* of those, reused from the session's cache */
    int n_generated;
    int n_reasoning;              /* of those, the ones up to and including reasoning_end (all if it never came) */
    double prefill_s, decode_s;
    gen_finish finish;
} gen_stats;

/* Generates a continuation of prompt in session s: reuses the longest
 * cached prefix, prefills the rest, then samples until a stop id, a stop
 * string, max_tokens, a full context or cancellation. Returns 0, or -1
 * with a message (prompt longer than the context, ...). */
int generate(glm_runtime *rt, glm_session *s, sampler *smp, const int32_t *prompt, int n_prompt, const gen_options *opt,
             const gen_callbacks *cb, gen_stats *st, char *err, size_t errlen);

#endif
