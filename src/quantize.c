/* quantize.c — plain checkpoint -> mlx-lm-layout quantized checkpoint,
 * streamed tensor by tensor (see quantize.h for the policy and guarantees).
 *
 * Plan first, write second: every output tensor's name, dtype and shape is
 * known from the input headers, so each shard's safetensors header is written
 * up front and every tensor's bytes go to their final offset with pwrite as
 * soon as they are produced; nothing larger than one (quantized) tensor is
 * held in memory. */
#include "quantize.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "buf.h"
#include "config.h"
#include "json.h"
#include "quant.h"
#include "safetensors.h"
#include "tensor.h"

#define DEFAULT_SHARD ((size_t)4 << 30)

/* DIR/NAME into out; -1 when it does not fit (paths are checked, never cut). */
static int join_path(char *out, size_t n, const char *dir, const char *name) {
    int k = snprintf(out, n, "%s/%s", dir, name);
    return k < 0 || (size_t)k >= n ? -1 : 0;
}

int quant_type_parse(const char *s, quant_type *out) {
    static const char *names[] = {"int4", "int8", "nvfp4", "mxfp4", "mxfp8"};
    for (int i = 0; i < 5; i++)
        if (!strcmp(s, names[i])) { *out = (quant_type)i; return 0; }
    return -1;
}

const char *quant_type_name(quant_type t) {
    static const char *names[] = {"int4", "int8", "nvfp4", "mxfp4", "mxfp8"};
    return (unsigned)t < 5 ? names[t] : "?";
}

/* Quantization of one module: quant = 0 means stored plain. */
typedef struct {
    int quant;
    wformat fmt;
    int bits, group;
} qparams;

static const char *mode_name(wformat f) {
    return f == WF_AFFINE ? "affine" : f == WF_NVFP4 ? "nvfp4" : f == WF_MXFP4 ? "mxfp4" : "mxfp8";
}

typedef struct {
    char name[256];
    const char *dtype;           /* safetensors dtype name */
    int ndim;
    int64_t shape[3];
    size_t nbytes;
    int shard;
    size_t offset;               /* within the shard's data area */
} out_tensor;

typedef enum { J_COPY, J_MATRIX, J_STACK, J_KVB } job_kind;

typedef struct {
    job_kind kind;
    char module[256];            /* output module path (J_COPY: the tensor name) */
    const st_tensor *src;        /* J_COPY/J_MATRIX/J_KVB; J_STACK from a stacked input */
    const st_tensor **experts;   /* J_STACK from per-expert inputs: [n_stack] */
    int64_t n_stack, rows, cols;
    qparams q, q2;               /* J_KVB: q = embed_q, q2 = unembed_out */
    int out[6];                  /* output tensor indices: weight, scales, biases (J_KVB: then unembed_out's) */
} job;

typedef struct {
    const quantize_options *opt;
    glm_config cfg;
    safetensors *st;
    qparams main, eight;         /* the type and its 8-bit partner */
    out_tensor *outs;
    size_t n_outs, cap_outs;
    job *jobs;
    size_t n_jobs, cap_jobs;
    int n_shards;
    int *fds;
    size_t *data_start;          /* per shard: 8 + header length */
    size_t total_in, done_in;
    char *err;
    size_t errlen;
} qctx;

/* ---------------------------------------------------------------- policy */

static int is_four_bit(const qctx *q) { return q->main.fmt != WF_MXFP8 && !(q->main.fmt == WF_AFFINE && q->main.bits == 8); }

static int ends_with(const char *s, const char *suffix) {
    size_t a = strlen(s), b = strlen(suffix);
    return a >= b && !strcmp(s + a - b, suffix);
}

/* The policy of quantize.h for module PATH whose rows have `cols` values. */
static qparams policy(const qctx *q, const char *path, int64_t cols) {
    qparams p = {0};
    if (ends_with(path, ".mlp.gate")) return p;   /* router: no quantized form in mlx-lm */
    if (!strcmp(path, "lm_head")) p = q->eight;
    else if (is_four_bit(q) && strstr(path, ".self_attn.")) p = q->eight;
    else if (is_four_bit(q) && ends_with(path, "down_proj") && !strstr(path, ".switch_mlp.")) p = q->eight;
    else p = q->main;
    if (cols % p.group) p.quant = 0;   /* mlx-lm only quantizes last dims divisible by the group */
    return p;
}

/* ------------------------------------------------------------- planning */

static int fail(qctx *q, const char *fmt, const char *a, const char *b) {
    snprintf(q->err, q->errlen, fmt, a, b);
    return -1;
}

