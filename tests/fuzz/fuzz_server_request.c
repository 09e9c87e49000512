/* fuzz_server_request.c — libFuzzer target for API request decoding
 * (server_request.c): arbitrary bodies for each of the four generation
 * routes are decoded into sampling parameters and rendered through the chat
 * template, without a model. The first byte picks the route. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "server_request.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 1) return 0;
    api_kind kind = (api_kind)(data[0] % 4);
    sampler_params d;
    sampler_params_default(&d);
    api_request r;
    char err[512];
    int rc = api_request_decode(kind, (const char *)data + 1, size - 1, &d, &r, err, sizeof err);
    if (rc == 0) {
        if (r.n_stop < 0 || r.n_stop > API_MAX_STOP || r.max_tokens < 0) abort();
        if (r.sp.temperature < 0 || !(r.sp.top_p > 0 && r.sp.top_p <= 1) || r.sp.top_k < 0) abort();
        if (!r.load_only && !r.prompt.len) abort();
        /* spans lie inside the prompt */
        const size_t *sp = (const size_t *)(void *)r.spans.data;
        for (size_t i = 0; i < r.spans.len / (2 * sizeof(size_t)); i++)
            if (sp[2 * i] + sp[2 * i + 1] > r.prompt.len) abort();
    } else if (!err[0]) {
        abort();   /* every failure says why */
    }
    api_request_free(&r);
    return 0;
}
