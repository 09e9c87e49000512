/* server.c — sockets, connection threads, cache slots, routing and the
 * OpenAI / Ollama response formats of `glmlite serve` (see server.h). The
 * wire format lives in http.c, request decoding in server_request.c. */
#include "server.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "chat.h"
#include "server_request.h"

#define API_VERSION "0.12.6"   /* the Ollama API level we follow, for clients that check */

/* ------------------------------------------------------------ fair lock */

/* FIFO ticket lock: a generation hands the model over between tokens, and
 * with a plain mutex the releasing thread would usually win it straight back. */
typedef struct {
    pthread_mutex_t m;
    pthread_cond_t c;
    unsigned long next, serving;
} fair_lock;

static void fair_lock_acquire(fair_lock *l) {
    pthread_mutex_lock(&l->m);
    unsigned long me = l->next++;
    while (me != l->serving) pthread_cond_wait(&l->c, &l->m);
    pthread_mutex_unlock(&l->m);
}

static void fair_lock_release(fair_lock *l) {
    pthread_mutex_lock(&l->m);
    l->serving++;
    pthread_cond_broadcast(&l->c);
    pthread_mutex_unlock(&l->m);
}

/* ---------------------------------------------------------------- types */

typedef struct {
    glm_session *session;
    int busy;
    unsigned long last_used;
} slot;

typedef struct conn {
    server *srv;
    int fd;
    pthread_t thread;
    atomic_int done;
    int broken;                  /* a write failed: the client is gone */
    char peer[64];
} conn;

struct server {
    glm_runtime *rt;
    server_options o;
    int32_t *script;
    int listen_fd;
    int wake[2];                 /* self-pipe: server_stop writes, the accept loop polls */
    atomic_int stopping;
    int n_ctx;
    slot *slots;
    int n_slots;
    pthread_mutex_t slot_m;
    pthread_cond_t slot_c;
    unsigned long slot_clock;
    fair_lock model_lock;
    conn **conns;
    int n_conns;
    atomic_ulong req_counter;
    time_t started;
};

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

int server_port(const server *s) { return s->o.port; }

/* ------------------------------------------------------------- socket I/O */

static int conn_write(conn *c, const char *data, size_t len) {
    while (len && !c->broken) {
        ssize_t w = send(c->fd, data, len, MSG_NOSIGNAL);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) { c->broken = 1; break; }
        data += w;
        len -= (size_t)w;
    }
    return c->broken ? -1 : 0;
}

static int conn_write_buf(conn *c, buf *b) {
    int rc = b->len ? conn_write(c, b->data, b->len) : (c->broken ? -1 : 0);
    buf_clear(b);
    return rc;
}

/* Has the client gone (EOF, reset, hang-up)? A half-closed client counts as
 * gone, as with Go's net/http (Ollama): nobody reads the answer of a request
 * whose sender shut its side. */
static int conn_gone(conn *c) {
    if (c->broken) return 1;
    struct pollfd pf = {c->fd, POLLIN | POLLRDHUP, 0};
    if (poll(&pf, 1, 0) <= 0) return 0;
    if (pf.revents & (POLLRDHUP | POLLHUP | POLLERR | POLLNVAL)) return 1;
    if (pf.revents & POLLIN) {
        char b;
        ssize_t r = recv(c->fd, &b, 1, MSG_PEEK | MSG_DONTWAIT);
        if (r == 0 || (r < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)) return 1;
    }
    return 0;
}

/* Reads what is there, waiting until deadline. >0 bytes, 0 EOF, -1 error,
 * -2 server stopping, -3 timeout. */
static ssize_t conn_read(conn *c, char *b, size_t n, double deadline) {
    for (;;) {
        if (atomic_load(&c->srv->stopping)) return -2;
        double left = deadline - now_s();
        if (left <= 0) return -3;
        int ms = left > 0.2 ? 200 : (int)(left * 1000) + 1;
        struct pollfd pf = {c->fd, POLLIN, 0};
        int pr = poll(&pf, 1, ms);
        if (pr < 0 && errno != EINTR) return -1;
        if (pr <= 0) continue;
        ssize_t r = recv(c->fd, b, n, 0);
        if (r < 0 && (errno == EINTR || errno == EAGAIN)) continue;
        return r;
    }
}

/* ------------------------------------------------------------ responses */

typedef struct {
    conn *c;
    const http_parser *req;
    int status;
    int keep_alive;
    int head_only;
    int ollama_errors;           /* error body format: Ollama {"error":"..."} or OpenAI's */
    char cors[400];              /* CORS response headers for an allowed Origin, or "" */
    /* for the log line */
    int n_prompt, n_cached, n_gen;
    double decode_s;
} exchange;

static void send_body(exchange *x, int status, const char *ctype, const char *body, size_t len, const char *extra) {
    buf out = {0};
    char hdrs[1024];
    x->status = status;
    if (x->cors[0]) {   /* every response to an allowed browser origin carries the CORS headers */
        snprintf(hdrs, sizeof hdrs, "%s%s", extra ? extra : "", x->cors);
        extra = hdrs;
    }
    http_response(&out, status, ctype, body, len, x->keep_alive, extra, x->head_only);
    conn_write_buf(x->c, &out);
    buf_free(&out);
}

static void send_json(exchange *x, int status, buf *body) {
    send_body(x, status, "application/json", body->data ? body->data : "", body->len, NULL);
}

static void send_error(exchange *x, int status, const char *msg, const char *param, const char *extra) {
    buf b = {0};
    if (x->ollama_errors) {
        buf_puts(&b, "{\"error\":");
        json_write_string(&b, msg, strlen(msg), 0);
        buf_putc(&b, '}');
    } else {
        const char *type = status == 401 ? "authentication_error" : status == 404 ? "not_found_error"
                         : status >= 500 ? "server_error" : "invalid_request_error";
        buf_puts(&b, "{\"error\":{\"message\":");
        json_write_string(&b, msg, strlen(msg), 0);
        buf_printf(&b, ",\"type\":\"%s\",\"param\":", type);
        if (param && *param) json_write_string(&b, param, strlen(param), 0);
        else buf_puts(&b, "null");
        buf_printf(&b, ",\"code\":%d}}", status);
    }
    send_body(x, status, "application/json", b.data, b.len, extra);
    buf_free(&b);
}

static void iso_time(char *out, size_t n) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    struct tm tm;
    gmtime_r(&ts.tv_sec, &tm);
    char d[32];
    strftime(d, sizeof d, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(out, n, "%s.%09ldZ", d, ts.tv_nsec);
}

/* ------------------------------------------------------------ cache slots */

static int common_prefix(glm_session *s, const int32_t *ids, int n) {
    int past = glm_session_n_past(s), k = 0;
    const int32_t *t = glm_session_tokens(s);
    while (k < past && k < n && t[k] == ids[k]) k++;
    return k;
}

