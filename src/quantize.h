/* quantize.h — `glmlite quantize`: converts a plain (bf16/f16/f32) checkpoint
 * into the mlx-lm layout (SPEC §4.3.1, §6) with a mixed-precision policy,
 * streaming tensor by tensor. Policy, in full (docs/quantization.md):
 *  - main type T: int4 (affine 4-bit, group 64 by default), int8 (affine
 *    8-bit, group 64), nvfp4 (group 16), mxfp4 (group 32), mxfp8 (group 32);
 *    its 8-bit partner T8: int8 (same group) for int4/int8, mxfp8 for the fp
 *    types;
 *  - lm_head: T8;
 *  - for 4-bit T: MLA projections (q_a/q_b/q_proj, kv_a, embed_q,
 *    unembed_out, o_proj) and the non-routed down_proj (dense layers, shared
 *    experts): T8; routed experts (switch_mlp.*) stay at T, down_proj too;
 *  - everything else with a quantized form (embed_tokens, gate/up projections,
 *    experts): T;
 *  - never quantized: 1-D tensors (norms, e_score_correction_bias), the router
 *    mlp.gate, tensors whose last dimension is not a multiple of the group
 *    size (mlx-lm's rule; recorded as `false` in the config block);
 *  - kv_b_proj becomes embed_q [H, R, dn] (W_UK transposed per head) and
 *    unembed_out [H, dv, R] (W_UV), both quantized along their last axis;
 *    per-expert tensors are stacked into mlp.switch_mlp.PROJ [E, out, in];
 *    the MTP layer (index >= num_hidden_layers) is dropped;
 *  - affine scales/biases have the input tensor's dtype; fp scales are U8.
 * config.json gains `quantization` and `quantization_config` (the same
 * block: group_size, bits, mode, and an entry per module that differs).
 *
 * Output goes to OUT.tmp-XXXXXX, config.json is written there last, and the
 * directory is renamed to OUT only when complete: an interrupted run leaves
 * no directory that loads. Memory: one tensor's quantized output (the input
 * is memory-mapped) — a stacked expert tensor is written one expert at a
 * time. */
#ifndef GLM_QUANTIZE_H
#define GLM_QUANTIZE_H

#include <stddef.h>

typedef enum { QT_INT4, QT_INT8, QT_NVFP4, QT_MXFP4, QT_MXFP8 } quant_type;

/* "int4" | "int8" | "nvfp4" | "mxfp4" | "mxfp8"; -1 if unknown. */
int quant_type_parse(const char *s, quant_type *out);
const char *quant_type_name(quant_type t);

typedef void (*quantize_progress_fn)(void *ctx, size_t done_bytes, size_t total_bytes);

typedef struct {
    quant_type type;
    int group_size;              /* 0 = the type's default; int4/int8: 32, 64 or 128; fp types: their fixed group only */
    size_t max_shard_bytes;      /* 0 = 4 GiB per safetensors file */
    quantize_progress_fn progress;
    void *progress_ctx;
} quantize_options;

/* Quantizes the checkpoint in in_dir into out_dir (which must not exist).
 * Returns 0, or -1 with a message (nothing is left at out_dir).
 * Test hook: with GLMLITE_QUANTIZE_ABORT_AFTER=N in the environment the
 * process kills itself with SIGKILL after writing N tensors (an interruption
 * at a known point). */
int glm_quantize(const char *in_dir, const char *out_dir, const quantize_options *opt, char *err, size_t errlen);

#endif
