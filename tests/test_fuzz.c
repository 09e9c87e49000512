/* test_fuzz.c — every libFuzzer target runs briefly (`make fuzz` runs them
 * longer). A crash, sanitizer report or self-check abort fails the test. */
#include "test.h"

TEST(fuzz_targets_run_briefly) {
    if (test_run("command -v clang > /dev/null") != 0) SKIP("clang not installed");
    CHECK(test_run("make -s fuzz FUZZ_SECONDS=4 > build/fuzz-smoke.log 2>&1") == 0);
    test_run("sed 's/^/    /' build/fuzz-smoke.log | grep -v '^    clang' | tail -20");
}