/* The free slot sharing the longest prefix with the prompt (least recently
 * used among equals); waits while all are busy. -1 when the server stops. */
static int slot_acquire(server *s, const int32_t *ids, int n) {
    pthread_mutex_lock(&s->slot_m);
    int best = -1;
    for (;;) {
        if (atomic_load(&s->stopping)) break;
        int best_len = -1, lru = -1;
        for (int i = 0; i < s->n_slots; i++) {
            if (s->slots[i].busy) continue;
            int l = common_prefix(s->slots[i].session, ids, n);
            if (l > best_len || (l == best_len && s->slots[i].last_used < s->slots[best].last_used)) {
                best = i;
                best_len = l;
            }
            if (lru < 0 || s->slots[i].last_used < s->slots[lru].last_used) lru = i;
        }
        /* a prefix that is only a small part of the prompt (the chat template's first tokens, a
           short system prompt) is not worth evicting another conversation for: take the least
           recently used slot, so that alternating conversations keep their caches */
        if (best >= 0 && 2 * best_len < n) best = lru;
        if (best >= 0) break;
        pthread_cond_wait(&s->slot_c, &s->slot_m);
    }
    if (best >= 0) s->slots[best].busy = 1;
    pthread_mutex_unlock(&s->slot_m);
    return best;
}

static void slot_release(server *s, int i) {
    pthread_mutex_lock(&s->slot_m);
    s->slots[i].busy = 0;
    s->slots[i].last_used = ++s->slot_clock;
    pthread_cond_broadcast(&s->slot_c);
    pthread_mutex_unlock(&s->slot_m);
}

/* ------------------------------------------------------------ generation */

typedef struct {
    exchange *x;
    server *srv;
    api_request *r;
    chat_parser *parser;
    int stream;
    buf out;                     /* streamed bytes not yet written (framed) */
    buf content, reasoning;      /* non-streamed: accumulated */
    buf calls;                   /* non-streamed: tool calls, as API-specific JSON array items */
    int n_calls;
    int sent_role;
    char id[48];
    unsigned long rid;
    long created;
    char model[256];
    int holding_lock;
    int chunked;                 /* stream framing: chunks, or (HTTP/1.0 clients) the raw body ended by closing */
} gen_ctx;

/* Frames one event payload (a JSON object) for the stream. */
static void emit(gen_ctx *g, buf *payload) {
    buf framed = {0};
    if (g->r->kind == API_OPENAI_CHAT || g->r->kind == API_OPENAI_COMPLETION) {
        buf_puts(&framed, "data: ");
        buf_append(&framed, payload->data, payload->len);
        buf_puts(&framed, "\n\n");
    } else {
        buf_append(&framed, payload->data, payload->len);
        buf_putc(&framed, '\n');
    }
    http_stream_data(&g->out, g->chunked, framed.data, framed.len);
    buf_free(&framed);
    buf_clear(payload);
}

static void openai_chunk_head(gen_ctx *g, buf *b) {
    int chat = g->r->kind == API_OPENAI_CHAT;
    buf_printf(b, "{\"id\":\"%s\",\"object\":\"%s\",\"created\":%ld,\"model\":", g->id,
               chat ? "chat.completion.chunk" : "text_completion", g->created);
    json_write_string(b, g->model, strlen(g->model), 0);
    buf_puts(b, ",\"choices\":[{\"index\":0,");
}

static void ollama_line_head(gen_ctx *g, buf *b) {
    char t[64];
    iso_time(t, sizeof t);
    buf_puts(b, "{\"model\":");
    json_write_string(b, g->model, strlen(g->model), 0);
    buf_printf(b, ",\"created_at\":\"%s\",", t);
}

static void call_id(gen_ctx *g, int index, char *out, size_t n) { snprintf(out, n, "call_%lx_%d", g->rid, index); }

/* Streams or accumulates one piece: kind 0 content, 1 reasoning. */
static void deliver_text(gen_ctx *g, int kind, const char *text, size_t len) {
    if (!len) return;
    if (!g->stream) {
        buf_append(kind ? &g->reasoning : &g->content, text, len);
        return;
    }
    buf b = {0};
    switch (g->r->kind) {
    case API_OPENAI_CHAT:
        openai_chunk_head(g, &b);
        buf_puts(&b, "\"delta\":{");
        if (!g->sent_role) { buf_puts(&b, "\"role\":\"assistant\","); g->sent_role = 1; }
        buf_puts(&b, kind ? "\"reasoning_content\":" : "\"content\":");
        json_write_string(&b, text, len, 0);
        buf_puts(&b, "},\"logprobs\":null,\"finish_reason\":null}]");
        if (g->r->include_usage) buf_puts(&b, ",\"usage\":null");
        buf_putc(&b, '}');
        break;
    case API_OPENAI_COMPLETION:
        openai_chunk_head(g, &b);
        buf_puts(&b, "\"text\":");
        json_write_string(&b, text, len, 0);
        buf_puts(&b, ",\"logprobs\":null,\"finish_reason\":null}]}");
        break;
    case API_OLLAMA_CHAT:
        ollama_line_head(g, &b);
        buf_puts(&b, "\"message\":{\"role\":\"assistant\",\"content\":");
        if (kind) {
            buf_puts(&b, "\"\",\"thinking\":");
            json_write_string(&b, text, len, 0);
        } else {
            json_write_string(&b, text, len, 0);
        }
        buf_puts(&b, "},\"done\":false}");
        break;
    case API_OLLAMA_GENERATE:
        ollama_line_head(g, &b);
        buf_puts(&b, "\"response\":");
        if (kind) {
            buf_puts(&b, "\"\",\"thinking\":");
            json_write_string(&b, text, len, 0);
        } else {
            json_write_string(&b, text, len, 0);
        }
        buf_puts(&b, ",\"done\":false}");
        break;
    }
    emit(g, &b);
    buf_free(&b);
}