static int add_out(qctx *q, const char *name, const char *dtype, int ndim, const int64_t *shape, size_t elsize) {
    if (q->n_outs == q->cap_outs) {
        size_t cap = q->cap_outs ? q->cap_outs * 2 : 256;
        out_tensor *n = realloc(q->outs, cap * sizeof *n);
        if (!n) return -1;
        q->outs = n;
        q->cap_outs = cap;
    }
    out_tensor *o = &q->outs[q->n_outs];
    memset(o, 0, sizeof *o);
    snprintf(o->name, sizeof o->name, "%s", name);
    o->dtype = dtype;
    o->ndim = ndim;
    size_t n = elsize;
    for (int i = 0; i < ndim; i++) { o->shape[i] = shape[i]; n *= (size_t)shape[i]; }
    o->nbytes = n;
    return (int)q->n_outs++;
}

static const char *plain_dtype_name(st_dtype t) { return t == ST_F32 ? "F32" : t == ST_F16 ? "F16" : "BF16"; }
static size_t plain_size(st_dtype t) { return t == ST_F32 ? 4 : 2; }
static dtype scale_dtype_of(st_dtype t) { return t == ST_F32 ? DT_F32 : t == ST_F16 ? DT_F16 : DT_BF16; }

/* Output tensors of module PATH stored as [n_stack,] rows x cols with q. */
static int plan_module(qctx *q, const char *path, int64_t n_stack, int64_t rows, int64_t cols, const qparams *p,
                       st_dtype in_dtype, int *out) {
    char name[300];
    int nd = n_stack ? 3 : 2;
    int64_t shape[3];
    int k = 0;
    if (n_stack) shape[k++] = n_stack;
    shape[k++] = rows;
    out[0] = out[1] = out[2] = -1;
    snprintf(name, sizeof name, "%s.weight", path);
    if (!p->quant) {
        shape[k] = cols;
        out[0] = add_out(q, name, plain_dtype_name(in_dtype), nd, shape, plain_size(in_dtype));
        return out[0] < 0 ? -1 : 0;
    }
    shape[k] = cols * p->bits / 32;
    if ((out[0] = add_out(q, name, "U32", nd, shape, 4)) < 0) return -1;
    shape[k] = cols / p->group;
    snprintf(name, sizeof name, "%s.scales", path);
    if (p->fmt == WF_AFFINE) {
        const char *sd = plain_dtype_name(in_dtype);
        if ((out[1] = add_out(q, name, sd, nd, shape, plain_size(in_dtype))) < 0) return -1;
        snprintf(name, sizeof name, "%s.biases", path);
        if ((out[2] = add_out(q, name, sd, nd, shape, plain_size(in_dtype))) < 0) return -1;
    } else if ((out[1] = add_out(q, name, "U8", nd, shape, 1)) < 0) {
        return -1;
    }
    return 0;
}

static job *new_job(qctx *q, job_kind kind, const char *module) {
    if (q->n_jobs == q->cap_jobs) {
        size_t cap = q->cap_jobs ? q->cap_jobs * 2 : 256;
        job *n = realloc(q->jobs, cap * sizeof *n);
        if (!n) return NULL;
        q->jobs = n;
        q->cap_jobs = cap;
    }
    job *j = &q->jobs[q->n_jobs++];
    memset(j, 0, sizeof *j);
    j->kind = kind;
    snprintf(j->module, sizeof j->module, "%s", module);
    for (int i = 0; i < 6; i++) j->out[i] = -1;
    return j;
}

static int is_plain(st_dtype t) { return t == ST_BF16 || t == ST_F16 || t == ST_F32; }

/* "model.layers.L.<rest>" -> L and rest; -1 if not a layer tensor. */
static int layer_of(const char *name, const char **rest) {
    const char *pre = "model.layers.";
    if (strncmp(name, pre, strlen(pre))) return -1;
    const char *p = name + strlen(pre);
    char *end;
    long l = strtol(p, &end, 10);
    if (end == p || *end != '.' || l < 0 || l > 1000000) return -1;
    *rest = end + 1;
    return (int)l;
}

