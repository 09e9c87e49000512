/* test_loader.c — broken checkpoints and headers each give one clear error
 * naming the file and tensor, never a crash. */
#include <stdlib.h>

#include "glm.h"
#include "safetensors.h"
#include "test.h"

/* Breaks a copy of the tiny checkpoint and returns the load error. */
static void expect_load_error_on(const char *mode, const char *tensor, const char *want1, const char *want2) {
    const char *src = test_fixture_model("tiny", "f32");
    REQUIRE(src);
    char out[512], cmd[2048], err[1024] = "";
    snprintf(out, sizeof out, "%s/broken-%s", test_tmpdir(), mode);
    snprintf(cmd, sizeof cmd, "%s tools/corrupt_checkpoint.py --in %s --out %s --mode %s --tensor %s", test_python(), src, out,
             mode, tensor);
    REQUIRE(test_run(cmd) == 0);
    glm_model *m = glm_model_load(out, NULL, err, sizeof err);
    CHECKF(!m, "%s: loaded anyway", mode);
    glm_model_free(m);
    printf("    %s -> %s\n", mode, err);
    CHECKF(strstr(err, want1), "%s: error '%s' lacks '%s'", mode, err, want1);
    if (want2) CHECKF(strstr(err, want2), "%s: error '%s' lacks '%s'", mode, err, want2);
}

static void expect_load_error(const char *mode, const char *want1, const char *want2) {
    expect_load_error_on(mode, "model.layers.1.self_attn.o_proj.weight", want1, want2);
}

TEST(loader_truncated_file) { expect_load_error("truncate", ".safetensors", "truncated"); }
TEST(loader_header_length_past_eof) { expect_load_error("header-past-eof", ".safetensors", "header length"); }
TEST(loader_corrupt_header) { expect_load_error("corrupt-header", ".safetensors", "corrupt header"); }
TEST(loader_offsets_out_of_range) { expect_load_error("offset-out-of-range", "model.layers.1.self_attn.o_proj.weight", "past the end"); }
TEST(loader_wrong_dtype) { expect_load_error("wrong-dtype", "model.layers.1.self_attn.o_proj.weight", "dtype"); }
TEST(loader_wrong_shape) {
    expect_load_error_on("wrong-shape", "model.layers.1.self_attn.kv_a_proj_with_mqa.weight",
                         "tensor 'model.layers.1.self_attn.kv_a_proj_with_mqa.weight' has shape [128, 40], expected [40, 128]", NULL);
}
TEST(loader_missing_tensor) { expect_load_error("missing-tensor", "missing tensor 'model.layers.1.self_attn.o_proj.weight'", NULL); }
TEST(loader_missing_config_key) { expect_load_error("missing-config-key", "config.json", "kv_lora_rank"); }
TEST(loader_unknown_model_type) { expect_load_error("unknown-model-type", "unsupported model_type \"llama\"", NULL); }

TEST(loader_tensor_in_two_shards) {
    expect_load_error("defined-twice", "tensor 'model.layers.1.self_attn.o_proj.weight' is defined more than once", NULL);
}

TEST(loader_not_a_directory) {
    char err[1024];
    CHECK(!glm_model_load("/nonexistent/model", NULL, err, sizeof err));
    CHECK(strstr(err, "config.json"));
}

/* Header-level checks on in-memory files. */
static int parse(const char *header, size_t data_bytes, char *err, size_t errlen) {
    size_t hl = strlen(header), size = 8 + hl + data_bytes;
    uint8_t *b = calloc(1, size);
    for (int i = 0; i < 8; i++) b[i] = (uint8_t)((uint64_t)hl >> (8 * i));
    memcpy(b + 8, header, hl);
    int n = st_parse_header(b, size, "x.safetensors", err, errlen);
    free(b);
    return n;
}

