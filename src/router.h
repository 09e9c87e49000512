/* router.h — MoE expert selection for one token (SPEC §5.6, §5.6.1). */
#ifndef GLM_ROUTER_H
#define GLM_ROUTER_H

#include "config.h"

/* logits: the router's [n_routed_experts] outputs. bias: the
 * e_score_correction_bias or NULL. Writes the num_experts_per_tok chosen
 * experts to idx (best first; ties go to the lower expert index) and their
 * weights to w. scratch holds 2 * n_routed_experts floats. */
void route_token(const glm_config *cfg, const float *logits, const float *bias, int *idx, float *w, float *scratch);

#endif
