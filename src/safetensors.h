/* safetensors.h — memory-mapped safetensors checkpoints (one file or shards
 * listed in model.safetensors.index.json), with checked, zero-copy lookup. */
#ifndef GLM_SAFETENSORS_H
#define GLM_SAFETENSORS_H

#include <stddef.h>
#include <stdint.h>

typedef enum {
    ST_BOOL, ST_U8, ST_I8, ST_U16, ST_I16, ST_F16, ST_BF16, ST_U32, ST_I32, ST_F32,
    ST_U64, ST_I64, ST_F64, ST_F8_E4M3, ST_F8_E5M2, ST_N_DTYPES
} st_dtype;

#define ST_MAX_DIMS 8

typedef struct {
    const char *name;
    st_dtype dtype;
    int ndim;
    int64_t shape[ST_MAX_DIMS];
    const uint8_t *data;   /* aligned to the element size (copied if the file's offset was not) */
    size_t nbytes;
    int file;              /* index into the checkpoint's files */
} st_tensor;

typedef struct safetensors safetensors;

/* Opens DIR/model.safetensors.index.json (every shard it names) or else every
 * *.safetensors file in DIR. Validates every header fully: JSON, dtypes,
 * shapes, offsets within the file, sizes matching shape x dtype. */
safetensors *st_open_dir(const char *dir, char *err, size_t errlen);
/* Opens one file (used by tests and tools). */
safetensors *st_open_file(const char *path, char *err, size_t errlen);
void st_close(safetensors *st);

const st_tensor *st_find(const safetensors *st, const char *name);   /* NULL if absent */
size_t st_count(const safetensors *st);
const st_tensor *st_at(const safetensors *st, size_t i);
const char *st_file_name(const safetensors *st, int file);            /* base name */
/* Value of a key in a file's __metadata__ map (first file that has it), or NULL. */
const char *st_metadata(const safetensors *st, const char *key);

const char *st_dtype_name(st_dtype t);
size_t st_dtype_size(st_dtype t);
int st_dtype_from_name(const char *name, st_dtype *out);

/* Validates one file held in memory (the fuzzed entry point). Returns the
 * tensor count, or -1 with a message in err. */
int st_parse_header(const uint8_t *buf, size_t size, const char *file_name, char *err, size_t errlen);

#endif
