/* plot.c — the PNG figures of training and evaluation, drawn with cairo: ROC curve,
 * confusion matrix and training history.
 *
 * The confusion matrix follows one stated convention — rows are the true label, columns
 * the prediction — and says so on its axes; the original system's published figure had
 * the two axis labels swapped, which made its errors read backwards. Files are written
 * through an in-memory PNG and dfd_write_file_atomic, so a reader never sees half a file. */
#include <cairo.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "train/train.h"

/* ---- Writing ---------------------------------------------------------------------- */

typedef struct membuf {
    unsigned char *p;
    size_t n, cap;
    int oom;
} membuf;

static cairo_status_t membuf_write(void *closure, const unsigned char *data, unsigned int len) {
    membuf *b = closure;
    if (b->n + len > b->cap) {
        size_t cap = b->cap ? b->cap : 65536;
        while (cap < b->n + len) cap *= 2;
        unsigned char *q = realloc(b->p, cap);
        if (!q) {
            b->oom = 1;
            return CAIRO_STATUS_NO_MEMORY;
        }
        b->p = q;
        b->cap = cap;
    }
    memcpy(b->p + b->n, data, len);
    b->n += len;
    return CAIRO_STATUS_SUCCESS;
}

static int save_png(cairo_surface_t *s, const char *path, dfd_error *err) {
    membuf b = {0};
    cairo_surface_flush(s);
    cairo_status_t st = cairo_surface_write_to_png_stream(s, membuf_write, &b);
    int rc;
    if (st != CAIRO_STATUS_SUCCESS)
        rc = dfd_fail(err, b.oom ? DFD_E_NOMEM : DFD_E_INTERNAL, "plot: cannot encode PNG for '%s': %s", path,
                      cairo_status_to_string(st));
    else rc = dfd_write_file_atomic(path, b.p, b.n, err);
    free(b.p);
    return rc;
}

/* A white canvas; NULL-safe cleanup in finish(). */
static int canvas(int w, int h, cairo_surface_t **s, cairo_t **cr, dfd_error *err) {
    *s = cairo_image_surface_create(CAIRO_FORMAT_RGB24, w, h);
    if (cairo_surface_status(*s) != CAIRO_STATUS_SUCCESS) {
        cairo_surface_destroy(*s);
        *s = NULL;
        return dfd_fail(err, DFD_E_NOMEM, "plot: cannot create a %dx%d canvas", w, h);
    }
    *cr = cairo_create(*s);
    cairo_set_source_rgb(*cr, 1, 1, 1);
    cairo_paint(*cr);
    cairo_select_font_face(*cr, "sans-serif", CAIRO_FONT_SLANT_NORMAL, CAIRO_FONT_WEIGHT_NORMAL);
    return DFD_OK;
}

static int finish(cairo_surface_t *s, cairo_t *cr, const char *path, dfd_error *err) {
    int rc = DFD_OK;
    if (cairo_status(cr) != CAIRO_STATUS_SUCCESS)
        rc = dfd_fail(err, DFD_E_INTERNAL, "plot: drawing '%s' failed: %s", path, cairo_status_to_string(cairo_status(cr)));
    else rc = save_png(s, path, err);
    cairo_destroy(cr);
    cairo_surface_destroy(s);
    return rc;
}

/* ---- Text helpers ------------------------------------------------------------------- */

enum { ALIGN_LEFT = 0, ALIGN_CENTER = 1, ALIGN_RIGHT = 2 };

/* Draws text with its baseline-centre (or left/right end) at (x, y), vertically centred. */
static void text_at(cairo_t *cr, double x, double y, double size, int align, const char *t) {
    cairo_text_extents_t e;
    cairo_set_font_size(cr, size);
    cairo_text_extents(cr, t, &e);
    double dx = align == ALIGN_CENTER ? -e.width / 2 - e.x_bearing : align == ALIGN_RIGHT ? -e.width - e.x_bearing : 0;
    double dy = -e.height / 2 - e.y_bearing;
    cairo_move_to(cr, x + dx, y + dy);
    cairo_show_text(cr, t);
}

