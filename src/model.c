/* model.c — GLM4-MoE-Lite / DeepSeek-V2/V3: weight binding, the forward pass
 * (absorbed MLA over a latent KV cache, dense or MoE feed-forward) and
 * sessions. Reads like SPEC §5; shapes are in the comments. */
#include "glm.h"

#include <math.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "buf.h"
#include "kernels.h"
#include "linear.h"
#include "profile.h"
#include "router.h"
#include "safetensors.h"
#include "threads.h"
#include "weights.h"

/* Tokens per forward chunk: bounds the scratch memory. Each expert's weights
 * are read once per chunk, for ~32 tokens on GLM-4.7-Flash (64 experts, top 4). */
#define UBATCH 512
#define Q_TILE 8        /* tokens one prefill attention task handles (all heads): a cached row is read once per tile */
#define KEY_BLOCK 256   /* keys per decode attention task; fixed, so results do not depend on the threads */
/* Decode's value sums over a bf16 cache read the rows as stored
 * (weighted_sum_bf16_few) up to this many heads: more tile products than
 * packing the rows into key pairs (20 heads: 768 a block against 512), but
 * nothing written per row. One thread, a 256-row block in L2: 20 heads
 * 9.2-9.9 against 10.4-11.3 us, 48 16.2-16.4 against 16.0-16.2, 128
 * 44.6-45.8 against 31.1-31.3; in the model (20 heads, depth 8192, before
 * the in-place kernel's 8-head tiles) attention 3.07 against 3.34-3.46 ms a
 * token. */
#define FEW_HEADS_MAX 48

typedef struct {
    const float *attn_norm;       /* [D] */
    /* query: q_a -> norm -> q_b, or one q_proj when q_lora_rank is 0 */
    weight q_a;                   /* [Rq, D] */
    const float *q_a_norm;        /* [Rq] */
    weight q_b;                   /* [H*(dn+dr), Rq] */
    weight q_proj;                /* [H*(dn+dr), D] */
    weight kv_a;                  /* [Rkv+dr, D]: latent rows, then the shared rope key */
    const float *kv_a_norm;       /* [Rkv] */
    /* latent up-projection: kv_b (HF), or the same split per head (mlx-lm) */
    int split_up;
    weight kv_b;                  /* [H*(dn+dv), Rkv]: per head W_UK rows then W_UV rows */
    weight *embed_q;              /* [H] x [Rkv, dn]: W_UK transposed */
    weight *unembed_out;          /* [H] x [dv, Rkv]: W_UV */
    weight o_proj;                /* [D, H*dv] */
    const float *ffn_norm;        /* [D] */
    int dense;
    weight gate, up, down;        /* dense: [F, D], [F, D], [D, F] */
    weight router;                /* [E, D] */
    const float *router_bias;     /* [E] or NULL */
    weight *exp_gate, *exp_up, *exp_down;   /* [E] each: [Fe, D], [Fe, D], [D, Fe] */
    int has_shared;
    weight sh_gate, sh_up, sh_down;         /* [Fs, D], [Fs, D], [D, Fs], Fs = Fe * n_shared */
} layer;

struct glm_model {
    glm_config cfg;
    weights_file *wf;
    weight embed;                 /* [V, D] */
    const float *final_norm;      /* [D] */
    weight lm_head;               /* [V, D] (the embedding when tied) */
    layer *layers;
    thread_pool *pool;
    double *inv_freq;             /* [dr/2] */
};

struct glm_session {
    glm_model *m;
    int n_ctx, n_past;
    int naive_attention;
    int q_tile;                   /* tokens per prefill attention task */
    int kv_bf16;                  /* cache elements are bf16 (else f32) */
    int attn_bf16;                /* a bf16 cache read in bf16 arithmetic (kernels with AVX512-BF16) */
    int attn_split;               /* prefill attention over an f32 cache in exact bf16 parts (AMX: gemm_f32_split) */
    int decode_ahead;             /* decode requests a thread's next block of cached rows (kernels_decode_ahead) */
    void *arena;                  /* the one allocation every buffer below is a piece of (session_buffers) */
    void *kv;                     /* [L][n_ctx][Rkv+dr]: normalised latent, then rotated rope key */
    float *kv_row;                /* [Rkv+dr]: one row in f32 before it is stored */
    int32_t *tokens;              /* [n_ctx]: the ids whose entries are cached (prompt-cache matching) */
    /* scratch, sized once (no allocation per token) */
    float *x, *xn;                /* [UB][D] */
    float *qkv_a;                 /* [UB][Rq + Rkv+dr]: q_a's output, then kv_a's (one product) */
    float *q;                     /* [UB][H*(dn+dr)] */
    float *qa;                    /* [UB][H][Rkv+dr]: absorbed query per head */
    uint16_t *qa_bf16;            /* attn_bf16 only: qa rounded to bf16 */
    float *olat;                  /* [UB][H][Rkv] */
    float *o;                     /* [UB][H*dv] */
    float *proj;                  /* [UB][D] */
    float *cos_t, *sin_t;         /* [UB][dr/2] */
    float *ff_g, *ff_u;           /* [UB][ff_stride]: gate and up outputs */
    size_t ff_stride;             /* Fmax: the widest MLP, dense or the shared experts together */
    float *router_logits;         /* [UB][E] */
    int *sel;                     /* [UB][K] */
    float *sel_w;                 /* [UB][K] */
    float *gather;                /* [UB][D] */
    int *gather_tok;              /* [UB] (token*K + slot) */
    float *expert_out;            /* [UB][D] */
    float *slot_out;              /* [UB][K][D] */
    float *thread_scratch;        /* [threads][scratch_stride] */
    size_t scratch_stride;
    float *packed;                /* a chunk's vectors transposed for linear(): [widest input][UB] */
    float *naive_k, *naive_v;     /* naive attention only: [n_ctx][H*dn], [n_ctx][H*dv] */
    float *dec_stat;              /* decode attention: [n_ctx / KEY_BLOCK][H][2] per-block score max, sum of exps */
    float *dec_part;              /* decode attention: [n_ctx / KEY_BLOCK][H][Rkv] per-block value sums */
    float *naive_score;           /* naive attention only: [n_ctx] */
    float *naive_cache;           /* naive attention only: [n_ctx][Rkv+dr], the layer's cache in f32 */
};

/* ---------------------------------------------------------------- loading */

