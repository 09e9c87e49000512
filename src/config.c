/* config.c — config.json -> glm_config, with the defaults of SPEC §5.6.1 for
 * keys a family leaves out and a clear error for anything unusable. */
#include "config.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

#include "json.h"

typedef struct {
    const json_value *root;
    char *err;
    size_t errlen;
    int failed;
} reader;

static void bad(reader *r, const char *fmt, const char *key) {
    if (r->failed) return;
    r->failed = 1;
    snprintf(r->err, r->errlen, fmt, key);
}

/* Integer key; required unless dflt_ok. JSON null counts as absent. */
static int get_int(reader *r, const char *key, int required, int dflt, int min, int max) {
    const json_value *v = json_get(r->root, key);
    if (!v || v->type == JSON_NULL) {
        if (required) bad(r, "config.json: missing required key \"%s\"", key);
        return dflt;
    }
    int64_t x;
    if (!json_get_int64(v, &x)) { bad(r, "config.json: \"%s\" must be an integer", key); return dflt; }
    if (x < min || x > max) { bad(r, "config.json: \"%s\" is out of range", key); return dflt; }
    return (int)x;
}

static double get_num(reader *r, const json_value *obj, const char *key, double dflt) {
    const json_value *v = json_get(obj, key);
    if (!v || v->type == JSON_NULL) return dflt;
    double x;
    if (!json_get_double(v, &x) || !isfinite(x)) { bad(r, "config.json: \"%s\" must be a number", key); return dflt; }
    return x;
}

/* A string, or NULL when the key is absent or null (a value of another type is an error). */
static const char *get_str(reader *r, const char *key) {
    const json_value *v = json_get(r->root, key);
    const char *s = json_get_str(v);
    if (v && v->type != JSON_NULL && !s) bad(r, "config.json: \"%s\" must be a string", key);
    return s;
}

static int get_bool(reader *r, const char *key, int dflt) {
    const json_value *v = json_get(r->root, key);
    if (!v || v->type == JSON_NULL) return dflt;
    int b;
    if (!json_get_bool(v, &b)) { bad(r, "config.json: \"%s\" must be true or false", key); return dflt; }
    return b;
}

static int add_eos(glm_config *cfg, const json_value *v, reader *r, const char *key) {
    if (!v || v->type == JSON_NULL) return 0;
    const json_value *items = v;
    size_t n = 1;
    if (v->type == JSON_ARRAY) { items = v->items; n = v->len; }
    for (size_t i = 0; i < n; i++) {
        int64_t id;
        if (!json_get_int64(&items[i], &id) || id < 0 || id > INT32_MAX) {
            bad(r, "\"%s\" must be a token id or a list of token ids", key);
            return -1;
        }
        int dup = 0;
        for (int k = 0; k < cfg->n_eos; k++) dup |= cfg->eos_ids[k] == id;
        if (!dup && cfg->n_eos < GLM_MAX_EOS) cfg->eos_ids[cfg->n_eos++] = (int)id;
    }
    return 0;
}

static double yarn_mscale(double scale, double mscale) {
    return scale <= 1.0 ? 1.0 : 0.1 * mscale * log(scale) + 1.0;
}

