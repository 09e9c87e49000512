/* weights.c — checkpoint tensors -> weight views (see weights.h): plain and
 * quantized layouts, the config.json quantization block, validation. */
#include "weights.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "json.h"
#include "quant.h"
#include "safetensors.h"

/* What config.json says about one module. */
typedef struct {
    int known;        /* 0: no block (shapes decide); 1: quantized with fmt/bits/group; -1: explicitly not quantized */
    wformat fmt;
    int bits, group;
} qspec;

struct weights_file {
    safetensors *st;
    char dir[1024];
    void **owned;      /* f32 copies of 1-D tensors, dense kv_b matrices */
    size_t n_owned, cap_owned;
    json_doc *config;
    const json_value *qblock;   /* mlx-style quantization block, or NULL */
    qspec qdefault;
    int exact_act;     /* copied into every bound weight (weights_set_exact_act) */
};

static const char *fmt_name(wformat f) {
    switch (f) {
    case WF_F32: return "f32";
    case WF_F16: return "f16";
    case WF_BF16: return "bf16";
    case WF_AFFINE: return "affine";
    case WF_NVFP4: return "nvfp4";
    case WF_MXFP4: return "mxfp4";
    case WF_MXFP8: return "mxfp8";
    }
    return "?";
}

static int mode_format(const char *mode, wformat *f) {
    if (!strcmp(mode, "affine")) *f = WF_AFFINE;
    else if (!strcmp(mode, "nvfp4")) *f = WF_NVFP4;
    else if (!strcmp(mode, "mxfp4")) *f = WF_MXFP4;
    else if (!strcmp(mode, "mxfp8")) *f = WF_MXFP8;
    else return -1;
    return 0;
}

/* {"group_size", "bits", "mode"}: mode defaults to affine and missing bits or
 * group_size to the mode's defaults. A per-module dict inherits nothing from
 * the block: mlx's nn.quantize passes it as it is to to_quantized(**dict), so
 * {"bits": 8} under an mxfp4 block is affine 8-bit in groups of 64
 * (mlx python/mlx/nn/layers/quantized.py; mlx-lm's mixed recipes write such
 * dicts without a mode). */
static int parse_qspec(const json_value *v, const char *what, qspec *out, char *err, size_t errlen) {
    memset(out, 0, sizeof *out);
    out->known = 1;
    out->fmt = WF_AFFINE;
    const json_value *m = json_get(v, "mode");
    if (m) {
        const char *s = json_get_str(m);
        if (!s || mode_format(s, &out->fmt)) {
            snprintf(err, errlen, "config.json: %s: mode must be \"affine\", \"nvfp4\", \"mxfp4\" or \"mxfp8\"", what);
            return -1;
        }
    }
    int64_t bits = 0, gs = 0;
    const json_value *b = json_get(v, "bits"), *g = json_get(v, "group_size");
    if ((b && !json_get_int64(b, &bits)) || (g && !json_get_int64(g, &gs))) {
        snprintf(err, errlen, "config.json: %s: bits and group_size must be integers", what);
        return -1;
    }
    if (out->fmt != WF_AFFINE) {
        int fb = quant_format_bits(out->fmt, 0), fg = quant_format_group(out->fmt, 0);
        if (!bits) bits = fb;
        if (!gs) gs = fg;
        if (bits != fb || gs != fg) {
            snprintf(err, errlen, "config.json: %s: mode %s has %d-bit codes in groups of %d, not bits %lld group_size %lld",
                     what, fmt_name(out->fmt), fb, fg, (long long)bits, (long long)gs);
            return -1;
        }
    } else {
        if (!g) gs = 64;   /* mlx's affine defaults */
        if (!b) bits = 4;
        if (!(bits == 2 || bits == 3 || bits == 4 || bits == 5 || bits == 6 || bits == 8) ||
            !(gs == 32 || gs == 64 || gs == 128)) {
            snprintf(err, errlen, "config.json: %s: affine bits %lld / group_size %lld unsupported (bits 2-6 or 8, groups 32/64/128)",
                     what, (long long)bits, (long long)gs);
            return -1;
        }
    }
    out->bits = (int)bits;
    out->group = (int)gs;
    return 0;
}

