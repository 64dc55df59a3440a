/* plot_off.c — the plot functions of a dfd built without cairo (cmake -DDFD_WITH_PLOTS=OFF,
 * as the container image is: it serves, it does not train, and cairo's libraries would
 * take it over its size budget). Each says so; train and eval go on without the PNGs. */
#include "train/train.h"

static int no_plots(dfd_error *err) {
    return dfd_fail(err, DFD_E_UNSUPPORTED, "this dfd was built without plots (cmake -DDFD_WITH_PLOTS=ON)");
}

int dfd_plot_roc(const char *path, const dfd_roc_point *pts, size_t n, double auc, double eer, const char *title,
                 dfd_error *err) {
    (void)path, (void)pts, (void)n, (void)auc, (void)eer, (void)title;
    return no_plots(err);
}

void dfd_plot_confusion_cell(int row, int col, int rect[4]) {
    rect[0] = rect[1] = rect[2] = rect[3] = 0;
    (void)row, (void)col;
}

int dfd_plot_confusion(const char *path, const dfd_confusion *cm, const char *title, dfd_error *err) {
    (void)path, (void)cm, (void)title;
    return no_plots(err);
}

int dfd_plot_history(const char *path, const dfd_history_row *rows, int n, dfd_error *err) {
    (void)path, (void)rows, (void)n;
    return no_plots(err);
}

int dfd_plot_image_grid(const char *path, const dfd_image *imgs, const char *const *captions, int n, int cols,
                        int cell, const char *title, dfd_error *err) {
    (void)path, (void)imgs, (void)captions, (void)n, (void)cols, (void)cell, (void)title;
    return no_plots(err);
}