static void deliver_call(gen_ctx *g, const chat_event *ev) {
    char id[64];
    call_id(g, ev->index, id, sizeof id);
    const char *name = ev->name ? ev->name : "";
    const char *args = ev->arguments_json ? ev->arguments_json : "{}";
    if (g->r->kind == API_OLLAMA_GENERATE || !g->r->tools) {
        /* no tool calls in this API, or none offered (no tools, tool_choice
           "none"): the model's raw text, tags included, as content */
        buf raw = {0};
        buf_puts(&raw, "<tool_call>");
        buf_append(&raw, ev->text, ev->len);
        buf_puts(&raw, "</tool_call>");
        deliver_text(g, 0, raw.data, raw.len);
        buf_free(&raw);
        return;
    }
    buf b = {0};
    if (g->r->kind == API_OPENAI_CHAT) {
        if (!g->stream) {
            buf_printf(&g->calls, "%s{\"id\":\"%s\",\"type\":\"function\",\"function\":{\"name\":", g->n_calls ? "," : "", id);
            json_write_string(&g->calls, name, strlen(name), 0);
            buf_puts(&g->calls, ",\"arguments\":");
            json_write_string(&g->calls, args, strlen(args), 0);
            buf_puts(&g->calls, "}}");
        } else {
            /* the call's head, then its arguments as a delta (clients concatenate them) */
            openai_chunk_head(g, &b);
            buf_puts(&b, "\"delta\":{");
            if (!g->sent_role) { buf_puts(&b, "\"role\":\"assistant\","); g->sent_role = 1; }
            buf_printf(&b, "\"tool_calls\":[{\"index\":%d,\"id\":\"%s\",\"type\":\"function\",\"function\":{\"name\":", ev->index, id);
            json_write_string(&b, name, strlen(name), 0);
            buf_puts(&b, ",\"arguments\":\"\"}}]},\"logprobs\":null,\"finish_reason\":null}]");
            if (g->r->include_usage) buf_puts(&b, ",\"usage\":null");
            buf_putc(&b, '}');
            emit(g, &b);
            openai_chunk_head(g, &b);
            buf_printf(&b, "\"delta\":{\"tool_calls\":[{\"index\":%d,\"function\":{\"arguments\":", ev->index);
            json_write_string(&b, args, strlen(args), 0);
            buf_puts(&b, "}}]},\"logprobs\":null,\"finish_reason\":null}]");
            if (g->r->include_usage) buf_puts(&b, ",\"usage\":null");
            buf_putc(&b, '}');
            emit(g, &b);
        }
    } else { /* Ollama chat: arguments as an object */
        buf call = {0};
        buf_printf(&call, "{\"id\":\"%s\",\"function\":{\"index\":%d,\"name\":", id, ev->index);
        json_write_string(&call, name, strlen(name), 0);
        buf_printf(&call, ",\"arguments\":%s}}", args);
        if (!g->stream) {
            if (g->n_calls) buf_putc(&g->calls, ',');
            buf_append(&g->calls, call.data, call.len);
        } else {
            ollama_line_head(g, &b);
            buf_printf(&b, "\"message\":{\"role\":\"assistant\",\"content\":\"\",\"tool_calls\":[%s]},\"done\":false}", call.data);
            emit(g, &b);
        }
        buf_free(&call);
    }
    g->n_calls++;
    buf_free(&b);
}

static void on_event(void *user, const chat_event *ev) {
    gen_ctx *g = user;
    switch (ev->kind) {
    case CHAT_EV_REASONING: deliver_text(g, 1, ev->text, ev->len); break;
    case CHAT_EV_CONTENT: deliver_text(g, 0, ev->text, ev->len); break;
    case CHAT_EV_TOOL_CALL: deliver_call(g, ev); break;
    case CHAT_EV_ERROR: fprintf(stderr, "glmlite serve: output parser: %.*s\n", (int)ev->len, ev->text); break;
    }
}

static void on_text(void *user, const char *text, size_t len) {
    gen_ctx *g = user;
    if (g->parser) chat_parser_feed(g->parser, text, len, on_event, g);
    else deliver_text(g, 0, text, len);
}

/* Polled once per token with the model lock held: hand the model to the
 * next waiting request, write what was produced (outside the lock), check
 * the client, take the model back. */
static int on_poll(void *user) {
    gen_ctx *g = user;
    fair_lock_release(&g->srv->model_lock);
    g->holding_lock = 0;
    if (g->out.len) conn_write_buf(g->x->c, &g->out);
    int stop = atomic_load(&g->srv->stopping) || conn_gone(g->x->c);
    fair_lock_acquire(&g->srv->model_lock);
    g->holding_lock = 1;
    return stop;
}

static const char *finish_name(const gen_stats *st, int n_calls, int ollama) {
    if (st->finish == GEN_LENGTH) return "length";
    if (n_calls && !ollama) return "tool_calls";
    return "stop";
}

static void usage_json(buf *b, const gen_stats *st) {
    buf_printf(b, "{\"prompt_tokens\":%d,\"completion_tokens\":%d,\"total_tokens\":%d,"
                  "\"prompt_tokens_details\":{\"cached_tokens\":%d},\"completion_tokens_details\":{\"reasoning_tokens\":%d}}",
               st->n_prompt, st->n_generated, st->n_prompt + st->n_generated, st->n_cached, st->n_reasoning);
}

/* Ollama's prompt_eval_count is the whole prompt, cached or not ("caching is an
 * implementation detail", ollama PR #5371); the cached part is
 * prompt_eval_cached_count, as in Ollama's api.Metrics. */
static void ollama_stats(buf *b, const gen_stats *st, const char *done_reason, double t_start) {
    long long total = (long long)((now_s() - t_start) * 1e9);
    buf_printf(b, "\"done\":true,\"done_reason\":\"%s\",\"total_duration\":%lld,\"load_duration\":0,"
                  "\"prompt_eval_count\":%d,\"prompt_eval_cached_count\":%d,\"prompt_eval_duration\":%lld,"
                  "\"eval_count\":%d,\"eval_duration\":%lld}",
               done_reason, total, st->n_prompt, st->n_cached, (long long)(st->prefill_s * 1e9), st->n_generated,
               (long long)(st->decode_s * 1e9));
}