static int read_quant_config(weights_file *wf, char *err, size_t errlen) {
    char path[1100];
    snprintf(path, sizeof path, "%s/config.json", wf->dir);
    buf b = {0};
    if (buf_read_file(&b, path, 16u << 20) != 0) { buf_free(&b); return 0; }   /* no config: shapes decide */
    char jerr[256];
    wf->config = json_parse(b.data, b.len, jerr, sizeof jerr);
    buf_free(&b);
    if (!wf->config) return 0;   /* config.c reports a malformed config.json */
    const json_value *root = json_root(wf->config);
    const json_value *q = json_get(root, "quantization");
    const char *what = "quantization";
    if (!q || q->type != JSON_OBJECT) {
        /* quantization_config is also HF's key for other schemes (modelopt,
           compressed-tensors): only an mlx-style block is read here. */
        q = json_get(root, "quantization_config");
        what = "quantization_config";
        if (!q || q->type != JSON_OBJECT || json_get(q, "quant_method") || !(json_get(q, "bits") || json_get(q, "group_size")))
            return 0;
    }
    if (parse_qspec(q, what, &wf->qdefault, err, errlen)) return -1;
    wf->qblock = q;
    /* per-module overrides: every object/false member is checked now so a bad entry fails the load */
    for (size_t i = 0; i < q->len; i++) {
        const json_member *mb = &q->members[i];
        if (!strcmp(mb->key, "group_size") || !strcmp(mb->key, "bits") || !strcmp(mb->key, "mode")) continue;
        qspec tmp;
        char w[600];
        snprintf(w, sizeof w, "%s[\"%.500s\"]", what, mb->key);
        if (mb->value.type == JSON_OBJECT) {
            if (parse_qspec(&mb->value, w, &tmp, err, errlen)) return -1;
        } else if (mb->value.type == JSON_BOOL) {
            continue;
        } else if (mb->value.type != JSON_NULL && mb->value.type != JSON_STRING && mb->value.type != JSON_NUMBER) {
            snprintf(err, errlen, "config.json: %s must be an object or false", w);
            return -1;
        }
    }
    return 0;
}

/* config.json's word on module PATH. */
static int module_spec(const weights_file *wf, const char *path, qspec *out, char *err, size_t errlen) {
    memset(out, 0, sizeof *out);
    if (!wf->qblock) return 0;
    const json_value *v = json_get(wf->qblock, path);
    if (v && v->type == JSON_BOOL) {
        if (v->boolean) *out = wf->qdefault;
        else out->known = -1;
        return 0;
    }
    if (v && v->type == JSON_OBJECT) return parse_qspec(v, path, out, err, errlen);
    *out = wf->qdefault;
    return 0;
}

weights_file *weights_open(const char *dir, char *err, size_t errlen) {
    weights_file *wf = calloc(1, sizeof *wf);
    if (!wf) { snprintf(err, errlen, "out of memory"); return NULL; }
    snprintf(wf->dir, sizeof wf->dir, "%s", dir);
    if (read_quant_config(wf, err, errlen)) {
        json_free(wf->config);
        free(wf);
        return NULL;
    }
    wf->st = st_open_dir(dir, err, errlen);
    if (!wf->st) { json_free(wf->config); free(wf); return NULL; }
    return wf;
}

void weights_close(weights_file *wf) {
    if (!wf) return;
    for (size_t i = 0; i < wf->n_owned; i++) free(wf->owned[i]);
    free(wf->owned);
    json_free(wf->config);
    st_close(wf->st);
    free(wf);
}