/* Same, rotated a quarter turn counter-clockwise (a y-axis title). */
static void text_vertical(cairo_t *cr, double x, double y, double size, const char *t) {
    cairo_save(cr);
    cairo_translate(cr, x, y);
    cairo_rotate(cr, -M_PI / 2);
    text_at(cr, 0, 0, size, ALIGN_CENTER, t);
    cairo_restore(cr);
}

/* ---- Line charts ------------------------------------------------------------------- */

typedef struct series {
    const char *name;
    const double *x, *y; /* NaN y values break the line */
    int n;
    double r, g, b;
    int dashed, markers;
} series;

typedef struct axes {
    double x0, y0, w, h;           /* plot area in pixels */
    double xmin, xmax, ymin, ymax; /* data range */
} axes;

static double px(const axes *a, double x) { return a->x0 + (x - a->xmin) / (a->xmax - a->xmin) * a->w; }
static double py(const axes *a, double y) { return a->y0 + a->h - (y - a->ymin) / (a->ymax - a->ymin) * a->h; }

/* A "nice" tick step (1, 2 or 5 times a power of ten) for about `want` ticks. */
static double nice_step(double range, int want) {
    double raw = range / want, p = pow(10, floor(log10(raw))), m = raw / p;
    return (m < 1.5 ? 1 : m < 3.5 ? 2 : m < 7.5 ? 5 : 10) * p;
}

static void draw_axes(cairo_t *cr, const axes *a, const char *title, const char *xlabel, const char *ylabel,
                      int integer_x) {
    cairo_set_line_width(cr, 1);
    /* Grid and ticks. */
    double xs = integer_x ? fmax(1, ceil(nice_step(a->xmax - a->xmin, 6))) : nice_step(a->xmax - a->xmin, 5);
    double ys = nice_step(a->ymax - a->ymin, 5);
    char buf[32];
    for (double v = ceil(a->xmin / xs - 1e-9) * xs; v <= a->xmax + 1e-9 * xs; v += xs) {
        double X = px(a, v);
        cairo_set_source_rgb(cr, 0.9, 0.9, 0.9);
        cairo_move_to(cr, X, a->y0);
        cairo_line_to(cr, X, a->y0 + a->h);
        cairo_stroke(cr);
        cairo_set_source_rgb(cr, 0.2, 0.2, 0.2);
        snprintf(buf, sizeof buf, integer_x ? "%.0f" : "%.2g", fabs(v) < 1e-12 ? 0.0 : v);
        text_at(cr, X, a->y0 + a->h + 12, 11, ALIGN_CENTER, buf);
    }
    for (double v = ceil(a->ymin / ys - 1e-9) * ys; v <= a->ymax + 1e-9 * ys; v += ys) {
        double Y = py(a, v);
        cairo_set_source_rgb(cr, 0.9, 0.9, 0.9);
        cairo_move_to(cr, a->x0, Y);
        cairo_line_to(cr, a->x0 + a->w, Y);
        cairo_stroke(cr);
        cairo_set_source_rgb(cr, 0.2, 0.2, 0.2);
        snprintf(buf, sizeof buf, "%.3g", fabs(v) < 1e-12 ? 0.0 : v);
        text_at(cr, a->x0 - 6, Y, 11, ALIGN_RIGHT, buf);
    }
    cairo_set_source_rgb(cr, 0, 0, 0);
    cairo_rectangle(cr, a->x0, a->y0, a->w, a->h);
    cairo_stroke(cr);
    if (title) text_at(cr, a->x0 + a->w / 2, a->y0 - 16, 15, ALIGN_CENTER, title);
    if (xlabel) text_at(cr, a->x0 + a->w / 2, a->y0 + a->h + 32, 13, ALIGN_CENTER, xlabel);
    if (ylabel) text_vertical(cr, a->x0 - 46, a->y0 + a->h / 2, 13, ylabel);
}