static int bind_layer(glm_model *m, int i, char *err, size_t errlen) {
    const glm_config *c = &m->cfg;
    layer *L = &m->layers[i];
    weights_file *wf = m->wf;
    int D = c->hidden_size, H = c->num_attention_heads;
    int dqk = c->qk_head_dim, R = c->kv_lora_rank, dr = c->qk_rope_head_dim;
    char p[256];
#define NAME(...) (snprintf(p, sizeof p, __VA_ARGS__), p)
    if (weights_vector(wf, NAME("model.layers.%d.input_layernorm.weight", i), D, &L->attn_norm, err, errlen)) return -1;
    if (c->q_lora_rank > 0) {
        if (weights_linear(wf, NAME("model.layers.%d.self_attn.q_a_proj", i), c->q_lora_rank, D, &L->q_a, err, errlen) ||
            weights_vector(wf, NAME("model.layers.%d.self_attn.q_a_layernorm.weight", i), c->q_lora_rank, &L->q_a_norm, err, errlen) ||
            weights_linear(wf, NAME("model.layers.%d.self_attn.q_b_proj", i), (int64_t)H * dqk, c->q_lora_rank, &L->q_b, err, errlen))
            return -1;
    } else if (weights_linear(wf, NAME("model.layers.%d.self_attn.q_proj", i), (int64_t)H * dqk, D, &L->q_proj, err, errlen)) {
        return -1;
    }
    L->embed_q = calloc((size_t)H * 2, sizeof(weight));
    if (!L->embed_q) { snprintf(err, errlen, "out of memory"); return -1; }
    L->unembed_out = L->embed_q + H;
    if (weights_linear(wf, NAME("model.layers.%d.self_attn.kv_a_proj_with_mqa", i), R + dr, D, &L->kv_a, err, errlen) ||
        weights_vector(wf, NAME("model.layers.%d.self_attn.kv_a_layernorm.weight", i), R, &L->kv_a_norm, err, errlen) ||
        weights_mla_up(wf, i, H, c->qk_nope_head_dim, c->v_head_dim, R, &L->kv_b, L->embed_q, L->unembed_out, &L->split_up,
                       err, errlen) ||
        weights_linear(wf, NAME("model.layers.%d.self_attn.o_proj", i), D, (int64_t)H * c->v_head_dim, &L->o_proj, err, errlen) ||
        weights_vector(wf, NAME("model.layers.%d.post_attention_layernorm.weight", i), D, &L->ffn_norm, err, errlen))
        return -1;
    L->dense = c->layer_is_dense[i];
    if (L->dense) {
        int F = c->intermediate_size;
        return weights_linear(wf, NAME("model.layers.%d.mlp.gate_proj", i), F, D, &L->gate, err, errlen) ||
                       weights_linear(wf, NAME("model.layers.%d.mlp.up_proj", i), F, D, &L->up, err, errlen) ||
                       weights_linear(wf, NAME("model.layers.%d.mlp.down_proj", i), D, F, &L->down, err, errlen)
                   ? -1 : 0;
    }
    int E = c->n_routed_experts, Fe = c->moe_intermediate_size;
    if (weights_linear(wf, NAME("model.layers.%d.mlp.gate", i), E, D, &L->router, err, errlen)) return -1;
    L->router_bias = NULL;
    if (weights_has(wf, NAME("model.layers.%d.mlp.gate.e_score_correction_bias", i))) {
        if (weights_vector(wf, p, E, &L->router_bias, err, errlen)) return -1;
    } else if (c->topk_method == TOPK_NOAUX_TC) {
        snprintf(err, errlen, "missing tensor 'model.layers.%d.mlp.gate.e_score_correction_bias' (needed by topk_method noaux_tc)", i);
        return -1;
    }
    L->exp_gate = calloc((size_t)E * 3, sizeof(weight));
    if (!L->exp_gate) { snprintf(err, errlen, "out of memory"); return -1; }
    L->exp_up = L->exp_gate + E;
    L->exp_down = L->exp_gate + 2 * E;
    if (weights_experts(wf, i, "gate_proj", E, Fe, D, L->exp_gate, err, errlen) ||
        weights_experts(wf, i, "up_proj", E, Fe, D, L->exp_up, err, errlen) ||
        weights_experts(wf, i, "down_proj", E, D, Fe, L->exp_down, err, errlen))
        return -1;
    L->has_shared = c->n_shared_experts > 0;
    if (L->has_shared) {
        int Fs = Fe * c->n_shared_experts;
        if (weights_linear(wf, NAME("model.layers.%d.mlp.shared_experts.gate_proj", i), Fs, D, &L->sh_gate, err, errlen) ||
            weights_linear(wf, NAME("model.layers.%d.mlp.shared_experts.up_proj", i), Fs, D, &L->sh_up, err, errlen) ||
            weights_linear(wf, NAME("model.layers.%d.mlp.shared_experts.down_proj", i), D, Fs, &L->sh_down, err, errlen))
            return -1;
    }
#undef NAME
    return 0;
}

/* config.json or generation_config.json; NULL if absent or unreadable. */
static char *read_text(const char *path, size_t *len) {
    buf b = {0};
    if (buf_read_file(&b, path, 16u << 20) != 0) { buf_free(&b); return NULL; }
    *len = b.len;
    return buf_detach(&b);
}

glm_model *glm_model_load(const char *dir, const glm_load_options *opt, char *err, size_t errlen) {
    char path[4096];
    size_t len;
    snprintf(path, sizeof path, "%s/config.json", dir);
    char *text = read_text(path, &len);
    if (!text) {
        snprintf(err, errlen, "%s: cannot read (is this a model directory?)", path);
        return NULL;
    }
    glm_model *m = calloc(1, sizeof *m);
    if (!m) { free(text); snprintf(err, errlen, "out of memory"); return NULL; }
    int rc = config_parse(text, len, &m->cfg, err, errlen);
    free(text);
    if (rc) { free(m); return NULL; }
    snprintf(path, sizeof path, "%s/generation_config.json", dir);
    if ((text = read_text(path, &len))) {
        rc = config_merge_generation(text, len, &m->cfg, err, errlen);
        free(text);
        if (rc) { free(m); return NULL; }
    }
    const glm_config *c = &m->cfg;
    m->wf = weights_open(dir, err, errlen);
    if (!m->wf) { free(m); return NULL; }
    weights_set_exact_act(m->wf, opt && opt->exact_matmul);
    m->layers = calloc((size_t)c->num_hidden_layers, sizeof *m->layers);
    m->inv_freq = calloc((size_t)c->qk_rope_head_dim / 2, sizeof *m->inv_freq);
    if (!m->layers || !m->inv_freq) { snprintf(err, errlen, "out of memory"); glm_model_free(m); return NULL; }
    config_rope_inv_freq(c, m->inv_freq);
    if (weights_linear(m->wf, "model.embed_tokens", c->vocab_size, c->hidden_size, &m->embed, err, errlen) ||
        weights_vector(m->wf, "model.norm.weight", c->hidden_size, &m->final_norm, err, errlen)) {
        glm_model_free(m);
        return NULL;
    }
    if (c->tie_word_embeddings) m->lm_head = m->embed;
    else if (weights_linear(m->wf, "lm_head", c->vocab_size, c->hidden_size, &m->lm_head, err, errlen)) {
        glm_model_free(m);
        return NULL;
    }
    for (int i = 0; i < c->num_hidden_layers; i++)
        if (bind_layer(m, i, err, errlen)) { glm_model_free(m); return NULL; }
    int threads = opt && opt->n_threads > 0 ? opt->n_threads : (int)sysconf(_SC_NPROCESSORS_ONLN);
    if (threads < 1) threads = 1;
    m->pool = pool_new(threads);
    if (!m->pool) { snprintf(err, errlen, "cannot start %d threads", threads); glm_model_free(m); return NULL; }
    return m;
}

void glm_model_free(glm_model *m) {
    if (!m) return;
    if (m->layers)
        for (int i = 0; i < m->cfg.num_hidden_layers; i++) {
            free(m->layers[i].exp_gate);
            free(m->layers[i].embed_q);
        }
    free(m->layers);
    free(m->inv_freq);
    if (m->pool) pool_free(m->pool);
    weights_close(m->wf);
    free(m);
}

const glm_config *glm_model_config(const glm_model *m) { return &m->cfg; }
int glm_model_threads(const glm_model *m) { return pool_size(m->pool); }

static void add_bytes(glm_model_stats *st, const weight *w, int active) {
    size_t b = weight_bytes(w);
    st->weight_bytes += b;
    if ((unsigned)w->format < 8) st->bytes_by_format[w->format] += b;
    if (active) {
        st->active_weight_bytes += b;
        st->active_weight_elems += (double)w->rows * (double)w->cols;
    }
}

