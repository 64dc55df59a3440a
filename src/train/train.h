/*
 * train — everything dfd needs to make and judge its own models: binary-classification
 * metrics (AUC, ROC, EER, per-class reports), plots (cairo PNGs), dataset layouts and
 * group splits, on-the-fly augmentation including self-blended fakes, the training
 * loop with its prefetching loader, and evaluation.
 *
 * Conventions used throughout:
 *   - label 1 = FAKE (the positive class), 0 = REAL; scores are P(fake) (or any score
 *     that grows with "fake"); an item is predicted FAKE when score >= threshold, as
 *     detect's dfd_result_decide does;
 *   - every fallible call returns a DFD_E_* status and fills an optional dfd_error.
 */
#ifndef DFD_TRAIN_H
#define DFD_TRAIN_H

#include <stddef.h>
#include <stdint.h>

#include "core/core.h"

/* ---- Metrics (metrics.c) -------------------------------------------------------- */

/* One operating point of a ROC curve: items with score >= threshold are called FAKE. */
typedef struct dfd_roc_point {
    double threshold; /* +inf for the first point (nothing called fake) */
    double fpr, tpr;
} dfd_roc_point;

/* Confusion matrix at one threshold; rows are the true label, columns the prediction:
 *   [true REAL] tn fp
 *   [true FAKE] fn tp */
typedef struct dfd_confusion {
    long tn, fp, fn, tp;
} dfd_confusion;

typedef struct dfd_class_report {
    double precision, recall, f1; /* NaN when undefined (0/0) */
    long support;                 /* items whose true label is this class */
} dfd_class_report;

typedef struct dfd_metrics {
    long n, n_real, n_fake;
    double threshold;          /* the threshold the confusion and reports use */
    double loss;               /* mean binary log-loss of the scores as probabilities */
    double accuracy;
    double balanced_accuracy;  /* mean of the two recalls */
    double auc;                /* NaN when one class is absent */
    double eer;                /* equal error rate, interpolated; NaN when one class is absent */
    double eer_threshold;      /* a threshold that operates near the EER */
    dfd_confusion cm;
    dfd_class_report cls[2];   /* [0] REAL, [1] FAKE */
} dfd_metrics;

/* Area under the ROC curve by the Mann-Whitney statistic, ties counting one half (average
 * ranks), which equals the trapezoidal area under the ROC curve. DFD_E_ARG when a label
 * is not 0/1 or a score is NaN; *auc = NaN (and DFD_OK) when one class is absent. */
int dfd_metric_auc(const double *scores, const int *labels, size_t n, double *auc, dfd_error *err);

/* The ROC curve: one point per distinct score, from (0,0) at threshold +inf down to (1,1)
 * at the lowest score; *pts is malloc'ed (caller frees), *count its length. */
int dfd_metric_roc(const double *scores, const int *labels, size_t n, dfd_roc_point **pts, size_t *count,
                   dfd_error *err);

/* Equal error rate: where FPR = FNR (= 1 - TPR) on the ROC curve, linearly interpolated
 * between the two points around the crossing. *threshold (may be NULL) receives the
 * threshold of the curve point with the smallest |FPR - FNR| (an operating point that is
 * actually reachable). NaN and DFD_OK when a class is absent. */
int dfd_metric_eer(const double *scores, const int *labels, size_t n, double *eer, double *threshold,
                   dfd_error *err);

/* The lowest threshold whose FPR is at most target_fpr (the most sensitive setting that
 * keeps false alarms under the target). */
int dfd_metric_threshold_for_fpr(const double *scores, const int *labels, size_t n, double target_fpr,
                                 double *threshold, dfd_error *err);

/* Confusion matrix at a threshold (score >= threshold = FAKE). */
void dfd_metric_confusion(const double *scores, const int *labels, size_t n, double threshold, dfd_confusion *cm);

/* Mean binary log-loss of probabilities, clipped to [1e-7, 1 - 1e-7] as Keras does. */
double dfd_metric_log_loss(const double *p, const int *labels, size_t n);

/* Everything above at once, at the given threshold. */
int dfd_metrics_compute(const double *scores, const int *labels, size_t n, double threshold, dfd_metrics *m,
                        dfd_error *err);

/* The metrics as a jansson object (json_t *, returned as void * so that this header does
 * not pull jansson in); NaN values become null. NULL on no memory; the caller owns it. */
void *dfd_metrics_to_json(const dfd_metrics *m);

#endif
