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

/* ---- Plots (plot.c): PNG files drawn with cairo, written atomically --------------- */

/* ROC curve with the chance diagonal, the AUC and the EER point in the legend. */
int dfd_plot_roc(const char *path, const dfd_roc_point *pts, size_t n, double auc, double eer, const char *title,
                 dfd_error *err);

/* Confusion matrix: rows are the TRUE label (REAL top, FAKE bottom), columns the
 * PREDICTED label (REAL left, FAKE right), axes labelled so; each cell shows its count and
 * its share of the row, shaded by that share. */
int dfd_plot_confusion(const char *path, const dfd_confusion *cm, const char *title, dfd_error *err);

/* Where dfd_plot_confusion draws the cell (row = true label, col = predicted label) in
 * its image (x, y, w, h), so tests and callers need not guess the layout. */
void dfd_plot_confusion_cell(int row, int col, int rect[4]);
enum { DFD_PLOT_CM_W = 560, DFD_PLOT_CM_H = 500 };

/* One epoch of training, as the history CSV and plot record it. NaN = not measured. */
typedef struct dfd_history_row {
    int epoch;          /* 1-based, counted over both stages */
    int stage;          /* 1 or 2 */
    double lr;
    double train_loss, train_acc, train_auc;
    double val_loss, val_acc, val_auc, val_eer;
    double seconds, images_per_s;
} dfd_history_row;

/* Training history: three panels (loss, accuracy, AUC per epoch), train and validation. */
int dfd_plot_history(const char *path, const dfd_history_row *rows, int n, dfd_error *err);

#endif