TEST(safetensors_header_validation) {
    char err[512];
    CHECK_EQ_INT(parse("{\"a\":{\"dtype\":\"F32\",\"shape\":[2,3],\"data_offsets\":[0,24]},\"__metadata__\":{\"format\":\"pt\"}}", 24, err, sizeof err), 1);
    CHECK_EQ_INT(parse("{}", 0, err, sizeof err), 0);
    struct { const char *h; size_t data; const char *want; } bad[] = {
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[2,3],\"data_offsets\":[0,20]}}", 24, "need 24"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[2,3],\"data_offsets\":[0,24]}}", 20, "past the end"},
        {"{\"a\":{\"dtype\":\"F31\",\"shape\":[2],\"data_offsets\":[0,8]}}", 8, "unknown dtype"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[-2],\"data_offsets\":[0,8]}}", 8, "non-negative"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[8,0]}}", 8, "bad data_offsets"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[4294967296,4294967296,4294967296],\"data_offsets\":[0,8]}}", 8, "overflows"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}", 8, "more than once"},
        {"{\"a\":[]}", 0, "not an object"},
        {"[1]", 0, "not a JSON object"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[2]}}", 8, "data_offsets"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        err[0] = 0;
        CHECKF(parse(bad[i].h, bad[i].data, err, sizeof err) == -1, "accepted %s", bad[i].h);
        CHECKF(strstr(err, bad[i].want), "'%s' lacks '%s'", err, bad[i].want);
    }
    uint8_t tiny[4] = {0};
    CHECK(st_parse_header(tiny, 4, "t", err, sizeof err) == -1 && strstr(err, "too short"));
}

