/* fuzz_config.c — libFuzzer target: arbitrary bytes as config.json and as
 * generation_config.json; a parsed config must be self-consistent. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include "config.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    char err[512];
    glm_config c;
    if (config_parse((const char *)data, size, &c, err, sizeof err) == 0) {
        if (c.num_experts_per_tok > c.n_routed_experts && c.n_routed_experts) abort();
        if (c.qk_rope_head_dim % 2 || c.n_eos > GLM_MAX_EOS) abort();
        double inv[64];
        if (c.qk_rope_head_dim <= 128) config_rope_inv_freq(&c, inv);
        config_merge_generation((const char *)data, size, &c, err, sizeof err);
    }
    return 0;
}
