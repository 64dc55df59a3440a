/* metrics.c — binary-classification metrics for training and evaluation: AUC (Mann-Whitney
 * with average ranks for ties), ROC curve, EER, confusion matrix, per-class precision /
 * recall / F1, accuracy, balanced accuracy, log-loss, and threshold choice.
 *
 * Everything works from one sort of the scores (descending), so ties are handled in one
 * place: items with equal scores move across a threshold together, which is what makes the
 * rank-based AUC and the trapezoidal area under the ROC curve the same number. */
#include <jansson.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "train/train.h"

typedef struct scored {
    double s;
    int y;
} scored;

static int cmp_desc(const void *a, const void *b) {
    double x = ((const scored *)a)->s, y = ((const scored *)b)->s;
    return x > y ? -1 : x < y ? 1 : 0;
}

/* Checks the inputs and returns a copy sorted by descending score, with class counts. */
static int sorted_copy(const double *scores, const int *labels, size_t n, scored **out, long *npos, long *nneg,
                       dfd_error *err) {
    *out = NULL;
    *npos = *nneg = 0;
    if (n && (!scores || !labels)) return dfd_fail(err, DFD_E_ARG, "metrics: scores or labels missing");
    for (size_t i = 0; i < n; i++) {
        if (labels[i] != 0 && labels[i] != 1)
            return dfd_fail(err, DFD_E_ARG, "metrics: label %d of item %zu is not 0 (real) or 1 (fake)", labels[i], i);
        if (isnan(scores[i])) return dfd_fail(err, DFD_E_ARG, "metrics: score of item %zu is NaN", i);
        if (labels[i]) (*npos)++;
        else (*nneg)++;
    }
    scored *v = dfd_malloc_array(n ? n : 1, sizeof *v);
    if (!v) return dfd_fail(err, DFD_E_NOMEM, "metrics: no memory for %zu scores", n);
    for (size_t i = 0; i < n; i++) v[i] = (scored){scores[i], labels[i]};
    qsort(v, n, sizeof *v, cmp_desc);
    *out = v;
    return DFD_OK;
}

int dfd_metric_auc(const double *scores, const int *labels, size_t n, double *auc, dfd_error *err) {
    scored *v;
    long np, nn;
    *auc = NAN;
    int rc = sorted_copy(scores, labels, n, &v, &np, &nn, err);
    if (rc) return rc;
    if (np == 0 || nn == 0) {
        free(v);
        return DFD_OK;
    }
    /* Ascending ranks 1..n: the item at descending index i has rank n - i. A run of ties
     * [i, j) gets the average of its ranks. U = sum of positive ranks - np(np+1)/2. */
    double rank_sum = 0;
    size_t i = 0;
    while (i < n) {
        size_t j = i;
        long pos = 0;
        while (j < n && v[j].s == v[i].s) pos += v[j].y, j++;
        double hi = (double)(n - i), lo = (double)(n - j + 1);
        rank_sum += pos * (hi + lo) / 2.0;
        i = j;
    }
    double u = rank_sum - (double)np * (np + 1) / 2.0;
    *auc = u / ((double)np * (double)nn);
    free(v);
    return DFD_OK;
}

int dfd_metric_roc(const double *scores, const int *labels, size_t n, dfd_roc_point **pts, size_t *count,
                   dfd_error *err) {
    scored *v;
    long np, nn;
    *pts = NULL;
    *count = 0;
    int rc = sorted_copy(scores, labels, n, &v, &np, &nn, err);
    if (rc) return rc;
    dfd_roc_point *p = dfd_malloc_array(n + 1, sizeof *p);
    if (!p) {
        free(v);
        return dfd_fail(err, DFD_E_NOMEM, "metrics: no memory for a ROC curve of %zu points", n + 1);
    }
    size_t k = 0;
    p[k++] = (dfd_roc_point){INFINITY, 0, 0};
    long tp = 0, fp = 0;
    size_t i = 0;
    while (i < n) {
        size_t j = i;
        while (j < n && v[j].s == v[i].s) {
            if (v[j].y) tp++;
            else fp++;
            j++;
        }
        p[k++] = (dfd_roc_point){v[i].s, nn ? (double)fp / nn : NAN, np ? (double)tp / np : NAN};
        i = j;
    }
    free(v);
    *pts = p;
    *count = k;
    return DFD_OK;
}

int dfd_metric_eer(const double *scores, const int *labels, size_t n, double *eer, double *threshold,
                   dfd_error *err) {
    dfd_roc_point *p;
    size_t k;
    *eer = NAN;
    if (threshold) *threshold = NAN;
    int rc = dfd_metric_roc(scores, labels, n, &p, &k, err);
    if (rc) return rc;
    if (k < 2 || isnan(p[k - 1].fpr) || isnan(p[k - 1].tpr)) {
        free(p);
        return DFD_OK;
    }
    /* d = FPR - FNR rises from -1 at the first point to +1 at the last: find the first
     * segment where it reaches 0 and interpolate both rates linearly along it. */
    size_t best = 0;
    double best_gap = INFINITY;
    for (size_t i = 0; i < k; i++) {
        double gap = fabs(p[i].fpr - (1 - p[i].tpr));
        /* Among equally close points prefer the later (lower, finite) threshold. */
        if (gap <= best_gap && !(i == 0 && k > 1)) best_gap = gap, best = i;
    }
    for (size_t i = 0; i + 1 < k; i++) {
        double d0 = p[i].fpr - (1 - p[i].tpr), d1 = p[i + 1].fpr - (1 - p[i + 1].tpr);
        if (d0 <= 0 && d1 >= 0) {
            double t = d1 == d0 ? 0 : -d0 / (d1 - d0);
            *eer = p[i].fpr + t * (p[i + 1].fpr - p[i].fpr);
            break;
        }
    }
    if (threshold) *threshold = p[best].threshold;
    free(p);
    return DFD_OK;
}