static void draw_series(cairo_t *cr, const axes *a, const series *s) {
    cairo_save(cr);
    cairo_rectangle(cr, a->x0, a->y0, a->w, a->h);
    cairo_clip(cr);
    cairo_set_source_rgb(cr, s->r, s->g, s->b);
    cairo_set_line_width(cr, 2);
    if (s->dashed) {
        const double d[] = {6, 4};
        cairo_set_dash(cr, d, 2, 0);
    }
    int pen = 0;
    for (int i = 0; i < s->n; i++) {
        if (!isfinite(s->y[i]) || !isfinite(s->x[i])) {
            pen = 0;
            continue;
        }
        if (pen) cairo_line_to(cr, px(a, s->x[i]), py(a, s->y[i]));
        else cairo_move_to(cr, px(a, s->x[i]), py(a, s->y[i]));
        pen = 1;
    }
    cairo_stroke(cr);
    cairo_set_dash(cr, NULL, 0, 0);
    if (s->markers)
        for (int i = 0; i < s->n; i++)
            if (isfinite(s->y[i]) && isfinite(s->x[i])) {
                cairo_arc(cr, px(a, s->x[i]), py(a, s->y[i]), 3, 0, 2 * M_PI);
                cairo_fill(cr);
            }
    cairo_restore(cr);
}

/* Legend in the top-right (or bottom-right) corner of the plot area. */
static void draw_legend(cairo_t *cr, const axes *a, const series *s, int n, const char *const *extra, int n_extra,
                        int bottom) {
    int rows = n + n_extra;
    double h = rows * 18 + 8, w = 0;
    cairo_set_font_size(cr, 12);
    for (int i = 0; i < n + n_extra; i++) {
        cairo_text_extents_t e;
        cairo_text_extents(cr, i < n ? s[i].name : extra[i - n], &e);
        if (e.x_advance > w) w = e.x_advance;
    }
    w += 40;
    double x = a->x0 + a->w - w - 8, y = bottom ? a->y0 + a->h - h - 8 : a->y0 + 8;
    cairo_set_source_rgba(cr, 1, 1, 1, 0.85);
    cairo_rectangle(cr, x, y, w, h);
    cairo_fill_preserve(cr);
    cairo_set_source_rgb(cr, 0.6, 0.6, 0.6);
    cairo_set_line_width(cr, 1);
    cairo_stroke(cr);
    for (int i = 0; i < rows; i++) {
        double yy = y + 13 + i * 18;
        if (i < n) {
            cairo_set_source_rgb(cr, s[i].r, s[i].g, s[i].b);
            cairo_set_line_width(cr, 2);
            if (s[i].dashed) {
                const double d[] = {6, 4};
                cairo_set_dash(cr, d, 2, 0);
            }
            cairo_move_to(cr, x + 6, yy);
            cairo_line_to(cr, x + 28, yy);
            cairo_stroke(cr);
            cairo_set_dash(cr, NULL, 0, 0);
        }
        cairo_set_source_rgb(cr, 0, 0, 0);
        text_at(cr, x + 34, yy, 12, ALIGN_LEFT, i < n ? s[i].name : extra[i - n]);
    }
}

/* ---- ROC ------------------------------------------------------------------------------ */

