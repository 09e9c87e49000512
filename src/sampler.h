/* sampler.h — next-token choice from a logit vector (SPEC §2.2, §9.10, §12):
 * repetition / presence / frequency penalties, temperature, top-k, top-p,
 * min-p, a seeded PRNG, greedy decoding, and the padding-row mask.
 *
 * Order per step (as HF transformers / vLLM / Ollama apply them):
 *   1. penalties on the raw logits, over the last repeat_last_n accepted tokens
 *      (llama.cpp semantics): for each distinct token t there with count c,
 *        repeat_penalty p != 1:  logit = logit > 0 ? logit / p : logit * p
 *        then  logit -= presence_penalty * (c > 0) + frequency_penalty * c   (OpenAI)
 *   2. greedy (argmax, lowest id on ties) when temperature <= 0 or top_k == 1;
 *   3. otherwise logits / temperature -> top_k largest (0 = off) -> softmax ->
 *      top_p nucleus: the smallest prefix in (probability desc, id asc) order
 *      whose mass reaches top_p of the remaining mass (>= 1 = off) -> min_p:
 *      drop tokens below min_p * (largest probability) (0 = off) -> draw.
 * Ids >= n_valid (untrained padding rows of the embedding) are never chosen,
 * nor are NaN logits. The PRNG is xoshiro256** seeded through splitmix64, so
 * a seed gives the same tokens on every run and platform; one 53-bit uniform
 * draw per sampled token. All scratch is allocated once in sampler_new. */
#ifndef GLM_SAMPLER_H
#define GLM_SAMPLER_H

#include <stdint.h>

typedef struct {
    float temperature, top_p, min_p, repeat_penalty, presence_penalty, frequency_penalty;
    int top_k, repeat_last_n;
    uint64_t seed;
} sampler_params;

/* temperature 1.0, top_p 0.95, top_k 0 (off), min_p 0, penalties off
 * (repeat_penalty 1, presence/frequency 0) over a window of 64, seed 0. */
void sampler_params_default(sampler_params *p);

typedef struct sampler sampler;

/* NULL on bad arguments (vocab_size < 1, n_valid outside [1, vocab_size],
 * negative repeat_last_n) or out of memory. */
sampler *sampler_new(const sampler_params *p, int vocab_size, int n_valid);
/* Record a token of the context (prompt or generated) for the penalties. */
void sampler_accept(sampler *s, int32_t token);
/* Apply step 1 only, in place (exposed for tests and logit inspection). */
void sampler_apply_penalties(sampler *s, float *logits);
/* Choose the next token from logits[vocab_size]; modifies logits in place. */
int32_t sampler_sample(sampler *s, float *logits);
/* Forget the history and restart the PRNG from the seed. */
void sampler_reset(sampler *s);
void sampler_free(sampler *s);

#endif
