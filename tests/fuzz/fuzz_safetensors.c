/* fuzz_safetensors.c — libFuzzer target: arbitrary bytes as a safetensors file. */
#include <stddef.h>
#include <stdint.h>

#include "safetensors.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    char err[512];
    st_parse_header(data, size, "fuzz.safetensors", err, sizeof err);
    return 0;
}
