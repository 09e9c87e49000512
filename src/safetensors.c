/* safetensors.c — memory-mapped safetensors reader.
 *
 * Format: 8-byte little-endian header length N, N bytes of JSON mapping
 * tensor name -> {dtype, shape, data_offsets:[begin,end]} (plus an optional
 * "__metadata__" string map), then the data; offsets are relative to the end
 * of the header. Files are mapped read-only and tensors point into the map,
 * so the real 62 GB model costs no copies. Every header field is untrusted. */
#include "safetensors.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "json.h"

typedef struct {
    char *path;
    const char *base;      /* points into path */
    uint8_t *map;
    size_t size;
    int mapped;            /* map came from mmap (else malloc, or NULL) */
    json_doc *meta_doc;    /* parsed header, kept for __metadata__ lookups */
} st_file;

typedef struct {
    st_tensor t;
    char *name_owned;
    uint8_t *copy;         /* aligned copy when the file offset was misaligned */
} st_entry;

struct safetensors {
    st_file *files;
    int n_files;
    st_entry *entries;
    size_t n, cap;
    /* open-addressing hash: name -> entry index + 1 (0 = empty) */
    size_t *slots;
    size_t n_slots;
};

static const struct { const char *name; size_t size; } dtypes[ST_N_DTYPES] = {
    [ST_BOOL] = {"BOOL", 1}, [ST_U8] = {"U8", 1},   [ST_I8] = {"I8", 1},     [ST_U16] = {"U16", 2},
    [ST_I16] = {"I16", 2},   [ST_F16] = {"F16", 2}, [ST_BF16] = {"BF16", 2}, [ST_U32] = {"U32", 4},
    [ST_I32] = {"I32", 4},   [ST_F32] = {"F32", 4}, [ST_U64] = {"U64", 8},   [ST_I64] = {"I64", 8},
    [ST_F64] = {"F64", 8},   [ST_F8_E4M3] = {"F8_E4M3", 1}, [ST_F8_E5M2] = {"F8_E5M2", 1},
};

const char *st_dtype_name(st_dtype t) { return (unsigned)t < ST_N_DTYPES ? dtypes[t].name : "?"; }
size_t st_dtype_size(st_dtype t) { return (unsigned)t < ST_N_DTYPES ? dtypes[t].size : 0; }

int st_dtype_from_name(const char *name, st_dtype *out) {
    for (int i = 0; i < ST_N_DTYPES; i++)
        if (strcmp(name, dtypes[i].name) == 0) { *out = (st_dtype)i; return 1; }
    return 0;
}

static uint64_t hash_str(const char *s) {
    uint64_t h = 1469598103934665603ull;
    for (; *s; s++) h = (h ^ (unsigned char)*s) * 1099511628211ull;
    return h;
}

static size_t *find_slot(const safetensors *st, const char *name) {
    size_t mask = st->n_slots - 1;
    for (size_t i = hash_str(name) & mask;; i = (i + 1) & mask) {
        size_t v = st->slots[i];
        if (!v || strcmp(st->entries[v - 1].t.name, name) == 0) return &st->slots[i];
    }
}

static void rehash(safetensors *st) {
    free(st->slots);
    st->n_slots = 16;
    while (st->n_slots < st->n * 2 + 2) st->n_slots *= 2;
    st->slots = calloc(st->n_slots, sizeof *st->slots);
    if (!st->slots) abort();
    /* the first definition keeps its slot, so a later one of the same name
       (same file or another shard) is seen as a duplicate by parse_file */
    for (size_t i = 0; i < st->n; i++) {
        size_t *slot = find_slot(st, st->entries[i].t.name);
        if (!*slot) *slot = i + 1;
    }
}

const st_tensor *st_find(const safetensors *st, const char *name) {
    if (!st->n_slots) return NULL;
    size_t v = *find_slot(st, name);
    return v ? &st->entries[v - 1].t : NULL;
}

size_t st_count(const safetensors *st) { return st->n; }
const st_tensor *st_at(const safetensors *st, size_t i) { return i < st->n ? &st->entries[i].t : NULL; }
const char *st_file_name(const safetensors *st, int file) {
    return file >= 0 && file < st->n_files ? st->files[file].base : "?";
}

const char *st_metadata(const safetensors *st, const char *key) {
    for (int i = 0; i < st->n_files; i++) {
        const json_value *m = json_get(json_root(st->files[i].meta_doc), "__metadata__");
        const char *v = json_get_str(json_get(m, key));
        if (v) return v;
    }
    return NULL;
}

