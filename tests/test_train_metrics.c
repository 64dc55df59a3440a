/* test_train_metrics — AUC, ROC, EER, thresholds, confusion matrix, per-class reports and
 * log-loss agree with values worked out by hand on small score lists (ties included), and
 * AUC agrees with a brute-force pair count and with the trapezoidal area under the ROC. */
#include "testutil.h"

#include <jansson.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "train/train.h"

#define N(a) (sizeof(a) / sizeof((a)[0]))

static void auc_of_a_small_list(void **state) {
    (void)state;
    /* Pairs (fake, real): (.35,.1) won, (.35,.4) lost, (.8,.1) won, (.8,.4) won: 3/4. */
    const double s[] = {0.1, 0.4, 0.35, 0.8};
    const int y[] = {0, 0, 1, 1};
    double auc;
    assert_int_equal(dfd_metric_auc(s, y, N(s), &auc, NULL), DFD_OK);
    assert_float_equal(auc, 0.75, 1e-12);
}

static void auc_counts_ties_as_one_half(void **state) {
    (void)state;
    /* Fakes .9 .7 .5 against reals .7 .5 .2:
     * .9 beats all three = 3; .7 ties .7 (1/2) and beats .5 and .2 = 2.5;
     * .5 loses to .7, ties .5 (1/2), beats .2 = 1.5. Total 7 of 9 pairs. */
    const double s[] = {0.9, 0.7, 0.7, 0.5, 0.5, 0.2};
    const int y[] = {1, 1, 0, 1, 0, 0};
    double auc;
    assert_int_equal(dfd_metric_auc(s, y, N(s), &auc, NULL), DFD_OK);
    assert_float_equal(auc, 7.0 / 9.0, 1e-12);
    /* All scores equal: every pair is a tie. */
    const double t[] = {0.5, 0.5, 0.5, 0.5};
    const int z[] = {1, 0, 1, 0};
    assert_int_equal(dfd_metric_auc(t, z, N(t), &auc, NULL), DFD_OK);
    assert_float_equal(auc, 0.5, 1e-12);
}

static void roc_points_with_ties(void **state) {
    (void)state;
    const double s[] = {0.9, 0.7, 0.7, 0.5, 0.5, 0.2};
    const int y[] = {1, 1, 0, 1, 0, 0};
    dfd_roc_point *p;
    size_t k;
    assert_int_equal(dfd_metric_roc(s, y, N(s), &p, &k, NULL), DFD_OK);
    /* One point per distinct score plus the start: inf, .9, .7, .5, .2. */
    assert_int_equal(k, 5);
    const double thr[] = {INFINITY, 0.9, 0.7, 0.5, 0.2};
    const double fpr[] = {0, 0, 1.0 / 3, 2.0 / 3, 1};
    const double tpr[] = {0, 1.0 / 3, 2.0 / 3, 1, 1};
    double area = 0;
    for (size_t i = 0; i < k; i++) {
        if (i == 0) assert_true(isinf(p[i].threshold));
        else assert_float_equal(p[i].threshold, thr[i], 1e-12);
        assert_float_equal(p[i].fpr, fpr[i], 1e-12);
        assert_float_equal(p[i].tpr, tpr[i], 1e-12);
        if (i) area += (p[i].fpr - p[i - 1].fpr) * (p[i].tpr + p[i - 1].tpr) / 2;
    }
    assert_float_equal(area, 7.0 / 9.0, 1e-12); /* trapezoids = Mann-Whitney */
    free(p);
}