void glm_model_get_stats(const glm_model *m, glm_model_stats *st) {
    memset(st, 0, sizeof *st);
    const glm_config *c = &m->cfg;
    add_bytes(st, &m->embed, 0);
    st->active_weight_bytes += (size_t)(weight_bytes(&m->embed) / (size_t)c->vocab_size);   /* one row */
    if (!c->tie_word_embeddings) add_bytes(st, &m->lm_head, 1);
    else {
        st->active_weight_bytes += weight_bytes(&m->lm_head);
        st->active_weight_elems += (double)m->lm_head.rows * (double)m->lm_head.cols;
    }
    for (int i = 0; i < c->num_hidden_layers; i++) {
        const layer *L = &m->layers[i];
        const weight *attn[] = {&L->q_a, &L->q_b, &L->q_proj, &L->kv_a, &L->kv_b, &L->o_proj};
        for (int k = 0; k < 6; k++) if (attn[k]->data) add_bytes(st, attn[k], 1);
        for (int h = 0; L->split_up && h < c->num_attention_heads; h++) {
            add_bytes(st, &L->embed_q[h], 1);
            add_bytes(st, &L->unembed_out[h], 1);
        }
        if (L->dense) {
            add_bytes(st, &L->gate, 1); add_bytes(st, &L->up, 1); add_bytes(st, &L->down, 1);
            continue;
        }
        add_bytes(st, &L->router, 1);
        size_t per_expert = 0;
        for (int e = 0; e < c->n_routed_experts; e++) {
            add_bytes(st, &L->exp_gate[e], 0); add_bytes(st, &L->exp_up[e], 0); add_bytes(st, &L->exp_down[e], 0);
            per_expert = weight_bytes(&L->exp_gate[e]) + weight_bytes(&L->exp_up[e]) + weight_bytes(&L->exp_down[e]);
        }
        st->active_weight_bytes += per_expert * (size_t)c->num_experts_per_tok;
        st->active_weight_elems += 3.0 * (double)c->moe_intermediate_size * c->hidden_size * c->num_experts_per_tok;
        if (L->has_shared) { add_bytes(st, &L->sh_gate, 1); add_bytes(st, &L->sh_up, 1); add_bytes(st, &L->sh_down, 1); }
    }
    st->kv_bytes_per_token = (size_t)c->num_hidden_layers * (size_t)(c->kv_lora_rank + c->qk_rope_head_dim) * sizeof(float);
}

/* --------------------------------------------------------------- sessions */

/* Every session buffer is sized in one place, session_buffers(), run either
 * only to add up the bytes (glm_session_bytes, for `glmlite info`, and the
 * size of the session's one allocation) or to hand out pieces of that
 * allocation. Each piece starts on a 64-byte line: a 512-bit load from an
 * unaligned row spans two cache lines, which made decode attention's
 * products over the cached latents about 13% slower. */
typedef struct {
    char *base;       /* NULL: only count */
    size_t bytes;
} buffer_plan;

#define BUFFER_ALIGN 64

static void *take(buffer_plan *b, size_t n) {
    void *p = b->base ? b->base + b->bytes : NULL;
    b->bytes += (n + BUFFER_ALIGN - 1) / BUFFER_ALIGN * BUFFER_ALIGN;
    return p;
}

/* Floats of prefill attention's split queries (attn_split): a tile's q_tile * H
 * absorbed queries in split_bf16's layout, rounded up to whole 64-byte lines. */
static size_t split_queries_floats(const glm_session *s) {
    const glm_config *c = &s->m->cfg;
    size_t elems = split_bf16_elems(s->q_tile * c->num_attention_heads, c->kv_lora_rank + c->qk_rope_head_dim);
    return (elems + 31) / 32 * 16;
}

static void session_buffers(glm_session *s, buffer_plan *b) {
    const glm_config *c = &s->m->cfg;
    int D = c->hidden_size, H = c->num_attention_heads, R = c->kv_lora_rank, dr = c->qk_rope_head_dim;
    int dn = c->qk_nope_head_dim, dv = c->v_head_dim, E = c->n_routed_experts, K = c->num_experts_per_tok;
    size_t kvw = (size_t)(R + dr);
    size_t Fmax = (size_t)c->intermediate_size;
    if ((size_t)c->moe_intermediate_size * (size_t)(c->n_shared_experts > 1 ? c->n_shared_experts : 1) > Fmax)
        Fmax = (size_t)c->moe_intermediate_size * (size_t)(c->n_shared_experts > 1 ? c->n_shared_experts : 1);
    size_t UB = UBATCH, F = sizeof(float);
    s->kv = take(b, (size_t)c->num_hidden_layers * (size_t)s->n_ctx * kvw * (s->kv_bf16 ? 2 : F));
    s->kv_row = take(b, kvw * F);
    size_t key_blocks = ((size_t)s->n_ctx + KEY_BLOCK - 1) / KEY_BLOCK;
    s->dec_stat = take(b, key_blocks * (size_t)H * 2 * F);
    s->dec_part = take(b, key_blocks * (size_t)H * (size_t)R * F);
    s->tokens = take(b, (size_t)s->n_ctx * sizeof *s->tokens);
    s->x = take(b, UB * D * F);
    s->xn = take(b, UB * D * F);
    s->qkv_a = take(b, UB * ((size_t)c->q_lora_rank + kvw) * F);
    s->q = take(b, UB * H * (size_t)c->qk_head_dim * F);
    s->qa = take(b, UB * H * kvw * F);
    s->qa_bf16 = take(b, s->attn_bf16 ? UB * H * kvw * sizeof *s->qa_bf16 : 0);
    s->olat = take(b, UB * H * (size_t)R * F);
    s->o = take(b, UB * H * (size_t)dv * F);
    s->proj = take(b, UB * D * F);
    s->cos_t = take(b, UB * (size_t)dr / 2 * F);
    s->sin_t = take(b, UB * (size_t)dr / 2 * F);
    s->ff_stride = Fmax;
    s->ff_g = take(b, UB * Fmax * F);
    s->ff_u = take(b, UB * Fmax * F);
    s->router_logits = take(b, UB * (size_t)(E ? E : 1) * 2 * F);
    s->sel = take(b, UB * (size_t)(K ? K : 1) * sizeof(int));
    s->sel_w = take(b, UB * (size_t)(K ? K : 1) * F);
    s->gather = take(b, UB * D * F);
    s->gather_tok = take(b, UB * (size_t)(K ? K : 1) * sizeof(int));
    s->expert_out = take(b, UB * D * F);
    s->slot_out = take(b, UB * (size_t)(K ? K : 1) * D * F);
    /* the widest input of any linear() */
    size_t in_max = (size_t)D;
    size_t cands[] = {Fmax, (size_t)R, (size_t)H * (size_t)dv, (size_t)H * (size_t)c->qk_head_dim,
                      (size_t)(c->q_lora_rank ? c->q_lora_rank : 1)};
    for (size_t k = 0; k < sizeof cands / sizeof *cands; k++) in_max = cands[k] > in_max ? cands[k] : in_max;
    s->packed = take(b, linear_packed_floats(UBATCH, (int64_t)in_max) * F);
    /* per thread (floats): a block of linear()'s partial sums and widened rows; in prefill attention,
       one head's linear_rows over R (output) or dn (query) columns with its vectors packed there too,
       or a tile's attention scores */
    size_t widest = linear_rows_scratch_floats(UBATCH, (int64_t)in_max);
    size_t head_cols = (size_t)(R > dn ? R : dn);
    size_t head_floats = linear_rows_scratch_floats(UBATCH, (int64_t)head_cols) + linear_packed_floats(UBATCH, (int64_t)head_cols);
    if (head_floats > widest) widest = head_floats;
    /* prefill attention: a tile's scores [q_tile * H][n_ctx]; fewer tokens per
       tile for very long contexts, to bound this buffer */
    s->q_tile = Q_TILE;
    while (s->q_tile > 1 && (size_t)s->q_tile * H * (size_t)s->n_ctx > ((size_t)1 << 22)) s->q_tile--;
    /* with attn_bf16, also a block of its probabilities in bf16, [q_tile * H][KEY_BLOCK]; with
       attn_split, the tile's queries split into bf16 parts and the kernels' work space */
    size_t a16_floats = s->attn_bf16 ? KEY_BLOCK / 2 : 0;   /* per query */
    size_t tile_floats = (size_t)s->q_tile * H * ((size_t)s->n_ctx + a16_floats);
    if (s->attn_split)
        tile_floats += split_queries_floats(s) + (split_work_elems((int64_t)kvw, s->q_tile * H, KEY_BLOCK) + 1) / 2;
    if (tile_floats > widest) widest = tile_floats;
    /* prefill absorbed query: one head's W_UK transposed, [Rkv][dn], and a row */
    if ((size_t)R * (size_t)(dn + 1) > widest) widest = (size_t)R * (size_t)(dn + 1);
    size_t decode_floats = (size_t)H * (KEY_BLOCK + a16_floats);   /* decode: the same for one token */
    if (decode_floats > widest) widest = decode_floats;
    /* decode's experts: the int8 inputs of one section of linear_many (each a little over its floats) */
    size_t expert_inputs = (size_t)2 * (K + 1) * (in_max + 64);
    if (expert_inputs > widest) widest = expert_inputs;
    s->scratch_stride = (widest + 15) & ~(size_t)15;
    s->thread_scratch = take(b, (size_t)pool_size(s->m->pool) * s->scratch_stride * F);
    if (s->naive_attention) {
        s->naive_k = take(b, (size_t)s->n_ctx * H * dn * F);
        s->naive_v = take(b, (size_t)s->n_ctx * H * dv * F);
        s->naive_score = take(b, (size_t)s->n_ctx * F);
        s->naive_cache = take(b, (size_t)s->n_ctx * kvw * F);
    }
}