static int plan(qctx *q) {
    const glm_config *c = &q->cfg;
    size_t n = st_count(q->st);
    char path[300];
    for (size_t i = 0; i < n; i++) {
        const st_tensor *t = st_at(q->st, i);
        const char *rest = NULL;
        int layer = layer_of(t->name, &rest);
        if (layer >= c->num_hidden_layers) continue;   /* MTP layer: dropped, as mlx-lm does */
        if (ends_with(t->name, ".scales") || ends_with(t->name, ".biases") || ends_with(t->name, ".weight_packed") ||
            ends_with(t->name, ".weight_scale") || !is_plain(t->dtype))
            return fail(q, "%s: the input is already quantized or not bf16/f16/f32 (tensor '%s'); quantize a plain checkpoint",
                        st_file_name(q->st, t->file), t->name);
        int is_weight = ends_with(t->name, ".weight");
        size_t base = strlen(t->name) - (is_weight ? 7 : 0);
        snprintf(path, sizeof path, "%.*s", (int)base, t->name);
        q->total_in += t->nbytes;
        if (is_weight && t->ndim == 2 && layer >= 0 && strstr(rest, "mlp.experts.") == rest) {
            /* per-expert: mlp.experts.E.PROJ.weight -> one stacked job, made at E = 0 */
            char *end;
            long e = strtol(rest + 12, &end, 10);
            if (end == rest + 12 || *end != '.') return fail(q, "%s: unexpected expert tensor name '%s'", "input", t->name);
            if (e != 0) continue;
            const char *proj = end + 1;   /* "gate_proj.weight" */
            int E = c->n_routed_experts;
            snprintf(path, sizeof path, "model.layers.%d.mlp.switch_mlp.%.*s", layer, (int)(strlen(proj) - 7), proj);
            job *j = new_job(q, J_STACK, path);
            if (!j || !(j->experts = calloc((size_t)E, sizeof *j->experts))) return fail(q, "%s%s", "out of memory", "");
            for (int k = 0; k < E; k++) {
                char nm[300];
                snprintf(nm, sizeof nm, "model.layers.%d.mlp.experts.%d.%s", layer, k, proj);
                const st_tensor *te = st_find(q->st, nm);
                if (!te) return fail(q, "input: missing expert tensor '%s'%s", nm, "");
                if (te->ndim != 2 || te->shape[0] != t->shape[0] || te->shape[1] != t->shape[1] || te->dtype != t->dtype)
                    return fail(q, "input: expert tensor '%s' differs in shape or dtype from '%s'", nm, t->name);
                j->experts[k] = te;
            }
            j->src = t;
            j->n_stack = E;
            j->rows = t->shape[0];
            j->cols = t->shape[1];
            j->q = policy(q, path, j->cols);
            if (plan_module(q, path, E, j->rows, j->cols, &j->q, t->dtype, j->out)) return fail(q, "%s%s", "out of memory", "");
            continue;
        }
        if (is_weight && t->ndim == 3 && layer >= 0 &&
            (strstr(rest, "mlp.experts.") == rest || strstr(rest, "mlp.switch_mlp.") == rest)) {
            const char *proj = strrchr(path, '.') + 1;
            char mp[300];
            snprintf(mp, sizeof mp, "model.layers.%d.mlp.switch_mlp.%s", layer, proj);
            job *j = new_job(q, J_STACK, mp);
            if (!j) return fail(q, "%s%s", "out of memory", "");
            j->src = t;
            j->n_stack = t->shape[0];
            j->rows = t->shape[1];
            j->cols = t->shape[2];
            j->q = policy(q, mp, j->cols);
            if (plan_module(q, mp, j->n_stack, j->rows, j->cols, &j->q, t->dtype, j->out)) return fail(q, "%s%s", "out of memory", "");
            continue;
        }
        if (is_weight && t->ndim == 2 && layer >= 0 && !strcmp(rest, "self_attn.kv_b_proj.weight")) {
            int H = c->num_attention_heads, dn = c->qk_nope_head_dim, dv = c->v_head_dim, R = c->kv_lora_rank;
            if (t->shape[0] != (int64_t)H * (dn + dv) || t->shape[1] != R)
                return fail(q, "input: '%s' does not have the shape [H*(dn+dv), kv_lora_rank] config.json implies%s", t->name, "");
            job *j = new_job(q, J_KVB, path);
            if (!j) return fail(q, "%s%s", "out of memory", "");
            j->src = t;
            char a[300], b[300];
            snprintf(a, sizeof a, "model.layers.%d.self_attn.embed_q", layer);
            snprintf(b, sizeof b, "model.layers.%d.self_attn.unembed_out", layer);
            j->q = policy(q, a, dn);
            j->q2 = policy(q, b, R);
            if (plan_module(q, a, H, R, dn, &j->q, t->dtype, j->out) ||
                plan_module(q, b, H, dv, R, &j->q2, t->dtype, j->out + 3))
                return fail(q, "%s%s", "out of memory", "");
            continue;
        }
        if (is_weight && t->ndim == 2) {
            job *j = new_job(q, J_MATRIX, path);
            if (!j) return fail(q, "%s%s", "out of memory", "");
            j->src = t;
            j->rows = t->shape[0];
            j->cols = t->shape[1];
            j->q = policy(q, path, j->cols);
            if (plan_module(q, path, 0, j->rows, j->cols, &j->q, t->dtype, j->out)) return fail(q, "%s%s", "out of memory", "");
            continue;
        }
        job *j = new_job(q, J_COPY, t->name);
        if (!j) return fail(q, "%s%s", "out of memory", "");
        j->src = t;
        size_t es = st_dtype_size(t->dtype);
        int64_t shape[8];
        for (int k = 0; k < t->ndim; k++) shape[k] = t->shape[k];
        if (t->ndim > 3) return fail(q, "input: tensor '%s' has more than 3 dimensions%s", t->name, "");
        if ((j->out[0] = add_out(q, t->name, st_dtype_name(t->dtype), t->ndim, shape, es)) < 0)
            return fail(q, "%s%s", "out of memory", "");
    }
    return 0;
}