int config_parse(const char *text, size_t len, glm_config *cfg, char *err, size_t errlen) {
    memset(cfg, 0, sizeof *cfg);
    char jerr[256];
    json_doc *doc = json_parse(text, len, jerr, sizeof jerr);
    if (!doc) {
        snprintf(err, errlen, "config.json: %s", jerr);
        return -1;
    }
    reader r = {json_root(doc), err, errlen, 0};
    if (r.root->type != JSON_OBJECT) bad(&r, "config.json: %s", "not a JSON object");

    const char *mt = json_get_str(json_get(r.root, "model_type"));
    if (!r.failed && !mt) bad(&r, "config.json: missing required key \"%s\"", "model_type");
    if (!r.failed && strcmp(mt, "glm4_moe_lite") != 0 && strcmp(mt, "deepseek_v2") != 0 && strcmp(mt, "deepseek_v3") != 0)
        bad(&r, "config.json: unsupported model_type \"%s\" (supported: glm4_moe_lite, deepseek_v2, deepseek_v3)", mt);
    if (r.failed) goto done;
    snprintf(cfg->model_type, sizeof cfg->model_type, "%s", mt);
    int is_v2 = strcmp(mt, "deepseek_v2") == 0;

    const int BIG = 1 << 24;
    cfg->hidden_size = get_int(&r, "hidden_size", 1, 0, 1, BIG);
    cfg->num_hidden_layers = get_int(&r, "num_hidden_layers", 1, 0, 1, GLM_MAX_LAYERS);
    cfg->num_attention_heads = get_int(&r, "num_attention_heads", 1, 0, 1, 4096);
    cfg->q_lora_rank = get_int(&r, "q_lora_rank", 0, 0, 0, BIG);
    cfg->kv_lora_rank = get_int(&r, "kv_lora_rank", 1, 0, 1, BIG);
    cfg->qk_nope_head_dim = get_int(&r, "qk_nope_head_dim", 1, 0, 0, BIG);
    cfg->qk_rope_head_dim = get_int(&r, "qk_rope_head_dim", 1, 0, 2, BIG);
    cfg->v_head_dim = get_int(&r, "v_head_dim", 1, 0, 1, BIG);
    cfg->intermediate_size = get_int(&r, "intermediate_size", 0, 0, 1, BIG);   /* required below if a layer is dense */
    cfg->vocab_size = get_int(&r, "vocab_size", 1, 0, 1, 1 << 28);
    cfg->n_routed_experts = get_int(&r, "n_routed_experts", 0, 0, 0, GLM_MAX_EXPERTS);
    cfg->num_experts_per_tok = get_int(&r, "num_experts_per_tok", cfg->n_routed_experts > 0, 0, 1, GLM_MAX_EXPERTS);
    cfg->moe_intermediate_size = get_int(&r, "moe_intermediate_size", cfg->n_routed_experts > 0, 0, 1, BIG);
    /* HF class defaults: DeepseekV2 none, DeepseekV3 / Glm4MoeLite one shared expert */
    cfg->n_shared_experts = get_int(&r, "n_shared_experts", 0, is_v2 ? 0 : 1, 0, 1 << 16);
    cfg->n_group = get_int(&r, "n_group", 0, 1, 1, GLM_MAX_EXPERTS);
    cfg->topk_group = get_int(&r, "topk_group", 0, 1, 1, GLM_MAX_EXPERTS);   /* HF default 1, as n_group */
    cfg->max_position_embeddings = get_int(&r, "max_position_embeddings", 0, 1 << 20, 1, 1 << 30);
    cfg->pad_token_id = get_int(&r, "pad_token_id", 0, -1, 0, INT32_MAX);
    if (r.failed) goto done;
    if (cfg->qk_rope_head_dim % 2) bad(&r, "config.json: \"%s\" must be even", "qk_rope_head_dim");
    if (cfg->n_routed_experts && cfg->num_experts_per_tok > cfg->n_routed_experts)
        bad(&r, "config.json: \"%s\" exceeds n_routed_experts", "num_experts_per_tok");
    if (cfg->n_routed_experts % cfg->n_group) bad(&r, "config.json: \"%s\" must divide n_routed_experts", "n_group");
    if (cfg->topk_group > cfg->n_group) bad(&r, "config.json: \"%s\" exceeds n_group", "topk_group");
    else if (cfg->n_routed_experts && cfg->n_routed_experts % cfg->n_group == 0 &&
             cfg->topk_group * (cfg->n_routed_experts / cfg->n_group) < cfg->num_experts_per_tok)
        bad(&r, "config.json: \"%s\" groups hold fewer experts than num_experts_per_tok", "topk_group");

    /* Routing: SPEC §5.6.1. glm4_moe_lite has no scoring_func key and is always sigmoid (§9.1). */
    const char *sf = get_str(&r, "scoring_func");
    if (strcmp(mt, "glm4_moe_lite") == 0) cfg->scoring_func = SCORE_SIGMOID;   /* HF's router ignores the key */
    else if (!sf) cfg->scoring_func = is_v2 ? SCORE_SOFTMAX : SCORE_SIGMOID;
    else if (strcmp(sf, "sigmoid") == 0) cfg->scoring_func = SCORE_SIGMOID;
    else if (strcmp(sf, "softmax") == 0) cfg->scoring_func = SCORE_SOFTMAX;
    else bad(&r, "config.json: unsupported scoring_func \"%s\"", sf);
    const char *tm = get_str(&r, "topk_method");
    if (!tm) cfg->topk_method = is_v2 ? TOPK_GREEDY : TOPK_NOAUX_TC;
    else if (strcmp(tm, "noaux_tc") == 0) cfg->topk_method = TOPK_NOAUX_TC;
    else if (strcmp(tm, "greedy") == 0) cfg->topk_method = TOPK_GREEDY;
    else if (strcmp(tm, "group_limited_greedy") == 0) cfg->topk_method = TOPK_GROUP_LIMITED_GREEDY;
    else bad(&r, "config.json: unsupported topk_method \"%s\"", tm);
    if (cfg->topk_method == TOPK_NOAUX_TC && cfg->n_group > 1 && cfg->n_routed_experts / cfg->n_group < 2)
        bad(&r, "config.json: \"%s\": noaux_tc needs at least 2 experts per group", "n_group");
    cfg->norm_topk_prob = get_bool(&r, "norm_topk_prob", !is_v2);
    cfg->routed_scaling_factor = (float)get_num(&r, r.root, "routed_scaling_factor", 1.0);

    /* Which layers are dense: mlp_layer_types (newer HF classes) wins over first_k_dense_replace. */
    const json_value *types = json_get(r.root, "mlp_layer_types");
    if (types && types->type != JSON_NULL) {
        if (types->type != JSON_ARRAY || (int)types->len != cfg->num_hidden_layers) {
            bad(&r, "config.json: \"%s\" must be a list with one entry per layer", "mlp_layer_types");
        } else {
            for (int i = 0; i < cfg->num_hidden_layers; i++) {
                const char *t = json_get_str(&types->items[i]);
                if (t && strcmp(t, "dense") == 0) cfg->layer_is_dense[i] = 1;
                else if (t && strcmp(t, "sparse") == 0) cfg->layer_is_dense[i] = 0;
                else { bad(&r, "config.json: \"%s\" entries must be \"dense\" or \"sparse\"", "mlp_layer_types"); break; }
            }
        }
    } else {
        /* DeepSeek-V2/V3: MoE from layer first_k_dense_replace on, every moe_layer_freq-th layer */
        int k = get_int(&r, "first_k_dense_replace", 0, 0, 0, GLM_MAX_LAYERS);
        int freq = get_int(&r, "moe_layer_freq", 0, 1, 1, GLM_MAX_LAYERS);
        /* as HF: without routed experts every layer is a dense MLP */
        for (int i = 0; i < cfg->num_hidden_layers; i++)
            cfg->layer_is_dense[i] = cfg->n_routed_experts == 0 || i < k || i % freq != 0;
    }
    int any_moe = 0, any_dense = 0;
    for (int i = 0; i < cfg->num_hidden_layers; i++) {
        any_moe |= !cfg->layer_is_dense[i];
        any_dense |= cfg->layer_is_dense[i];
    }
    if (any_moe && cfg->n_routed_experts == 0) bad(&r, "config.json: MoE layers but \"%s\" is missing or 0", "n_routed_experts");
    if (any_dense && cfg->intermediate_size == 0) bad(&r, "config.json: missing required key \"%s\"", "intermediate_size");

    cfg->rms_norm_eps = (float)get_num(&r, r.root, "rms_norm_eps", 1e-6);
    if (cfg->rms_norm_eps < 0) bad(&r, "config.json: \"%s\" must not be negative", "rms_norm_eps");
    cfg->latent_norm_eps = 1e-6f;
    cfg->rope_theta = get_num(&r, r.root, "rope_theta", 10000.0);
    if (cfg->rope_theta <= 1.0) bad(&r, "config.json: \"%s\" must be > 1", "rope_theta");
    cfg->rope_interleave = get_bool(&r, "rope_interleave", 1);
    cfg->tie_word_embeddings = get_bool(&r, "tie_word_embeddings", 0);
    if (get_bool(&r, "attention_bias", 0)) bad(&r, "config.json: \"%s\": biased attention is not supported", "attention_bias");
    /* values this engine does not implement are refused rather than ignored */
    if (get_num(&r, r.root, "partial_rotary_factor", 1.0) != 1.0)
        bad(&r, "config.json: \"%s\" other than 1.0 is not supported", "partial_rotary_factor");
    const char *act = get_str(&r, "hidden_act");
    if (act && strcmp(act, "silu") != 0) bad(&r, "config.json: \"%s\" must be silu", "hidden_act");

    cfg->qk_head_dim = cfg->qk_nope_head_dim + cfg->qk_rope_head_dim;
    cfg->softmax_scale = (float)(1.0 / sqrt((double)cfg->qk_head_dim));
    cfg->rope_attention_factor = 1.0f;
    const json_value *rs = json_get(r.root, "rope_scaling");
    if (rs && rs->type != JSON_NULL) {
        const char *type = json_get_str(json_get(rs, "type"));
        if (!type) type = json_get_str(json_get(rs, "rope_type"));
        if (rs->type != JSON_OBJECT || !type) {
            bad(&r, "config.json: \"%s\" must be null or an object with a type", "rope_scaling");
        } else if (strcmp(type, "yarn") == 0) {
            cfg->yarn = 1;
            cfg->yarn_factor = get_num(&r, rs, "factor", 1.0);
            cfg->yarn_mscale = get_num(&r, rs, "mscale", 1.0);
            cfg->yarn_mscale_all_dim = get_num(&r, rs, "mscale_all_dim", 0.0);
            cfg->yarn_beta_fast = get_num(&r, rs, "beta_fast", 32.0);
            cfg->yarn_beta_slow = get_num(&r, rs, "beta_slow", 1.0);
            double orig = get_num(&r, rs, "original_max_position_embeddings", 4096);
            cfg->yarn_original_max_pos = orig >= 1 && orig <= (1 << 30) ? (int)orig : 0;   /* never cast out of range */
            if (cfg->yarn_factor <= 0 || cfg->yarn_original_max_pos <= 0 || cfg->yarn_beta_fast <= 0 || cfg->yarn_beta_slow <= 0)
                bad(&r, "config.json: \"%s\": factor, beta_fast, beta_slow and original_max_position_embeddings must be positive",
                    "rope_scaling");
            cfg->rope_attention_factor = (float)(yarn_mscale(cfg->yarn_factor, cfg->yarn_mscale) /
                                                 yarn_mscale(cfg->yarn_factor, cfg->yarn_mscale_all_dim));
            if (cfg->yarn_mscale_all_dim != 0.0) {
                double m = yarn_mscale(cfg->yarn_factor, cfg->yarn_mscale_all_dim);
                cfg->softmax_scale = (float)(m * m / sqrt((double)cfg->qk_head_dim));
            }
        } else if (strcmp(type, "default") != 0) {
            bad(&r, "config.json: unsupported rope_scaling type \"%s\" (supported: yarn)", type);
        }
    }

    if (add_eos(cfg, json_get(r.root, "eos_token_id"), &r, "eos_token_id") != 0) goto done;

done:
    json_free(doc);
    return r.failed ? -1 : 0;
}