/* Multiplies with overflow detection. */
static int mul_ok(size_t a, size_t b, size_t *out) {
    if (a && b > SIZE_MAX / a) return 0;
    *out = a * b;
    return 1;
}

static int add_entry(safetensors *st, const char *fname, const json_member *m, const uint8_t *data, size_t data_size,
                     int file, char *err, size_t errlen) {
    const json_value *v = &m->value;
    const char *tname = m->key;
    if (v->type != JSON_OBJECT) {
        snprintf(err, errlen, "%s: tensor '%s': header entry is not an object", fname, tname);
        return -1;
    }
    const char *dt = json_get_str(json_get(v, "dtype"));
    const json_value *shape = json_get(v, "shape");
    const json_value *offs = json_get(v, "data_offsets");
    st_dtype dtype;
    if (!dt || !st_dtype_from_name(dt, &dtype)) {
        snprintf(err, errlen, "%s: tensor '%s': missing or unknown dtype%s%s", fname, tname, dt ? " " : "", dt ? dt : "");
        return -1;
    }
    if (!shape || shape->type != JSON_ARRAY || shape->len > ST_MAX_DIMS) {
        snprintf(err, errlen, "%s: tensor '%s': shape missing or not an array of at most %d dims", fname, tname, ST_MAX_DIMS);
        return -1;
    }
    if (!offs || offs->type != JSON_ARRAY || offs->len != 2) {
        snprintf(err, errlen, "%s: tensor '%s': data_offsets must be [begin, end]", fname, tname);
        return -1;
    }
    st_tensor t = {0};
    t.dtype = dtype;
    t.ndim = (int)shape->len;
    t.file = file;
    size_t numel = 1;
    for (size_t i = 0; i < shape->len; i++) {
        int64_t d;
        if (!json_get_int64(&shape->items[i], &d) || d < 0) {
            snprintf(err, errlen, "%s: tensor '%s': shape entries must be non-negative integers", fname, tname);
            return -1;
        }
        t.shape[i] = d;
        if (!mul_ok(numel, (size_t)d, &numel)) {
            snprintf(err, errlen, "%s: tensor '%s': shape overflows", fname, tname);
            return -1;
        }
    }
    int64_t b, e;
    if (!json_get_int64(&offs->items[0], &b) || !json_get_int64(&offs->items[1], &e) || b < 0 || e < b) {
        snprintf(err, errlen, "%s: tensor '%s': bad data_offsets", fname, tname);
        return -1;
    }
    if ((uint64_t)e > data_size) {
        snprintf(err, errlen, "%s: tensor '%s': data_offsets [%lld, %lld] past the end of the data (%zu bytes; file truncated?)",
                 fname, tname, (long long)b, (long long)e, data_size);
        return -1;
    }
    size_t nbytes = 0;
    if (!mul_ok(numel, dtypes[dtype].size, &nbytes) || nbytes != (size_t)(e - b)) {
        snprintf(err, errlen, "%s: tensor '%s': %lld bytes of data, but shape and dtype %s need %zu", fname, tname,
                 (long long)(e - b), dtypes[dtype].name, nbytes);
        return -1;
    }
    if (st->n == st->cap) {
        st->cap = st->cap ? st->cap * 2 : 256;
        st_entry *ne = realloc(st->entries, st->cap * sizeof *ne);
        if (!ne) { snprintf(err, errlen, "out of memory"); return -1; }
        st->entries = ne;
    }
    st_entry *en = &st->entries[st->n];
    memset(en, 0, sizeof *en);
    en->name_owned = strdup(tname);
    if (!en->name_owned) { snprintf(err, errlen, "out of memory"); return -1; }
    t.name = en->name_owned;
    t.nbytes = nbytes;
    t.data = data ? data + b : NULL;
    size_t align = dtypes[dtype].size;
    if (t.data && ((uintptr_t)t.data % align) != 0) {
        /* Kernels load elements directly; a misaligned tensor (possible when
           an odd-sized 2-byte tensor precedes a 4-byte one) gets an aligned copy. */
        en->copy = aligned_alloc(64, (nbytes + 63) & ~(size_t)63);
        if (!en->copy) { free(en->name_owned); snprintf(err, errlen, "out of memory"); return -1; }
        memcpy(en->copy, t.data, nbytes);
        t.data = en->copy;
    }
    en->t = t;
    st->n++;
    return 0;
}