/* ----------------------------------------------------------- file output */

static int cmp_out(const void *a, const void *b) {
    const out_tensor *x = *(out_tensor *const *)a, *y = *(out_tensor *const *)b;
    return strcmp(x->name, y->name);
}

/* Sorted by name, cut into shards of at most max bytes (a tensor never split). */
static int assign_shards(qctx *q, out_tensor ***sorted_out) {
    out_tensor **s = malloc((q->n_outs ? q->n_outs : 1) * sizeof *s);
    if (!s) return -1;
    for (size_t i = 0; i < q->n_outs; i++) s[i] = &q->outs[i];
    qsort(s, q->n_outs, sizeof *s, cmp_out);
    size_t max = q->opt->max_shard_bytes ? q->opt->max_shard_bytes : DEFAULT_SHARD;
    int shard = 0;
    size_t acc = 0;
    for (size_t i = 0; i < q->n_outs; i++) {
        if (acc > 0 && acc + s[i]->nbytes > max) { shard++; acc = 0; }
        s[i]->shard = shard;
        s[i]->offset = acc;
        acc += s[i]->nbytes;
    }
    q->n_shards = shard + 1;
    *sorted_out = s;
    return 0;
}

static void shard_name(char *o, size_t n, int i, int count) {
    if (count == 1) snprintf(o, n, "model.safetensors");
    else snprintf(o, n, "model-%05d-of-%05d.safetensors", i + 1, count);
}

static int write_all(int fd, const void *p, size_t n, off_t off) {
    const char *c = p;
    while (n) {
        ssize_t w = pwrite(fd, c, n, off);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) return -1;
        c += w;
        n -= (size_t)w;
        off += w;
    }
    return 0;
}

static int write_headers(qctx *q, const char *tmp, out_tensor **sorted) {
    q->fds = malloc((size_t)q->n_shards * sizeof *q->fds);
    q->data_start = calloc((size_t)q->n_shards, sizeof *q->data_start);
    if (!q->fds || !q->data_start) return fail(q, "%s%s", "out of memory", "");
    for (int s = 0; s < q->n_shards; s++) q->fds[s] = -1;
    size_t k = 0;
    for (int s = 0; s < q->n_shards; s++) {
        buf h = {0};
        buf_puts(&h, "{\"__metadata__\":{\"format\":\"mlx\"}");
        for (; k < q->n_outs && sorted[k]->shard == s; k++) {
            const out_tensor *o = sorted[k];
            buf_printf(&h, ",\"%s\":{\"dtype\":\"%s\",\"shape\":[", o->name, o->dtype);
            for (int d = 0; d < o->ndim; d++) buf_printf(&h, "%s%lld", d ? "," : "", (long long)o->shape[d]);
            buf_printf(&h, "],\"data_offsets\":[%zu,%zu]}", o->offset, o->offset + o->nbytes);
        }
        buf_putc(&h, '}');
        while (h.len % 8) buf_putc(&h, ' ');   /* data 8-byte aligned, as the Rust writer pads */
        char name[64], path[4200];
        shard_name(name, sizeof name, s, q->n_shards);
        if (join_path(path, sizeof path, tmp, name)) return fail(q, "%s: %s", tmp, "path too long");
        q->fds[s] = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        uint8_t len8[8];
        for (int b = 0; b < 8; b++) len8[b] = (uint8_t)((uint64_t)h.len >> (8 * b));
        int bad = q->fds[s] < 0 || write_all(q->fds[s], len8, 8, 0) || write_all(q->fds[s], h.data, h.len, 8);
        q->data_start[s] = 8 + h.len;
        buf_free(&h);
        if (bad) return fail(q, "%s: %s", path, strerror(errno));
    }
    return 0;
}

