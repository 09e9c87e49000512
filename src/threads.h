/* threads.h — a persistent thread pool. Work is handed out as task indices;
 * the calling thread takes part as thread 0. No thread is created per call. */
#ifndef GLM_THREADS_H
#define GLM_THREADS_H

typedef struct thread_pool thread_pool;

/* fn(ctx, task, thread): task in [0, n_tasks), thread in [0, pool_size). A
 * task's result must not depend on which thread runs it (determinism). */
typedef void (*pool_fn)(void *ctx, int task, int thread);

thread_pool *pool_new(int n_threads);    /* n_threads >= 1; NULL on failure */
void pool_free(thread_pool *p);
int pool_size(const thread_pool *p);
/* Runs every task once and returns when all have finished. Not reentrant. */
void pool_run(thread_pool *p, pool_fn fn, void *ctx, int n_tasks);

#endif