int config_merge_generation(const char *text, size_t len, glm_config *cfg, char *err, size_t errlen) {
    char jerr[256];
    json_doc *doc = json_parse(text, len, jerr, sizeof jerr);
    if (!doc) {
        snprintf(err, errlen, "generation_config.json: %s", jerr);
        return -1;
    }
    reader r = {json_root(doc), err, errlen, 0};
    add_eos(cfg, json_get(r.root, "eos_token_id"), &r, "generation_config.json: eos_token_id");
    json_free(doc);
    return r.failed ? -1 : 0;
}

void config_rope_inv_freq(const glm_config *cfg, double *inv_freq) {
    int dim = cfg->qk_rope_head_dim, half = dim / 2;
    double base = cfg->rope_theta;
    for (int i = 0; i < half; i++) inv_freq[i] = 1.0 / pow(base, (double)(2 * i) / dim);
    if (!cfg->yarn) return;
    /* DeepSeek YaRN: blend interpolated (inv_freq/factor) and extrapolated
       frequencies with a linear ramp between the correction dims. */
    double two_pi = 2.0 * 3.14159265358979323846;
    double lo = floor(dim * log(cfg->yarn_original_max_pos / (cfg->yarn_beta_fast * two_pi)) / (2.0 * log(base)));
    double hi = ceil(dim * log(cfg->yarn_original_max_pos / (cfg->yarn_beta_slow * two_pi)) / (2.0 * log(base)));
    if (lo < 0) lo = 0;
    if (hi > dim - 1) hi = dim - 1;
    if (lo == hi) hi += 0.001;
    for (int i = 0; i < half; i++) {
        double ramp = (i - lo) / (hi - lo);
        if (ramp < 0) ramp = 0;
        if (ramp > 1) ramp = 1;
        double extrapolation_weight = 1.0 - ramp;
        double interp = inv_freq[i] / cfg->yarn_factor;
        inv_freq[i] = interp * (1.0 - extrapolation_weight) + inv_freq[i] * extrapolation_weight;
    }
}
