/* test_train_plot — the PNG plots are valid files of the stated size; the confusion
 * matrix puts the true label on rows and the prediction on columns (the darkest cell is
 * where the counts say); the ROC curve is drawn through its points. */
#include "testutil.h"

#include <cairo.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "train/train.h"

/* RGB of a pixel of a decoded PNG. */
static void pixel(cairo_surface_t *s, int x, int y, int rgb[3]) {
    const unsigned char *d = cairo_image_surface_get_data(s);
    int stride = cairo_image_surface_get_stride(s);
    uint32_t v;
    memcpy(&v, d + (size_t)y * stride + (size_t)x * 4, 4);
    rgb[0] = (v >> 16) & 255, rgb[1] = (v >> 8) & 255, rgb[2] = v & 255;
}

static cairo_surface_t *load(const char *path, int w, int h) {
    cairo_surface_t *s = cairo_image_surface_create_from_png(path);
    assert_int_equal(cairo_surface_status(s), CAIRO_STATUS_SUCCESS);
    assert_int_equal(cairo_image_surface_get_width(s), w);
    assert_int_equal(cairo_image_surface_get_height(s), h);
    cairo_surface_flush(s);
    return s;
}

static void confusion_rows_are_true_labels(void **state) {
    (void)state;
    char *dir = tu_mkdtemp(), *p = tu_join(dir, "cm.png");
    /* 98 of 100 reals called fake: the (true REAL, predicted FAKE) cell is nearly full;
     * (true REAL, predicted REAL) nearly empty; fakes split 10 / 90. */
    dfd_confusion cm = {.tn = 2, .fp = 98, .fn = 10, .tp = 90};
    assert_int_equal(dfd_plot_confusion(p, &cm, NULL, NULL), DFD_OK);
    cairo_surface_t *s = load(p, DFD_PLOT_CM_W, DFD_PLOT_CM_H);
    int lum[2][2];
    for (int r = 0; r < 2; r++)
        for (int c = 0; c < 2; c++) {
            int q[4], rgb[3];
            dfd_plot_confusion_cell(r, c, q);
            pixel(s, q[0] + 6, q[1] + 6, rgb); /* a corner: away from the text */
            lum[r][c] = rgb[0] + rgb[1] + rgb[2];
        }
    assert_true(lum[0][1] < lum[1][1]); /* 98% darker than 90% */
    assert_true(lum[1][1] < lum[1][0]); /* 90% darker than 10% */
    assert_true(lum[1][0] < lum[0][0]); /* 10% darker than 2% */
    assert_true(lum[0][0] > 3 * 240);   /* 2%: nearly white */
    cairo_surface_destroy(s);
    tu_rmtree(dir);
    free(p);
    free(dir);
}

static void roc_curve_goes_through_its_points(void **state) {
    (void)state;
    char *dir = tu_mkdtemp(), *p = tu_join(dir, "roc.png");
    dfd_roc_point pts[] = {{INFINITY, 0, 0}, {0.7, 0.5, 0.8}, {0.1, 1, 1}};
    assert_int_equal(dfd_plot_roc(p, pts, 3, 0.65, 0.35, NULL, NULL), DFD_OK);
    cairo_surface_t *s = load(p, 560, 520);
    /* The plot area is x 70..530, y 50..460: point (fpr .25, tpr .4) lies on the first
     * segment, drawn in blue; (fpr .25, tpr .8) lies on nothing and stays white. */
    int rgb[3];
    pixel(s, (int)lround(70 + 0.25 * 460), (int)lround(460 - 0.4 * 410), rgb);
    assert_true(rgb[2] > rgb[0] + 60);
    pixel(s, (int)lround(70 + 0.25 * 460 + 3), (int)lround(460 - 0.8 * 410 + 3), rgb);
    assert_true(rgb[0] > 200 && rgb[1] > 200 && rgb[2] > 200);
    cairo_surface_destroy(s);
    tu_rmtree(dir);
    free(p);
    free(dir);
}

static void history_plot_and_bad_path(void **state) {
    (void)state;
    char *dir = tu_mkdtemp(), *p = tu_join(dir, "history.png");
    dfd_history_row rows[4];
    for (int i = 0; i < 4; i++)
        rows[i] = (dfd_history_row){.epoch = i + 1, .stage = i < 2 ? 1 : 2, .lr = 1e-3, .train_loss = 0.7 - 0.1 * i,
                                    .train_acc = 0.5 + 0.1 * i, .train_auc = 0.55 + 0.1 * i, .val_loss = 0.69 - 0.05 * i,
                                    .val_acc = 0.5 + 0.05 * i, .val_auc = i == 1 ? NAN : 0.6 + 0.05 * i};
    assert_int_equal(dfd_plot_history(p, rows, 4, NULL), DFD_OK);
    cairo_surface_t *s = load(p, 1380, 440);
    cairo_surface_destroy(s);
    assert_int_equal(dfd_plot_history(p, rows, 1, NULL), DFD_OK); /* a single epoch */
    s = load(p, 1380, 440);
    cairo_surface_destroy(s);
    dfd_error e;
    char *bad = tu_join(dir, "missing-folder/x.png");
    assert_int_equal(dfd_plot_history(bad, rows, 4, &e), DFD_E_IO);
    free(bad);
    tu_rmtree(dir);
    free(p);
    free(dir);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(confusion_rows_are_true_labels),
        cmocka_unit_test(roc_curve_goes_through_its_points),
        cmocka_unit_test(history_plot_and_bad_path),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
