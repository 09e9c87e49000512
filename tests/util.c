/* util.c — helpers shared by the tests: files, subprocesses, fixtures. */
#include "test.h"

#include <stdlib.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

char *test_read_file(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    size_t cap = 1 << 16, n = 0;
    char *d = malloc(cap + 1);
    size_t r;
    while ((r = fread(d + n, 1, cap - n, f)) > 0) {
        n += r;
        if (n == cap) { cap *= 2; d = realloc(d, cap + 1); }
    }
    fclose(f);
    d[n] = 0;
    if (len) *len = n;
    return d;
}

int test_run(const char *cmd) {
    fflush(stdout);
    int st = system(cmd);
    if (st == -1) return -1;
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

const char *test_python(void) {
    const char *p = getenv("PYTHON");
    return p && *p ? p : "/usr/bin/python3";
}

const char *test_tmpdir(void) {
    static char dir[64];
    if (!dir[0]) {
        snprintf(dir, sizeof dir, "/tmp/glmlite-test-XXXXXX");
        if (!mkdtemp(dir)) { perror("mkdtemp"); abort(); }
    }
    return dir;
}

const char *test_fixture_model(const char *preset, const char *dtype) {
    static char paths[32][256];
    static int n;
    char path[256];
    snprintf(path, sizeof path, "build/fixtures/%s-%s", preset, dtype);
    for (int i = 0; i < n; i++)
        if (strcmp(paths[i], path) == 0) return paths[i];
    struct stat st;
    char done[300];
    snprintf(done, sizeof done, "%s/config.json", path);
    if (stat(done, &st) != 0) {
        char cmd[1024];
        snprintf(cmd, sizeof cmd, "%s tools/gen_checkpoint.py --preset %s --dtype %s --out %s > /dev/null",
                 test_python(), preset, dtype, path);
        if (test_run(cmd) != 0) return NULL;
    }
    if (n == 32) return NULL;
    snprintf(paths[n], sizeof paths[n], "%s", path);
    return paths[n++];
}

double test_rel_l2(const float *a, const double *ref, size_t n) {
    double num = 0, den = 0;
    for (size_t i = 0; i < n; i++) {
        double d = (double)a[i] - ref[i];
        num += d * d;
        den += ref[i] * ref[i];
    }
    return den > 0 ? sqrt(num / den) : sqrt(num);
}
