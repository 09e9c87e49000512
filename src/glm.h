/* glm.h — the engine's public boundary: load a model, open sessions (a latent
 * KV cache plus scratch), run the forward pass. The CLI and the server use
 * only this header (and the text-side headers: tokenizer.h, chat.h,
 * sampler.h); they never touch tensors. */
#ifndef GLM_GLM_H
#define GLM_GLM_H

#include <stddef.h>
#include <stdint.h>

#include "config.h"

typedef struct glm_model glm_model;
typedef struct glm_session glm_session;

typedef struct {
    int n_threads;            /* 0 = all online CPUs */
    int exact_matmul;         /* quantized weights: keep f32 activations (else int8 blocks in decode, ~1e-3 relative; int16 in prefill) */
} glm_load_options;

/* Loads config.json (+ generation_config.json) and binds every weight of DIR,
 * memory-mapped. Any problem: NULL and a message naming the file and tensor. */
glm_model *glm_model_load(const char *dir, const glm_load_options *opt, char *err, size_t errlen);
void glm_model_free(glm_model *m);
const glm_config *glm_model_config(const glm_model *m);
int glm_model_threads(const glm_model *m);

/* Memory figures for `glmlite info` and the bench. */
typedef struct {
    size_t weight_bytes;          /* all bound weights (mapped) */
    size_t active_weight_bytes;   /* read per decoded token: non-expert weights + top-k + shared experts */
    double active_weight_elems;   /* multiply-adds per token in the weight matrices (2 flops each) */
    size_t bytes_by_format[8];    /* indexed by wformat */
    size_t kv_bytes_per_token;    /* latent cache, all layers */
} glm_model_stats;
void glm_model_get_stats(const glm_model *m, glm_model_stats *st);

typedef struct {
    int n_ctx;                    /* tokens the cache holds; 0 = min(4096, max_position_embeddings) */
    int naive_attention;          /* tests: use the non-absorbed reference attention */
    int kv_bf16;                  /* store the latent cache in bf16: half the memory, ~3 significant digits */
} glm_session_options;

glm_session *glm_session_new(glm_model *m, const glm_session_options *opt, char *err, size_t errlen);
/* The bytes glm_session_new would allocate: KV cache plus scratch (the
 * scratch grows with the thread count and, for attention scores, n_ctx). */
size_t glm_session_bytes(glm_model *m, const glm_session_options *opt);
void glm_session_free(glm_session *s);
int glm_session_n_ctx(const glm_session *s);
int glm_session_n_past(const glm_session *s);           /* tokens in the cache */
const int32_t *glm_session_tokens(const glm_session *s); /* the n_past cached token ids */
/* Forgets cached tokens from position n on (prompt-cache reuse keeps a prefix). */
void glm_session_truncate(glm_session *s, int n);

/* Appends n tokens to the cache, processing them in chunks. logits: NULL,
 * or [vocab_size] for the last token (all_logits = 0), or [n][vocab_size]
 * (all_logits = 1). Returns 0, or -1 with a message (bad token id, context
 * full); on error the cache is left as it was before the call. */
int glm_forward(glm_session *s, const int32_t *tokens, int n, float *logits, int all_logits, char *err, size_t errlen);

#endif
