/* image.c — the dfd_image pixel buffer and its geometry: orientation, resize, crop, flip. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "media/media.h"

int dfd_image_alloc(dfd_image *img, int w, int h, dfd_error *err) {
    memset(img, 0, sizeof *img);
    size_t n;
    if (w < 1 || h < 1) return dfd_fail(err, DFD_E_ARG, "image size %dx%d is not positive", w, h);
    if (dfd_mul3_size((size_t)w, (size_t)h, 3, &n)) return dfd_fail(err, DFD_E_LIMIT, "image size %dx%d overflows", w, h);
    img->rgb = malloc(n);
    if (!img->rgb) return dfd_fail(err, DFD_E_NOMEM, "cannot allocate a %dx%d image", w, h);
    img->w = w;
    img->h = h;
    return DFD_OK;
}

void dfd_image_free(dfd_image *img) {
    if (!img) return;
    free(img->rgb);
    memset(img, 0, sizeof *img);
}

int dfd_image_copy(const dfd_image *src, dfd_image *dst, dfd_error *err) {
    int rc = dfd_image_alloc(dst, src->w, src->h, err);
    if (rc) return rc;
    memcpy(dst->rgb, src->rgb, (size_t)src->w * (size_t)src->h * 3);
    return DFD_OK;
}

int dfd_media_check_pixels(const char *what, int w, int h, const dfd_limits *limits, dfd_error *err) {
    dfd_limits def;
    if (!limits) {
        dfd_limits_default(&def);
        limits = &def;
    }
    if (w < 1 || h < 1) return dfd_fail(err, DFD_E_CORRUPT, "%s has an invalid size %dx%d", what, w, h);
    uint64_t px = (uint64_t)w * (uint64_t)h, max = limits->max_image_pixels;
    if (max && px > max)
        return dfd_fail(err, DFD_E_LIMIT, "%s is %dx%d, over the %g MP limit", what, w, h, (double)max / 1e6);
    /* Called with the header's size, before any pixel is decoded: a 1 x 60 000 000 PNG is
     * under the pixel limit, compresses to a few hundred KB and still costs seconds and
     * gigabytes to decode and scale, for a picture no face fits in. */
    int longer = w > h ? w : h, shorter = w > h ? h : w;
    if (limits->max_image_side > 0 && longer > limits->max_image_side)
        return dfd_fail(err, DFD_E_LIMIT, "%s is %dx%d, over the limit of %d pixels a side", what, w, h,
                        limits->max_image_side);
    if (limits->max_image_aspect > 0 && (double)longer > limits->max_image_aspect * (double)shorter)
        return dfd_fail(err, DFD_E_LIMIT, "%s is %dx%d, more elongated than the limit of 1:%g", what, w, h,
                        limits->max_image_aspect);
    return DFD_OK;
}

int dfd_image_orient(const dfd_image *src, int o, dfd_image *dst, dfd_error *err) {
    if (o < 1 || o > 8) return dfd_fail(err, DFD_E_ARG, "orientation %d is not in 1..8", o);
    int W = src->w, H = src->h, swap = o >= 5;
    int rc = dfd_image_alloc(dst, swap ? H : W, swap ? W : H, err);
    if (rc) return rc;
    for (int dy = 0; dy < dst->h; dy++) {
        uint8_t *d = dst->rgb + (size_t)dy * dst->w * 3;
        for (int dx = 0; dx < dst->w; dx++, d += 3) {
            int sx, sy;
            switch (o) {
            case 1: sx = dx; sy = dy; break;
            case 2: sx = W - 1 - dx; sy = dy; break;
            case 3: sx = W - 1 - dx; sy = H - 1 - dy; break;
            case 4: sx = dx; sy = H - 1 - dy; break;
            case 5: sx = dy; sy = dx; break;
            case 6: sx = dy; sy = H - 1 - dx; break;
            case 7: sx = W - 1 - dy; sy = H - 1 - dx; break;
            default: sx = W - 1 - dy; sy = dx; break;
            }
            memcpy(d, src->rgb + ((size_t)sy * W + sx) * 3, 3);
        }
    }
    return DFD_OK;
}

/* Resampling along one axis as a sparse matrix: output i = sum over k < n[i] of
 * wt[i*taps + k] * input[first[i] + k]. */
typedef struct {
    int taps;
    int *first, *n;
    float *wt;
} axis_weights;

static void axis_free(axis_weights *a) {
    free(a->first);
    free(a->n);
    free(a->wt);
}

static int axis_build(int src, int dst, axis_weights *a) {
    /* Shrinking averages the source interval each output pixel covers; growing (and
     * equal sizes, where it is the identity) interpolates between pixel centres. */
    double scale = (double)src / dst;
    a->taps = src > dst ? (int)ceil(scale) + 1 : 2;
    a->first = malloc(sizeof(int) * (size_t)dst);
    a->n = malloc(sizeof(int) * (size_t)dst);
    a->wt = dfd_malloc_array((size_t)dst * (size_t)a->taps, sizeof(float));
    if (!a->first || !a->n || !a->wt) return -1;
    for (int i = 0; i < dst; i++) {
        float *w = a->wt + (size_t)i * a->taps;
        if (src > dst) {
            double lo = i * scale, hi = (i + 1) * scale;
            int j0 = (int)floor(lo), j1 = (int)ceil(hi);
            if (j1 > src) j1 = src;
            a->first[i] = j0;
            a->n[i] = j1 - j0;
            for (int j = j0; j < j1; j++) {
                double o = fmin(hi, j + 1.0) - fmax(lo, (double)j);
                w[j - j0] = (float)(o > 0 ? o / scale : 0);
            }
        } else {
            double x = (i + 0.5) * scale - 0.5;
            if (x < 0) x = 0;
            if (x > src - 1) x = src - 1;
            int j = (int)floor(x);
            double f = x - j;
            a->first[i] = j;
            a->n[i] = j + 1 < src ? 2 : 1;
            w[0] = (float)(1 - f);
            w[1] = (float)f;
        }
    }
    return 0;
}

