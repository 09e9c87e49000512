/* server.h — `glmlite serve`: an HTTP/1.1 server speaking the OpenAI and
 * Ollama APIs over one loaded model.
 *
 * Threads: the accept loop runs in server_run's thread; each connection gets
 * its own thread (up to max_conns; beyond that a 503). Generation needs a
 * cache slot: `parallel` sessions, each with its own KV cache; a request
 * takes the free slot whose cached tokens share the longest prefix with its
 * prompt (prompt-cache reuse across turns), and waits (condvar) when all are
 * busy. The engine has one thread pool per model, so forward passes are
 * serialised by a fair (FIFO ticket) model lock that a generation releases
 * between tokens: concurrent requests interleave token by token, and network
 * writes happen outside the lock. */
#ifndef GLM_SERVER_H
#define GLM_SERVER_H

#include <stddef.h>
#include <stdint.h>

#include "generate.h"
#include "http.h"

typedef struct {
    const char *host;            /* default "127.0.0.1" */
    int port;                    /* default 8080 */
    int n_ctx;                   /* tokens per slot; 0 = 4096 (capped by the model) */
    int kv_bf16;                 /* slots keep their latent cache in bf16 */
    int parallel;                /* cache slots; 0 = 1 */
    const char *api_key;         /* NULL/"" = no authentication */
    const int32_t *script;       /* tests: forced output ids for every request (copied) */
    int n_script;
    int timeout_s;               /* a request must arrive within this; also the keep-alive idle time; 0 = 30 */
    int max_conns;               /* 0 = 64 */
    http_limits limits;          /* zero = http_limits_default */
} server_options;

typedef struct server server;

/* Binds the socket and opens the cache slots. rt must outlive the server. */
server *server_new(glm_runtime *rt, const server_options *opt, char *err, size_t errlen);
/* Serves until server_stop; then cancels generations and joins every
 * connection thread. Returns 0, or -1 with a message. */
int server_run(server *s, char *err, size_t errlen);
/* Async-signal-safe: asks server_run to return. */
void server_stop(server *s);
void server_free(server *s);
int server_port(const server *s);

#endif