static void session_init(glm_session *s, glm_model *m, const glm_session_options *opt) {
    const glm_config *c = &m->cfg;
    s->m = m;
    s->n_ctx = opt && opt->n_ctx > 0 ? opt->n_ctx : (c->max_position_embeddings < 4096 ? c->max_position_embeddings : 4096);
    s->naive_attention = opt ? opt->naive_attention : 0;
    s->kv_bf16 = opt ? opt->kv_bf16 : 0;
    s->attn_bf16 = s->kv_bf16 && kernels_bf16_pairs();
    s->attn_split = !s->kv_bf16 && !s->naive_attention && kernels_active()->gemm_f32_split;
    int kvw = c->kv_lora_rank + c->qk_rope_head_dim;
    s->decode_ahead = !s->attn_bf16 && kernels_decode_ahead((size_t)KEY_BLOCK * kvw * (s->kv_bf16 ? 2 : sizeof(float)));
}

glm_session *glm_session_new(glm_model *m, const glm_session_options *opt, char *err, size_t errlen) {
    glm_session *s = calloc(1, sizeof *s);
    if (!s) { snprintf(err, errlen, "out of memory"); return NULL; }
    session_init(s, m, opt);
    buffer_plan b = {0};
    session_buffers(s, &b);
    /* calloc: zeroed, and for a large size fresh pages that take no memory until first written */
    s->arena = calloc(1, b.bytes + BUFFER_ALIGN);
    if (!s->arena) {
        snprintf(err, errlen, "out of memory allocating a session of %d tokens", s->n_ctx);
        free(s);
        return NULL;
    }
    b = (buffer_plan){.base = (char *)(((uintptr_t)s->arena + BUFFER_ALIGN - 1) / BUFFER_ALIGN * BUFFER_ALIGN)};
    session_buffers(s, &b);
    return s;
}

size_t glm_session_bytes(glm_model *m, const glm_session_options *opt) {
    glm_session s = {0};
    session_init(&s, m, opt);
    buffer_plan b = {0};
    session_buffers(&s, &b);
    return b.bytes;
}

void glm_session_free(glm_session *s) {
    if (!s) return;
    free(s->arena);
    free(s);
}

int glm_session_n_ctx(const glm_session *s) { return s->n_ctx; }
int glm_session_n_past(const glm_session *s) { return s->n_past; }
const int32_t *glm_session_tokens(const glm_session *s) { return s->tokens; }
void glm_session_truncate(glm_session *s, int n) {
    if (n >= 0 && n < s->n_past) s->n_past = n;
}

/* ---------------------------------------------------------- forward pass */

static void lin(glm_session *s, const weight *w, const float *x, int n, size_t xs, float *y, size_t ys) {
    double t0 = prof_begin();
    linear(s->m->pool, w, x, n, xs, y, ys, s->thread_scratch, s->scratch_stride, s->packed);
    prof_end(PROF_MATMUL, t0);
}

/* Prefill attention over the latent cache (SPEC §5.5) for a tile of up to
 * q_tile consecutive tokens and all heads at once: score(p) = scale *
 * ([q_lat | q_pe] . [c_kv(p) | k_pe(p)]), value = c_kv(p). The tile's
 * q_tile * H absorbed queries are contiguous in qa, so per block of cached
 * rows the scores are one small GEMM (keys x queries) and the values one
 * weighted sum: each cached row is read once for all of the tile's queries.
 * A query's keys past its own position get probability 0, which adds exact
 * zeros, so a token's result does not depend on the tile it falls in; tiles
 * are fixed by the chunk, never by the thread count. */
typedef struct {
    glm_session *s;
    const void *cache;    /* this layer's [n_ctx][R+dr], f32 or bf16 */
    int T, pos0;
} attn_job;

/* Scores y[i][r] = q_(q0 + i) . row (p0 + r) of the cache for nq absorbed
 * queries from q0, and value sums y[h][j] += a[h][r] * row (p0 + r)[j], over
 * cached rows [p0, p0 + n) in f32 or bf16 (read as stored: a bf16 cache
 * reads half the bytes). With attn_bf16 the products run on bf16 pairs: the
 * queries rounded once per token (qa_bf16), the weights a rounded here into
 * a16 ([nh][KEY_BLOCK]), and decode's value sums read the rows as stored
 * where the kernels can (weighted_sum_bf16_few). */
static void cache_scores(const glm_session *s, const void *cache, int p0, int n, int kvw, int q0, int nq, float *y, size_t ys,
                         const void *ahead, size_t ahead_bytes) {
    const kernel_table *k = kernels_active();
    const size_t at = (size_t)p0 * kvw, qat = (size_t)q0 * kvw;
    if (s->attn_bf16) k->gemm_bf16_bf16((const uint16_t *)cache + at, (size_t)kvw, n, s->qa_bf16 + qat, (size_t)kvw, nq, kvw, y, ys);
    else if (s->kv_bf16)
        k->gemm_bf16((const uint16_t *)cache + at, (size_t)kvw, n, s->qa + qat, (size_t)kvw, nq, kvw, y, ys, ahead, ahead_bytes);
    else k->gemm_f32((const float *)cache + at, (size_t)kvw, n, s->qa + qat, (size_t)kvw, nq, kvw, y, ys, ahead, ahead_bytes);
}

static void cache_values(const glm_session *s, const void *cache, int p0, int n, int kvw, const float *a, size_t as, int nh,
                         int decode, uint16_t *a16, float *y, size_t ys, const void *ahead, size_t ahead_bytes) {
    const kernel_table *k = kernels_active();
    int R = s->m->cfg.kv_lora_rank;
    const size_t at = (size_t)p0 * kvw;
    if (s->attn_bf16) {
        for (int h = 0; h < nh; h++) {
            k->round_bf16(a + (size_t)h * as, a16 + (size_t)h * KEY_BLOCK, n);
            if (n % 2) a16[(size_t)h * KEY_BLOCK + n] = 0;   /* the pair past an odd n */
        }
        if (decode && nh <= FEW_HEADS_MAX && k->weighted_sum_bf16_few)
            k->weighted_sum_bf16_few(a16, KEY_BLOCK, nh, (const uint16_t *)cache + at, (size_t)kvw, n, R, y, ys);
        else k->weighted_sum_bf16_bf16(a16, KEY_BLOCK, nh, (const uint16_t *)cache + at, (size_t)kvw, n, R, y, ys);
    } else if (s->kv_bf16) {
        k->weighted_sum_bf16(a, as, nh, (const uint16_t *)cache + at, (size_t)kvw, n, R, y, ys, ahead, ahead_bytes);
    } else {
        k->weighted_sum(a, as, nh, (const float *)cache + at, (size_t)kvw, n, R, y, ys, ahead, ahead_bytes);
    }
}

