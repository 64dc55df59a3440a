/* combine.c — two detectors, one verdict.
 *
 * A face is judged by the manipulation detector (a real face swapped or altered) and, when
 * one is loaded, the synthetic-face detector (a face generated whole). Each has its own
 * threshold, chosen on its own validation data, so their scores are not compared with each
 * other but each with its threshold: a face is FAKE when either detector fires, and the
 * score reported as P(fake) is that of the detector that crossed its threshold by more, on
 * the logit scale (logit(p) - logit(t)), so that P(fake) >= threshold stays the rule. */
#include <math.h>

#include "detect/detect.h"

double dfd_detector_margin(double p, double t) {
    if (isnan(p) || isnan(t)) return -INFINITY;
    return dfd_logit(p) - dfd_logit(t);
}

void dfd_combine(double p_m, double t_m, double p_s, double t_s, double *p_fake, double *threshold, int *kind) {
    int has_m = !isnan(p_m), has_s = !isnan(p_s) && !isnan(t_s);
    int fires_m = has_m && p_m >= t_m, fires_s = has_s && p_s >= t_s;
    *kind = (fires_m ? DFD_KIND_MANIPULATED : 0) | (fires_s ? DFD_KIND_SYNTHETIC : 0);
    int use_s;
    if (!has_m && !has_s) {
        *p_fake = NAN, *threshold = t_m;
        return;
    }
    if (!has_s)
        use_s = 0;
    else if (!has_m)
        use_s = 1;
    else if (fires_m != fires_s) /* exactly one fired: it decides, whatever the clamped margins say */
        use_s = fires_s;
    else
        use_s = dfd_detector_margin(p_s, t_s) > dfd_detector_margin(p_m, t_m);
    *p_fake = use_s ? p_s : p_m;
    *threshold = use_s ? t_s : t_m;
}
