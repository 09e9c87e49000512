/* router.c — scores, group-limited top-k and weights, exactly as SPEC §5.6:
 * the correction bias only steers the choice; weights are the unbiased scores
 * of the chosen experts, optionally renormalised, then scaled. */
#include "router.h"

#include <math.h>

/* Index of the largest v[i] over i in [lo, hi) not yet taken; ties -> lower index. */
static int argmax_free(const float *v, const unsigned char *taken, int lo, int hi) {
    int best = -1;
    for (int i = lo; i < hi; i++)
        if (!taken[i] && (best < 0 || v[i] > v[best])) best = i;
    return best;
}

void route_token(const glm_config *cfg, const float *logits, const float *bias, int *idx, float *w, float *scratch) {
    int E = cfg->n_routed_experts, K = cfg->num_experts_per_tok;
    float *s = scratch, *choice = scratch + E;
    if (cfg->scoring_func == SCORE_SOFTMAX) {
        float m = -INFINITY;
        for (int e = 0; e < E; e++) m = logits[e] > m ? logits[e] : m;
        double sum = 0;
        for (int e = 0; e < E; e++) sum += s[e] = expf(logits[e] - m);
        for (int e = 0; e < E; e++) s[e] = (float)(s[e] / sum);
    } else {
        for (int e = 0; e < E; e++) s[e] = 1.0f / (1.0f + expf(-logits[e]));
    }
    for (int e = 0; e < E; e++) choice[e] = s[e] + (cfg->topk_method == TOPK_NOAUX_TC && bias ? bias[e] : 0.0f);

    unsigned char taken[GLM_MAX_EXPERTS];
    int G = cfg->n_group, per = E / G;
    if (G > 1 && cfg->topk_method != TOPK_GREEDY && cfg->topk_group < G) {
        /* group score: sum of the two best (noaux_tc) or the best (group_limited_greedy) */
        float gscore[GLM_MAX_EXPERTS];
        for (int g = 0; g < G; g++) {
            const float *c = choice + g * per;
            int b1 = 0;
            for (int i = 1; i < per; i++) if (c[i] > c[b1]) b1 = i;
            if (cfg->topk_method == TOPK_NOAUX_TC) {
                int b2 = b1 == 0 ? 1 : 0;
                for (int i = 0; i < per; i++) if (i != b1 && c[i] > c[b2]) b2 = i;
                gscore[g] = c[b1] + c[b2];
            } else {
                gscore[g] = c[b1];
            }
        }
        unsigned char gkeep[GLM_MAX_EXPERTS];
        for (int g = 0; g < G; g++) taken[g] = 0;
        for (int g = 0; g < G; g++) gkeep[g] = 0;
        for (int j = 0; j < cfg->topk_group; j++) {
            int g = argmax_free(gscore, taken, 0, G);
            taken[g] = 1;
            gkeep[g] = 1;
        }
        for (int e = 0; e < E; e++)
            if (!gkeep[e / per]) choice[e] = -INFINITY;
    }
    /* Masked experts (-inf) never beat a finite choice, and the config check
       guarantees topk_group groups hold at least K experts. */
    for (int e = 0; e < E; e++) taken[e] = 0;
    float sum = 0;
    for (int j = 0; j < K; j++) {
        int e = argmax_free(choice, taken, 0, E);
        taken[e] = 1;
        idx[j] = e;
        w[j] = s[e];
        sum += s[e];
    }
    for (int j = 0; j < K; j++) {
        if (cfg->norm_topk_prob) w[j] /= sum + 1e-20f;
        w[j] *= cfg->routed_scaling_factor;
    }
}