static void attn_task(void *ctx, int task, int thread) {
    attn_job *j = ctx;
    glm_session *s = j->s;
    const glm_config *c = &s->m->cfg;
    const kernel_table *k = kernels_active();
    int H = c->num_attention_heads, R = c->kv_lora_rank, kvw = R + c->qk_rope_head_dim;
    int t0 = task * s->q_tile, tq = j->T - t0 < s->q_tile ? j->T - t0 : s->q_tile;
    int nq = tq * H, nk = j->pos0 + t0 + tq;   /* causal: the tile's last token sees keys 0..pos0+t0+tq-1 */
    float *score = s->thread_scratch + (size_t)thread * s->scratch_stride;      /* [nq][nk] */
    uint16_t *a16 = (uint16_t *)(score + (size_t)s->q_tile * H * s->n_ctx);   /* [nq][KEY_BLOCK] */
    /* attn_split: the tile's queries split once, then the kernels' work space */
    uint16_t *qsplit = a16, *work = (uint16_t *)(score + (size_t)s->q_tile * H * s->n_ctx + split_queries_floats(s));
    const float *cache = j->cache;
    if (s->attn_split) k->split_bf16(s->qa + (size_t)t0 * H * kvw, (size_t)kvw, nq, kvw, 0, kvw, qsplit);
    if (s->attn_bf16)   /* one call, so the kernel lays out the tile's queries once for all its keys */
        cache_scores(s, j->cache, 0, nk, kvw, t0 * H, nq, score, (size_t)nk, NULL, 0);
    else
        for (int p0 = 0; p0 < nk; p0 += KEY_BLOCK) {
            int n = nk - p0 < KEY_BLOCK ? nk - p0 : KEY_BLOCK;
            if (s->attn_split)
                k->gemm_f32_split(cache + (size_t)p0 * kvw, (size_t)kvw, n, kvw, qsplit, nq, score + p0, (size_t)nk, work);
            else
                cache_scores(s, j->cache, p0, n, kvw, t0 * H, nq, score + p0, (size_t)nk, NULL, 0);
        }
    for (int i = 0; i < nq; i++) {
        float *sc = score + (size_t)i * nk;
        int own = j->pos0 + t0 + i / H + 1;
        float mx = k->max_f32(sc, own);
        float inv = 1.0f / k->exp_sum(sc, own, c->softmax_scale, mx * c->softmax_scale);
        for (int p = 0; p < own; p++) sc[p] *= inv;
        for (int p = own; p < nk; p++) sc[p] = 0;
    }
    float *ol = s->olat + (size_t)t0 * H * R;
    memset(ol, 0, (size_t)nq * R * sizeof *ol);
    for (int p0 = 0; p0 < nk; p0 += KEY_BLOCK) {
        int n = nk - p0 < KEY_BLOCK ? nk - p0 : KEY_BLOCK;
        if (s->attn_split)
            k->weighted_sum_split(score + p0, (size_t)nk, nq, cache + (size_t)p0 * kvw, (size_t)kvw, n, R, ol, (size_t)R, work);
        else
            cache_values(s, j->cache, p0, n, kvw, score + p0, (size_t)nk, nq, 0, a16, ol, (size_t)R, NULL, 0);
    }
}

/* Decode (one query token): every head reads every cached row, so the work
 * is split by fixed blocks of keys instead of by heads, and each block is
 * read once, for all heads, while it is in cache: its scores (one small
 * GEMM), the block's own softmax statistics (max m_b, sum l_b of
 * exp(score - m_b)) and its unnormalised value sum. The reduction then
 * rescales the block sums by exp(m_b - M) / L and adds them in block order
 * (the blocks never depend on the thread count, so neither do the results).
 *
 * Threads take blocks one at a time from a shared counter, so they finish
 * together (blocks of equal work, however the host slows one of them).
 * Where a core's L2 holds two blocks (decode_ahead), a thread takes its next
 * block as soon as it starts one, and the kernels request that next block's
 * lines while they multiply the current one (the scores its first half, the
 * value sums the rest): otherwise the products wait on memory, since the
 * hardware prefetchers alone bring a block in at a fraction of one core's
 * share of the bandwidth (docs/performance.md, "Attention at depth"). */
typedef struct {
    glm_session *s;
    const void *cache;
    int n_keys;
    int ahead;               /* take and request each next block (decode_ahead, with two blocks a thread or more) */
    atomic_int next_block;   /* the first block no thread has taken */
} decode_job;

/* The cached keys in block b (the last block may be partial). */
static int block_keys(const decode_job *j, int b) {
    int left = j->n_keys - b * KEY_BLOCK;
    return left < KEY_BLOCK ? left : KEY_BLOCK;
}

/* Block b's scores, softmax statistics and value sum; with next >= 0, block
 * next's lines requested meanwhile. */
static void decode_block(decode_job *j, int b, int next, int thread) {
    glm_session *s = j->s;
    const glm_config *c = &s->m->cfg;
    const kernel_table *k = kernels_active();
    int H = c->num_attention_heads, R = c->kv_lora_rank, kvw = R + c->qk_rope_head_dim;
    int p0 = b * KEY_BLOCK, n = block_keys(j, b);
    float *sc = s->thread_scratch + (size_t)thread * s->scratch_stride;   /* [H][KEY_BLOCK] */
    uint16_t *a16 = (uint16_t *)(sc + (size_t)H * KEY_BLOCK);           /* [H][KEY_BLOCK] */
    size_t row_bytes = (size_t)kvw * (s->kv_bf16 ? 2 : sizeof(float));
    const char *ahead = next < 0 ? NULL : (const char *)j->cache + (size_t)next * KEY_BLOCK * row_bytes;
    int next_n = next < 0 ? 0 : block_keys(j, next);
    size_t half = (size_t)(next_n / 2) * row_bytes, rest = (size_t)(next_n - next_n / 2) * row_bytes;
    /* scores[h][p] = q_h . row_p: keys as rows, heads as vectors */
    cache_scores(s, j->cache, p0, n, kvw, 0, H, sc, KEY_BLOCK, ahead, half);
    float *stat = s->dec_stat + (size_t)b * H * 2;
    for (int h = 0; h < H; h++) {
        float *e = sc + (size_t)h * KEY_BLOCK;
        float m = k->max_f32(e, n) * c->softmax_scale;   /* the scale is positive: the maximum of the scaled scores */
        stat[2 * h] = m;
        stat[2 * h + 1] = k->exp_sum(e, n, c->softmax_scale, m);
    }
    float *part = s->dec_part + (size_t)b * H * R;
    memset(part, 0, (size_t)H * R * sizeof *part);
    cache_values(s, j->cache, p0, n, kvw, sc, KEY_BLOCK, H, 1, a16, part, (size_t)R, ahead ? ahead + half : NULL, rest);
}