static int own(weights_file *wf, void *p, char *err, size_t errlen) {
    if (wf->n_owned == wf->cap_owned) {
        size_t cap = wf->cap_owned ? wf->cap_owned * 2 : 64;
        void **no = realloc(wf->owned, cap * sizeof *no);
        if (!no) { free(p); snprintf(err, errlen, "out of memory"); return -1; }
        wf->owned = no;
        wf->cap_owned = cap;
    }
    wf->owned[wf->n_owned++] = p;
    return 0;
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

static const char *fname(const weights_file *wf, const st_tensor *t) { return st_file_name(wf->st, t->file); }

static int check_shape(const weights_file *wf, const st_tensor *t, const int64_t *shape, int ndim, char *err, size_t errlen) {
    int ok = t->ndim == ndim;
    for (int i = 0; ok && i < ndim; i++) ok = t->shape[i] == shape[i];
    if (ok) return 0;
    char got[128], want[128];
    shape_str(got, sizeof got, t->shape, t->ndim);
    shape_str(want, sizeof want, shape, ndim);
    snprintf(err, errlen, "%s: tensor '%s' has shape %s, expected %s", fname(wf, t), t->name, got, want);
    return -1;
}

static int plain_format(const weights_file *wf, const st_tensor *t, wformat *f, char *err, size_t errlen) {
    switch (t->dtype) {
    case ST_F32: *f = WF_F32; return 0;
    case ST_F16: *f = WF_F16; return 0;
    case ST_BF16: *f = WF_BF16; return 0;
    default:
        snprintf(err, errlen, "%s: tensor '%s' has dtype %s, expected BF16, F16 or F32 (or a quantized layout: %s.scales, "
                 "%s_scale)", fname(wf, t), t->name, st_dtype_name(t->dtype), t->name, t->name);
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

/* Leading dims [n_stack,] rows of t (the last dim is checked by the caller). */
static int check_lead(const weights_file *wf, const st_tensor *t, int64_t n_stack, int64_t rows, int64_t last_hint,
                      char *err, size_t errlen) {
    int nd = n_stack ? 3 : 2;
    int ok = t->ndim == nd && t->shape[nd - 2] == rows && (!n_stack || t->shape[0] == n_stack);
    if (ok) return 0;
    char got[128], want[160];
    shape_str(got, sizeof got, t->shape, t->ndim);
    if (n_stack) snprintf(want, sizeof want, "[%lld, %lld, %s]", (long long)n_stack, (long long)rows, last_hint ? "..." : "...");
    else snprintf(want, sizeof want, "[%lld, ...]", (long long)rows);
    snprintf(err, errlen, "%s: tensor '%s' has shape %s, expected %s", fname(wf, t), t->name, got, want);
    return -1;
}

static int scalar_f32(const weights_file *wf, const st_tensor *t, float *out, char *err, size_t errlen) {
    int64_t n = 1;
    for (int i = 0; i < t->ndim; i++) n *= t->shape[i];
    if (n != 1 || !(t->dtype == ST_F32 || t->dtype == ST_BF16 || t->dtype == ST_F16)) {
        char got[128];
        shape_str(got, sizeof got, t->shape, t->ndim);
        snprintf(err, errlen, "%s: tensor '%s' must be one F32 value (a per-tensor global scale), got %s %s", fname(wf, t),
                 t->name, st_dtype_name(t->dtype), got);
        return -1;
    }
    weight w = plain_weight(t->dtype == ST_F32 ? WF_F32 : t->dtype == ST_F16 ? WF_F16 : WF_BF16, t->data, 1, 1);
    weight_row_f32(&w, 0, out);
    if (!isfinite(*out) || *out == 0.0f) {
        snprintf(err, errlen, "%s: tensor '%s' holds %g: a global scale must be finite and non-zero", fname(wf, t), t->name,
                 (double)*out);
        return -1;
    }
    return 0;
}

/* quant_validate on each view, the message prefixed with the tensor. */
static int validate(const weights_file *wf, const st_tensor *t, weight *w, int64_t n, char *err, size_t errlen) {
    for (int64_t e = 0; e < n; e++) {
        char m[512];
        if (quant_validate(&w[e], m, sizeof m)) {
            if (n > 1) snprintf(err, errlen, "%s: quantized tensor '%s' (expert %lld): %s", fname(wf, t), t->name, (long long)e, m);
            else snprintf(err, errlen, "%s: quantized tensor '%s': %s", fname(wf, t), t->name, m);
            return -1;
        }
    }
    return 0;
}

/* The mlx-lm layout: PREFIX.weight (packed), PREFIX.scales, PREFIX.biases. */
static int bind_mlx(weights_file *wf, const char *prefix, const st_tensor *tw, const st_tensor *ts, int64_t n_stack,
                    int64_t rows, int64_t cols, weight *out, char *err, size_t errlen) {
    char name[600];
    snprintf(name, sizeof name, "%s.biases", prefix);
    const st_tensor *tb = st_find(wf->st, name);
    int nd = n_stack ? 3 : 2;
    if (check_lead(wf, tw, n_stack, rows, 0, err, errlen) || check_lead(wf, ts, n_stack, rows, 0, err, errlen)) return -1;
    if (!(tw->dtype == ST_U32 || tw->dtype == ST_U8)) {
        snprintf(err, errlen, "%s: quantized tensor '%s' has dtype %s, expected U32 (packed codes)", fname(wf, tw), tw->name,
                 st_dtype_name(tw->dtype));
        return -1;
    }
    size_t pb = (size_t)tw->shape[nd - 1] * st_dtype_size(tw->dtype);   /* packed bytes per row */
    int64_t ng = ts->shape[nd - 1];
    /* bits from the packed width */
    if (cols <= 0 || (pb * 8) % (size_t)cols) {
        snprintf(err, errlen, "%s: quantized tensor '%s': packed width %zu bytes per row does not hold %lld codes of a whole "
                 "number of bits", fname(wf, tw), tw->name, pb, (long long)cols);
        return -1;
    }
    int bits = (int)(pb * 8 / (size_t)cols);
    if (!(bits == 2 || bits == 3 || bits == 4 || bits == 5 || bits == 6 || bits == 8)) {
        snprintf(err, errlen, "%s: quantized tensor '%s': packed width %zu bytes per row means %d-bit codes for %lld columns "
                 "(supported: 2, 3, 4, 5, 6, 8)", fname(wf, tw), tw->name, pb, bits, (long long)cols);
        return -1;
    }
    if (ng <= 0 || cols % ng) {
        snprintf(err, errlen, "%s: quantized tensor '%s': %lld scale groups per row do not divide the row of %lld columns",
                 fname(wf, ts), ts->name, (long long)ng, (long long)cols);
        return -1;
    }
    int gs = (int)(cols / ng);
    wformat f;
    dtype sdt;
    if (tb) {
        f = WF_AFFINE;
        if (tb->dtype != ts->dtype || tb->ndim != ts->ndim || memcmp(tb->shape, ts->shape, sizeof(int64_t) * (size_t)nd)) {
            char a[128], b[128];
            shape_str(a, sizeof a, ts->shape, ts->ndim);
            shape_str(b, sizeof b, tb->shape, tb->ndim);
            snprintf(err, errlen, "%s: quantized tensor '%s' is %s %s but its scales are %s %s (must match)", fname(wf, tb),
                     tb->name, st_dtype_name(tb->dtype), b, st_dtype_name(ts->dtype), a);
            return -1;
        }
        if (ts->dtype == ST_BF16) sdt = DT_BF16;
        else if (ts->dtype == ST_F16) sdt = DT_F16;
        else if (ts->dtype == ST_F32) sdt = DT_F32;
        else {
            snprintf(err, errlen, "%s: quantized tensor '%s' has dtype %s, expected BF16, F16 or F32 affine scales",
                     fname(wf, ts), ts->name, st_dtype_name(ts->dtype));
            return -1;
        }
    } else {
        if (!(ts->dtype == ST_U8 || ts->dtype == ST_F8_E4M3)) {
            snprintf(err, errlen, "%s: quantized tensor '%s' has dtype %s and no %s.biases: fp-mode scales must be U8 (or "
                     "affine needs biases)", fname(wf, ts), ts->name, st_dtype_name(ts->dtype), prefix);
            return -1;
        }
        sdt = DT_U8;
        if (bits == 4 && gs == 16) f = WF_NVFP4;
        else if (bits == 4 && gs == 32) f = WF_MXFP4;
        else if (bits == 8 && gs == 32) f = WF_MXFP8;
        else {
            snprintf(err, errlen, "%s: quantized tensor '%s': %d-bit codes in groups of %d without biases match no format "
                     "(nvfp4 4/16, mxfp4 4/32, mxfp8 8/32)", fname(wf, tw), tw->name, bits, gs);
            return -1;
        }
    }
    /* config.json cross-check */
    qspec q;
    if (module_spec(wf, prefix, &q, err, errlen)) return -1;
    if (q.known < 0) {
        snprintf(err, errlen, "%s: tensor '%s' is quantized but config.json's quantization block lists '%s' as false "
                 "(not quantized)", fname(wf, tw), tw->name, prefix);
        return -1;
    }
    if (q.known > 0 && (q.fmt != f || q.bits != bits || q.group != gs)) {
        snprintf(err, errlen, "%s: quantized tensor '%s': its shapes mean %s %d-bit, group %d, but config.json's quantization "
                 "for '%s' says %s %d-bit, group %d", fname(wf, tw), tw->name, fmt_name(f), bits, gs, prefix,
                 fmt_name(q.fmt), q.bits, q.group);
        return -1;
    }
    size_t ss = (size_t)ng * (sdt == DT_F32 ? 4 : sdt == DT_U8 ? 1 : 2);
    int64_t n = n_stack ? n_stack : 1;
    for (int64_t e = 0; e < n; e++) {
        weight w = {0};
        w.format = f;
        w.rows = rows;
        w.cols = cols;
        w.bits = bits;
        w.group_size = gs;
        w.scale_dtype = sdt;
        w.row_stride = pb;
        w.scale_stride = ss;
        w.data = tw->data + (size_t)e * (size_t)rows * pb;
        w.scales = ts->data + (size_t)e * (size_t)rows * ss;
        w.biases = tb ? tb->data + (size_t)e * (size_t)rows * ss : NULL;
        w.global_scale = 1.0f;
        out[e] = w;
    }
    return validate(wf, tw, out, n, err, errlen);
}

/* ModelOpt / compressed-tensors fp layouts (2-D, per expert):
 *   nvfp4: codes U8 [rows, cols/2], E4M3 scales [rows, cols/16], a global scale (direct, or inverted);
 *   mxfp4: codes U8 [rows, cols/2], E8M0 scales U8 [rows, cols/32], no global scale
 *          (compressed-tensors mxfp4-pack-quantized: weight_packed + weight_scale);
 *   mxfp8: codes F8_E4M3 [rows, cols], E8M0 scales U8 [rows, cols/32], no global scale
 *          (compressed-tensors mxfp8-quantized / ModelOpt MXFP8: weight + weight_scale). */
static int bind_fp_pair(weights_file *wf, wformat f, const st_tensor *tw, const st_tensor *ts, const st_tensor *tg,
                        int inverted, int64_t rows, int64_t cols, weight *out, char *err, size_t errlen) {
    int bits = f == WF_MXFP8 ? 8 : 4, gs = f == WF_NVFP4 ? 16 : 32;
    const char *fn = f == WF_NVFP4 ? "nvfp4" : f == WF_MXFP4 ? "mxfp4" : "mxfp8";
    if (f == WF_MXFP8 ? tw->dtype != ST_F8_E4M3 : (tw->dtype != ST_U8 && tw->dtype != ST_U32)) {
        snprintf(err, errlen, "%s: quantized tensor '%s' has dtype %s, expected %s", fname(wf, tw), tw->name,
                 st_dtype_name(tw->dtype), f == WF_MXFP8 ? "F8_E4M3 (one code per byte)" : "U8 (two E2M1 codes per byte)");
        return -1;
    }
    if (check_lead(wf, tw, 0, rows, 0, err, errlen) || check_lead(wf, ts, 0, rows, 0, err, errlen)) return -1;
    size_t pb = (size_t)tw->shape[1] * st_dtype_size(tw->dtype);
    if (cols % gs || pb != (size_t)cols * (size_t)bits / 8) {
        snprintf(err, errlen, "%s: quantized tensor '%s': packed width %zu bytes per row, expected %lld for %s "
                 "(cols %lld a multiple of %d)", fname(wf, tw), tw->name, pb, (long long)cols * bits / 8, fn,
                 (long long)cols, gs);
        return -1;
    }
    if (!(ts->dtype == ST_U8 || (f == WF_NVFP4 && ts->dtype == ST_F8_E4M3)) || ts->shape[1] != cols / gs) {
        char got[128];
        shape_str(got, sizeof got, ts->shape, ts->ndim);
        snprintf(err, errlen, "%s: quantized tensor '%s' is %s %s, expected %s [%lld, %lld] (one %s scale per %d columns)",
                 fname(wf, ts), ts->name, st_dtype_name(ts->dtype), got, f == WF_NVFP4 ? "F8_E4M3" : "U8",
                 (long long)rows, (long long)cols / gs, f == WF_NVFP4 ? "E4M3" : "E8M0", gs);
        return -1;
    }
    float g = 1.0f;
    if (tg && scalar_f32(wf, tg, &g, err, errlen)) return -1;
    if (inverted) g = 1.0f / g;
    weight w = {0};
    w.format = f;
    w.rows = rows;
    w.cols = cols;
    w.bits = bits;
    w.group_size = gs;
    w.scale_dtype = DT_U8;
    w.data = tw->data;
    w.row_stride = pb;
    w.scales = ts->data;
    w.scale_stride = (size_t)(cols / gs);
    w.global_scale = g;
    *out = w;
    return validate(wf, tw, out, 1, err, errlen);
}

/* Two E2M1 codes a byte with their scales ts: MXFP4 when there is no tensor
 * global_name and the scales are U8, one per 32 columns (E8M0); else NVFP4,
 * whose global scale global_name (inverted: compressed-tensors' 1/G) must be
 * there, or every weight would be off by that factor. */
static int bind_fp4_pair(weights_file *wf, const st_tensor *tw, const st_tensor *ts, const char *global_name, int inverted,
                         int64_t rows, int64_t cols, weight *out, char *err, size_t errlen) {
    const st_tensor *tg = st_find(wf->st, global_name);
    if (!tg && ts->dtype == ST_U8 && ts->ndim == 2 && cols % 32 == 0 && ts->shape[1] == cols / 32)
        return bind_fp_pair(wf, WF_MXFP4, tw, ts, NULL, 0, rows, cols, out, err, errlen);
    if (!tg && !(tg = find(wf, global_name, err, errlen))) return -1;
    return bind_fp_pair(wf, WF_NVFP4, tw, ts, tg, inverted, rows, cols, out, err, errlen);
}

/* PREFIX as [n_stack,] rows x cols in whatever layout it is stored;
 * out[n_stack or 1]. */
static int bind_view(weights_file *wf, const char *prefix, int64_t n_stack, int64_t rows, int64_t cols, weight *out, char *err,
                size_t errlen) {
    char name[600];
    snprintf(name, sizeof name, "%s.weight_packed", prefix);
    const st_tensor *tp = st_find(wf->st, name);
    if (tp && !n_stack) {   /* compressed-tensors */
        const st_tensor *ts;
        snprintf(name, sizeof name, "%s.weight_scale", prefix);
        if (!(ts = find(wf, name, err, errlen))) return -1;
        snprintf(name, sizeof name, "%s.weight_global_scale", prefix);
        return bind_fp4_pair(wf, tp, ts, name, 1, rows, cols, out, err, errlen);
    }
    snprintf(name, sizeof name, "%s.weight", prefix);
    const st_tensor *tw = find(wf, name, err, errlen);
    if (!tw) return -1;
    snprintf(name, sizeof name, "%s.scales", prefix);
    const st_tensor *ts = st_find(wf->st, name);
    if (ts) return bind_mlx(wf, prefix, tw, ts, n_stack, rows, cols, out, err, errlen);
    snprintf(name, sizeof name, "%s.weight_scale", prefix);
    ts = st_find(wf->st, name);
    if (ts && !n_stack && (tw->dtype == ST_U8 || tw->dtype == ST_U32)) {   /* ModelOpt NVFP4 (or an MXFP4 pair) */
        snprintf(name, sizeof name, "%s.weight_scale_2", prefix);
        return bind_fp4_pair(wf, tw, ts, name, 0, rows, cols, out, err, errlen);
    }
    if (ts && !n_stack && tw->dtype == ST_F8_E4M3)   /* compressed-tensors / ModelOpt MXFP8 */
        return bind_fp_pair(wf, WF_MXFP8, tw, ts, NULL, 0, rows, cols, out, err, errlen);
    /* plain */
    wformat f;
    if (plain_format(wf, tw, &f, err, errlen)) return -1;
    qspec q;
    if (module_spec(wf, prefix, &q, err, errlen)) return -1;
    if (q.known > 0 && wf->qblock && json_get(wf->qblock, prefix) && json_get(wf->qblock, prefix)->type == JSON_OBJECT) {
        snprintf(err, errlen, "%s: tensor '%s' is plain %s but config.json's quantization block lists '%s' as quantized "
                 "(%s.scales missing)", fname(wf, tw), tw->name, st_dtype_name(tw->dtype), prefix, prefix);
        return -1;
    }
    if (n_stack) {
        int64_t shape[3] = {n_stack, rows, cols};
        if (check_shape(wf, tw, shape, 3, err, errlen)) return -1;
        size_t per = (size_t)rows * (size_t)cols * (f == WF_F32 ? 4 : 2);
        for (int64_t e = 0; e < n_stack; e++) out[e] = plain_weight(f, tw->data + per * (size_t)e, rows, cols);
        return 0;
    }
    int64_t shape[2] = {rows, cols};
    if (check_shape(wf, tw, shape, 2, err, errlen)) return -1;
    *out = plain_weight(f, tw->data, rows, cols);
    return 0;
}

static int bind(weights_file *wf, const char *prefix, int64_t n_stack, int64_t rows, int64_t cols, weight *out, char *err,
                size_t errlen) {
    if (bind_view(wf, prefix, n_stack, rows, cols, out, err, errlen)) return -1;
    for (int64_t e = 0; e < (n_stack ? n_stack : 1); e++) out[e].exact_act = wf->exact_act;
    return 0;
}

void weights_set_exact_act(weights_file *wf, int on) { wf->exact_act = on; }

int weights_linear(weights_file *wf, const char *prefix, int64_t rows, int64_t cols, weight *out, char *err, size_t errlen) {
    return bind(wf, prefix, 0, rows, cols, out, err, errlen);
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
    if (own(wf, v, err, errlen)) return -1;
    *out = v;
    return 0;
}

int weights_experts(weights_file *wf, int layer, const char *proj, int n_experts, int64_t rows, int64_t cols, weight *out,
                    char *err, size_t errlen) {
    char name[512];
    snprintf(name, sizeof name, "model.layers.%d.mlp.experts.0.%s", layer, proj);
    size_t pl = strlen(name);
    const char *sfx[] = {".weight", ".weight_packed"};
    for (int k = 0; k < 2; k++) {
        snprintf(name + pl, sizeof name - pl, "%s", sfx[k]);
        if (!st_find(wf->st, name)) continue;
        for (int e = 0; e < n_experts; e++) {
            snprintf(name, sizeof name, "model.layers.%d.mlp.experts.%d.%s", layer, e, proj);
            if (weights_linear(wf, name, rows, cols, &out[e], err, errlen)) return -1;
        }
        return 0;
    }
    const char *stacked[] = {"switch_mlp", "experts"};
    for (int k = 0; k < 2; k++) {
        snprintf(name, sizeof name, "model.layers.%d.mlp.%s.%s.weight", layer, stacked[k], proj);
        if (!st_find(wf->st, name)) continue;
        snprintf(name, sizeof name, "model.layers.%d.mlp.%s.%s", layer, stacked[k], proj);
        return bind(wf, name, n_experts, rows, cols, out, err, errlen);
    }
    snprintf(err, errlen, "%s: missing tensor 'model.layers.%d.mlp.experts.0.%s.weight' (nor stacked experts)", wf->dir,
             layer, proj);
    return -1;
}

int weights_mla_up(weights_file *wf, int layer, int H, int dn, int dv, int R, weight *kv_b, weight *embed_q,
                   weight *unembed_out, int *split, char *err, size_t errlen) {
    char p[256], p2[256], t[300];
    snprintf(p, sizeof p, "model.layers.%d.self_attn.kv_b_proj", layer);
    snprintf(p2, sizeof p2, "model.layers.%d.self_attn.embed_q.weight", layer);
    int has_kvb = 0;
    snprintf(t, sizeof t, "%s.weight", p);
    has_kvb |= st_find(wf->st, t) != NULL;
    snprintf(t, sizeof t, "%s.weight_packed", p);
    has_kvb |= st_find(wf->st, t) != NULL;
    *split = !has_kvb && st_find(wf->st, p2);
    if (!*split) return weights_linear(wf, p, (int64_t)H * (dn + dv), R, kv_b, err, errlen);
    snprintf(p, sizeof p, "model.layers.%d.self_attn.embed_q", layer);
    snprintf(p2, sizeof p2, "model.layers.%d.self_attn.unembed_out", layer);
    return bind(wf, p, H, R, dn, embed_q, err, errlen) || bind(wf, p2, H, dv, R, unembed_out, err, errlen) ? -1 : 0;
}