int dfd_plot_roc(const char *path, const dfd_roc_point *pts, size_t n, double auc, double eer, const char *title,
                 dfd_error *err) {
    if (!path || (n && !pts)) return dfd_fail(err, DFD_E_ARG, "plot: no path or no ROC points");
    if (n > 10000000) return dfd_fail(err, DFD_E_LIMIT, "plot: %zu ROC points is too many", n);
    double *x = dfd_malloc_array(n ? n : 1, sizeof *x), *y = dfd_malloc_array(n ? n : 1, sizeof *y);
    if (!x || !y) {
        free(x);
        free(y);
        return dfd_fail(err, DFD_E_NOMEM, "plot: no memory for %zu ROC points", n);
    }
    for (size_t i = 0; i < n; i++) x[i] = pts[i].fpr, y[i] = pts[i].tpr;
    cairo_surface_t *s;
    cairo_t *cr;
    int rc = canvas(560, 520, &s, &cr, err);
    if (rc) {
        free(x);
        free(y);
        return rc;
    }
    axes a = {70, 50, 460, 410, 0, 1, 0, 1};
    draw_axes(cr, &a, title ? title : "ROC curve", "False positive rate (real called fake)",
              "True positive rate (fake caught)", 0);
    const double dx[] = {0, 1}, dy[] = {0, 1};
    series chance = {"chance", dx, dy, 2, 0.5, 0.5, 0.5, 1, 0};
    series roc = {"ROC", x, y, (int)n, 0.12, 0.35, 0.75, 0, 0};
    draw_series(cr, &a, &chance);
    draw_series(cr, &a, &roc);
    char l1[64], l2[64];
    snprintf(l1, sizeof l1, isfinite(auc) ? "AUC = %.4f" : "AUC = n/a", auc);
    snprintf(l2, sizeof l2, isfinite(eer) ? "EER = %.4f" : "EER = n/a", eer);
    const char *extra[] = {l1, l2};
    if (isfinite(eer)) { /* the EER point lies on the anti-diagonal FPR = 1 - TPR */
        cairo_set_source_rgb(cr, 0.85, 0.2, 0.1);
        cairo_arc(cr, px(&a, eer), py(&a, 1 - eer), 5, 0, 2 * M_PI);
        cairo_fill(cr);
    }
    series both[] = {roc, chance};
    draw_legend(cr, &a, both, 2, extra, 2, 1);
    free(x);
    free(y);
    return finish(s, cr, path, err);
}

/* ---- Confusion matrix ---------------------------------------------------------------- */

enum { CM_X0 = 170, CM_Y0 = 90, CM_CELL = 170 };

void dfd_plot_confusion_cell(int row, int col, int rect[4]) {
    rect[0] = CM_X0 + col * CM_CELL;
    rect[1] = CM_Y0 + row * CM_CELL;
    rect[2] = CM_CELL;
    rect[3] = CM_CELL;
}

int dfd_plot_confusion(const char *path, const dfd_confusion *cm, const char *title, dfd_error *err) {
    if (!path || !cm) return dfd_fail(err, DFD_E_ARG, "plot: no path or no confusion matrix");
    cairo_surface_t *s;
    cairo_t *cr;
    int rc = canvas(DFD_PLOT_CM_W, DFD_PLOT_CM_H, &s, &cr, err);
    if (rc) return rc;
    const long cell[2][2] = {{cm->tn, cm->fp}, {cm->fn, cm->tp}};
    const char *names[2] = {"REAL", "FAKE"};
    char buf[64];
    for (int r = 0; r < 2; r++) {
        long row_total = cell[r][0] + cell[r][1];
        for (int c = 0; c < 2; c++) {
            int q[4];
            dfd_plot_confusion_cell(r, c, q);
            double share = row_total ? (double)cell[r][c] / row_total : 0;
            /* White to dark blue by share of the row (the per-class rate). */
            cairo_set_source_rgb(cr, 1 - 0.85 * share, 1 - 0.65 * share, 1 - 0.25 * share);
            cairo_rectangle(cr, q[0], q[1], q[2], q[3]);
            cairo_fill(cr);
            double ink = share > 0.5 ? 1 : 0;
            cairo_set_source_rgb(cr, ink, ink, ink);
            snprintf(buf, sizeof buf, "%ld", cell[r][c]);
            text_at(cr, q[0] + q[2] / 2.0, q[1] + q[3] / 2.0 - 10, 24, ALIGN_CENTER, buf);
            snprintf(buf, sizeof buf, "%.1f%% of row", 100 * share);
            text_at(cr, q[0] + q[2] / 2.0, q[1] + q[3] / 2.0 + 20, 12, ALIGN_CENTER, buf);
        }
    }
    cairo_set_source_rgb(cr, 0, 0, 0);
    cairo_set_line_width(cr, 1);
    cairo_rectangle(cr, CM_X0, CM_Y0, 2 * CM_CELL, 2 * CM_CELL);
    cairo_move_to(cr, CM_X0 + CM_CELL, CM_Y0);
    cairo_line_to(cr, CM_X0 + CM_CELL, CM_Y0 + 2 * CM_CELL);
    cairo_move_to(cr, CM_X0, CM_Y0 + CM_CELL);
    cairo_line_to(cr, CM_X0 + 2 * CM_CELL, CM_Y0 + CM_CELL);
    cairo_stroke(cr);
    for (int i = 0; i < 2; i++) {
        /* Column names above the matrix (predicted), row names to its left (true). */
        text_at(cr, CM_X0 + (i + 0.5) * CM_CELL, CM_Y0 - 14, 14, ALIGN_CENTER, names[i]);
        text_at(cr, CM_X0 - 10, CM_Y0 + (i + 0.5) * CM_CELL, 14, ALIGN_RIGHT, names[i]);
    }
    text_at(cr, CM_X0 + CM_CELL, CM_Y0 - 40, 14, ALIGN_CENTER, "Predicted label");
    text_vertical(cr, CM_X0 - 80, CM_Y0 + CM_CELL, 14, "True label");
    text_at(cr, DFD_PLOT_CM_W / 2.0, 22, 16, ALIGN_CENTER, title ? title : "Confusion matrix");
    long n = cm->tn + cm->fp + cm->fn + cm->tp;
    snprintf(buf, sizeof buf, "n = %ld, accuracy = %.2f%%", n, n ? 100.0 * (cm->tn + cm->tp) / n : 0.0);
    text_at(cr, CM_X0 + CM_CELL, CM_Y0 + 2 * CM_CELL + 25, 12, ALIGN_CENTER, buf);
    return finish(s, cr, path, err);
}