/* One task per thread: blocks from the shared counter until none are left. */
static void decode_blocks_task(void *ctx, int task, int thread) {
    (void)task;
    decode_job *j = ctx;
    int blocks = (j->n_keys + KEY_BLOCK - 1) / KEY_BLOCK;
    int ahead = j->ahead;
    int b = atomic_fetch_add_explicit(&j->next_block, 1, memory_order_relaxed);
    while (b < blocks) {
        /* with requests ahead, the next block is taken now; otherwise once this one is done */
        int next = ahead ? atomic_fetch_add_explicit(&j->next_block, 1, memory_order_relaxed) : -1;
        decode_block(j, b, next < blocks ? next : -1, thread);
        b = ahead ? next : atomic_fetch_add_explicit(&j->next_block, 1, memory_order_relaxed);
    }
}

static void decode_reduce_task(void *ctx, int h, int thread) {
    (void)thread;
    decode_job *j = ctx;
    glm_session *s = j->s;
    int H = s->m->cfg.num_attention_heads, R = s->m->cfg.kv_lora_rank;
    int blocks = (j->n_keys + KEY_BLOCK - 1) / KEY_BLOCK;
    /* block b's statistics for head h: max at st[b * 2H], sum of exps at st[b * 2H + 1] */
    const float *st = s->dec_stat + (size_t)h * 2;
    size_t bs = (size_t)H * 2;
    float M = -INFINITY;
    for (int b = 0; b < blocks; b++) M = st[b * bs] > M ? st[b * bs] : M;
    double L = 0;
    for (int b = 0; b < blocks; b++) L += (double)st[b * bs + 1] * exp((double)st[b * bs] - M);
    float *ol = s->olat + (size_t)h * R;
    memset(ol, 0, (size_t)R * sizeof *ol);
    for (int b = 0; b < blocks; b++) {
        float w = (float)(exp((double)st[b * bs] - M) / L);
        kernels_active()->axpy(w, s->dec_part + ((size_t)b * H + h) * R, ol, R);
    }
}

/* The non-absorbed reference (tests): expand per-head keys and values from
 * every cached latent with kv_b, then ordinary attention per head. */
static void attention_naive(glm_session *s, const layer *L, const float *cache, int T, int pos0) {
    const glm_config *c = &s->m->cfg;
    const kernel_table *k = kernels_reference();
    int H = c->num_attention_heads, R = c->kv_lora_rank, dr = c->qk_rope_head_dim, kvw = R + dr;
    int dn = c->qk_nope_head_dim, dv = c->v_head_dim, dqk = c->qk_head_dim;
    int n_keys = pos0 + T;
    float *row = s->thread_scratch;
    for (int p = 0; p < n_keys; p++)
        for (int h = 0; h < H; h++) {
            float *kn = s->naive_k + ((size_t)p * H + h) * dn, *vv = s->naive_v + ((size_t)p * H + h) * dv;
            const float *lat = cache + (size_t)p * kvw;
            if (L->split_up) {
                memset(kn, 0, (size_t)dn * sizeof *kn);
                linear_transposed_rows(&L->embed_q[h], 0, R, lat, 1, 0, kn, 0, row);
                linear_rows(&L->unembed_out[h], 0, dv, lat, 1, 0, vv, 0, row);
            } else {
                weight wk = weight_rows(&L->kv_b, (int64_t)h * (dn + dv), dn);
                weight wv = weight_rows(&L->kv_b, (int64_t)h * (dn + dv) + dn, dv);
                linear_rows(&wk, 0, dn, lat, 1, 0, kn, 0, row);
                linear_rows(&wv, 0, dv, lat, 1, 0, vv, 0, row);
            }
        }
    float *score = s->naive_score;
    for (int t = 0; t < T; t++)
        for (int h = 0; h < H; h++) {
            const float *q = s->q + ((size_t)t * H + h) * dqk;
            int nk = pos0 + t + 1;
            for (int p = 0; p < nk; p++)
                score[p] = c->softmax_scale * (k->dot_f32(q, s->naive_k + ((size_t)p * H + h) * dn, dn, NULL) +
                                               k->dot_f32(q + dn, cache + (size_t)p * kvw + R, dr, NULL));
            softmax_inplace(score, nk);
            float *o = s->o + ((size_t)t * H + h) * dv;
            memset(o, 0, (size_t)dv * sizeof *o);
            for (int p = 0; p < nk; p++) k->axpy(score[p], s->naive_v + ((size_t)p * H + h) * dv, o, dv);
        }
}

/* Per-head absorbed query and output projections, parallel over heads. */
typedef struct {
    glm_session *s;
    const layer *L;
    int T;
} head_job;

static void absorb_query_task(void *ctx, int h, int thread) {
    head_job *j = ctx;
    glm_session *s = j->s;
    const glm_config *c = &s->m->cfg;
    int H = c->num_attention_heads, R = c->kv_lora_rank, dr = c->qk_rope_head_dim, kvw = R + dr;
    int dn = c->qk_nope_head_dim, dv = c->v_head_dim, dqk = c->qk_head_dim;
    float *row = s->thread_scratch + (size_t)thread * s->scratch_stride;
    for (int t = 0; t < j->T; t++) {
        float *qa = s->qa + ((size_t)t * H + h) * kvw;
        memset(qa, 0, (size_t)R * sizeof *qa);
        memcpy(qa + R, s->q + ((size_t)t * H + h) * dqk + dn, (size_t)dr * sizeof *qa);
    }
    /* q_lat_h = W_UK_h^T q_nope_h: embed_q_h times q_nope_h, or the transpose
       of rows [h*(dn+dv), +dn) of kv_b */
    if (j->L->split_up) {
        linear_rows(&j->L->embed_q[h], 0, R, s->q + (size_t)h * dqk, j->T, (size_t)H * dqk, s->qa + (size_t)h * kvw,
                    (size_t)H * kvw, row);
    } else if (j->T >= 4) {
        /* prefill: W_UK_h transposed once into [Rkv][dn] (row-major), then the
           blocked GEMM over all tokens rather than one axpy per token and row */
        float *wt = row, *tmp = row + (size_t)R * dn;
        for (int i = 0; i < dn; i++) {
            weight_row_f32(&j->L->kv_b, (int64_t)h * (dn + dv) + i, tmp);
            for (int r = 0; r < R; r++) wt[(size_t)r * dn + i] = tmp[r];
        }
        kernels_active()->gemm_f32(wt, (size_t)dn, R, s->q + (size_t)h * dqk, (size_t)H * dqk, j->T, dn,
                                   s->qa + (size_t)h * kvw, (size_t)H * kvw, NULL, 0);
    } else {
        linear_transposed_rows(&j->L->kv_b, (int64_t)h * (dn + dv), dn, s->q + (size_t)h * dqk, j->T, (size_t)H * dqk,
                               s->qa + (size_t)h * kvw, (size_t)H * kvw, row);
    }
    if (s->attn_bf16)   /* the copy bf16 attention reads, rounded here while the head's rows are in cache */
        for (int t = 0; t < j->T; t++) {
            size_t at = ((size_t)t * H + h) * kvw;
            kernels_active()->round_bf16(s->qa + at, s->qa_bf16 + at, kvw);
        }
}

static void absorb_output_task(void *ctx, int h, int thread) {
    head_job *j = ctx;
    glm_session *s = j->s;
    const glm_config *c = &s->m->cfg;
    int H = c->num_attention_heads, R = c->kv_lora_rank, dn = c->qk_nope_head_dim, dv = c->v_head_dim;
    float *row = s->thread_scratch + (size_t)thread * s->scratch_stride;
    /* o_h = W_UV_h o_lat_h, W_UV_h = unembed_out_h or rows [h*(dn+dv)+dn, +dv) of kv_b */
    weight wv = j->L->split_up ? j->L->unembed_out[h] : weight_rows(&j->L->kv_b, (int64_t)h * (dn + dv) + dn, dv);
    linear_rows(&wv, 0, dv, s->olat + (size_t)h * R, j->T, (size_t)H * R, s->o + (size_t)h * dv, (size_t)H * dv, row);
}