static uint8_t to_u8(float v) { return v <= 0 ? 0 : v >= 255 ? 255 : (uint8_t)lrintf(v); }

int dfd_image_resize(const dfd_image *src, int w, int h, dfd_image *dst, dfd_error *err) {
    memset(dst, 0, sizeof *dst);
    if (!src || !src->rgb || w < 1 || h < 1) return dfd_fail(err, DFD_E_ARG, "cannot resize to %dx%d", w, h);
    axis_weights ax = {0}, ay = {0};
    float *tmp = NULL;
    size_t tn;
    int rc = DFD_OK;
    if (dfd_mul3_size((size_t)src->h, (size_t)w, 3, &tn) || axis_build(src->w, w, &ax) || axis_build(src->h, h, &ay) ||
        !(tmp = dfd_malloc_array(tn, sizeof(float)))) {
        rc = dfd_fail(err, DFD_E_NOMEM, "cannot allocate to resize %dx%d to %dx%d", src->w, src->h, w, h);
        goto done;
    }
    if ((rc = dfd_image_alloc(dst, w, h, err))) goto done;
    for (int y = 0; y < src->h; y++) {
        const uint8_t *s = src->rgb + (size_t)y * src->w * 3;
        float *t = tmp + (size_t)y * w * 3;
        for (int x = 0; x < w; x++) {
            const float *wt = ax.wt + (size_t)x * ax.taps;
            const uint8_t *p = s + (size_t)ax.first[x] * 3;
            float r = 0, g = 0, b = 0;
            for (int k = 0; k < ax.n[x]; k++, p += 3) {
                r += wt[k] * p[0];
                g += wt[k] * p[1];
                b += wt[k] * p[2];
            }
            t[3 * x] = r;
            t[3 * x + 1] = g;
            t[3 * x + 2] = b;
        }
    }
    size_t row = (size_t)w * 3;
    for (int y = 0; y < h; y++) {
        const float *wt = ay.wt + (size_t)y * ay.taps;
        uint8_t *d = dst->rgb + (size_t)y * row;
        for (size_t i = 0; i < row; i++) {
            const float *t = tmp + (size_t)ay.first[y] * row + i;
            float v = 0;
            for (int k = 0; k < ay.n[y]; k++, t += row) v += wt[k] * *t;
            d[i] = to_u8(v);
        }
    }
done:
    axis_free(&ax);
    axis_free(&ay);
    free(tmp);
    return rc;
}

int dfd_image_crop(const dfd_image *src, int x, int y, int w, int h, dfd_border border, const uint8_t fill[3],
                   dfd_image *dst, dfd_error *err) {
    memset(dst, 0, sizeof *dst);
    if (!src || !src->rgb || w < 1 || h < 1) return dfd_fail(err, DFD_E_ARG, "cannot crop a %dx%d rectangle", w, h);
    if (border != DFD_BORDER_FILL && border != DFD_BORDER_REPLICATE)
        return dfd_fail(err, DFD_E_ARG, "unknown border mode %d", (int)border);
    int rc = dfd_image_alloc(dst, w, h, err);
    if (rc) return rc;
    static const uint8_t black[3] = {0, 0, 0};
    if (!fill) fill = black;
    /* Columns [in0, in1) of the crop fall inside the source; 64-bit maths because x + w
     * may overflow int for rectangles far outside. */
    int64_t lo = -(int64_t)x, hi = (int64_t)src->w - x;
    int in0 = (int)(lo < 0 ? 0 : lo > w ? w : lo), in1 = (int)(hi < 0 ? 0 : hi > w ? w : hi);
    for (int dy = 0; dy < h; dy++) {
        uint8_t *d = dst->rgb + (size_t)dy * w * 3;
        int64_t sy64 = (int64_t)y + dy;
        int outside_row = sy64 < 0 || sy64 >= src->h;
        if (outside_row && border == DFD_BORDER_FILL) {
            for (int dx = 0; dx < w; dx++) memcpy(d + 3 * dx, fill, 3);
            continue;
        }
        int sy = (int)(sy64 < 0 ? 0 : sy64 >= src->h ? src->h - 1 : sy64);
        const uint8_t *s = src->rgb + (size_t)sy * src->w * 3;
        for (int dx = 0; dx < in0; dx++) memcpy(d + 3 * dx, border == DFD_BORDER_FILL ? fill : s, 3);
        if (in1 > in0) memcpy(d + 3 * (size_t)in0, s + 3 * (size_t)((int64_t)x + in0), 3 * (size_t)(in1 - in0));
        const uint8_t *last = s + 3 * (size_t)(src->w - 1);
        for (int dx = in1; dx < w; dx++) {
            const uint8_t *p = border == DFD_BORDER_FILL ? fill : (int64_t)x + dx < 0 ? s : last;
            memcpy(d + 3 * dx, p, 3);
        }
    }
    return DFD_OK;
}

void dfd_image_flip_h(dfd_image *img) {
    if (!img || !img->rgb) return;
    for (int y = 0; y < img->h; y++) {
        uint8_t *l = img->rgb + (size_t)y * img->w * 3, *r = l + (size_t)(img->w - 1) * 3;
        for (; l < r; l += 3, r -= 3)
            for (int c = 0; c < 3; c++) {
                uint8_t t = l[c];
                l[c] = r[c];
                r[c] = t;
            }
    }
}