/* Validates and indexes one file's header. */
static int parse_file(safetensors *st, int file, const uint8_t *map, size_t size, const char *fname, json_doc **doc_out,
                      char *err, size_t errlen) {
    if (size < 8) {
        snprintf(err, errlen, "%s: file is %zu bytes, too short for a safetensors header (truncated?)", fname, size);
        return -1;
    }
    uint64_t hlen = 0;
    for (int i = 7; i >= 0; i--) hlen = (hlen << 8) | map[i];
    if (hlen > size - 8) {
        snprintf(err, errlen, "%s: header length %llu runs past the end of the file (%zu bytes; truncated or not safetensors)",
                 fname, (unsigned long long)hlen, size);
        return -1;
    }
    if (hlen > 100u << 20) {
        snprintf(err, errlen, "%s: header length %llu is implausibly large", fname, (unsigned long long)hlen);
        return -1;
    }
    char jerr[256];
    json_doc *doc = json_parse((const char *)map + 8, (size_t)hlen, jerr, sizeof jerr);
    if (!doc) {
        snprintf(err, errlen, "%s: corrupt header: %s", fname, jerr);
        return -1;
    }
    const json_value *root = json_root(doc);
    if (root->type != JSON_OBJECT) {
        snprintf(err, errlen, "%s: corrupt header: not a JSON object", fname);
        json_free(doc);
        return -1;
    }
    const uint8_t *data = map + 8 + hlen;
    size_t data_size = size - 8 - (size_t)hlen;
    size_t first = st->n;
    for (size_t i = 0; i < root->len; i++) {
        const json_member *m = &root->members[i];
        if (strcmp(m->key, "__metadata__") == 0) {
            if (m->value.type != JSON_OBJECT) {
                snprintf(err, errlen, "%s: __metadata__ is not an object", fname);
                json_free(doc);
                return -1;
            }
            continue;
        }
        if (add_entry(st, fname, m, data, data_size, file, err, errlen) != 0) {
            json_free(doc);
            return -1;
        }
    }
    rehash(st);
    for (size_t i = first; i < st->n; i++) {
        /* a name defined twice (in one file or across shards) is ambiguous */
        size_t v = *find_slot(st, st->entries[i].t.name);
        if (v != i + 1) {
            snprintf(err, errlen, "%s: tensor '%s' is defined more than once", fname, st->entries[i].t.name);
            json_free(doc);
            return -1;
        }
    }
    if (doc_out) *doc_out = doc;
    else json_free(doc);
    return 0;
}

static int open_one(safetensors *st, const char *path, char *err, size_t errlen) {
    st_file *nf = realloc(st->files, (size_t)(st->n_files + 1) * sizeof *nf);
    if (!nf) { snprintf(err, errlen, "out of memory"); return -1; }
    st->files = nf;
    st_file *f = &st->files[st->n_files];
    memset(f, 0, sizeof *f);
    f->path = strdup(path);
    if (!f->path) { snprintf(err, errlen, "out of memory"); return -1; }
    const char *slash = strrchr(f->path, '/');
    f->base = slash ? slash + 1 : f->path;
    st->n_files++;
    int fd = open(path, O_RDONLY);
    if (fd < 0) {
        snprintf(err, errlen, "%s: cannot open: %s", path, strerror(errno));
        return -1;
    }
    struct stat sb;
    if (fstat(fd, &sb) != 0 || !S_ISREG(sb.st_mode)) {
        snprintf(err, errlen, "%s: not a regular file", path);
        close(fd);
        return -1;
    }
    f->size = (size_t)sb.st_size;
    if (f->size > 0) {
        void *m = mmap(NULL, f->size, PROT_READ, MAP_PRIVATE, fd, 0);
        if (m == MAP_FAILED) {
            snprintf(err, errlen, "%s: mmap failed: %s", path, strerror(errno));
            close(fd);
            return -1;
        }
#ifdef MADV_HUGEPAGE
        /* a hint: on kernels that read files into 2 MB pages on request, the
           weights then stream without a TLB miss every 4 KB (decode reads
           them all every token) */
        madvise(m, f->size, MADV_HUGEPAGE);
#endif
        f->map = m;
        f->mapped = 1;
    }
    close(fd);
    return parse_file(st, st->n_files - 1, f->map, f->size, f->base, &f->meta_doc, err, errlen);
}

