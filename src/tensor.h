/* tensor.h — a weight matrix as the kernels see it: a read-only view of
 * [rows][cols] (PyTorch's [out, in]) in one storage format, usually pointing
 * straight into the memory-mapped checkpoint.
 *
 * Plain formats store row r at data + r * row_stride bytes. Quantized formats
 * (MLX layout, SPEC §6) quantize along cols in groups of group_size: row r's
 * packed codes are at data + r * row_stride (cols * bits / 8 bytes, a
 * little-endian bit stream), its group scales at scales + r * scale_stride
 * bytes (cols / group_size of them, in scale_dtype), and for affine its biases
 * likewise. global_scale multiplies every dequantized value (1 when absent). */
#ifndef GLM_TENSOR_H
#define GLM_TENSOR_H

#include <stddef.h>
#include <stdint.h>

typedef enum {
    DT_F32, DT_F16, DT_BF16,   /* plain element types (also scale/bias types) */
    DT_U8,                     /* E4M3 (nvfp4) or E8M0 (mxfp4/mxfp8) scales */
} dtype;

typedef enum {
    WF_F32, WF_F16, WF_BF16,   /* plain weights */
    WF_AFFINE,                 /* MLX affine: w = scale * q + bias, q unsigned of `bits` bits */
    WF_NVFP4,                  /* E2M1 codes, E4M3 scales, group 16 */
    WF_MXFP4,                  /* E2M1 codes, E8M0 scales, group 32 */
    WF_MXFP8,                  /* E4M3 codes, E8M0 scales, group 32 */
} wformat;

typedef struct {
    wformat format;
    int64_t rows, cols;
    const uint8_t *data;
    size_t row_stride;         /* bytes between rows of data */
    /* quantized formats only */
    int bits, group_size;
    dtype scale_dtype;         /* also the dtype of biases */
    const uint8_t *scales, *biases;
    size_t scale_stride;       /* bytes between rows of scales (and biases) */
    float global_scale;
    /* 1: products keep f32 activations instead of int8 blocks (few
       vectors) or int16 (prefill) (linear.h; glm_load_options.exact_matmul) */
    int exact_act;
} weight;

/* Bytes of storage the weight occupies (data + scales + biases). */
size_t weight_bytes(const weight *w);

/* Row r of w into out[cols] as float (exact: every format's values are
 * representable in f32). Used by tests, by the absorbed-MLA setup, and for
 * embedding lookups. */
void weight_row_f32(const weight *w, int64_t r, float *out);

/* bf16/f16 <-> f32 */
static inline float bf16_to_f32(uint16_t h) {
    union { uint32_t u; float f; } v = {(uint32_t)h << 16};
    return v.f;
}
static inline uint16_t f32_to_bf16(float f) {   /* round to nearest even; NaN stays NaN */
    union { float f; uint32_t u; } v = {f};
    if ((v.u & 0x7fffffff) > 0x7f800000) return (uint16_t)((v.u >> 16) | 64);
    return (uint16_t)((v.u + 0x7fff + ((v.u >> 16) & 1)) >> 16);
}
float f16_to_f32(uint16_t h);
uint16_t f32_to_f16(float f);

#endif
