/* weights.h — binds checkpoint tensors to the model's weight views: looks a
 * tensor up by name, checks dtype and shape, and describes it as a `weight`
 * (zero-copy into the mapped file). This is where on-disk layouts differ
 * (per-expert or stacked experts; plain or quantized), so the forward pass
 * never sees them. Every error names the file and the tensor. */
#ifndef GLM_WEIGHTS_H
#define GLM_WEIGHTS_H

#include <stddef.h>
#include <stdint.h>

#include "tensor.h"

typedef struct weights_file weights_file;

weights_file *weights_open(const char *dir, char *err, size_t errlen);
void weights_close(weights_file *wf);

int weights_has(const weights_file *wf, const char *name);
/* A linear layer PREFIX (tensor PREFIX.weight, plus its quantization
 * companions when quantized) of logical shape [rows, cols]. */
int weights_linear(weights_file *wf, const char *prefix, int64_t rows, int64_t cols, weight *out, char *err, size_t errlen);
/* A 1-D tensor of n values (norm weights, router bias) as f32, owned by wf. */
int weights_vector(weights_file *wf, const char *name, int64_t n, const float **out, char *err, size_t errlen);
/* The n_experts routed experts' PROJ (gate_proj/up_proj/down_proj) of layer
 * i, stored per expert (HF: mlp.experts.E.PROJ) or stacked with a leading
 * expert axis (mlp.switch_mlp.PROJ or mlp.experts.PROJ). */
int weights_experts(weights_file *wf, int layer, const char *proj, int n_experts, int64_t rows, int64_t cols, weight *out,
                    char *err, size_t errlen);

#endif
