/* test_router.c — MoE routing on crafted logits (SPEC §5.6, §5.6.1). */
#include "router.h"
#include "test.h"

static glm_config base_cfg(int E, int K) {
    glm_config c;
    memset(&c, 0, sizeof c);
    c.n_routed_experts = E;
    c.num_experts_per_tok = K;
    c.n_group = 1;
    c.topk_group = 1;
    c.topk_method = TOPK_NOAUX_TC;
    c.scoring_func = SCORE_SIGMOID;
    c.norm_topk_prob = 1;
    c.routed_scaling_factor = 1.8f;
    return c;
}

static float sigm(float x) { return 1.0f / (1.0f + expf(-x)); }

TEST(router_bias_changes_choice_not_weights) {
    glm_config c = base_cfg(8, 2);
    float logits[8] = {3.0f, 2.5f, 2.0f, 0.0f, -1.0f, -2.0f, 1.0f, 0.5f};
    float bias[8] = {0, 0, 0, 0, 0, 5.0f, 0, 0};
    float scratch[16], w[2];
    int idx[2];
    route_token(&c, logits, NULL, idx, w, scratch);
    CHECK_EQ_INT(idx[0], 0);
    CHECK_EQ_INT(idx[1], 1);
    route_token(&c, logits, bias, idx, w, scratch);
    CHECK_EQ_INT(idx[0], 5);   /* -2 + bias 5 beats everyone */
    CHECK_EQ_INT(idx[1], 0);
    /* weights are the unbiased sigmoid scores, renormalised, scaled by 1.8 */
    float s5 = sigm(-2.0f), s0 = sigm(3.0f);
    CHECK(fabsf(w[0] - 1.8f * s5 / (s5 + s0)) < 1e-6f);
    CHECK(fabsf(w[1] - 1.8f * s0 / (s5 + s0)) < 1e-6f);
}

TEST(router_excluded_groups_are_never_chosen) {
    glm_config c = base_cfg(16, 4);
    c.n_group = 4;
    c.topk_group = 2;
    /* group 0 holds the single best expert, but groups 2 and 3 have better top-2 sums */
    float logits[16] = {9, -9, -9, -9, /**/ 0, 0, 0, 0, /**/ 4, 4, -9, -9, /**/ 5, 5, -9, -9};
    float scratch[32], w[4];
    int idx[4];
    route_token(&c, logits, NULL, idx, w, scratch);
    for (int j = 0; j < 4; j++) CHECKF(idx[j] >= 8, "expert %d from an excluded group", idx[j]);
    /* group_limited_greedy scores a group by its best expert: group 0 is kept then */
    c.topk_method = TOPK_GROUP_LIMITED_GREEDY;
    route_token(&c, logits, NULL, idx, w, scratch);
    CHECK_EQ_INT(idx[0], 0);
    for (int j = 0; j < 4; j++) CHECKF(idx[j] < 4 || idx[j] >= 12, "expert %d from an excluded group", idx[j]);
    /* greedy ignores groups */
    c.topk_method = TOPK_GREEDY;
    route_token(&c, logits, NULL, idx, w, scratch);
    CHECK_EQ_INT(idx[0], 0);
}

TEST(router_ties_resolve_to_lower_index) {
    glm_config c = base_cfg(8, 3);
    float logits[8] = {1, 2, 2, 2, 2, 0, 0, 0};
    float scratch[16], w[3];
    int idx[3];
    route_token(&c, logits, NULL, idx, w, scratch);
    CHECK_EQ_INT(idx[0], 1);
    CHECK_EQ_INT(idx[1], 2);
    CHECK_EQ_INT(idx[2], 3);
    CHECK(w[0] == w[1] && w[1] == w[2]);
}

TEST(router_softmax_scores_without_renormalisation) {
    glm_config c = base_cfg(4, 2);
    c.scoring_func = SCORE_SOFTMAX;
    c.topk_method = TOPK_GREEDY;
    c.norm_topk_prob = 0;
    c.routed_scaling_factor = 1.0f;
    float logits[4] = {1, 2, 3, 4};
    float scratch[8], w[2];
    int idx[2];
    route_token(&c, logits, NULL, idx, w, scratch);
    double z = exp(1) + exp(2) + exp(3) + exp(4);
    CHECK_EQ_INT(idx[0], 3);
    CHECK_EQ_INT(idx[1], 2);
    CHECK(fabs(w[0] - exp(4) / z) < 1e-6);
    CHECK(fabs(w[1] - exp(3) / z) < 1e-6);
}
