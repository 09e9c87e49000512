/* line_requests.h — requests for memory a product will need after this call
 * (decode: the thread's next block of cached rows), into L2, spread evenly
 * over the call's inner steps: `lines` requests over `steps` steps. All at
 * once they stall the product (a block's 9,216 requests before its value
 * sums took those from 33 to 88 us); spread out they ride along with the
 * arithmetic. Shared by the AVX2 and AVX-512 attention kernels; a request
 * never changes a result. */
#ifndef GLM_LINE_REQUESTS_H
#define GLM_LINE_REQUESTS_H

#include <stddef.h>
#include <stdint.h>
#include <xmmintrin.h>

typedef struct {
    const char *next, *end;
    int64_t lines, steps, owed;
} line_requests;

/* bytes from ahead (NULL: none) over `steps` calls of request_step */
static inline line_requests requests_over(const void *ahead, size_t bytes, int64_t steps) {
    line_requests q = {ahead, (const char *)ahead + (ahead ? bytes : 0), (int64_t)((bytes + 63) / 64), steps, 0};
    return q;
}

static inline __attribute__((always_inline)) void request_step(line_requests *q) {
    if (q->next >= q->end) return;
    for (q->owed += q->lines; q->owed >= q->steps && q->next < q->end; q->owed -= q->steps, q->next += 64)
        _mm_prefetch(q->next, _MM_HINT_T1);
}

#endif
