/* profile.c — the phase timer of profile.h: a few accumulated seconds. */
#include "profile.h"

#include <time.h>

static int enabled;
static double acc[PROF_PHASES];

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

void prof_enable(int on) { enabled = on; }

void prof_reset(void) {
    for (int i = 0; i < PROF_PHASES; i++) acc[i] = 0;
}

void prof_get(double seconds[PROF_PHASES]) {
    for (int i = 0; i < PROF_PHASES; i++) seconds[i] = acc[i];
}

double prof_begin(void) { return enabled ? now_s() : 0; }

void prof_end(prof_phase phase, double t0) {
    if (enabled) acc[phase] += now_s() - t0;
}