/* Decode: head h's block sums reduced, then its output projection, in one
 * task, so that the two take one parallel section. */
typedef struct {
    decode_job *d;
    head_job *h;
} decode_output_job;

static void decode_output_task(void *ctx, int h, int thread) {
    decode_output_job *j = ctx;
    decode_reduce_task(j->d, h, thread);
    absorb_output_task(j->h, h, thread);
}

static void attention_block(glm_session *s, const layer *L, int li, int T, int pos0) {
    const glm_config *c = &s->m->cfg;
    int D = c->hidden_size, H = c->num_attention_heads, R = c->kv_lora_rank, dr = c->qk_rope_head_dim, kvw = R + dr;
    int dqk = c->qk_head_dim, dn = c->qk_nope_head_dim, half = dr / 2;
    for (int t = 0; t < T; t++) rmsnorm(s->xn + (size_t)t * D, s->x + (size_t)t * D, L->attn_norm, D, c->rms_norm_eps);
    /* q_a and kv_a read the same input: one product (one parallel section,
       the input quantized once), the same bits as two; row t of qkv_a holds
       q_a's output, then kv_a's */
    int Rq = c->q_lora_rank;
    size_t qkv_stride = (size_t)Rq + kvw;
    float *cq = s->qkv_a, *kva = s->qkv_a + Rq;
    if (Rq > 0) {
        const weight *w[2] = {&L->q_a, &L->kv_a};
        const float *in[2] = {s->xn, s->xn};
        float *out[2] = {cq, kva};
        double t0 = prof_begin();
        linear_many(s->m->pool, 2, w, in, T, D, out, qkv_stride, s->thread_scratch, s->scratch_stride, s->packed);
        prof_end(PROF_MATMUL, t0);
        for (int t = 0; t < T; t++) rmsnorm(cq + (size_t)t * qkv_stride, cq + (size_t)t * qkv_stride, L->q_a_norm, Rq, c->latent_norm_eps);
        lin(s, &L->q_b, cq, T, qkv_stride, s->q, (size_t)H * dqk);
    } else {
        lin(s, &L->q_proj, s->xn, T, D, s->q, (size_t)H * dqk);
        lin(s, &L->kv_a, s->xn, T, D, kva, qkv_stride);
    }
    /* latent + shared rope key, appended to the cache */
    size_t layer_elems = (size_t)li * s->n_ctx * kvw;
    void *cache = s->kv_bf16 ? (void *)((uint16_t *)s->kv + layer_elems) : (void *)((float *)s->kv + layer_elems);
    float *row = s->kv_row;
    for (int t = 0; t < T; t++) {
        const float *z = kva + (size_t)t * qkv_stride;
        rmsnorm(row, z, L->kv_a_norm, R, c->latent_norm_eps);
        memcpy(row + R, z + R, (size_t)dr * sizeof *row);
        const float *ct = s->cos_t + (size_t)t * half, *st = s->sin_t + (size_t)t * half;
        rope_apply(row + R, dr, ct, st, c->rope_interleave);
        for (int h = 0; h < H; h++) rope_apply(s->q + ((size_t)t * H + h) * dqk + dn, dr, ct, st, c->rope_interleave);
        size_t at = (size_t)(pos0 + t) * kvw;
        if (s->kv_bf16)
            for (int i = 0; i < kvw; i++) ((uint16_t *)cache)[at + i] = f32_to_bf16(row[i]);
        else
            memcpy((float *)cache + at, row, (size_t)kvw * sizeof *row);
    }
    if (s->naive_attention) {
        const float *c32 = cache;
        if (s->kv_bf16) {   /* the reference path reads the same (rounded) cache, widened */
            for (size_t i = 0; i < (size_t)(pos0 + T) * kvw; i++) s->naive_cache[i] = bf16_to_f32(((uint16_t *)cache)[i]);
            c32 = s->naive_cache;
        }
        double t0 = prof_begin();
        attention_naive(s, L, c32, T, pos0);
        prof_end(PROF_ATTENTION, t0);
    } else {
        head_job hj = {s, L, T};
        double t0 = prof_begin();
        pool_run(s->m->pool, absorb_query_task, &hj, H);
        prof_end(PROF_MATMUL, t0);
        t0 = prof_begin();
        if (T == 1) {
            int blocks = (pos0 + 1 + KEY_BLOCK - 1) / KEY_BLOCK, threads = pool_size(s->m->pool);
            /* with fewer blocks than two a thread, taking a next block would leave a thread idle */
            decode_job dj = {.s = s, .cache = cache, .n_keys = pos0 + 1, .ahead = s->decode_ahead && blocks >= 2 * threads};
            atomic_init(&dj.next_block, 0);
            pool_run(s->m->pool, decode_blocks_task, &dj, threads < blocks ? threads : blocks);
            prof_end(PROF_ATTENTION, t0);
            decode_output_job oj = {&dj, &hj};
            t0 = prof_begin();   /* the reduction (small) counts with the output projection */
            pool_run(s->m->pool, decode_output_task, &oj, H);
            prof_end(PROF_MATMUL, t0);
        } else {
            attn_job aj = {s, cache, T, pos0};
            pool_run(s->m->pool, attn_task, &aj, (T + s->q_tile - 1) / s->q_tile);
            prof_end(PROF_ATTENTION, t0);
            t0 = prof_begin();
            pool_run(s->m->pool, absorb_output_task, &hj, H);
            prof_end(PROF_MATMUL, t0);
        }
    }
    lin(s, &L->o_proj, s->o, T, (size_t)H * c->v_head_dim, s->proj, D);
    for (size_t i = 0; i < (size_t)T * D; i++) s->x[i] += s->proj[i];
}

/* SwiGLU: out[n][D] = down(silu(gate x) * up x) */
static void swiglu(glm_session *s, const weight *g, const weight *u, const weight *d, const float *x, int n, float *out) {
    int D = s->m->cfg.hidden_size;
    int64_t F = g->rows;
    double t0 = prof_begin();
    const weight *w[2] = {g, u};
    const float *in[2] = {x, x};
    float *gate_up[2] = {s->ff_g, s->ff_u};
    linear_many(s->m->pool, 2, w, in, n, D, gate_up, F, s->thread_scratch, s->scratch_stride, s->packed);
    prof_end(PROF_MATMUL, t0);
    kernels_active()->swiglu(s->ff_g, s->ff_u, (int64_t)n * F);
    lin(s, d, s->ff_g, n, F, out, D);
}

/* Tokens grouped by expert: each chosen expert's weights are read once per
 * chunk; slot_out[t * K + j] = the token's j-th expert's output times its weight. */
static void moe_experts(glm_session *s, const layer *L, int T) {
    const glm_config *c = &s->m->cfg;
    int D = c->hidden_size, E = c->n_routed_experts, K = c->num_experts_per_tok;
    double t0;
    for (int e = 0; e < E; e++) {
        t0 = prof_begin();
        int n = 0;
        for (int t = 0; t < T; t++)
            for (int j = 0; j < K; j++)
                if (s->sel[t * K + j] == e) {
                    memcpy(s->gather + (size_t)n * D, s->xn + (size_t)t * D, (size_t)D * sizeof(float));
                    s->gather_tok[n++] = t * K + j;
                }
        prof_end(PROF_MOE_ROUTING, t0);
        if (!n) continue;
        swiglu(s, &L->exp_gate[e], &L->exp_up[e], &L->exp_down[e], s->gather, n, s->expert_out);
        t0 = prof_begin();
        for (int i = 0; i < n; i++) {
            float w = s->sel_w[s->gather_tok[i]];
            float *dst = s->slot_out + (size_t)s->gather_tok[i] * D;
            const float *src = s->expert_out + (size_t)i * D;
            for (int d = 0; d < D; d++) dst[d] = w * src[d];
        }
        prof_end(PROF_MOE_ROUTING, t0);
    }
}

