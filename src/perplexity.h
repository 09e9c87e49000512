/* perplexity.h — quality measurements of a model on a token stream, like
 * llama-perplexity: perplexity over non-overlapping windows of n_ctx tokens,
 * and with a base model the KL divergence of the model's next-token
 * distribution from the base's, and how often their top-1 tokens agree.
 *
 * As llama-perplexity does, each window is evaluated from an empty cache and
 * only its second half (positions n_ctx/2 .. n_ctx-1, predicting the next
 * token) is scored, so every scored prediction has at least n_ctx/2 tokens of
 * context. The ± figures are standard errors of the mean. */
#ifndef GLM_PERPLEXITY_H
#define GLM_PERPLEXITY_H

#include <stddef.h>
#include <stdint.h>

#include "glm.h"

typedef struct {
    size_t n;                    /* scored predictions */
    double nll_sum, nll_sq;      /* -log p(next token) */
    double base_nll_sum, base_nll_sq;
    size_t n_kl;                 /* predictions with a base model */
    double kl_sum, kl_sq, kl_max;
    size_t top1_same;
} ppl_stats;

/* Adds one prediction: logits[V] of the model, base[V] of the base model (or
 * NULL), and the true next token. */
void ppl_add(ppl_stats *st, const float *logits, const float *base, int V, int32_t next);

/* exp(mean nll) and its standard error (delta method), and the same for the
 * base; mean KL and its standard error. */
double ppl_value(const ppl_stats *st, double *plus_minus);
double ppl_base_value(const ppl_stats *st, double *plus_minus);
double ppl_mean_kl(const ppl_stats *st, double *plus_minus);

typedef void (*ppl_progress_fn)(void *ctx, int window, int n_windows, const ppl_stats *st);

/* Most tokens per forward call (bounds the logits buffer to PPL_MAX_BATCH x vocab). */
#define PPL_MAX_BATCH 32

/* Runs every whole window of n_ctx tokens of tokens[0..n) through m (and
 * base, when not NULL: same vocabulary required), batch tokens per forward
 * call (1..PPL_MAX_BATCH; 1 evaluates the way decode runs, token by token;
 * out of range means PPL_MAX_BATCH). Returns 0, or -1 with a message (fewer
 * than n_ctx tokens, n_ctx < 2, vocabularies differ, ...). */
int ppl_run(glm_model *m, glm_model *base, const int32_t *tokens, size_t n, int n_ctx, int batch, ppl_stats *st,
            ppl_progress_fn progress, void *progress_ctx, char *err, size_t errlen);

#endif
