/* aggregate.c — turning a track's per-frame P(fake) into one score.
 *
 * Default: the "confident strategy" of the DFDC winner (Seferbekov, 2020). A face swap
 * is often visible in only some frames (pose, blur, occlusion hide it in the others), so
 * the plain mean dilutes a clear signal; the rule trusts a large group of confidently
 * fake frames, else a near-unanimous group of confidently real ones, else the mean. */
#include <math.h>

#include "detect/detect.h"

double dfd_aggregate_confident(const double *p, int n) {
    const double t_fake = 0.8, t_real = 0.2;
    int n_fake = 0, n_real = 0, n_ok = 0;
    double s_fake = 0, s_real = 0, s_all = 0;
    for (int i = 0; i < n; i++) {
        if (isnan(p[i])) continue;
        n_ok++;
        s_all += p[i];
        if (p[i] > t_fake) n_fake++, s_fake += p[i];
        if (p[i] < t_real) n_real++, s_real += p[i];
    }
    if (n_ok == 0) return NAN;
    /* The winner's thresholds: more than n/2.5 (integer division) and more than 11 frames
     * at 30 sampled frames; scaled with n so short tracks can reach it too. */
    int need = (int)(n_ok / 2.5);
    int floor_frames = (int)ceil(11.0 * n_ok / 30.0);
    if (n_fake > need && n_fake > floor_frames) return s_fake / n_fake;
    if (n_real > 0.9 * n_ok) return s_real / n_real;
    return s_all / n_ok;
}

double dfd_aggregate(const double *p, int n, dfd_aggregation how) {
    if (how == DFD_AGG_CONFIDENT) return dfd_aggregate_confident(p, n);
    int k = 0;
    double s = 0;
    for (int i = 0; i < n; i++)
        if (!isnan(p[i])) s += p[i], k++;
    return k ? s / k : NAN;
}