static int put(qctx *q, int out, size_t at, const void *p, size_t n) {
    const out_tensor *o = &q->outs[out];
    if (write_all(q->fds[o->shard], p, n, (off_t)(q->data_start[o->shard] + o->offset + at)))
        return fail(q, "writing '%s': %s", o->name, strerror(errno));
    return 0;
}

/* Row source for emit(): fills row (cols floats) for (e, r). */
typedef void (*row_fn)(void *ctx, int64_t e, int64_t r, float *row);

typedef struct {
    const st_tensor *t;          /* a [.., rows, cols] plain tensor */
    const st_tensor **experts;   /* or one tensor per e */
    int64_t rows, cols;
} src_rows;

static void tensor_row(void *ctx, int64_t e, int64_t r, float *row) {
    src_rows *s = ctx;
    const st_tensor *t = s->experts ? s->experts[e] : s->t;
    int64_t base = s->experts ? 0 : e * s->rows;
    weight w = {0};
    w.format = t->dtype == ST_F32 ? WF_F32 : t->dtype == ST_F16 ? WF_F16 : WF_BF16;
    w.rows = base + s->rows;
    w.cols = s->cols;
    w.data = t->data;
    w.row_stride = (size_t)s->cols * plain_size(t->dtype);
    w.global_scale = 1.0f;
    weight_row_f32(&w, base + r, row);
}

static void store_plain(float v, st_dtype dt, uint8_t *dst) {
    if (dt == ST_F32) memcpy(dst, &v, 4);
    else {
        uint16_t h = dt == ST_F16 ? f32_to_f16(v) : f32_to_bf16(v);
        memcpy(dst, &h, 2);
    }
}

/* n_stack (or 1) matrices of rows x cols from fn, quantized with p (or plain
 * in dtype dt), to output tensors out[0..2]; one matrix held at a time. */
static int emit(qctx *q, const char *what, int64_t n_stack, int64_t rows, int64_t cols, const qparams *p, st_dtype dt,
                const int *out, row_fn fn, void *ctx) {
    int64_t n = n_stack ? n_stack : 1;
    size_t pb = p->quant ? quant_row_bytes(p->fmt, p->bits, cols) : (size_t)cols * plain_size(dt);
    dtype sdt = p->fmt == WF_AFFINE ? scale_dtype_of(dt) : DT_U8;
    size_t sb = p->quant ? (size_t)(cols / p->group) * (sdt == DT_F32 ? 4 : sdt == DT_U8 ? 1 : 2) : 0;
    uint8_t *data = malloc((size_t)rows * pb + 1), *sc = malloc((size_t)rows * sb + 1), *bi = malloc((size_t)rows * sb + 1);
    float *row = malloc((size_t)cols * sizeof *row + 1);
    int rc = 0;
    if (!data || !sc || !bi || !row) { rc = fail(q, "out of memory quantizing '%s'%s", what, ""); goto done; }
    for (int64_t e = 0; e < n && !rc; e++) {
        for (int64_t r = 0; r < rows; r++) {
            fn(ctx, e, r, row);
            if (!p->quant) {
                for (int64_t c = 0; c < cols; c++) store_plain(row[c], dt, data + (size_t)r * pb + (size_t)c * plain_size(dt));
                continue;
            }
            if (quant_quantize_row(p->fmt, p->bits, p->group, sdt, row, cols, data + (size_t)r * pb, sc + (size_t)r * sb,
                                   bi + (size_t)r * sb)) {
                char rs[32];
                snprintf(rs, sizeof rs, "%lld", (long long)r);
                rc = fail(q, "cannot quantize '%s' row %s: a value is not finite", what, rs);
                break;
            }
        }
        if (rc) break;
        rc = put(q, out[0], (size_t)e * rows * pb, data, (size_t)rows * pb);
        if (!rc && p->quant) rc = put(q, out[1], (size_t)e * rows * sb, sc, (size_t)rows * sb);
        if (!rc && p->quant && p->fmt == WF_AFFINE) rc = put(q, out[2], (size_t)e * rows * sb, bi, (size_t)rows * sb);
    }
done:
    free(data); free(sc); free(bi); free(row);
    return rc;
}

typedef struct {
    const float *kvb;            /* [H*(dn+dv)][R] */
    int dn, dv, R;
} kvb_rows;

