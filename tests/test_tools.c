/* test_tools.c — the Python tools' own checks (tools/test_tools.py): the
 * reference forward pass and checkpoint generator must be right before the
 * engine is compared with them. */
#include "test.h"

TEST(python_tools_selftest) {
    char cmd[512];
    snprintf(cmd, sizeof cmd, "%s tools/test_tools.py > build/test_tools.log 2>&1", test_python());
    int rc = test_run(cmd);
    test_run("tail -1 build/test_tools.log | sed 's/^/    /'");
    if (rc) test_run("grep -i fail build/test_tools.log | head -20 | sed 's/^/    /'");
    CHECK(rc == 0);
}