/* Decode (one token) through the experts it chose and the shared one: every
 * gate and up in one parallel section, then every down in another
 * (linear_many), instead of two sections per expert, so the threads share
 * out all the experts' rows with one start and one wait each. Slot j's
 * hidden vector is row j of ff_g / ff_u; its output row j of slot_out (the
 * shared expert's: proj). The same arithmetic as the loop over experts. */
#define MOE_DECODE_SLOTS 16   /* experts per token (with the shared one) this path takes */

static void moe_decode(glm_session *s, const layer *L) {
    const glm_config *c = &s->m->cfg;
    int D = c->hidden_size, K = c->num_experts_per_tok, slots = K + (L->has_shared ? 1 : 0);
    size_t Fs = s->ff_stride;
    const weight *w[2 * MOE_DECODE_SLOTS];
    const float *x[2 * MOE_DECODE_SLOTS];
    float *y[2 * MOE_DECODE_SLOTS];
    for (int j = 0; j < slots; j++) {
        int shared = j == K, e = shared ? 0 : s->sel[j];
        w[2 * j] = shared ? &L->sh_gate : &L->exp_gate[e];
        w[2 * j + 1] = shared ? &L->sh_up : &L->exp_up[e];
        x[2 * j] = x[2 * j + 1] = s->xn;
        y[2 * j] = s->ff_g + (size_t)j * Fs;
        y[2 * j + 1] = s->ff_u + (size_t)j * Fs;
    }
    double t0 = prof_begin();
    linear_many(s->m->pool, 2 * slots, w, x, 1, (size_t)D, y, Fs, s->thread_scratch, s->scratch_stride, s->packed);
    prof_end(PROF_MATMUL, t0);
    const weight *down[MOE_DECODE_SLOTS];
    const float *hidden[MOE_DECODE_SLOTS];
    float *out[MOE_DECODE_SLOTS];
    for (int j = 0; j < slots; j++) {
        kernels_active()->swiglu(y[2 * j], y[2 * j + 1], w[2 * j]->rows);
        down[j] = j == K ? &L->sh_down : &L->exp_down[s->sel[j]];
        hidden[j] = y[2 * j];
        out[j] = j == K ? s->proj : s->slot_out + (size_t)j * D;
    }
    t0 = prof_begin();
    linear_many(s->m->pool, slots, down, hidden, 1, Fs, out, (size_t)D, s->thread_scratch, s->scratch_stride, s->packed);
    prof_end(PROF_MATMUL, t0);
    for (int j = 0; j < K; j++)
        for (int d = 0; d < D; d++) s->slot_out[(size_t)j * D + d] *= s->sel_w[j];
}

static void moe_block(glm_session *s, const layer *L, int T) {
    const glm_config *c = &s->m->cfg;
    int D = c->hidden_size, E = c->n_routed_experts, K = c->num_experts_per_tok;
    lin(s, &L->router, s->xn, T, D, s->router_logits, E);
    float *route_scratch = s->router_logits + (size_t)UBATCH * E;
    double t0 = prof_begin();
    for (int t = 0; t < T; t++)
        route_token(c, s->router_logits + (size_t)t * E, L->router_bias, s->sel + t * K, s->sel_w + t * K, route_scratch);
    prof_end(PROF_MOE_ROUTING, t0);
    if (T == 1 && K < MOE_DECODE_SLOTS) {
        moe_decode(s, L);
    } else {
        moe_experts(s, L, T);
        if (L->has_shared) swiglu(s, &L->sh_gate, &L->sh_up, &L->sh_down, s->xn, T, s->proj);
    }
    /* summed in slot order, then the (unscaled) shared expert: the same order for any chunking */
    t0 = prof_begin();
    for (int t = 0; t < T; t++) {
        float *x = s->x + (size_t)t * D;
        for (int d = 0; d < D; d++) {
            float acc = 0;
            for (int j = 0; j < K; j++) acc += s->slot_out[((size_t)t * K + j) * D + d];
            if (L->has_shared) acc += s->proj[(size_t)t * D + d];
            x[d] += acc;
        }
    }
    prof_end(PROF_MOE_ROUTING, t0);
}

static void ffn_block(glm_session *s, const layer *L, int T) {
    const glm_config *c = &s->m->cfg;
    int D = c->hidden_size;
    for (int t = 0; t < T; t++) rmsnorm(s->xn + (size_t)t * D, s->x + (size_t)t * D, L->ffn_norm, D, c->rms_norm_eps);
    if (L->dense) {
        swiglu(s, &L->gate, &L->up, &L->down, s->xn, T, s->proj);
        for (size_t i = 0; i < (size_t)T * D; i++) s->x[i] += s->proj[i];
    } else {
        moe_block(s, L, T);
    }
}

static void rope_tables(glm_session *s, int T, int pos0) {
    const glm_config *c = &s->m->cfg;
    int half = c->qk_rope_head_dim / 2;
    for (int t = 0; t < T; t++)
        for (int i = 0; i < half; i++) {
            double a = (double)(pos0 + t) * s->m->inv_freq[i];
            s->cos_t[t * half + i] = (float)(cos(a) * c->rope_attention_factor);
            s->sin_t[t * half + i] = (float)(sin(a) * c->rope_attention_factor);
        }
}

/* One chunk of at most UBATCH tokens. logits: NULL, [V] for the last token,
 * or [T][V]. */
static void forward_chunk(glm_session *s, const int32_t *tokens, int T, float *logits, int all_logits) {
    const glm_model *m = s->m;
    const glm_config *c = &m->cfg;
    int D = c->hidden_size, V = c->vocab_size;
    int pos0 = s->n_past;
    memcpy(s->tokens + pos0, tokens, (size_t)T * sizeof *tokens);
    for (int t = 0; t < T; t++) weight_row_f32(&m->embed, tokens[t], s->x + (size_t)t * D);
    rope_tables(s, T, pos0);
    for (int li = 0; li < c->num_hidden_layers; li++) {
        attention_block(s, &m->layers[li], li, T, pos0);
        ffn_block(s, &m->layers[li], T);
    }
    s->n_past += T;
    if (!logits) return;
    int first = all_logits ? 0 : T - 1;
    for (int t = first; t < T; t++) rmsnorm(s->xn + (size_t)t * D, s->x + (size_t)t * D, m->final_norm, D, c->rms_norm_eps);
    lin(s, &m->lm_head, s->xn + (size_t)first * D, T - first, D, logits, V);
}

int glm_forward(glm_session *s, const int32_t *tokens, int n, float *logits, int all_logits, char *err, size_t errlen) {
    const glm_config *c = &s->m->cfg;
    if (n <= 0) {
        snprintf(err, errlen, "no tokens to process");
        return -1;
    }
    if (n > s->n_ctx - s->n_past) {
        snprintf(err, errlen, "context full: %d cached + %d new tokens exceed the context of %d", s->n_past, n, s->n_ctx);
        return -1;
    }
    for (int i = 0; i < n; i++)
        if (tokens[i] < 0 || tokens[i] >= c->vocab_size) {
            snprintf(err, errlen, "token id %d at index %d is outside the vocabulary (0..%d)", tokens[i], i, c->vocab_size - 1);
            return -1;
        }
    for (int i = 0; i < n; i += UBATCH) {
        int T = n - i < UBATCH ? n - i : UBATCH;
        int last = i + T == n;
        float *out = NULL;
        if (logits && all_logits) out = logits + (size_t)i * c->vocab_size;
        else if (logits && last) out = logits;
        forward_chunk(s, tokens + i, T, out, all_logits);
    }
    return 0;
}