/* The closing part of a response: the last stream events, or the whole body. */
static void finish_response(gen_ctx *g, const gen_stats *st, double t_start) {
    int ollama = g->r->kind == API_OLLAMA_CHAT || g->r->kind == API_OLLAMA_GENERATE;
    const char *fin = finish_name(st, g->n_calls, ollama);
    buf b = {0};
    if (g->stream) {
        switch (g->r->kind) {
        case API_OPENAI_CHAT:
        case API_OPENAI_COMPLETION:
            openai_chunk_head(g, &b);
            if (g->r->kind == API_OPENAI_CHAT) {
                buf_puts(&b, "\"delta\":{");
                if (!g->sent_role) buf_puts(&b, "\"role\":\"assistant\",\"content\":\"\"");
                buf_puts(&b, "},\"logprobs\":null,");
            } else {
                buf_puts(&b, "\"text\":\"\",\"logprobs\":null,");
            }
            buf_printf(&b, "\"finish_reason\":\"%s\"}]", fin);
            if (g->r->include_usage) buf_puts(&b, ",\"usage\":null");
            buf_putc(&b, '}');
            emit(g, &b);
            if (g->r->include_usage) {
                buf_printf(&b, "{\"id\":\"%s\",\"object\":\"%s\",\"created\":%ld,\"model\":", g->id,
                           g->r->kind == API_OPENAI_CHAT ? "chat.completion.chunk" : "text_completion", g->created);
                json_write_string(&b, g->model, strlen(g->model), 0);
                buf_puts(&b, ",\"choices\":[],\"usage\":");
                usage_json(&b, st);
                buf_putc(&b, '}');
                emit(g, &b);
            }
            buf_puts(&b, "[DONE]");
            emit(g, &b);
            break;
        case API_OLLAMA_CHAT:
            ollama_line_head(g, &b);
            buf_puts(&b, "\"message\":{\"role\":\"assistant\",\"content\":\"\"},");
            ollama_stats(&b, st, fin, t_start);
            emit(g, &b);
            break;
        case API_OLLAMA_GENERATE:
            ollama_line_head(g, &b);
            buf_puts(&b, "\"response\":\"\",");
            ollama_stats(&b, st, fin, t_start);
            emit(g, &b);
            break;
        }
        http_stream_end(&g->out, g->chunked);
        conn_write_buf(g->x->c, &g->out);
        g->x->status = 200;
        buf_free(&b);
        return;
    }
    const char *content = g->content.data ? g->content.data : "";
    switch (g->r->kind) {
    case API_OPENAI_CHAT:
        buf_printf(&b, "{\"id\":\"%s\",\"object\":\"chat.completion\",\"created\":%ld,\"model\":", g->id, g->created);
        json_write_string(&b, g->model, strlen(g->model), 0);
        buf_puts(&b, ",\"choices\":[{\"index\":0,\"message\":{\"role\":\"assistant\",\"content\":");
        if (g->n_calls && !g->content.len) buf_puts(&b, "null");
        else json_write_string(&b, content, g->content.len, 0);
        if (g->reasoning.len) {
            buf_puts(&b, ",\"reasoning_content\":");
            json_write_string(&b, g->reasoning.data, g->reasoning.len, 0);
        }
        if (g->n_calls) buf_printf(&b, ",\"tool_calls\":[%s]", g->calls.data);
        buf_printf(&b, "},\"logprobs\":null,\"finish_reason\":\"%s\"}],\"usage\":", fin);
        usage_json(&b, st);
        buf_putc(&b, '}');
        break;
    case API_OPENAI_COMPLETION:
        buf_printf(&b, "{\"id\":\"%s\",\"object\":\"text_completion\",\"created\":%ld,\"model\":", g->id, g->created);
        json_write_string(&b, g->model, strlen(g->model), 0);
        buf_puts(&b, ",\"choices\":[{\"index\":0,\"text\":");
        json_write_string(&b, content, g->content.len, 0);
        buf_printf(&b, ",\"logprobs\":null,\"finish_reason\":\"%s\"}],\"usage\":", fin);
        usage_json(&b, st);
        buf_putc(&b, '}');
        break;
    case API_OLLAMA_CHAT:
        ollama_line_head(g, &b);
        buf_puts(&b, "\"message\":{\"role\":\"assistant\",\"content\":");
        json_write_string(&b, content, g->content.len, 0);
        if (g->reasoning.len) {
            buf_puts(&b, ",\"thinking\":");
            json_write_string(&b, g->reasoning.data, g->reasoning.len, 0);
        }
        if (g->n_calls) buf_printf(&b, ",\"tool_calls\":[%s]", g->calls.data);
        buf_puts(&b, "},");
        ollama_stats(&b, st, fin, t_start);
        break;
    case API_OLLAMA_GENERATE:
        ollama_line_head(g, &b);
        buf_puts(&b, "\"response\":");
        json_write_string(&b, content, g->content.len, 0);
        if (g->reasoning.len) {
            buf_puts(&b, ",\"thinking\":");
            json_write_string(&b, g->reasoning.data, g->reasoning.len, 0);
        }
        buf_putc(&b, ',');
        ollama_stats(&b, st, fin, t_start);
        break;
    }
    send_json(g->x, 200, &b);
    buf_free(&b);
}

static uint64_t fresh_seed(server *s) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_nsec * 0x9E3779B97F4A7C15ull ^ (uint64_t)ts.tv_sec ^ atomic_fetch_add(&s->req_counter, 1) << 32;
}

/* tool_choice "required" or a named function: the answer opens with
 * "<tool_call>" and, when named, the function's name (the model writes the
 * arguments); *n = 0 and NULL when the request forces nothing. */
static int32_t *forced_call_prefix(const glm_runtime *rt, const api_request *r, int *n) {
    *n = 0;
    int32_t open = r->force_tool ? tokenizer_token_id(rt->tok, "<tool_call>") : -1;
    if (open < 0) return NULL;
    int32_t *name = NULL;
    size_t n_name = 0;
    char err[256];
    if (r->force_tool_name[0] &&
        tokenizer_encode(rt->tok, r->force_tool_name, strlen(r->force_tool_name), 0, &name, &n_name, err, sizeof err))
        return NULL;
    int32_t *ids = malloc((n_name + 1) * sizeof *ids);
    if (ids) {
        ids[0] = open;
        if (n_name) memcpy(ids + 1, name, n_name * sizeof *name);
        *n = (int)n_name + 1;
    }
    free(name);
    return ids;
}