static void embed_q_row(void *ctx, int64_t h, int64_t r, float *row) {   /* W_UK_h^T row r: column r of W_UK_h */
    kvb_rows *k = ctx;
    const float *blk = k->kvb + (size_t)h * (size_t)(k->dn + k->dv) * (size_t)k->R;
    for (int j = 0; j < k->dn; j++) row[j] = blk[(size_t)j * k->R + (size_t)r];
}

static void unembed_row(void *ctx, int64_t h, int64_t r, float *row) {   /* W_UV_h row r */
    kvb_rows *k = ctx;
    memcpy(row, k->kvb + ((size_t)h * (size_t)(k->dn + k->dv) + (size_t)k->dn + (size_t)r) * (size_t)k->R,
           (size_t)k->R * sizeof *row);
}

static int run_job(qctx *q, const job *j) {
    const st_tensor *t = j->src;
    if (j->kind == J_COPY) return put(q, j->out[0], 0, t->data, t->nbytes);
    if (j->kind == J_MATRIX || j->kind == J_STACK) {
        src_rows s = {t, j->experts, j->rows, j->cols};
        return emit(q, j->module, j->n_stack, j->rows, j->cols, &j->q, t->dtype, j->out, tensor_row, &s);
    }
    /* J_KVB: dequantize-free split of the (plain) kv_b into embed_q / unembed_out */
    const glm_config *c = &q->cfg;
    int H = c->num_attention_heads, dn = c->qk_nope_head_dim, dv = c->v_head_dim, R = c->kv_lora_rank;
    float *kvb = malloc((size_t)H * (size_t)(dn + dv) * (size_t)R * sizeof *kvb + 1);
    if (!kvb) return fail(q, "out of memory splitting '%s'%s", j->module, "");
    src_rows s = {t, NULL, (int64_t)H * (dn + dv), R};
    for (int64_t r = 0; r < s.rows; r++) tensor_row(&s, 0, r, kvb + (size_t)r * (size_t)R);
    kvb_rows k = {kvb, dn, dv, R};
    char a[300];
    snprintf(a, sizeof a, "%s (embed_q)", j->module);
    int rc = emit(q, a, H, R, dn, &j->q, t->dtype, j->out, embed_q_row, &k);
    snprintf(a, sizeof a, "%s (unembed_out)", j->module);
    if (!rc) rc = emit(q, a, H, dv, R, &j->q2, t->dtype, j->out + 3, unembed_row, &k);
    free(kvb);
    return rc;
}

/* ---------------------------------------------------------- config, files */

static void write_qspec(buf *b, const qparams *p) {
    if (!p->quant) { buf_puts(b, "false"); return; }
    buf_printf(b, "{\"group_size\": %d, \"bits\": %d, \"mode\": \"%s\"}", p->group, p->bits, mode_name(p->fmt));
}

static int same(const qparams *a, const qparams *b) {
    return a->quant == b->quant && (!a->quant || (a->fmt == b->fmt && a->bits == b->bits && a->group == b->group));
}

static void write_block(const qctx *q, buf *b) {
    buf_printf(b, "{\n    \"group_size\": %d,\n    \"bits\": %d,\n    \"mode\": \"%s\"", q->main.group, q->main.bits,
               mode_name(q->main.fmt));
    for (size_t i = 0; i < q->n_jobs; i++) {
        const job *j = &q->jobs[i];
        if (j->kind == J_COPY) continue;
        if (j->kind == J_KVB) {
            const char *names[2] = {"embed_q", "unembed_out"};
            const qparams *ps[2] = {&j->q, &j->q2};
            char base[256];
            snprintf(base, sizeof base, "%.*s", (int)(strlen(j->module) - strlen("kv_b_proj")), j->module);
            for (int k = 0; k < 2; k++) {
                if (same(ps[k], &q->main)) continue;
                buf_printf(b, ",\n    \"%s%s\": ", base, names[k]);
                write_qspec(b, ps[k]);
            }
            continue;
        }
        if (same(&j->q, &q->main)) continue;
        buf_printf(b, ",\n    \"%s\": ", j->module);
        write_qspec(b, &j->q);
    }
    buf_puts(b, "\n  }");
}

static int write_file_all(const char *path, const void *data, size_t n) {
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd < 0) return -1;
    int rc = write_all(fd, data, n, 0);
    if (!rc) rc = fsync(fd);
    if (close(fd)) rc = -1;
    return rc;
}

