/* weights.h — binds checkpoint tensors to the model's weight views: looks a
 * tensor up by name, checks dtype and shape, and describes it as a `weight`
 * (zero-copy into the mapped file). This is where on-disk layouts differ
 * (per-expert or stacked experts; plain or quantized), so the forward pass
 * never sees them. Every error names the file and the tensor.
 *
 * Quantized layouts (SPEC §4.3, §6), recognised per tensor from its companions:
 *  - mlx-lm: X.weight (U32 packed codes) + X.scales (+ X.biases for affine),
 *    quantized along the last axis; experts stacked as mlp.switch_mlp.PROJ
 *    [E, out, in_packed]. Bits and group size are inferred from the shapes and
 *    cross-checked against config.json's `quantization` block (or an mlx-style
 *    `quantization_config`): its group_size/bits/mode, and per-module-path
 *    overrides (a dict, or false = not quantized).
 *  - ModelOpt NVFP4: X.weight U8 [out, in/2], X.weight_scale F8_E4M3
 *    [out, in/16], X.weight_scale_2 F32 scalar = direct multiplier
 *    (X.input_scale ignored).
 *  - compressed-tensors NVFP4: X.weight_packed U8, X.weight_scale F8_E4M3,
 *    X.weight_global_scale F32 stored inverted (w = e2m1 * scale / global).
 * Tensors without companions are plain BF16/F16/F32 (mixed checkpoints).
 * Every quantized view passes quant_validate before it is returned; the
 * packed data stays in the mapped file (never dequantized to memory). */
#ifndef GLM_WEIGHTS_H
#define GLM_WEIGHTS_H

#include <stddef.h>
#include <stdint.h>

#include "tensor.h"

typedef struct weights_file weights_file;

/* Opens DIR's safetensors and reads the quantization block of
 * DIR/config.json (if the file exists); a malformed block is an error. */
weights_file *weights_open(const char *dir, char *err, size_t errlen);
void weights_close(weights_file *wf);

int weights_has(const weights_file *wf, const char *name);
/* Weights bound from now on carry exact_act = on (tensor.h): their decode
 * products keep f32 activations. */
void weights_set_exact_act(weights_file *wf, int on);
/* A linear layer PREFIX (tensor PREFIX.weight, plus its quantization
 * companions when quantized) of logical shape [rows, cols]. */
int weights_linear(weights_file *wf, const char *prefix, int64_t rows, int64_t cols, weight *out, char *err, size_t errlen);
/* A 1-D tensor of n values (norm weights, router bias) as f32, owned by wf. */
int weights_vector(weights_file *wf, const char *name, int64_t n, const float **out, char *err, size_t errlen);
/* The n_experts routed experts' PROJ (gate_proj/up_proj/down_proj) of layer
 * i, stored per expert (HF: mlp.experts.E.PROJ) or stacked with a leading
 * expert axis (mlp.switch_mlp.PROJ or mlp.experts.PROJ), plain or quantized. */
int weights_experts(weights_file *wf, int layer, const char *proj, int n_experts, int64_t rows, int64_t cols, weight *out,
                    char *err, size_t errlen);
/* Layer i's up-projection from the KV latent, bound as stored (no copy):
 *  - HF: self_attn.kv_b_proj, logical [H*(dn+dv), R] (per head dn W_UK rows,
 *    then dv W_UV rows) into *kv_b, and *split = 0. Also when quantized: its
 *    groups run along R and the model reads whole rows, whose decode is
 *    exact, so splitting the rows equals dequantize-then-split (SPEC §5.5).
 *  - mlx-lm: self_attn.embed_q [H, R, dn] (W_UK transposed per head) and
 *    self_attn.unembed_out [H, dv, R] (W_UV) into embed_q[H] and
 *    unembed_out[H], and *split = 1. */
int weights_mla_up(weights_file *wf, int layer, int H, int dn, int dv, int R, weight *kv_b, weight *embed_q,
                   weight *unembed_out, int *split, char *err, size_t errlen);

#endif