static void handle_generation(exchange *x, api_kind kind) {
    server *s = x->c->srv;
    double t_start = now_s();
    const http_parser *p = x->req;
    api_request r;
    char err[512];
    if (api_request_decode(kind, p->body.data ? p->body.data : "", p->body.len, &s->rt->defaults, &r, err, sizeof err)) {
        send_error(x, 400, err, r.param, NULL);
        api_request_free(&r);
        return;
    }
    gen_ctx g = {0};
    g.x = x;
    g.srv = s;
    g.r = &r;
    g.stream = r.stream;
    g.created = (long)time(NULL);
    g.rid = atomic_fetch_add(&s->req_counter, 1);
    snprintf(g.id, sizeof g.id, "%s-%lx%04lx", kind == API_OPENAI_CHAT ? "chatcmpl" : "cmpl", (unsigned long)g.created, g.rid);
    snprintf(g.model, sizeof g.model, "%s", s->rt->name);
    if (r.load_only) {   /* Ollama's "load the model" request: nothing to generate */
        buf b = {0};
        ollama_line_head(&g, &b);
        if (kind == API_OLLAMA_CHAT) buf_puts(&b, "\"message\":{\"role\":\"assistant\",\"content\":\"\"},");
        else buf_puts(&b, "\"response\":\"\",");
        buf_puts(&b, "\"done\":true,\"done_reason\":\"load\"}");
        if (r.stream) buf_putc(&b, '\n');
        send_body(x, 200, r.stream ? "application/x-ndjson" : "application/json", b.data, b.len, NULL);
        buf_free(&b);
        api_request_free(&r);
        return;
    }
    int32_t *ids = NULL;
    size_t n_ids = 0;
    if (api_encode_prompt(s->rt->tok, &r, &ids, &n_ids, err, sizeof err)) {
        send_error(x, 400, err, "messages", NULL);
        api_request_free(&r);
        return;
    }
    if (n_ids >= (size_t)s->n_ctx) {
        snprintf(err, sizeof err, "the prompt has %zu tokens but the context holds %d (start the server with a larger -c)",
                 n_ids, s->n_ctx);
        send_error(x, 400, err, kind == API_OPENAI_COMPLETION || kind == API_OLLAMA_GENERATE ? "prompt" : "messages", NULL);
        free(ids);
        api_request_free(&r);
        return;
    }
    if (!r.has_seed) r.sp.seed = fresh_seed(s);
    const glm_config *cfg = glm_model_config(s->rt->model);
    sampler *smp = sampler_new(&r.sp, cfg->vocab_size, s->rt->n_valid);
    if (!smp) {
        send_error(x, 400, "invalid sampling parameters", NULL, NULL);
        free(ids);
        api_request_free(&r);
        return;
    }
    int si = slot_acquire(s, ids, (int)n_ids);
    if (si < 0) {
        send_error(x, 503, "the server is shutting down", NULL, NULL);
        sampler_free(smp);
        free(ids);
        api_request_free(&r);
        return;
    }
    if (r.chat) g.parser = chat_parser_new(r.thinking, r.tools);
    if (g.stream) {
        const char *ctype = kind == API_OPENAI_CHAT || kind == API_OPENAI_COMPLETION ? "text/event-stream" : "application/x-ndjson";
        g.chunked = p->version_minor != 0;   /* HTTP/1.0 has no chunked coding: the body runs to the close */
        if (!g.chunked) x->keep_alive = 0;
        http_stream_head(&g.out, 200, ctype, g.chunked, x->keep_alive, x->cors[0] ? x->cors : NULL);
        conn_write_buf(x->c, &g.out);   /* headers now: the client sees the request accepted */
    }
    int n_prefix = 0;
    int32_t *prefix = forced_call_prefix(s->rt, &r, &n_prefix);
    int32_t think_end = r.thinking ? tokenizer_token_id(s->rt->tok, "</think>") : -1;
    gen_options go = {.max_tokens = r.max_tokens,
                      .stop = (const char *const *)r.stop,
                      .n_stop = r.n_stop,
                      .forced = s->script,
                      .n_forced = s->script ? s->o.n_script : 0,
                      .answer_prefix = prefix,
                      .n_answer_prefix = r.thinking && think_end < 0 ? 0 : n_prefix,   /* no </think> token: nothing to wait for */
                      .reasoning_end = think_end};
    gen_callbacks cb = {on_text, on_poll, &g};
    gen_stats st;
    fair_lock_acquire(&s->model_lock);
    g.holding_lock = 1;
    int rc = generate(s->rt, s->slots[si].session, smp, ids, (int)n_ids, &go, &cb, &st, err, sizeof err);
    if (g.holding_lock) fair_lock_release(&s->model_lock);
    slot_release(s, si);
    if (g.parser) chat_parser_finish(g.parser, on_event, &g);
    x->n_prompt = st.n_prompt;
    x->n_cached = st.n_cached;
    x->n_gen = st.n_generated;
    x->decode_s = st.decode_s;
    if (rc) {
        if (g.stream) {   /* headers are out: report in-band, then end the body */
            buf b = {0};
            buf_puts(&b, "{\"error\":");
            json_write_string(&b, err, strlen(err), 0);
            buf_putc(&b, '}');
            emit(&g, &b);
            http_stream_end(&g.out, g.chunked);
            conn_write_buf(x->c, &g.out);
            buf_free(&b);
            x->status = 500;
        } else {
            send_error(x, 500, err, NULL, NULL);
        }
    } else if (st.finish == GEN_CANCELLED && !atomic_load(&s->stopping)) {
        x->status = 499;   /* client gone: nobody to answer (nginx's code, for the log) */
        x->keep_alive = 0;
    } else {
        finish_response(&g, &st, t_start);
    }
    chat_parser_free(g.parser);
    buf_free(&g.out);
    buf_free(&g.content);
    buf_free(&g.reasoning);
    buf_free(&g.calls);
    sampler_free(smp);
    free(prefix);
    free(ids);
    api_request_free(&r);
}

/* --------------------------------------------------------- other routes */

static void model_details(server *s, buf *b) {
    const glm_config *c = glm_model_config(s->rt->model);
    buf_puts(b, "{\"parent_model\":\"\",\"format\":\"safetensors\",\"family\":");
    json_write_string(b, c->model_type, strlen(c->model_type), 0);
    buf_puts(b, ",\"families\":[");
    json_write_string(b, c->model_type, strlen(c->model_type), 0);
    buf_puts(b, "],\"parameter_size\":\"\",\"quantization_level\":\"\"}");
}

static size_t model_bytes(server *s) {
    glm_model_stats st;
    glm_model_get_stats(s->rt->model, &st);
    return st.weight_bytes;
}

/* A stable 64-hex-digit id for the model (Ollama's digest is a sha256; its
 * CLI prints digest[:12] and panics on anything shorter). */
static void model_digest(const char *name, size_t size, char out[65]) {
    for (int w = 0; w < 4; w++) {
        uint64_t h = 0xcbf29ce484222325ull ^ (uint64_t)w * 0x9E3779B97F4A7C15ull;
        for (const char *c = name; *c; c++) h = (h ^ (unsigned char)*c) * 0x100000001b3ull;
        for (int i = 0; i < 8; i++) h = (h ^ ((size >> (8 * i)) & 0xff)) * 0x100000001b3ull;
        snprintf(out + 16 * w, 17, "%016llx", (unsigned long long)h);
    }
}

static void handle_tags(exchange *x, int ps) {
    server *s = x->c->srv;
    buf b = {0};
    char t[64];
    iso_time(t, sizeof t);
    buf_puts(&b, "{\"models\":[{\"name\":");
    json_write_string(&b, s->rt->name, strlen(s->rt->name), 0);
    buf_puts(&b, ",\"model\":");
    json_write_string(&b, s->rt->name, strlen(s->rt->name), 0);
    if (!ps) buf_printf(&b, ",\"modified_at\":\"%s\"", t);
    char digest[65];
    size_t size = model_bytes(s);
    model_digest(s->rt->name, size, digest);
    buf_printf(&b, ",\"size\":%zu,\"digest\":\"%s\",\"details\":", size, digest);
    model_details(s, &b);
    if (ps) buf_printf(&b, ",\"expires_at\":\"2999-01-01T00:00:00Z\",\"size_vram\":0,\"context_length\":%d", s->n_ctx);
    buf_puts(&b, "}]}");
    send_json(x, 200, &b);
    buf_free(&b);
}