static int write_config(qctx *q, const char *in_dir, const char *tmp) {
    char path[4200];
    snprintf(path, sizeof path, "%s/config.json", in_dir);
    buf in = {0};
    if (buf_read_file(&in, path, 16u << 20)) { buf_free(&in); return fail(q, "%s: %s", path, "cannot read"); }
    char jerr[256];
    json_doc *doc = json_parse(in.data, in.len, jerr, sizeof jerr);
    buf_free(&in);
    if (!doc) return fail(q, "%s: %s", path, jerr);
    const json_value *root = json_root(doc);
    buf b = {0};
    buf_puts(&b, "{\n");
    for (size_t i = 0; i < root->len; i++) {
        const json_member *m = &root->members[i];
        if (!strcmp(m->key, "quantization") || !strcmp(m->key, "quantization_config")) continue;
        buf_puts(&b, "  ");
        json_write_string(&b, m->key, m->key_len, 0);
        buf_puts(&b, ": ");
        json_write_value(&b, &m->value, 1, 0);
        buf_puts(&b, ",\n");
    }
    buf_puts(&b, "  \"quantization\": ");
    write_block(q, &b);
    buf_puts(&b, ",\n  \"quantization_config\": ");
    write_block(q, &b);
    buf_puts(&b, "\n}\n");
    json_free(doc);
    if (join_path(path, sizeof path, tmp, "config.json")) return fail(q, "%s: %s", tmp, "path too long");
    int rc = write_file_all(path, b.data, b.len);
    buf_free(&b);
    if (rc) return fail(q, "%s: %s", path, strerror(errno));
    return 0;
}

/* Written for one shard too, as mlx-lm's save_model does (its sharded and
 * pipeline loaders read the weight_map). */
static int write_index(qctx *q, const char *tmp, out_tensor **sorted) {
    size_t total = 0;
    for (size_t i = 0; i < q->n_outs; i++) total += q->outs[i].nbytes;
    buf b = {0};
    buf_printf(&b, "{\n  \"metadata\": {\"total_size\": %zu},\n  \"weight_map\": {", total);
    for (size_t i = 0; i < q->n_outs; i++) {
        char name[64];
        shard_name(name, sizeof name, sorted[i]->shard, q->n_shards);
        buf_printf(&b, "%s\n    \"%s\": \"%s\"", i ? "," : "", sorted[i]->name, name);
    }
    buf_puts(&b, "\n  }\n}\n");
    char path[4200];
    if (join_path(path, sizeof path, tmp, "model.safetensors.index.json")) return fail(q, "%s: %s", tmp, "path too long");
    int rc = write_file_all(path, b.data, b.len);
    buf_free(&b);
    if (rc) return fail(q, "%s: %s", path, strerror(errno));
    return 0;
}

static int copy_side_files(qctx *q, const char *in_dir, const char *tmp) {
    static const char *files[] = {"tokenizer.json", "tokenizer_config.json", "generation_config.json",
                                  "special_tokens_map.json", "chat_template.jinja"};
    for (size_t i = 0; i < sizeof files / sizeof *files; i++) {
        char src[4200], dst[4200];
        if (join_path(src, sizeof src, in_dir, files[i]) || join_path(dst, sizeof dst, tmp, files[i]))
            return fail(q, "%s: %s", tmp, "path too long");
        buf b = {0};
        if (buf_read_file(&b, src, (size_t)1 << 30)) { buf_free(&b); continue; }   /* optional */
        int rc = write_file_all(dst, b.data, b.len);
        buf_free(&b);
        if (rc) return fail(q, "%s: %s", dst, strerror(errno));
    }
    return 0;
}

static void remove_dir(const char *dir) {
    DIR *d = opendir(dir);
    if (d) {
        struct dirent *e;
        while ((e = readdir(d))) {
            if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
            char p[4400];
            if (join_path(p, sizeof p, dir, e->d_name) == 0) unlink(p);
        }
        closedir(d);
    }
    rmdir(dir);
}

static int params_for(const quantize_options *o, qparams *main, qparams *eight, char *err, size_t errlen) {
    int g = o->group_size;
    memset(main, 0, sizeof *main);
    main->quant = 1;
    switch (o->type) {
    case QT_INT4: case QT_INT8:
        if (!g) g = 64;
        if (g != 32 && g != 64 && g != 128) {
            snprintf(err, errlen, "--group-size %d: %s needs 32, 64 or 128", g, quant_type_name(o->type));
            return -1;
        }
        main->fmt = WF_AFFINE;
        main->bits = o->type == QT_INT4 ? 4 : 8;
        main->group = g;
        *eight = *main;
        eight->bits = 8;
        return 0;
    case QT_NVFP4: case QT_MXFP4: case QT_MXFP8:
        main->fmt = o->type == QT_NVFP4 ? WF_NVFP4 : o->type == QT_MXFP4 ? WF_MXFP4 : WF_MXFP8;
        main->bits = quant_format_bits(main->fmt, 0);
        main->group = quant_format_group(main->fmt, 0);
        if (g && g != main->group) {
            snprintf(err, errlen, "--group-size %d: %s has a fixed group size of %d", g, quant_type_name(o->type), main->group);
            return -1;
        }
        *eight = *main;
        eight->fmt = WF_MXFP8;
        eight->bits = 8;
        eight->group = 32;
        return 0;
    }
    snprintf(err, errlen, "unknown quantization type %d", (int)o->type);
    return -1;
}