TEST(config_defaults_follow_the_family) {
    char err[512];
    glm_config c;
    const char *glm = "{\"model_type\":\"glm4_moe_lite\",\"hidden_size\":8,\"num_hidden_layers\":2,\"num_attention_heads\":1,"
                      "\"kv_lora_rank\":4,\"qk_nope_head_dim\":2,\"qk_rope_head_dim\":2,\"v_head_dim\":2,\"intermediate_size\":8,"
                      "\"vocab_size\":10,\"n_routed_experts\":4,\"num_experts_per_tok\":2,\"moe_intermediate_size\":4,"
                      "\"first_k_dense_replace\":1,\"eos_token_id\":[3,5,3]}";
    REQUIRE(config_parse(glm, strlen(glm), &c, err, sizeof err) == 0);
    CHECK(c.scoring_func == SCORE_SIGMOID && c.topk_method == TOPK_NOAUX_TC && c.norm_topk_prob);
    CHECK(c.n_shared_experts == 1 && c.n_group == 1 && c.topk_group == 1);   /* HF's class defaults */
    CHECK(c.layer_is_dense[0] && !c.layer_is_dense[1]);
    CHECK_EQ_INT(c.n_eos, 2);
    CHECK(c.rope_interleave);
    const char *v2 = "{\"model_type\":\"deepseek_v2\",\"hidden_size\":8,\"num_hidden_layers\":1,\"num_attention_heads\":1,"
                     "\"kv_lora_rank\":4,\"qk_nope_head_dim\":2,\"qk_rope_head_dim\":2,\"v_head_dim\":2,\"intermediate_size\":8,"
                     "\"vocab_size\":10,\"q_lora_rank\":null,\"first_k_dense_replace\":1,\"eos_token_id\":7}";
    REQUIREF(config_parse(v2, strlen(v2), &c, err, sizeof err) == 0, "%s", err);
    CHECK(c.scoring_func == SCORE_SOFTMAX && c.topk_method == TOPK_GREEDY && !c.norm_topk_prob);
    CHECK(c.q_lora_rank == 0 && c.n_eos == 1 && c.eos_ids[0] == 7);
    CHECK(c.n_shared_experts == 0);
    /* without routed experts every layer is dense (HF DeepseekV2, reference.py) */
    CHECK(c.layer_is_dense[0]);
    const char *freq = "{\"model_type\":\"deepseek_v2\",\"hidden_size\":8,\"num_hidden_layers\":5,\"num_attention_heads\":1,"
                       "\"kv_lora_rank\":4,\"qk_nope_head_dim\":2,\"qk_rope_head_dim\":2,\"v_head_dim\":2,\"intermediate_size\":8,"
                       "\"vocab_size\":10,\"n_routed_experts\":4,\"num_experts_per_tok\":2,\"moe_intermediate_size\":4,"
                       "\"first_k_dense_replace\":1,\"moe_layer_freq\":2}";
    REQUIRE(config_parse(freq, strlen(freq), &c, err, sizeof err) == 0);
    /* HF DeepseekV2: MoE where layer >= first_k_dense_replace and layer % moe_layer_freq == 0 */
    CHECK(c.layer_is_dense[0] && c.layer_is_dense[1] && !c.layer_is_dense[2] && c.layer_is_dense[3] && !c.layer_is_dense[4]);
    /* glm4_moe_lite routes by sigmoid whatever a scoring_func key says (SPEC §5.6.1, §9.1) */
    const char *keyed = "{\"model_type\":\"glm4_moe_lite\",\"hidden_size\":8,\"num_hidden_layers\":2,\"num_attention_heads\":1,"
                        "\"kv_lora_rank\":4,\"qk_nope_head_dim\":2,\"qk_rope_head_dim\":2,\"v_head_dim\":2,"
                        "\"vocab_size\":10,\"n_routed_experts\":4,\"num_experts_per_tok\":2,\"moe_intermediate_size\":4,"
                        "\"first_k_dense_replace\":0,\"n_group\":2,\"scoring_func\":\"softmax\"}";
    REQUIREF(config_parse(keyed, strlen(keyed), &c, err, sizeof err) == 0, "%s", err);
    CHECK(c.scoring_func == SCORE_SIGMOID && c.topk_group == 1);
    /* intermediate_size is needed only by dense layers */
    const char *dense = "{\"model_type\":\"deepseek_v3\",\"hidden_size\":8,\"num_hidden_layers\":2,\"num_attention_heads\":1,"
                        "\"kv_lora_rank\":4,\"qk_nope_head_dim\":2,\"qk_rope_head_dim\":2,\"v_head_dim\":2,"
                        "\"vocab_size\":10,\"n_routed_experts\":4,\"num_experts_per_tok\":2,\"moe_intermediate_size\":4,"
                        "\"first_k_dense_replace\":1}";
    CHECK(config_parse(dense, strlen(dense), &c, err, sizeof err) == -1 && strstr(err, "intermediate_size"));
    /* nonsense values are refused by name, never cast or computed with */
    const char *bad_values[][2] = {
        {"\"rms_norm_eps\":-1e-6", "rms_norm_eps"},
        {"\"topk_method\":3", "topk_method"},
        {"\"hidden_act\":[]", "hidden_act"},
        {"\"rope_scaling\":{\"type\":\"yarn\",\"factor\":4,\"original_max_position_embeddings\":1e20}", "rope_scaling"},
        {"\"rope_scaling\":{\"type\":\"yarn\",\"factor\":4,\"beta_fast\":0}", "rope_scaling"},
    };
    for (size_t i = 0; i < sizeof bad_values / sizeof *bad_values; i++) {
        char text[1024];
        snprintf(text, sizeof text, "%.*s,%s}", (int)strlen(glm) - 1, glm, bad_values[i][0]);
        err[0] = 0;
        CHECKF(config_parse(text, strlen(text), &c, err, sizeof err) == -1, "accepted %s", bad_values[i][0]);
        CHECKF(strstr(err, bad_values[i][1]), "'%s' lacks '%s'", err, bad_values[i][1]);
    }
    const char *badtype = "{\"model_type\":\"glm4_moe_lite\",\"hidden_size\":\"8\"}";
    CHECK(config_parse(badtype, strlen(badtype), &c, err, sizeof err) == -1 && strstr(err, "hidden_size"));
}