static void handle_show(exchange *x) {
    server *s = x->c->srv;
    const glm_config *c = glm_model_config(s->rt->model);
    buf b = {0};
    buf_puts(&b, "{\"modelfile\":\"\",\"parameters\":\"\",\"template\":\"\",\"details\":");
    model_details(s, &b);
    buf_puts(&b, ",\"model_info\":{\"general.architecture\":");
    json_write_string(&b, c->model_type, strlen(c->model_type), 0);
    buf_printf(&b, ",\"general.basename\":");
    json_write_string(&b, s->rt->name, strlen(s->rt->name), 0);
    buf_printf(&b, ",\"%s.context_length\":%d,\"%s.block_count\":%d,\"%s.embedding_length\":%d,\"%s.vocab_size\":%d}",
               c->model_type, c->max_position_embeddings, c->model_type, c->num_hidden_layers, c->model_type,
               c->hidden_size, c->model_type, c->vocab_size);
    buf_puts(&b, ",\"capabilities\":[\"completion\",\"tools\",\"thinking\"]}");
    send_json(x, 200, &b);
    buf_free(&b);
}

/* The loaded model as an OpenAI model object. */
static void model_object(server *s, buf *b) {
    buf_puts(b, "{\"id\":");
    json_write_string(b, s->rt->name, strlen(s->rt->name), 0);
    buf_printf(b, ",\"object\":\"model\",\"created\":%ld,\"owned_by\":\"glmlite\",\"meta\":{\"n_ctx\":%d,\"slots\":%d}}",
               (long)s->started, s->n_ctx, s->n_slots);
}

/* GET /v1/models, or (one) GET /v1/models/{id}: any id names the one loaded
 * model, as any "model" in a request does. */
static void handle_models(exchange *x, int one) {
    server *s = x->c->srv;
    buf b = {0};
    if (!one) buf_puts(&b, "{\"object\":\"list\",\"data\":[");
    model_object(s, &b);
    if (!one) buf_puts(&b, "]}");
    send_json(x, 200, &b);
    buf_free(&b);
}

typedef enum { R_ROOT, R_VERSION, R_TAGS, R_PS, R_SHOW, R_MODELS, R_MODEL, R_CHAT, R_COMPLETIONS, R_OCHAT, R_OGENERATE } route_id;

static const struct {
    const char *path;            /* ending in '/': that prefix and at least one more byte */
    route_id id;
    const char *method;          /* GET routes also answer HEAD */
} ROUTES[] = {
    {"/", R_ROOT, "GET"},
    {"/api/version", R_VERSION, "GET"},
    {"/api/tags", R_TAGS, "GET"},
    {"/api/ps", R_PS, "GET"},
    {"/api/show", R_SHOW, "POST"},
    {"/v1/models", R_MODELS, "GET"},
    {"/v1/models/", R_MODEL, "GET"},
    {"/v1/chat/completions", R_CHAT, "POST"},
    {"/v1/completions", R_COMPLETIONS, "POST"},
    {"/api/chat", R_OCHAT, "POST"},
    {"/api/generate", R_OGENERATE, "POST"},
};

static int route_matches(const char *route, const char *path) {
    size_t n = strlen(route);
    if (n > 1 && route[n - 1] == '/') return !strncmp(path, route, n) && path[n];
    return !strcmp(path, route);
}

static int authorized(server *s, const http_parser *p) {
    if (!s->o.api_key || !*s->o.api_key) return 1;
    const char *h = http_header_get(p, "authorization");
    if (!h || strncasecmp(h, "Bearer ", 7) != 0) return 0;
    h += 7;
    while (*h == ' ') h++;
    size_t a = strlen(h), k = strlen(s->o.api_key);
    unsigned diff = (unsigned)(a ^ k);
    for (size_t i = 0; i < a && i < k; i++) diff |= (unsigned char)h[i] ^ (unsigned char)s->o.api_key[i];
    return diff == 0;
}

/* Browser origins allowed to call the API (as Ollama's default OLLAMA_ORIGINS):
 * local pages, desktop/extension shells; any origin when an API key guards
 * the server (the browser must still present the key). */
static int origin_allowed(server *s, const char *o) {
    if (s->o.api_key && *s->o.api_key) return 1;
    static const char *const schemes[] = {"app://", "file://", "tauri://", "vscode-webview://", "vscode-file://",
                                          "chrome-extension://", "moz-extension://", "safari-web-extension://"};
    for (size_t i = 0; i < sizeof schemes / sizeof schemes[0]; i++)
        if (!strncasecmp(o, schemes[i], strlen(schemes[i]))) return 1;
    if (!strcmp(o, "null")) return 1;   /* file:// pages */
    const char *h = !strncasecmp(o, "http://", 7) ? o + 7 : !strncasecmp(o, "https://", 8) ? o + 8 : NULL;
    if (!h) return 0;
    static const char *const hosts[] = {"localhost", "127.0.0.1", "[::1]", "0.0.0.0"};
    for (size_t i = 0; i < sizeof hosts / sizeof hosts[0]; i++) {
        size_t l = strlen(hosts[i]);
        if (!strncasecmp(h, hosts[i], l) && (h[l] == 0 || h[l] == ':')) return 1;
    }
    return 0;
}

static void set_cors(exchange *x, server *s, const http_parser *p) {
    const char *o = http_header_get(p, "origin");
    x->cors[0] = 0;
    if (!o || !*o || strlen(o) > 200 || strpbrk(o, "\r\n") || !origin_allowed(s, o)) return;
    snprintf(x->cors, sizeof x->cors, "Access-Control-Allow-Origin: %s\r\nVary: Origin\r\n", o);
}

/* A CORS preflight: OPTIONS with Access-Control-Request-Method. No API key
 * is asked for (browsers never send credentials on a preflight). */
static void send_preflight(exchange *x, const http_parser *p, int is_get) {
    char hdrs[1024];
    const char *rh = http_header_get(p, "access-control-request-headers");
    if (!rh || strlen(rh) > 500 || strpbrk(rh, "\r\n")) rh = "Authorization, Content-Type";
    snprintf(hdrs, sizeof hdrs,
             "Access-Control-Allow-Methods: %s, OPTIONS\r\nAccess-Control-Allow-Headers: %s\r\n"
             "Access-Control-Max-Age: 86400\r\n",
             is_get ? "GET, HEAD" : "POST", rh);
    send_body(x, 204, NULL, "", 0, hdrs);
}

