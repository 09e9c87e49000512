/* runner.c — runs every registered test (optionally only those whose name
 * contains argv[1]) and ends with the line "N passed, N failed". */
#include "test.h"

#include <stdarg.h>
#include <stdlib.h>
#include <time.h>

typedef struct { const char *name, *file; test_fn fn; } test_case;

static test_case *cases;
static int n_cases, cap_cases;
static int cur_failed, cur_skipped;
static const char *skip_reason;

void test_register(const char *name, const char *file, test_fn fn) {
    if (n_cases == cap_cases) {
        cap_cases = cap_cases ? cap_cases * 2 : 64;
        cases = realloc(cases, (size_t)cap_cases * sizeof *cases);
        if (!cases) abort();
    }
    cases[n_cases++] = (test_case){name, file, fn};
}

void test_fail(const char *file, int line, const char *fmt, ...) {
    cur_failed++;
    if (cur_failed > 20) return; /* one broken loop should not flood the log */
    fprintf(stdout, "    %s:%d: ", file, line);
    va_list ap;
    va_start(ap, fmt);
    vfprintf(stdout, fmt, ap);
    va_end(ap);
    fputc('\n', stdout);
    fflush(stdout);
}

void test_skip(const char *why) { cur_skipped = 1; skip_reason = why; }

int test_current_failed(void) { return cur_failed; }

static int by_file_then_order(const void *a, const void *b) {
    const test_case *x = a, *y = b;
    int c = strcmp(x->file, y->file);
    if (c) return c;
    return x < y ? -1 : x > y;
}

int main(int argc, char **argv) {
    const char *filter = argc > 1 ? argv[1] : NULL;
    /* constructors run in link order; sort by file for a stable report, keeping
       the order of tests within a file */
    qsort(cases, (size_t)n_cases, sizeof *cases, by_file_then_order);
    int passed = 0, failed = 0, skipped = 0;
    for (int i = 0; i < n_cases; i++) {
        if (filter && !strstr(cases[i].name, filter)) continue;
        cur_failed = 0;
        cur_skipped = 0;
        struct timespec t0, t1;
        clock_gettime(CLOCK_MONOTONIC, &t0);
        cases[i].fn();
        clock_gettime(CLOCK_MONOTONIC, &t1);
        double s = (double)(t1.tv_sec - t0.tv_sec) + 1e-9 * (double)(t1.tv_nsec - t0.tv_nsec);
        if (cur_failed) { failed++; printf("  FAIL %s (%.2fs)\n", cases[i].name, s); }
        else if (cur_skipped) { skipped++; printf("  SKIP %s: %s\n", cases[i].name, skip_reason); }
        else { passed++; printf("  ok   %s (%.2fs)\n", cases[i].name, s); }
        fflush(stdout);
    }
    if (skipped) printf("%d passed, %d failed, %d skipped\n", passed, failed, skipped);
    else printf("%d passed, %d failed\n", passed, failed);
    return failed ? 1 : 0;
}