static void eer_exact_and_interpolated(void **state) {
    (void)state;
    double eer, thr;
    /* ROC (fpr, fnr): (0,1) (0,.5) (.5,.5) (.5,0) (1,0): FPR = FNR = .5 at threshold .4. */
    const double s1[] = {0.1, 0.4, 0.35, 0.8};
    const int y1[] = {0, 0, 1, 1};
    assert_int_equal(dfd_metric_eer(s1, y1, N(s1), &eer, &thr, NULL), DFD_OK);
    assert_float_equal(eer, 0.5, 1e-12);
    assert_float_equal(thr, 0.4, 1e-12);
    /* With ties: (0,1) (0,2/3) (1/3,1/3) ...: the crossing is the point at threshold .7. */
    const double s2[] = {0.9, 0.7, 0.7, 0.5, 0.5, 0.2};
    const int y2[] = {1, 1, 0, 1, 0, 0};
    assert_int_equal(dfd_metric_eer(s2, y2, N(s2), &eer, &thr, NULL), DFD_OK);
    assert_float_equal(eer, 1.0 / 3.0, 1e-12);
    assert_float_equal(thr, 0.7, 1e-12);
    /* No point on the curve has FPR = FNR: fakes .9 .6, reals .8 .7 .5. Points (fpr, fnr):
     * (0,1) (0,.5) (1/3,.5) (2/3,.5) (2/3,0) (1,0). Between (1/3,.5) and (2/3,.5) FNR stays
     * .5, so the line meets FPR = FNR at .5. The nearest points are 1/6 away on both sides;
     * the lower threshold (.7) is taken. */
    const double s3[] = {0.9, 0.8, 0.7, 0.6, 0.5};
    const int y3[] = {1, 0, 0, 1, 0};
    assert_int_equal(dfd_metric_eer(s3, y3, N(s3), &eer, &thr, NULL), DFD_OK);
    assert_float_equal(eer, 0.5, 1e-12);
    assert_float_equal(thr, 0.7, 1e-12);
    /* A slanted crossing: fakes .9 .8, reals .85 .3 .2 .1 (4 reals). Points (fpr, fnr):
     * (0,1) (0,.5) (.25,.5) (.25,0) ... d = fpr - fnr: -1, -.5, -.25, .25: crossing between
     * (.25,.5) and (.25,0) halfway: fpr = .25, fnr = .25. */
    const double s4[] = {0.9, 0.85, 0.8, 0.3, 0.2, 0.1};
    const int y4[] = {1, 0, 1, 0, 0, 0};
    assert_int_equal(dfd_metric_eer(s4, y4, N(s4), &eer, &thr, NULL), DFD_OK);
    assert_float_equal(eer, 0.25, 1e-12);
    /* |d| is .25 at both (.25,.5) [thr .85] and (.25,0) [thr .8]: the lower one. */
    assert_float_equal(thr, 0.8, 1e-12);
}

static void threshold_for_target_fpr(void **state) {
    (void)state;
    const double s[] = {0.1, 0.4, 0.35, 0.8};
    const int y[] = {0, 0, 1, 1};
    double t;
    assert_int_equal(dfd_metric_threshold_for_fpr(s, y, N(s), 0.0, &t, NULL), DFD_OK);
    assert_float_equal(t, 0.8, 1e-12); /* .4 would flag a real face */
    assert_int_equal(dfd_metric_threshold_for_fpr(s, y, N(s), 0.5, &t, NULL), DFD_OK);
    assert_float_equal(t, 0.35, 1e-12); /* .35 flags one real of two */
    assert_int_equal(dfd_metric_threshold_for_fpr(s, y, N(s), 1.5, &t, NULL), DFD_E_ARG);
}

static void confusion_reports_and_log_loss(void **state) {
    (void)state;
    const double s[] = {0.1, 0.4, 0.35, 0.8};
    const int y[] = {0, 0, 1, 1};
    dfd_metrics m;
    assert_int_equal(dfd_metrics_compute(s, y, N(s), 0.5, &m, NULL), DFD_OK);
    /* Only .8 is called fake: reals .1 .4 right, fake .35 missed, fake .8 caught. */
    assert_int_equal(m.cm.tn, 2);
    assert_int_equal(m.cm.fp, 0);
    assert_int_equal(m.cm.fn, 1);
    assert_int_equal(m.cm.tp, 1);
    assert_int_equal(m.n, 4);
    assert_int_equal(m.n_real, 2);
    assert_int_equal(m.n_fake, 2);
    assert_float_equal(m.accuracy, 0.75, 1e-12);
    assert_float_equal(m.cls[1].precision, 1.0, 1e-12);
    assert_float_equal(m.cls[1].recall, 0.5, 1e-12);
    assert_float_equal(m.cls[1].f1, 2.0 / 3.0, 1e-12);
    assert_float_equal(m.cls[0].precision, 2.0 / 3.0, 1e-12);
    assert_float_equal(m.cls[0].recall, 1.0, 1e-12);
    assert_float_equal(m.cls[0].f1, 0.8, 1e-12);
    assert_int_equal(m.cls[0].support, 2);
    assert_float_equal(m.balanced_accuracy, 0.75, 1e-12);
    assert_float_equal(m.auc, 0.75, 1e-12);
    assert_float_equal(m.eer, 0.5, 1e-12);
    double ll = -(log(0.9) + log(0.6) + log(0.35) + log(0.8)) / 4;
    assert_float_equal(m.loss, ll, 1e-12);
    /* A certain, wrong answer is clipped, not infinite. */
    const double hard[] = {0.0};
    const int one[] = {1};
    assert_float_equal(dfd_metric_log_loss(hard, one, 1), -log(1e-7), 1e-9);
    /* An unbalanced set: balanced accuracy is the mean of the recalls, not accuracy. */
    const double s2[] = {0.9, 0.8, 0.7, 0.6, 0.2};
    const int y2[] = {1, 1, 1, 1, 0};
    assert_int_equal(dfd_metrics_compute(s2, y2, N(s2), 0.5, &m, NULL), DFD_OK);
    assert_float_equal(m.accuracy, 1.0, 1e-12);
    assert_int_equal(dfd_metrics_compute(s2, y2, N(s2), 0.1, &m, NULL), DFD_OK);
    assert_float_equal(m.accuracy, 0.8, 1e-12);
    assert_float_equal(m.balanced_accuracy, 0.5, 1e-12);
    assert_true(isnan(m.cls[0].precision)); /* nothing called real: 0/0 */
    json_t *j = dfd_metrics_to_json(&m);
    assert_non_null(j);
    assert_true(json_is_null(json_object_get(json_object_get(json_object_get(j, "per_class"), "REAL"), "precision")));
    json_t *row1 = json_array_get(json_object_get(json_object_get(j, "confusion_matrix"), "matrix"), 1);
    assert_int_equal(json_integer_value(json_array_get(row1, 1)), 4); /* true FAKE, predicted FAKE */
    json_decref(j);
}