static void dispatch(exchange *x) {
    server *s = x->c->srv;
    const http_parser *p = x->req;
    const char *path = p->path;
    x->ollama_errors = strncmp(path, "/v1/", 4) != 0;
    set_cors(x, s, p);
    int found = -1;
    for (size_t i = 0; i < sizeof ROUTES / sizeof ROUTES[0]; i++)
        if (route_matches(ROUTES[i].path, path)) found = (int)i;
    if (found < 0) {
        /* The OpenAI Responses API is the default of some clients (Vercel AI SDK's
         * openai(model), @openai/agents): say what to use instead. */
        if (!strcmp(path, "/v1/responses") || !strncmp(path, "/v1/responses/", 14))
            send_error(x, 404, "/v1/responses (the OpenAI Responses API) is not supported: use /v1/chat/completions "
                       "(Vercel AI SDK: openai.chat(model); @openai/agents: setOpenAIAPI('chat_completions'))", NULL, NULL);
        else
            send_error(x, 404, "not found", NULL, NULL);
        return;
    }
    int is_get = !strcmp(ROUTES[found].method, "GET");
    if (!strcmp(p->method, "OPTIONS")) {
        send_preflight(x, p, is_get);
        return;
    }
    x->head_only = is_get && !strcmp(p->method, "HEAD");
    if (strcmp(p->method, ROUTES[found].method) != 0 && !x->head_only) {
        char allow[64];
        snprintf(allow, sizeof allow, "Allow: %s\r\n", is_get ? "GET, HEAD" : ROUTES[found].method);
        send_error(x, 405, "method not allowed", NULL, allow);
        return;
    }
    if (ROUTES[found].id != R_ROOT && !authorized(s, p)) {
        send_error(x, 401, "missing or invalid API key (Authorization: Bearer ...)", NULL, "WWW-Authenticate: Bearer\r\n");
        return;
    }
    buf b = {0};
    switch (ROUTES[found].id) {
    case R_ROOT: send_body(x, 200, "text/plain; charset=utf-8", "Ollama is running", 17, NULL); break;
    case R_VERSION:
        buf_puts(&b, "{\"version\":\"" API_VERSION "\"}");
        send_json(x, 200, &b);
        break;
    case R_TAGS: handle_tags(x, 0); break;
    case R_PS: handle_tags(x, 1); break;
    case R_SHOW: handle_show(x); break;
    case R_MODELS: handle_models(x, 0); break;
    case R_MODEL: handle_models(x, 1); break;
    case R_CHAT: handle_generation(x, API_OPENAI_CHAT); break;
    case R_COMPLETIONS: handle_generation(x, API_OPENAI_COMPLETION); break;
    case R_OCHAT: handle_generation(x, API_OLLAMA_CHAT); break;
    case R_OGENERATE: handle_generation(x, API_OLLAMA_GENERATE); break;
    }
    buf_free(&b);
}

/* ---------------------------------------------------------- connections */

static void log_request(exchange *x, const char *method, const char *path, double t0) {
    double el = now_s() - t0;
    if (x->n_prompt || x->n_gen)
        fprintf(stderr, "glmlite serve: %s %s %s %d prompt=%d cached=%d generated=%d %.1f tok/s %.3fs\n", x->c->peer, method,
                path, x->status, x->n_prompt, x->n_cached, x->n_gen, x->decode_s > 0 ? x->n_gen / x->decode_s : 0.0, el);
    else
        fprintf(stderr, "glmlite serve: %s %s %s %d %.3fs\n", x->c->peer, method, path, x->status, el);
}

static void *conn_main(void *arg) {
    conn *c = arg;
    server *s = c->srv;
    http_parser p;
    http_parser_init(&p, &s->o.limits);
    char rb[16384];
    buf pending = {0};           /* bytes read past the end of the previous request */
    for (;;) {
        http_parser_reset(&p);
        double deadline = now_s() + s->o.timeout_s;
        int got = 0, sent_continue = 0, rc = 0, timed_out = 0;
        size_t used = 0;
        if (pending.len) {
            rc = http_parser_feed(&p, pending.data, pending.len, &used);
            got = 1;
            memmove(pending.data, pending.data + used, pending.len - used);
            pending.len -= used;
        }
        while (rc == 0) {
            if (p.headers_done && p.expect_continue && !sent_continue) {
                sent_continue = 1;
                static const char cont[] = "HTTP/1.1 100 Continue\r\n\r\n";
                conn_write(c, cont, sizeof cont - 1);
            }
            ssize_t r = conn_read(c, rb, sizeof rb, deadline);
            if (r == -3) { timed_out = 1; break; }
            if (r <= 0) break;   /* EOF, error, stopping */
            got = 1;
            rc = http_parser_feed(&p, rb, (size_t)r, &used);
            if (rc == 1 && used < (size_t)r) buf_append(&pending, rb + used, (size_t)r - used);
        }
        double t0 = now_s();
        exchange x = {0};
        x.c = c;
        x.req = &p;
        if (rc == 0) {
            if (timed_out && got) {
                x.status = 408;
                send_error(&x, 408, "request not received in time", NULL, NULL);
                log_request(&x, p.method ? p.method : "-", p.path ? p.path : "-", t0);
            }
            break;
        }
        if (rc < 0) {
            x.ollama_errors = !p.path || strncmp(p.path, "/v1/", 4) != 0;   /* the API's own error format where known */
            send_error(&x, p.status, p.error, NULL, NULL);
            log_request(&x, p.method ? p.method : "-", p.path ? p.path : "-", t0);
            break;
        }
        x.keep_alive = p.keep_alive && !atomic_load(&s->stopping);
        dispatch(&x);
        log_request(&x, p.method, p.path, t0);
        if (!x.keep_alive || c->broken) break;
    }
    shutdown(c->fd, SHUT_WR);
    /* drain briefly so that the client reads the response before our close resets the connection */
    struct pollfd pf = {c->fd, POLLIN, 0};
    for (int i = 0; i < 10 && poll(&pf, 1, 20) > 0; i++)
        if (recv(c->fd, rb, sizeof rb, MSG_DONTWAIT) <= 0) break;
    close(c->fd);
    buf_free(&pending);
    http_parser_free(&p);
    atomic_store(&c->done, 1);
    return NULL;
}

/* ---------------------------------------------------------------- server */