int dfd_metric_threshold_for_fpr(const double *scores, const int *labels, size_t n, double target_fpr,
                                 double *threshold, dfd_error *err) {
    dfd_roc_point *p;
    size_t k;
    *threshold = NAN;
    if (!(target_fpr >= 0 && target_fpr <= 1))
        return dfd_fail(err, DFD_E_ARG, "metrics: target false-positive rate %g is not in [0, 1]", target_fpr);
    int rc = dfd_metric_roc(scores, labels, n, &p, &k, err);
    if (rc) return rc;
    /* Thresholds fall and FPR rises along the curve: keep the last point within target. */
    for (size_t i = 0; i < k; i++)
        if (isnan(p[i].fpr) || p[i].fpr <= target_fpr) *threshold = p[i].threshold;
    free(p);
    return DFD_OK;
}

void dfd_metric_confusion(const double *scores, const int *labels, size_t n, double threshold, dfd_confusion *cm) {
    memset(cm, 0, sizeof *cm);
    for (size_t i = 0; i < n; i++) {
        int pred = scores[i] >= threshold;
        if (labels[i]) pred ? cm->tp++ : cm->fn++;
        else pred ? cm->fp++ : cm->tn++;
    }
}

double dfd_metric_log_loss(const double *p, const int *labels, size_t n) {
    if (n == 0) return NAN;
    const double eps = 1e-7;
    double s = 0;
    for (size_t i = 0; i < n; i++) {
        double q = p[i] < eps ? eps : p[i] > 1 - eps ? 1 - eps : p[i];
        s -= labels[i] ? log(q) : log(1 - q);
    }
    return s / (double)n;
}

static double ratio(long a, long b) { return b ? (double)a / (double)b : NAN; }

static void class_report(long tp, long fp, long fn, dfd_class_report *r) {
    r->precision = ratio(tp, tp + fp);
    r->recall = ratio(tp, tp + fn);
    r->f1 = ratio(2 * tp, 2 * tp + fp + fn);
    r->support = tp + fn;
}

int dfd_metrics_compute(const double *scores, const int *labels, size_t n, double threshold, dfd_metrics *m,
                        dfd_error *err) {
    memset(m, 0, sizeof *m);
    int rc = dfd_metric_auc(scores, labels, n, &m->auc, err);
    if (rc) return rc;
    rc = dfd_metric_eer(scores, labels, n, &m->eer, &m->eer_threshold, err);
    if (rc) return rc;
    m->n = (long)n;
    m->threshold = threshold;
    dfd_metric_confusion(scores, labels, n, threshold, &m->cm);
    const dfd_confusion *c = &m->cm;
    m->n_real = c->tn + c->fp;
    m->n_fake = c->tp + c->fn;
    m->accuracy = ratio(c->tp + c->tn, m->n);
    class_report(c->tp, c->fp, c->fn, &m->cls[1]);
    class_report(c->tn, c->fn, c->fp, &m->cls[0]); /* REAL as the positive class */
    if (m->n_real && m->n_fake) m->balanced_accuracy = (m->cls[0].recall + m->cls[1].recall) / 2;
    else m->balanced_accuracy = m->n_real ? m->cls[0].recall : m->n_fake ? m->cls[1].recall : NAN;
    /* Log-loss only makes sense for probabilities. */
    int probs = 1;
    for (size_t i = 0; i < n; i++)
        if (!(scores[i] >= 0 && scores[i] <= 1)) probs = 0;
    m->loss = probs ? dfd_metric_log_loss(scores, labels, n) : NAN;
    return DFD_OK;
}

static json_t *num(double v) { return isfinite(v) ? json_real(v) : json_null(); }

static json_t *class_json(const dfd_class_report *r) {
    return json_pack("{s:o,s:o,s:o,s:I}", "precision", num(r->precision), "recall", num(r->recall), "f1",
                     num(r->f1), "support", (json_int_t)r->support);
}

void *dfd_metrics_to_json(const dfd_metrics *m) {
    const dfd_confusion *c = &m->cm;
    json_t *cm = json_pack("{s:[s,s],s:[[I,I],[I,I]],s:s}", "labels", "REAL", "FAKE", "matrix", (json_int_t)c->tn,
                           (json_int_t)c->fp, (json_int_t)c->fn, (json_int_t)c->tp, "layout",
                           "rows = true label, columns = predicted label");
    if (!cm) return NULL;
    return json_pack("{s:I,s:I,s:I,s:o,s:o,s:o,s:o,s:o,s:o,s:o,s:o,s:{s:o,s:o}}", "n", (json_int_t)m->n, "n_real",
                     (json_int_t)m->n_real, "n_fake", (json_int_t)m->n_fake, "threshold", num(m->threshold), "loss",
                     num(m->loss), "accuracy", num(m->accuracy), "balanced_accuracy", num(m->balanced_accuracy),
                     "auc", num(m->auc), "eer", num(m->eer), "eer_threshold", num(m->eer_threshold),
                     "confusion_matrix", cm, "per_class", "REAL", class_json(&m->cls[0]), "FAKE",
                     class_json(&m->cls[1]));
}
