/* cli_serve.c — `glmlite serve`: flags, model loading, signals; the server
 * itself is server.c. */
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "generate.h"
#include "server.h"

static server *running;

static void on_signal(int sig) {
    (void)sig;
    if (running) server_stop(running);   /* async-signal-safe: a flag and a pipe write */
}

static void serve_usage(FILE *f) {
    fputs("usage: glmlite serve [-m DIR] [--host 127.0.0.1] [--port 8080] [-c CTX] [-t THREADS]\n"
          "                     [--parallel N] [--api-key KEY] [--timeout SECONDS] [--cache-type f32|bf16]\n"
          "  OpenAI API: POST /v1/chat/completions, POST /v1/completions, GET /v1/models[/{id}]\n"
          "  Ollama API: POST /api/chat, /api/generate, /api/show; GET /api/tags, /api/ps, /api/version, /\n"
          "  --parallel N   N cache slots (conversations kept in KV caches); more requests queue\n"
          "  --api-key KEY  require 'Authorization: Bearer KEY' (also read from GLMLITE_API_KEY)\n"
          "  --timeout S    a request must arrive within S seconds; idle keep-alive limit (default 30)\n"
          "  --script FILE  tests only: every reply is FILE's text, tokenized, instead of sampling\n"
          "                 (also GLMLITE_SCRIPT)\n",
          f);
}

int cmd_serve(int argc, char **argv) {
    const char *model_dir = NULL, *script_path = getenv("GLMLITE_SCRIPT"), *key = getenv("GLMLITE_API_KEY");
    server_options so = {0};
    int threads = 0;
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        int bad = 0;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) { serve_usage(stdout); return 0; }
        else if (!strcmp(a, "-m") || !strcmp(a, "--model")) { bad = !v; model_dir = v; }
        else if (!strcmp(a, "--host")) { bad = !v; so.host = v; }
        else if (!strcmp(a, "--port")) bad = cli_parse_int(v, 1, 65535, &so.port);
        else if (!strcmp(a, "-c") || !strcmp(a, "--ctx-size")) bad = cli_parse_int(v, 16, INT_MAX, &so.n_ctx);
        else if (!strcmp(a, "-t") || !strcmp(a, "--threads")) bad = cli_parse_int(v, 1, 1024, &threads);
        else if (!strcmp(a, "--parallel") || !strcmp(a, "-np")) bad = cli_parse_int(v, 1, 256, &so.parallel);
        else if (!strcmp(a, "--api-key")) { bad = !v; key = v; }
        else if (!strcmp(a, "--timeout")) bad = cli_parse_int(v, 1, 86400, &so.timeout_s);
        else if (!strcmp(a, "--cache-type")) bad = cli_parse_cache_type(v, &so.kv_bf16);
        else if (!strcmp(a, "--script")) { bad = !v; script_path = v; }
        else { fprintf(stderr, "glmlite serve: unknown option '%s'\n", a); serve_usage(stderr); return 2; }
        if (bad) { fprintf(stderr, "glmlite serve: option '%s' needs a valid value\n", a); return 2; }
        i++;
    }
    so.api_key = key;
    if (!model_dir) model_dir = cli_default_model_dir();
    glm_runtime rt;
    char err[1024];
    /* The model's pool workers outlive the server (server_free runs before runtime_close), so
     * on_signal must never run on them: they inherit this mask. Connection threads may run it,
     * but they are all joined before server_run returns. */
    sigset_t stop_sigs, old_mask;
    sigemptyset(&stop_sigs);
    sigaddset(&stop_sigs, SIGINT);
    sigaddset(&stop_sigs, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &stop_sigs, &old_mask);
    int open_rc = runtime_open(&rt, model_dir, threads, err, sizeof err);
    pthread_sigmask(SIG_SETMASK, &old_mask, NULL);
    if (open_rc) {
        fprintf(stderr, "glmlite: %s\n", err);
        return 1;
    }
    int32_t *script = NULL;
    size_t n_script = 0;
    if (script_path && *script_path) {
        buf b = {0};
        if (buf_read_file(&b, script_path, 1u << 20) != 0 ||
            tokenizer_encode(rt.tok, b.data ? b.data : "", b.len, 1, &script, &n_script, err, sizeof err)) {
            fprintf(stderr, "glmlite serve: cannot use script %s\n", script_path);
            buf_free(&b);
            runtime_close(&rt);
            return 1;
        }
        buf_free(&b);
        so.script = script;
        so.n_script = (int)n_script;
    }
    server *s = server_new(&rt, &so, err, sizeof err);
    free(script);
    if (!s) {
        fprintf(stderr, "glmlite serve: %s\n", err);
        runtime_close(&rt);
        return 1;
    }
    running = s;
    struct sigaction sa = {0};
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);
    int rc = server_run(s, err, sizeof err);
    if (rc) fprintf(stderr, "glmlite serve: %s\n", err);
    running = NULL;
    server_free(s);
    runtime_close(&rt);
    return rc ? 1 : 0;
}