/* ---- Training history ------------------------------------------------------------------ */

static void range_of(const double *v, int n, double *lo, double *hi) {
    for (int i = 0; i < n; i++)
        if (isfinite(v[i])) {
            if (v[i] < *lo) *lo = v[i];
            if (v[i] > *hi) *hi = v[i];
        }
}

int dfd_plot_history(const char *path, const dfd_history_row *rows, int n, dfd_error *err) {
    if (!path || n < 0 || (n && !rows)) return dfd_fail(err, DFD_E_ARG, "plot: no path or no history");
    double *buf = dfd_malloc_array((size_t)(n ? n : 1) * 7, sizeof *buf);
    if (!buf) return dfd_fail(err, DFD_E_NOMEM, "plot: no memory for %d history rows", n);
    double *ep = buf, *tl = buf + n, *vl = buf + 2 * n, *ta = buf + 3 * n, *va = buf + 4 * n, *tu = buf + 5 * n,
           *vu = buf + 6 * n;
    for (int i = 0; i < n; i++) {
        ep[i] = rows[i].epoch;
        tl[i] = rows[i].train_loss, vl[i] = rows[i].val_loss;
        ta[i] = rows[i].train_acc, va[i] = rows[i].val_acc;
        tu[i] = rows[i].train_auc, vu[i] = rows[i].val_auc;
    }
    cairo_surface_t *s;
    cairo_t *cr;
    int rc = canvas(1380, 440, &s, &cr, err);
    if (rc) {
        free(buf);
        return rc;
    }
    double xmin = n ? ep[0] : 0, xmax = n ? ep[n - 1] : 1;
    if (xmax <= xmin) xmin -= 0.5, xmax += 0.5;
    const char *titles[3] = {"Loss", "Accuracy", "AUC"};
    const double *tr[3] = {tl, ta, tu}, *va_[3] = {vl, va, vu};
    for (int p = 0; p < 3; p++) {
        double lo = INFINITY, hi = -INFINITY;
        range_of(tr[p], n, &lo, &hi);
        range_of(va_[p], n, &lo, &hi);
        if (!isfinite(lo)) lo = 0, hi = 1;
        if (p > 0) { /* rates: keep the scale honest, at most [0, 1] */
            lo = fmax(0, fmin(lo, 0.5)), hi = 1;
        } else {
            double pad = (hi - lo) * 0.1 + 1e-3;
            lo = fmax(0, lo - pad), hi += pad;
        }
        axes a = {80 + p * 450, 50, 370, 330, xmin, xmax, lo, hi};
        draw_axes(cr, &a, titles[p], "Epoch", titles[p], 1);
        series sv[2] = {{"train", ep, tr[p], n, 0.12, 0.35, 0.75, 0, 1}, {"validation", ep, va_[p], n, 0.9, 0.45, 0.1, 0, 1}};
        draw_series(cr, &a, &sv[0]);
        draw_series(cr, &a, &sv[1]);
        /* Where stage 2 (fine-tuning) starts. */
        for (int i = 1; i < n; i++)
            if (rows[i].stage != rows[i - 1].stage) {
                double X = px(&a, (ep[i] + ep[i - 1]) / 2);
                const double d[] = {3, 3};
                cairo_set_dash(cr, d, 2, 0);
                cairo_set_source_rgb(cr, 0.4, 0.4, 0.4);
                cairo_set_line_width(cr, 1);
                cairo_move_to(cr, X, a.y0);
                cairo_line_to(cr, X, a.y0 + a.h);
                cairo_stroke(cr);
                cairo_set_dash(cr, NULL, 0, 0);
            }
        draw_legend(cr, &a, sv, 2, NULL, 0, p == 0 ? 0 : 1);
    }
    free(buf);
    return finish(s, cr, path, err);
}

