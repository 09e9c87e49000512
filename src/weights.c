/* weights.c — checkpoint tensors -> weight views (see weights.h). */
#include "weights.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "safetensors.h"

struct weights_file {
    safetensors *st;
    char dir[1024];
    float **owned;     /* f32 copies of 1-D tensors */
    size_t n_owned, cap_owned;
};

weights_file *weights_open(const char *dir, char *err, size_t errlen) {
    weights_file *wf = calloc(1, sizeof *wf);
    if (!wf) { snprintf(err, errlen, "out of memory"); return NULL; }
    snprintf(wf->dir, sizeof wf->dir, "%s", dir);
    wf->st = st_open_dir(dir, err, errlen);
    if (!wf->st) { free(wf); return NULL; }
    return wf;
}

void weights_close(weights_file *wf) {
    if (!wf) return;
    for (size_t i = 0; i < wf->n_owned; i++) free(wf->owned[i]);
    free(wf->owned);
    st_close(wf->st);
    free(wf);
}

int weights_has(const weights_file *wf, const char *name) { return st_find(wf->st, name) != NULL; }

static void shape_str(char *o, size_t n, const int64_t *shape, int ndim) {
    size_t k = 0;
    k += (size_t)snprintf(o + k, n - k, "[");
    for (int i = 0; i < ndim && k < n; i++) k += (size_t)snprintf(o + k, n - k, "%s%lld", i ? ", " : "", (long long)shape[i]);
    if (k < n) snprintf(o + k, n - k, "]");
}

static const st_tensor *find(const weights_file *wf, const char *name, char *err, size_t errlen) {
    const st_tensor *t = st_find(wf->st, name);
    if (!t) snprintf(err, errlen, "%s: missing tensor '%s'", wf->dir, name);
    return t;
}

static int check_shape(const weights_file *wf, const st_tensor *t, const int64_t *shape, int ndim, char *err, size_t errlen) {
    int ok = t->ndim == ndim;
    for (int i = 0; ok && i < ndim; i++) ok = t->shape[i] == shape[i];
    if (ok) return 0;
    char got[128], want[128];
    shape_str(got, sizeof got, t->shape, t->ndim);
    shape_str(want, sizeof want, shape, ndim);
    snprintf(err, errlen, "%s: tensor '%s' has shape %s, expected %s", st_file_name(wf->st, t->file), t->name, got, want);
    return -1;
}

static int plain_format(const weights_file *wf, const st_tensor *t, wformat *f, char *err, size_t errlen) {
    switch (t->dtype) {
    case ST_F32: *f = WF_F32; return 0;
    case ST_F16: *f = WF_F16; return 0;
    case ST_BF16: *f = WF_BF16; return 0;
    default:
        snprintf(err, errlen, "%s: tensor '%s' has dtype %s, expected BF16, F16 or F32", st_file_name(wf->st, t->file),
                 t->name, st_dtype_name(t->dtype));
        return -1;
    }
}

/* A plain [rows, cols] matrix at data. */
static weight plain_weight(wformat f, const uint8_t *data, int64_t rows, int64_t cols) {
    weight w = {0};
    w.format = f;
    w.rows = rows;
    w.cols = cols;
    w.data = data;
    w.row_stride = (size_t)cols * (f == WF_F32 ? 4 : 2);
    w.global_scale = 1.0f;
    return w;
}

int weights_linear(weights_file *wf, const char *prefix, int64_t rows, int64_t cols, weight *out, char *err, size_t errlen) {
    char name[512];
    snprintf(name, sizeof name, "%s.weight", prefix);
    const st_tensor *t = find(wf, name, err, errlen);
    if (!t) return -1;
    wformat f;
    if (plain_format(wf, t, &f, err, errlen)) return -1;
    int64_t shape[2] = {rows, cols};
    if (check_shape(wf, t, shape, 2, err, errlen)) return -1;
    *out = plain_weight(f, t->data, rows, cols);
    return 0;
}

int weights_vector(weights_file *wf, const char *name, int64_t n, const float **out, char *err, size_t errlen) {
    const st_tensor *t = find(wf, name, err, errlen);
    if (!t) return -1;
    wformat f;
    if (plain_format(wf, t, &f, err, errlen) || check_shape(wf, t, &n, 1, err, errlen)) return -1;
    float *v = malloc((size_t)(n ? n : 1) * sizeof *v);
    if (!v) { snprintf(err, errlen, "out of memory"); return -1; }
    weight w = plain_weight(f, t->data, 1, n);
    weight_row_f32(&w, 0, v);
    if (wf->n_owned == wf->cap_owned) {
        wf->cap_owned = wf->cap_owned ? wf->cap_owned * 2 : 64;
        float **no = realloc(wf->owned, wf->cap_owned * sizeof *no);
        if (!no) { free(v); snprintf(err, errlen, "out of memory"); return -1; }
        wf->owned = no;
    }
    wf->owned[wf->n_owned++] = v;
    *out = v;
    return 0;
}

int weights_experts(weights_file *wf, int layer, const char *proj, int n_experts, int64_t rows, int64_t cols, weight *out,
                    char *err, size_t errlen) {
    char name[512];
    snprintf(name, sizeof name, "model.layers.%d.mlp.experts.0.%s.weight", layer, proj);
    if (st_find(wf->st, name)) {
        for (int e = 0; e < n_experts; e++) {
            snprintf(name, sizeof name, "model.layers.%d.mlp.experts.%d.%s", layer, e, proj);
            if (weights_linear(wf, name, rows, cols, &out[e], err, errlen)) return -1;
        }
        return 0;
    }
    const char *stacked[] = {"switch_mlp", "experts"};
    for (int k = 0; k < 2; k++) {
        snprintf(name, sizeof name, "model.layers.%d.mlp.%s.%s.weight", layer, stacked[k], proj);
        const st_tensor *t = st_find(wf->st, name);
        if (!t) continue;
        wformat f;
        int64_t shape[3] = {n_experts, rows, cols};
        if (plain_format(wf, t, &f, err, errlen) || check_shape(wf, t, shape, 3, err, errlen)) return -1;
        size_t per = (size_t)rows * (size_t)cols * (f == WF_F32 ? 4 : 2);
        for (int e = 0; e < n_experts; e++) out[e] = plain_weight(f, t->data + per * (size_t)e, rows, cols);
        return 0;
    }
    snprintf(err, errlen, "%s: missing tensor 'model.layers.%d.mlp.experts.0.%s.weight' (nor stacked experts)", wf->dir,
             layer, proj);
    return -1;
}