server *server_new(glm_runtime *rt, const server_options *opt, char *err, size_t errlen) {
    server *s = calloc(1, sizeof *s);
    if (!s) { snprintf(err, errlen, "out of memory"); return NULL; }
    s->rt = rt;
    s->o = *opt;
    s->listen_fd = -1;
    s->wake[0] = s->wake[1] = -1;
    if (!s->o.host || !*s->o.host) s->o.host = "127.0.0.1";
    if (!s->o.port) s->o.port = 8080;
    if (s->o.parallel <= 0) s->o.parallel = 1;
    if (s->o.timeout_s <= 0) s->o.timeout_s = 30;
    if (s->o.max_conns <= 0) s->o.max_conns = 64;
    if (!s->o.limits.max_request_line) http_limits_default(&s->o.limits);
    pthread_mutex_init(&s->slot_m, NULL);
    pthread_cond_init(&s->slot_c, NULL);
    pthread_mutex_init(&s->model_lock.m, NULL);
    pthread_cond_init(&s->model_lock.c, NULL);
    s->started = time(NULL);
    if (opt->script && opt->n_script > 0) {
        s->script = malloc((size_t)opt->n_script * sizeof *s->script);
        if (!s->script) { snprintf(err, errlen, "out of memory"); server_free(s); return NULL; }
        memcpy(s->script, opt->script, (size_t)opt->n_script * sizeof *s->script);
    }
    const glm_config *c = glm_model_config(rt->model);
    s->n_ctx = s->o.n_ctx > 0 ? s->o.n_ctx : 4096;
    if (s->n_ctx > c->max_position_embeddings) s->n_ctx = c->max_position_embeddings;
    s->slots = calloc((size_t)s->o.parallel, sizeof *s->slots);
    s->conns = calloc((size_t)s->o.max_conns, sizeof *s->conns);
    if (!s->slots || !s->conns) { snprintf(err, errlen, "out of memory"); server_free(s); return NULL; }
    for (int i = 0; i < s->o.parallel; i++) {
        glm_session_options so = {.n_ctx = s->n_ctx, .kv_bf16 = s->o.kv_bf16};
        s->slots[i].session = glm_session_new(rt->model, &so, err, errlen);
        if (!s->slots[i].session) { server_free(s); return NULL; }
        s->n_slots++;
    }
    if (pipe(s->wake) != 0) { snprintf(err, errlen, "pipe: %s", strerror(errno)); server_free(s); return NULL; }
    fcntl(s->wake[1], F_SETFL, O_NONBLOCK);
    struct addrinfo hints = {0}, *ai = NULL;
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
    char port[16];
    snprintf(port, sizeof port, "%d", s->o.port);
    int gai = getaddrinfo(s->o.host, port, &hints, &ai);
    if (gai) { snprintf(err, errlen, "%s: %s", s->o.host, gai_strerror(gai)); server_free(s); return NULL; }
    for (struct addrinfo *a = ai; a; a = a->ai_next) {
        int fd = socket(a->ai_family, a->ai_socktype | SOCK_CLOEXEC, a->ai_protocol);
        if (fd < 0) continue;
        int one = 1;
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
        if (bind(fd, a->ai_addr, a->ai_addrlen) == 0 && listen(fd, 128) == 0) { s->listen_fd = fd; break; }
        snprintf(err, errlen, "cannot listen on %s:%d: %s", s->o.host, s->o.port, strerror(errno));
        close(fd);
    }
    freeaddrinfo(ai);
    if (s->listen_fd < 0) { server_free(s); return NULL; }
    return s;
}

void server_stop(server *s) {
    atomic_store(&s->stopping, 1);
    char b = 1;
    ssize_t w = write(s->wake[1], &b, 1);
    (void)w;
}

static void reap(server *s, int all) {
    for (int i = 0; i < s->o.max_conns; i++) {
        conn *c = s->conns[i];
        if (!c || (!all && !atomic_load(&c->done))) continue;
        pthread_join(c->thread, NULL);
        free(c);
        s->conns[i] = NULL;
        s->n_conns--;
    }
}

int server_run(server *s, char *err, size_t errlen) {
    fprintf(stderr, "glmlite serve: %s on http://%s:%d (%d slot%s x %d tokens)\n", s->rt->name, s->o.host, s->o.port,
            s->n_slots, s->n_slots > 1 ? "s" : "", s->n_ctx);
    int rc = 0;
    while (!atomic_load(&s->stopping)) {
        struct pollfd pf[2] = {{s->listen_fd, POLLIN, 0}, {s->wake[0], POLLIN, 0}};
        int pr = poll(pf, 2, 500);
        reap(s, 0);
        if (pr < 0 && errno != EINTR) { snprintf(err, errlen, "poll: %s", strerror(errno)); rc = -1; break; }
        if (pr <= 0 || !(pf[0].revents & POLLIN)) continue;
        struct sockaddr_storage sa;
        socklen_t sl = sizeof sa;
        int fd = accept4(s->listen_fd, (struct sockaddr *)&sa, &sl, SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EMFILE || errno == ENFILE) usleep(100000);
            continue;
        }
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);   /* stream events go out at once */
        struct timeval tv = {s->o.timeout_s, 0};   /* a client that stops reading cannot hold a thread forever */
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
        int slot = -1;
        for (int i = 0; i < s->o.max_conns; i++)
            if (!s->conns[i]) { slot = i; break; }
        if (slot < 0) {
            static const char body[] = "{\"error\":\"too many open connections\"}";
            buf busy = {0};
            http_response(&busy, 503, "application/json", body, sizeof body - 1, 0, NULL, 0);
            ssize_t w = send(fd, busy.data, busy.len, MSG_NOSIGNAL | MSG_DONTWAIT);
            (void)w;
            buf_free(&busy);
            close(fd);
            continue;
        }
        conn *c = calloc(1, sizeof *c);
        if (!c) { close(fd); continue; }
        c->srv = s;
        c->fd = fd;
        char host[48] = "?";
        if (sa.ss_family == AF_INET) inet_ntop(AF_INET, &((struct sockaddr_in *)&sa)->sin_addr, host, sizeof host);
        else if (sa.ss_family == AF_INET6) inet_ntop(AF_INET6, &((struct sockaddr_in6 *)&sa)->sin6_addr, host, sizeof host);
        snprintf(c->peer, sizeof c->peer, "%s", host);
        if (pthread_create(&c->thread, NULL, conn_main, c) != 0) {
            close(fd);
            free(c);
            continue;
        }
        s->conns[slot] = c;
        s->n_conns++;
    }
    /* shutdown: stop accepting, wake the slot waiters, let generations see
     * the flag (they end at the next token), join everyone */
    close(s->listen_fd);
    s->listen_fd = -1;
    pthread_mutex_lock(&s->slot_m);
    pthread_cond_broadcast(&s->slot_c);
    pthread_mutex_unlock(&s->slot_m);
    reap(s, 1);
    fprintf(stderr, "glmlite serve: stopped\n");
    return rc;
}

void server_free(server *s) {
    if (!s) return;
    if (s->listen_fd >= 0) close(s->listen_fd);
    if (s->wake[0] >= 0) close(s->wake[0]);
    if (s->wake[1] >= 0) close(s->wake[1]);
    for (int i = 0; i < s->n_slots; i++) glm_session_free(s->slots[i].session);
    free(s->slots);
    free(s->conns);
    free(s->script);
    pthread_mutex_destroy(&s->slot_m);
    pthread_cond_destroy(&s->slot_c);
    pthread_mutex_destroy(&s->model_lock.m);
    pthread_cond_destroy(&s->model_lock.c);
    free(s);
}