/* ---- Image grids (augmentation previews) --------------------------------------------------- */

int dfd_plot_image_grid(const char *path, const dfd_image *imgs, const char *const *captions, int n, int cols,
                        int cell, const char *title, dfd_error *err) {
    if (!path || n < 1 || !imgs || cols < 1 || cell < 16 || cell > 1024)
        return dfd_fail(err, DFD_E_ARG, "plot: bad image grid (%d images, %d columns, cell %d)", n, cols, cell);
    int rows = (n + cols - 1) / cols, pad = 8, cap = 18, top = title ? 34 : 4;
    int W = cols * (cell + pad) + pad, H = top + rows * (cell + cap + pad) + pad;
    cairo_surface_t *s;
    cairo_t *cr;
    int rc = canvas(W, H, &s, &cr, err);
    if (rc) return rc;
    if (title) {
        cairo_set_source_rgb(cr, 0, 0, 0);
        text_at(cr, W / 2.0, 18, 15, ALIGN_CENTER, title);
    }
    for (int i = 0; i < n && !rc; i++) {
        const dfd_image *im = &imgs[i];
        if (!im->rgb || im->w < 1 || im->h < 1) continue;
        cairo_surface_t *is = cairo_image_surface_create(CAIRO_FORMAT_RGB24, im->w, im->h);
        if (cairo_surface_status(is) != CAIRO_STATUS_SUCCESS) {
            cairo_surface_destroy(is);
            rc = dfd_fail(err, DFD_E_NOMEM, "plot: no memory for a %dx%d image", im->w, im->h);
            break;
        }
        cairo_surface_flush(is);
        unsigned char *d = cairo_image_surface_get_data(is);
        int stride = cairo_image_surface_get_stride(is);
        for (int y = 0; y < im->h; y++)
            for (int x = 0; x < im->w; x++) {
                const uint8_t *p = im->rgb + ((size_t)y * im->w + x) * 3;
                uint32_t v = (uint32_t)p[0] << 16 | (uint32_t)p[1] << 8 | p[2];
                memcpy(d + (size_t)y * stride + (size_t)x * 4, &v, 4);
            }
        cairo_surface_mark_dirty(is);
        int r = i / cols, c = i % cols;
        double x0 = pad + c * (cell + pad), y0 = top + r * (cell + cap + pad);
        double sc = (double)cell / (im->w > im->h ? im->w : im->h);
        cairo_save(cr);
        cairo_translate(cr, x0, y0);
        cairo_scale(cr, sc, sc);
        cairo_set_source_surface(cr, is, 0, 0);
        cairo_pattern_set_filter(cairo_get_source(cr), CAIRO_FILTER_GOOD);
        cairo_paint(cr);
        cairo_restore(cr);
        cairo_surface_destroy(is);
        if (captions && captions[i]) {
            cairo_set_source_rgb(cr, 0, 0, 0);
            text_at(cr, x0 + cell / 2.0, y0 + cell + cap / 2.0 + 1, 11, ALIGN_CENTER, captions[i]);
        }
    }
    if (rc) {
        cairo_destroy(cr);
        cairo_surface_destroy(s);
        return rc;
    }
    return finish(s, cr, path, err);
}
