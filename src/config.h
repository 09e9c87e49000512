/* config.h — the model's hyper-parameters, read from config.json (SPEC §2)
 * and validated. One field per key the forward pass uses. */
#ifndef GLM_CONFIG_H
#define GLM_CONFIG_H

#include <stddef.h>
#include <stdint.h>

#define GLM_MAX_EOS 8
#define GLM_MAX_LAYERS 1024
#define GLM_MAX_EXPERTS 4096

typedef enum { SCORE_SIGMOID, SCORE_SOFTMAX } score_func;
typedef enum { TOPK_NOAUX_TC, TOPK_GREEDY, TOPK_GROUP_LIMITED_GREEDY } topk_method;

typedef struct {
    char model_type[32];          /* glm4_moe_lite | deepseek_v2 | deepseek_v3 */
    int hidden_size;              /* D */
    int num_hidden_layers;        /* main layers; layer index num_hidden_layers+ is MTP, skipped */
    int num_attention_heads;      /* H */
    int q_lora_rank;              /* 0 = no query compression: one q_proj */
    int kv_lora_rank;             /* cached latent width */
    int qk_nope_head_dim, qk_rope_head_dim, v_head_dim;
    int intermediate_size;        /* dense MLP width */
    int moe_intermediate_size;    /* each routed expert's width */
    int n_routed_experts, n_shared_experts, num_experts_per_tok;
    int n_group, topk_group;
    topk_method topk_method;
    score_func scoring_func;
    int norm_topk_prob;
    float routed_scaling_factor;
    unsigned char layer_is_dense[GLM_MAX_LAYERS];  /* from first_k_dense_replace or mlp_layer_types */
    float rms_norm_eps;           /* input/post-attention/final norms */
    float latent_norm_eps;        /* q_a/kv_a layernorms: 1e-6 as HF builds them (SPEC §4.2) */
    double rope_theta;
    int rope_interleave;          /* 1: adjacent pairs; 0: rotate-half */
    /* YaRN (rope_scaling type yarn), DeepSeek semantics (SPEC §5.4) */
    int yarn;
    double yarn_factor, yarn_mscale, yarn_mscale_all_dim, yarn_beta_fast, yarn_beta_slow;
    int yarn_original_max_pos;
    int max_position_embeddings;
    int vocab_size;
    int tie_word_embeddings;
    int eos_ids[GLM_MAX_EOS];
    int n_eos;
    int pad_token_id;             /* -1 if absent */
    /* derived */
    int qk_head_dim;              /* nope + rope */
    float softmax_scale;          /* 1/sqrt(qk_head_dim) x mscale^2 under YaRN */
    float rope_attention_factor;  /* cos/sin multiplier under YaRN, else 1 */
} glm_config;

/* Parses config.json text. Unknown model_type, a missing required key, a
 * wrongly typed or out-of-range value: error naming the key. */
int config_parse(const char *json_text, size_t len, glm_config *cfg, char *err, size_t errlen);

/* Adds the eos ids of generation_config.json text (int or list) to cfg. */
int config_merge_generation(const char *json_text, size_t len, glm_config *cfg, char *err, size_t errlen);

/* RoPE inverse frequencies (qk_rope_head_dim/2 of them), YaRN-blended when set. */
void config_rope_inv_freq(const glm_config *cfg, double *inv_freq);

#endif
