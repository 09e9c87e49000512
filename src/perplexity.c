/* perplexity.c — perplexity and KL-divergence measurement (perplexity.h). */
#include "perplexity.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* log-sum-exp of logits in double */
static double lse(const float *x, int V) {
    double mx = -INFINITY;
    for (int v = 0; v < V; v++) mx = x[v] > mx ? x[v] : mx;
    double s = 0;
    for (int v = 0; v < V; v++) s += exp((double)x[v] - mx);
    return mx + log(s);
}

static int argmax(const float *x, int V) {
    int a = 0;
    for (int v = 1; v < V; v++) if (x[v] > x[a]) a = v;
    return a;
}

void ppl_add(ppl_stats *st, const float *logits, const float *base, int V, int32_t next) {
    double lz = lse(logits, V);
    double nll = lz - logits[next];
    st->n++;
    st->nll_sum += nll;
    st->nll_sq += nll * nll;
    if (!base) return;
    double lb = lse(base, V);
    double bn = lb - base[next];
    st->base_nll_sum += bn;
    st->base_nll_sq += bn * bn;
    /* KL(base || model) = sum p_b (log p_b - log p_m) */
    double kl = 0;
    for (int v = 0; v < V; v++) {
        double lpb = (double)base[v] - lb, lpm = (double)logits[v] - lz;
        kl += exp(lpb) * (lpb - lpm);
    }
    if (kl < 0) kl = 0;   /* rounding */
    st->n_kl++;
    st->kl_sum += kl;
    st->kl_sq += kl * kl;
    if (kl > st->kl_max) st->kl_max = kl;
    st->top1_same += argmax(logits, V) == argmax(base, V);
}

static double mean_se(double sum, double sq, size_t n, double *se) {
    double m = n ? sum / (double)n : 0;
    double var = n > 1 ? (sq / (double)n - m * m) * (double)n / (double)(n - 1) : 0;
    *se = n > 1 && var > 0 ? sqrt(var / (double)n) : 0;
    return m;
}

double ppl_value(const ppl_stats *st, double *pm) {
    double se, m = mean_se(st->nll_sum, st->nll_sq, st->n, &se);
    double p = exp(m);
    if (pm) *pm = p * se;
    return p;
}

double ppl_base_value(const ppl_stats *st, double *pm) {
    double se, m = mean_se(st->base_nll_sum, st->base_nll_sq, st->n_kl, &se);
    double p = exp(m);
    if (pm) *pm = p * se;
    return p;
}

double ppl_mean_kl(const ppl_stats *st, double *pm) {
    double se, m = mean_se(st->kl_sum, st->kl_sq, st->n_kl, &se);
    if (pm) *pm = se;
    return m;
}

int ppl_run(glm_model *m, glm_model *base, const int32_t *tokens, size_t n, int n_ctx, int batch, ppl_stats *st,
            ppl_progress_fn progress, void *progress_ctx, char *err, size_t errlen) {
    memset(st, 0, sizeof *st);
    int V = glm_model_config(m)->vocab_size;
    if (n_ctx < 2) { snprintf(err, errlen, "context %d too small (at least 2 tokens)", n_ctx); return -1; }
    if ((size_t)n_ctx > n) {
        snprintf(err, errlen, "the text has %zu tokens, fewer than one window of %d (use a smaller -c)", n, n_ctx);
        return -1;
    }
    if (base && glm_model_config(base)->vocab_size != V) {
        snprintf(err, errlen, "the base model's vocabulary (%d) differs from the model's (%d)",
                 glm_model_config(base)->vocab_size, V);
        return -1;
    }
    int piece = batch >= 1 && batch <= PPL_MAX_BATCH ? batch : PPL_MAX_BATCH;
    glm_session_options so = {.n_ctx = n_ctx};
    glm_session *s = glm_session_new(m, &so, err, errlen);
    glm_session *sb = NULL;
    if (!s) return -1;
    if (base && !(sb = glm_session_new(base, &so, err, errlen))) { glm_session_free(s); return -1; }
    float *lg = malloc((size_t)piece * V * sizeof *lg);
    float *lb = base ? malloc((size_t)piece * V * sizeof *lb) : NULL;
    int rc = 0;
    if (!lg || (base && !lb)) { snprintf(err, errlen, "out of memory"); rc = -1; }
    int n_win = (int)(n / (size_t)n_ctx);
    int first = n_ctx / 2;
    for (int w = 0; w < n_win && !rc; w++) {
        const int32_t *tk = tokens + (size_t)w * n_ctx;
        glm_session_truncate(s, 0);
        if (sb) glm_session_truncate(sb, 0);
        for (int i = 0; i < n_ctx - 1 && !rc; i += piece) {
            int k = n_ctx - 1 - i < piece ? n_ctx - 1 - i : piece;   /* the last token predicts nothing in the window */
            int want = i + k > first;   /* logits needed for this piece */
            rc = glm_forward(s, tk + i, k, want ? lg : NULL, want, err, errlen);
            if (!rc && sb) rc = glm_forward(sb, tk + i, k, want ? lb : NULL, want, err, errlen);
            if (rc || !want) continue;
            for (int j = 0; j < k; j++) {
                int pos = i + j;
                if (pos < first) continue;
                ppl_add(st, lg + (size_t)j * V, sb ? lb + (size_t)j * V : NULL, V, tk[pos + 1]);
            }
        }
        if (!rc && progress) progress(progress_ctx, w + 1, n_win, st);
    }
    free(lg);
    free(lb);
    glm_session_free(s);
    glm_session_free(sb);
    return rc;
}
