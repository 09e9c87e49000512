/* buf.h — a growable byte buffer, the one string builder of the project. */
#ifndef GLM_BUF_H
#define GLM_BUF_H

#include <stddef.h>

typedef struct {
    char *data;   /* always NUL-terminated when len > 0 or after buf_reserve */
    size_t len;
    size_t cap;
} buf;

void buf_reserve(buf *b, size_t extra);            /* aborts only on out-of-memory */
void buf_append(buf *b, const void *data, size_t n);
void buf_puts(buf *b, const char *s);
void buf_putc(buf *b, char c);
void buf_printf(buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void buf_clear(buf *b);                            /* len = 0, keeps memory */
void buf_free(buf *b);
char *buf_detach(buf *b);                          /* caller frees; buffer becomes empty */
/* Appends the file's bytes: 0, or -1 unreadable, -2 larger than max_bytes. */
int buf_read_file(buf *b, const char *path, size_t max_bytes);

#endif
