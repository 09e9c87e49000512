/* profile.h — optional wall-clock time by phase of the forward pass, for
 * `glmlite bench --profile`: where prefill and decode time goes (matmuls,
 * attention, MoE routing and gathering, the rest). Off unless enabled; the
 * phases are timed on the thread that calls glm_forward (around whole
 * pool runs), so one forward at a time may be profiled. */
#ifndef GLM_PROFILE_H
#define GLM_PROFILE_H

typedef enum { PROF_MATMUL, PROF_ATTENTION, PROF_MOE_ROUTING, PROF_PHASES } prof_phase;

void prof_enable(int on);
void prof_reset(void);
void prof_get(double seconds[PROF_PHASES]);
double prof_begin(void);                    /* a start time, or 0 when off */
void prof_end(prof_phase phase, double t0); /* adds the time since t0 (nothing when off) */

#endif