int glm_quantize(const char *in_dir, const char *out_dir, const quantize_options *opt, char *err, size_t errlen) {
    qctx q;
    memset(&q, 0, sizeof q);
    q.opt = opt;
    q.err = err;
    q.errlen = errlen;
    if (params_for(opt, &q.main, &q.eight, err, errlen)) return -1;
    char out[4096];
    snprintf(out, sizeof out, "%s", out_dir);
    size_t ol = strlen(out);
    while (ol > 1 && out[ol - 1] == '/') out[--ol] = 0;
    struct stat sb;
    if (!ol) { snprintf(err, errlen, "empty output path"); return -1; }
    if (stat(out, &sb) == 0) { snprintf(err, errlen, "%s already exists (choose a new output directory)", out); return -1; }
    /* config */
    char path[4200];
    snprintf(path, sizeof path, "%s/config.json", in_dir);
    buf cb = {0};
    if (buf_read_file(&cb, path, 16u << 20)) {
        buf_free(&cb);
        snprintf(err, errlen, "%s: cannot read (is this a model directory?)", path);
        return -1;
    }
    int rc = config_parse(cb.data, cb.len, &q.cfg, err, errlen);
    buf_free(&cb);
    if (rc) return -1;
    q.st = st_open_dir(in_dir, err, errlen);
    if (!q.st) return -1;
    char tmp[4200] = "";
    out_tensor **sorted = NULL;
    rc = plan(&q);
    if (!rc && assign_shards(&q, &sorted)) rc = fail(&q, "%s%s", "out of memory", "");
    if (!rc) {
        snprintf(tmp, sizeof tmp, "%s.tmp-XXXXXX", out);
        if (!mkdtemp(tmp)) {
            rc = fail(&q, "cannot create %s: %s", tmp, strerror(errno));
            tmp[0] = 0;
        } else {
            chmod(tmp, 0755);   /* mkdtemp makes it 0700; a model directory is ordinarily readable */
        }
    }
    if (!rc) rc = write_headers(&q, tmp, sorted);
    const char *abort_env = getenv("GLMLITE_QUANTIZE_ABORT_AFTER");
    long abort_after = abort_env ? strtol(abort_env, NULL, 10) : -1;
    for (size_t i = 0; !rc && i < q.n_jobs; i++) {
        rc = run_job(&q, &q.jobs[i]);
        const job *j = &q.jobs[i];
        if (j->experts) for (int64_t e = 0; e < j->n_stack; e++) q.done_in += j->experts[e]->nbytes;
        else q.done_in += j->src->nbytes;
        if (opt->progress) opt->progress(opt->progress_ctx, q.done_in, q.total_in);
        if (abort_after >= 0 && (long)i + 1 >= abort_after) raise(SIGKILL);   /* test hook: an interruption */
    }
    for (int s = 0; q.fds && s < q.n_shards; s++)
        if (q.fds[s] >= 0) {
            if (!rc && fsync(q.fds[s])) rc = fail(&q, "fsync: %s%s", strerror(errno), "");
            if (close(q.fds[s]) && !rc) rc = fail(&q, "close: %s%s", strerror(errno), "");
        }
    if (!rc) rc = write_index(&q, tmp, sorted);
    if (!rc) rc = copy_side_files(&q, in_dir, tmp);
    if (!rc) rc = write_config(&q, in_dir, tmp);   /* last: the directory loads only once complete */
    if (!rc && rename(tmp, out)) rc = fail(&q, "cannot rename to %s: %s", out, strerror(errno));
    if (rc && tmp[0]) remove_dir(tmp);
    for (size_t i = 0; i < q.n_jobs; i++) free(q.jobs[i].experts);
    free(q.jobs);
    free(q.outs);
    free(sorted);
    free(q.fds);
    free(q.data_start);
    st_close(q.st);
    return rc;
}