void st_close(safetensors *st) {
    if (!st) return;
    for (size_t i = 0; i < st->n; i++) {
        free(st->entries[i].name_owned);
        free(st->entries[i].copy);
    }
    for (int i = 0; i < st->n_files; i++) {
        if (st->files[i].mapped) munmap(st->files[i].map, st->files[i].size);
        json_free(st->files[i].meta_doc);
        free(st->files[i].path);
    }
    free(st->files);
    free(st->entries);
    free(st->slots);
    free(st);
}

safetensors *st_open_file(const char *path, char *err, size_t errlen) {
    safetensors *st = calloc(1, sizeof *st);
    if (!st) { snprintf(err, errlen, "out of memory"); return NULL; }
    if (open_one(st, path, err, errlen) != 0) { st_close(st); return NULL; }
    return st;
}

static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

safetensors *st_open_dir(const char *dir, char *err, size_t errlen) {
    safetensors *st = calloc(1, sizeof *st);
    if (!st) { snprintf(err, errlen, "out of memory"); return NULL; }
    char path[4096];
    snprintf(path, sizeof path, "%s/model.safetensors.index.json", dir);
    char **names = NULL;
    size_t n_names = 0;
    size_t len;
    buf ib = {0};
    char *idx = buf_read_file(&ib, path, 256u << 20) == 0 ? ib.data : NULL;
    len = ib.len;
    if (idx) {
        char jerr[256];
        json_doc *doc = json_parse(idx, len, jerr, sizeof jerr);
        buf_free(&ib);
        const json_value *wm = doc ? json_get(json_root(doc), "weight_map") : NULL;
        if (!wm || wm->type != JSON_OBJECT) {
            snprintf(err, errlen, "model.safetensors.index.json: %s", doc ? "no \"weight_map\" object" : jerr);
            json_free(doc);
            st_close(st);
            return NULL;
        }
        names = calloc(wm->len + 1, sizeof *names);
        for (size_t i = 0; i < wm->len; i++) {
            const char *fn = json_get_str(&wm->members[i].value);
            if (!fn || strchr(fn, '/') || strcmp(fn, "..") == 0) {
                snprintf(err, errlen, "model.safetensors.index.json: tensor '%s' maps to an invalid file name", wm->members[i].key);
                for (size_t k = 0; k < n_names; k++) free(names[k]);
                free(names);
                json_free(doc);
                st_close(st);
                return NULL;
            }
            int seen = 0;
            for (size_t k = 0; k < n_names && !seen; k++) seen = strcmp(names[k], fn) == 0;
            if (!seen) names[n_names++] = strdup(fn);
        }
        json_free(doc);
    } else {
        buf_free(&ib);
        DIR *d = opendir(dir);
        if (!d) {
            snprintf(err, errlen, "%s: cannot open model directory: %s", dir, strerror(errno));
            st_close(st);
            return NULL;
        }
        size_t cap = 0;
        struct dirent *de;
        while ((de = readdir(d))) {
            size_t l = strlen(de->d_name);
            if (l > 12 && strcmp(de->d_name + l - 12, ".safetensors") == 0) {
                if (n_names == cap) {
                    cap = cap ? cap * 2 : 8;
                    names = realloc(names, cap * sizeof *names);
                }
                names[n_names++] = strdup(de->d_name);
            }
        }
        closedir(d);
        if (!n_names) {
            snprintf(err, errlen, "%s: no *.safetensors files and no model.safetensors.index.json", dir);
            free(names);
            st_close(st);
            return NULL;
        }
    }
    qsort(names, n_names, sizeof *names, cmp_str);
    int rc = 0;
    for (size_t i = 0; i < n_names && rc == 0; i++) {
        snprintf(path, sizeof path, "%s/%s", dir, names[i]);
        rc = open_one(st, path, err, errlen);
    }
    for (size_t i = 0; i < n_names; i++) free(names[i]);
    free(names);
    if (rc != 0) { st_close(st); return NULL; }
    return st;
}

int st_parse_header(const uint8_t *data, size_t size, const char *file_name, char *err, size_t errlen) {
    safetensors *st = calloc(1, sizeof *st);
    if (!st) return -1;
    int rc = parse_file(st, 0, data, size, file_name, NULL, err, errlen);
    int n = rc == 0 ? (int)st->n : -1;
    st_close(st);
    return n;
}
