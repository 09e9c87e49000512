/* fuzz_weights.c — libFuzzer target for the quantized-layout binder
 * (weights.c): arbitrary safetensors files with one of a few config.json
 * quantization blocks. Byte 0 picks the config, bytes 1-2 the logical shape
 * asked for; the rest is the safetensors file. Every bind must either fail
 * with a message or give views whose every row decodes in bounds (ASan). */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "weights.h"

static const char *CONFIGS[] = {
    NULL,
    "{\"quantization\": {\"group_size\": 64, \"bits\": 4}}",
    "{\"quantization\": {\"group_size\": 32, \"bits\": 4, \"mode\": \"mxfp4\", \"x\": false,"
    " \"model.layers.0.mlp.switch_mlp.gate_proj\": {\"group_size\": 32, \"bits\": 8, \"mode\": \"affine\"}}}",
    "{\"quantization_config\": {\"group_size\": 16, \"bits\": 4, \"mode\": \"nvfp4\", \"x\": {\"bits\": 8}}}",
    "{\"quantization\": {\"group_size\": 7, \"bits\": 4}}",
};

static void touch(const weight *w) {
    float row[4096];
    if (w->cols > 4096) return;
    for (int64_t r = 0; r < w->rows; r++) weight_row_f32(w, r, row);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 3) return 0;
    static char dir[64];
    if (!dir[0]) {
        snprintf(dir, sizeof dir, "/tmp/fuzz-weights-XXXXXX");
        if (!mkdtemp(dir)) abort();
    }
    char path[128];
    snprintf(path, sizeof path, "%s/config.json", dir);
    const char *cfg = CONFIGS[data[0] % (sizeof CONFIGS / sizeof *CONFIGS)];
    unlink(path);
    if (cfg) {
        FILE *f = fopen(path, "w");
        fputs(cfg, f);
        fclose(f);
    }
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    FILE *f = fopen(path, "wb");
    fwrite(data + 3, 1, size - 3, f);
    fclose(f);
    int64_t rows = 1 + data[1] % 64, cols = 16 * (1 + data[2] % 16);
    char err[512];
    weights_file *wf = weights_open(dir, err, sizeof err);
    if (!wf) return 0;
    weight w, ex[4], kvb, eq[2], uo[2];
    int split;
    if (!weights_linear(wf, "x", rows, cols, &w, err, sizeof err)) touch(&w);
    if (!weights_experts(wf, 0, "gate_proj", 4, rows, cols, ex, err, sizeof err))
        for (int e = 0; e < 4; e++) touch(&ex[e]);
    if (!weights_mla_up(wf, 0, 2, 16, 16, (int)cols, &kvb, eq, uo, &split, err, sizeof err)) {
        if (!split) touch(&kvb);
        else for (int h = 0; h < 2; h++) { touch(&eq[h]); touch(&uo[h]); }
    }
    weights_close(wf);
    return 0;
}
