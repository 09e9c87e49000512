/* test.h — the project's tiny test framework.
 *
 * Each test file (tests/test_*.c) defines tests with TEST(name) { ... }; a constructor
 * registers them, so no central list needs editing. CHECK records a failure
 * and continues; REQUIRE records it and returns from the test. SKIP marks a
 * test skipped with a reason (only for missing optional tools). */
#ifndef GLM_TEST_H
#define GLM_TEST_H

#include <math.h>
#include <stdio.h>
#include <string.h>

typedef void (*test_fn)(void);
void test_register(const char *name, const char *file, test_fn fn);
void test_fail(const char *file, int line, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
void test_skip(const char *why);
int test_current_failed(void);

#define TEST(name)                                                           \
    static void test_##name(void);                                           \
    __attribute__((constructor)) static void register_##name(void) {         \
        test_register(#name, __FILE__, test_##name);                         \
    }                                                                        \
    static void test_##name(void)

#define CHECK(cond)                                                          \
    do { if (!(cond)) test_fail(__FILE__, __LINE__, "CHECK(%s)", #cond); } while (0)
#define CHECKF(cond, ...)                                                    \
    do { if (!(cond)) test_fail(__FILE__, __LINE__, __VA_ARGS__); } while (0)
#define REQUIRE(cond)                                                        \
    do { if (!(cond)) { test_fail(__FILE__, __LINE__, "REQUIRE(%s)", #cond); return; } } while (0)
#define REQUIREF(cond, ...)                                                  \
    do { if (!(cond)) { test_fail(__FILE__, __LINE__, __VA_ARGS__); return; } } while (0)
#define CHECK_EQ_INT(a, b)                                                   \
    do { long long a_ = (long long)(a), b_ = (long long)(b);                 \
         if (a_ != b_) test_fail(__FILE__, __LINE__, "%s == %s: %lld != %lld", #a, #b, a_, b_); } while (0)
#define CHECK_STR(a, b)                                                      \
    do { const char *a_ = (a), *b_ = (b);                                    \
         if (!a_ || !b_ || strcmp(a_, b_) != 0)                              \
             test_fail(__FILE__, __LINE__, "%s == %s: \"%s\" != \"%s\"", #a, #b, a_ ? a_ : "(null)", b_ ? b_ : "(null)"); } while (0)
#define SKIP(why) do { test_skip(why); return; } while (0)

/* Helpers shared by tests (tests/util.c). */
char *test_read_file(const char *path, size_t *len);   /* NULL if unreadable */
int test_run(const char *cmd);                          /* system(), returns exit status */
const char *test_python(void);                          /* python3 with numpy */
const char *test_tmpdir(void);                          /* per-run scratch directory */
/* Path of a generated checkpoint (tools/gen_checkpoint.py), made on first use
 * under build/fixtures/ and reused afterwards. NULL on failure. */
const char *test_fixture_model(const char *preset, const char *dtype);
double test_rel_l2(const float *a, const double *ref, size_t n);

#endif