static void one_class_and_bad_input(void **state) {
    (void)state;
    const double s[] = {0.1, 0.4};
    const int y[] = {1, 1};
    double auc, eer;
    assert_int_equal(dfd_metric_auc(s, y, 2, &auc, NULL), DFD_OK);
    assert_true(isnan(auc));
    assert_int_equal(dfd_metric_eer(s, y, 2, &eer, NULL, NULL), DFD_OK);
    assert_true(isnan(eer));
    const int bad[] = {1, 2};
    dfd_error e;
    assert_int_equal(dfd_metric_auc(s, bad, 2, &auc, &e), DFD_E_ARG);
    assert_non_null(strstr(e.message, "label 2"));
    const double nan_s[] = {0.1, NAN};
    assert_int_equal(dfd_metric_auc(nan_s, y, 2, &auc, &e), DFD_E_ARG);
    assert_int_equal(dfd_metric_auc(NULL, NULL, 0, &auc, &e), DFD_OK);
    assert_true(isnan(auc));
}

static void auc_matches_brute_force_on_many_ties(void **state) {
    (void)state;
    enum { n = 500 };
    double s[n];
    int y[n];
    unsigned x = 12345;
    for (int i = 0; i < n; i++) {
        x = x * 1103515245u + 12345u;
        y[i] = (x >> 16) & 1;
        x = x * 1103515245u + 12345u;
        s[i] = ((x >> 16) % 20) / 20.0 + 0.1 * y[i]; /* 20-ish levels: many ties */
    }
    double pairs = 0, wins = 0;
    for (int i = 0; i < n; i++)
        for (int j = 0; j < n; j++)
            if (y[i] == 1 && y[j] == 0) {
                pairs++;
                wins += s[i] > s[j] ? 1 : s[i] == s[j] ? 0.5 : 0;
            }
    double auc;
    assert_int_equal(dfd_metric_auc(s, y, n, &auc, NULL), DFD_OK);
    assert_float_equal(auc, wins / pairs, 1e-12);
    dfd_roc_point *p;
    size_t k;
    assert_int_equal(dfd_metric_roc(s, y, n, &p, &k, NULL), DFD_OK);
    double area = 0;
    for (size_t i = 1; i < k; i++) area += (p[i].fpr - p[i - 1].fpr) * (p[i].tpr + p[i - 1].tpr) / 2;
    assert_float_equal(area, auc, 1e-12);
    free(p);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(auc_of_a_small_list),
        cmocka_unit_test(auc_counts_ties_as_one_half),
        cmocka_unit_test(roc_points_with_ties),
        cmocka_unit_test(eer_exact_and_interpolated),
        cmocka_unit_test(threshold_for_target_fpr),
        cmocka_unit_test(confusion_reports_and_log_loss),
        cmocka_unit_test(one_class_and_bad_input),
        cmocka_unit_test(auc_matches_brute_force_on_many_ties),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
