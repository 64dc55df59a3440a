/* augment.c — on-the-fly augmentation of face crops for training, and self-blended fakes.
 *
 * A deepfake detector learns whatever separates its two classes most cheaply. In DFDC and
 * Celeb-DF that includes compression level, resolution, colour cast and pose, none of
 * which says anything about a face swap; randomising them on both classes takes those
 * shortcuts away. Self-blended images (dfd_sbi) add fakes made from real faces alone, so
 * the one cue left to learn is the blending itself.
 *
 * All randomness comes from the caller's nn_rng, so a seeded loader gives the same
 * samples on every run. Images here are small (a crop at the model's input size), so the
 * transforms are written plainly, in float per pixel. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "train/train.h"

static float uni(nn_rng *r, float lo, float hi) { return lo + (hi - lo) * nn_rng_uniform(r); }
static int chance(nn_rng *r, float p) { return p > 0 && nn_rng_uniform(r) < p; }
static uint8_t clamp8(float v) { return v <= 0 ? 0 : v >= 255 ? 255 : (uint8_t)lrintf(v); }

void dfd_augment_opts_none(dfd_augment_opts *o) {
    memset(o, 0, sizeof *o);
    o->jpeg_qmin = 30;
    o->jpeg_qmax = 95;
}

void dfd_augment_opts_default(dfd_augment_opts *o) {
    dfd_augment_opts_none(o);
    o->flip = 0.5f;
    o->affine = 0.5f, o->rotate = 10, o->shift = 0.05f, o->scale = 0.1f;
    o->color = 0.5f, o->brightness = 0.2f, o->contrast = 0.2f, o->saturation = 0.2f, o->hue = 5;
    o->blur = 0.1f, o->blur_sigma = 1.0f;
    o->noise = 0.1f, o->noise_std = 5;
    o->downscale = 0.2f, o->downscale_min = 0.4f;
    o->jpeg = 0.5f;
    o->cutout = 0.1f, o->cutout_size = 0.3f;
}

/* ---- Single transforms ------------------------------------------------------------------- */

/* Bilinear sample with edges replicated. */
static void sample(const dfd_image *im, float x, float y, float out[3]) {
    float fx = floorf(x), fy = floorf(y);
    float ax = x - fx, ay = y - fy;
    int x0 = (int)fx, y0 = (int)fy, x1 = x0 + 1, y1 = y0 + 1;
    x0 = x0 < 0 ? 0 : x0 >= im->w ? im->w - 1 : x0;
    x1 = x1 < 0 ? 0 : x1 >= im->w ? im->w - 1 : x1;
    y0 = y0 < 0 ? 0 : y0 >= im->h ? im->h - 1 : y0;
    y1 = y1 < 0 ? 0 : y1 >= im->h ? im->h - 1 : y1;
    const uint8_t *p00 = im->rgb + ((size_t)y0 * im->w + x0) * 3, *p01 = im->rgb + ((size_t)y0 * im->w + x1) * 3,
                  *p10 = im->rgb + ((size_t)y1 * im->w + x0) * 3, *p11 = im->rgb + ((size_t)y1 * im->w + x1) * 3;
    for (int c = 0; c < 3; c++)
        out[c] = (1 - ay) * ((1 - ax) * p00[c] + ax * p01[c]) + ay * ((1 - ax) * p10[c] + ax * p11[c]);
}

int dfd_aug_affine(dfd_image *img, float deg, float dx, float dy, float scale, dfd_error *err) {
    if (!(scale > 0.01f)) return dfd_fail(err, DFD_E_ARG, "augment: scale %g is not positive", scale);
    dfd_image src;
    int rc = dfd_image_copy(img, &src, err);
    if (rc) return rc;
    /* Output pixel p comes from q = R(-a) (p - c - d) / s + c, pixel centres at +0.5. */
    float a = deg * (float)M_PI / 180, ca = cosf(a), sa = sinf(a);
    float cx = img->w / 2.0f, cy = img->h / 2.0f, tx = dx * img->w, ty = dy * img->h;
    for (int y = 0; y < img->h; y++)
        for (int x = 0; x < img->w; x++) {
            float px = x + 0.5f - cx - tx, py = y + 0.5f - cy - ty;
            float qx = (ca * px + sa * py) / scale + cx - 0.5f, qy = (-sa * px + ca * py) / scale + cy - 0.5f;
            float v[3];
            sample(&src, qx, qy, v);
            uint8_t *d = img->rgb + ((size_t)y * img->w + x) * 3;
            for (int c = 0; c < 3; c++) d[c] = clamp8(v[c]);
        }
    dfd_image_free(&src);
    return DFD_OK;
}

void dfd_aug_color(dfd_image *img, float brightness, float contrast, float saturation, float hue_deg,
                   const float shift[3]) {
    size_t n = (size_t)img->w * img->h;
    double mean = 0;
    for (size_t i = 0; i < n; i++) {
        const uint8_t *p = img->rgb + i * 3;
        mean += 0.299 * p[0] + 0.587 * p[1] + 0.114 * p[2];
    }
    mean /= (double)(n ? n : 1);
    /* Hue: a rotation about the grey axis (1,1,1)/sqrt(3), which keeps greys grey. */
    float a = hue_deg * (float)M_PI / 180, c = cosf(a), s = sinf(a), k = (1 - c) / 3, q = s / sqrtf(3.0f);
    const float H[3][3] = {{c + k, k - q, k + q}, {k + q, c + k, k - q}, {k - q, k + q, c + k}};
    for (size_t i = 0; i < n; i++) {
        uint8_t *p = img->rgb + i * 3;
        float v[3] = {p[0], p[1], p[2]}, w[3];
        for (int r = 0; r < 3; r++) w[r] = H[r][0] * v[0] + H[r][1] * v[1] + H[r][2] * v[2];
        float g = 0.299f * w[0] + 0.587f * w[1] + 0.114f * w[2];
        for (int r = 0; r < 3; r++) {
            float x = g + (w[r] - g) * (1 + saturation);
            x *= 1 + brightness;
            x = (x - (float)mean) * (1 + contrast) + (float)mean;
            if (shift) x += shift[r];
            p[r] = clamp8(x);
        }
    }
}

/* Separable Gaussian blur of an image with c channels stored as floats, edges replicated;
 * the kernel is cut at 3 sigma, so nothing spreads further than that. */
static int blur_f(float *v, int w, int h, int ch, float sigma, dfd_error *err) {
    if (!(sigma > 0.05f)) return DFD_OK;
    int rad = (int)ceilf(3 * sigma);
    if (rad > 64) rad = 64;
    float k[129], sum = 0;
    for (int i = -rad; i <= rad; i++) sum += k[i + rad] = expf(-(float)(i * i) / (2 * sigma * sigma));
    for (int i = 0; i <= 2 * rad; i++) k[i] /= sum;
    float *t = dfd_malloc_array((size_t)w * h * ch, sizeof *t);
    if (!t) return dfd_fail(err, DFD_E_NOMEM, "augment: no memory to blur %dx%d", w, h);
    for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++)
            for (int c = 0; c < ch; c++) {
                float a = 0;
                for (int i = -rad; i <= rad; i++) {
                    int xx = x + i < 0 ? 0 : x + i >= w ? w - 1 : x + i;
                    a += k[i + rad] * v[((size_t)y * w + xx) * ch + c];
                }
                t[((size_t)y * w + x) * ch + c] = a;
            }
    for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++)
            for (int c = 0; c < ch; c++) {
                float a = 0;
                for (int i = -rad; i <= rad; i++) {
                    int yy = y + i < 0 ? 0 : y + i >= h ? h - 1 : y + i;
                    a += k[i + rad] * t[((size_t)yy * w + x) * ch + c];
                }
                v[((size_t)y * w + x) * ch + c] = a;
            }
    free(t);
    return DFD_OK;
}

/* Blurs (amount 0) or sharpens by unsharp masking (amount > 0: v + amount (v - blur v)). */
static int blur_or_sharpen(dfd_image *img, float sigma, float amount, dfd_error *err) {
    size_t n = (size_t)img->w * img->h * 3;
    float *v = dfd_malloc_array(n, sizeof *v);
    if (!v) return dfd_fail(err, DFD_E_NOMEM, "augment: no memory to blur %dx%d", img->w, img->h);
    for (size_t i = 0; i < n; i++) v[i] = img->rgb[i];
    int rc = blur_f(v, img->w, img->h, 3, sigma, err);
    if (!rc)
        for (size_t i = 0; i < n; i++)
            img->rgb[i] = clamp8(amount > 0 ? img->rgb[i] + amount * (img->rgb[i] - v[i]) : v[i]);
    free(v);
    return rc;
}

int dfd_aug_blur(dfd_image *img, float sigma, dfd_error *err) { return blur_or_sharpen(img, sigma, 0, err); }

int dfd_aug_jpeg(dfd_image *img, int quality, dfd_error *err) {
    uint8_t *data;
    size_t len;
    int rc = dfd_jpeg_encode(img, quality, &data, &len, err);
    if (rc) return rc;
    dfd_image out;
    rc = dfd_image_decode(data, len, NULL, &out, NULL, err);
    free(data);
    if (rc) return rc;
    if (out.w != img->w || out.h != img->h) {
        dfd_image_free(&out);
        return dfd_fail(err, DFD_E_INTERNAL, "augment: JPEG round trip changed the size");
    }
    dfd_image_free(img);
    *img = out;
    return DFD_OK;
}

int dfd_aug_downscale(dfd_image *img, float factor, dfd_error *err) {
    int w = (int)lrintf(img->w * factor), h = (int)lrintf(img->h * factor);
    if (w < 1) w = 1;
    if (h < 1) h = 1;
    if (w >= img->w && h >= img->h) return DFD_OK;
    dfd_image small, big;
    int rc = dfd_image_resize(img, w, h, &small, err);
    if (rc) return rc;
    rc = dfd_image_resize(&small, img->w, img->h, &big, err);
    dfd_image_free(&small);
    if (rc) return rc;
    dfd_image_free(img);
    *img = big;
    return DFD_OK;
}

void dfd_aug_noise(dfd_image *img, float std, nn_rng *r) {
    size_t n = (size_t)img->w * img->h * 3;
    for (size_t i = 0; i < n; i++) img->rgb[i] = clamp8(img->rgb[i] + std * nn_rng_normal(r));
}

void dfd_aug_cutout(dfd_image *img, int x, int y, int w, int h, uint8_t grey) {
    for (int yy = y < 0 ? 0 : y; yy < y + h && yy < img->h; yy++)
        for (int xx = x < 0 ? 0 : x; xx < x + w && xx < img->w; xx++)
            memset(img->rgb + ((size_t)yy * img->w + xx) * 3, grey, 3);
}

/* dfd_aug_affine's mapping on a w x h plane of floats (a self-blend's mask), edges
 * replicated as for the image, so the plane stays registered with the image. */
static int affine_plane(float *m, int w, int h, float deg, float dx, float dy, float scale, dfd_error *err) {
    float *src = dfd_malloc_array((size_t)w * h, sizeof *src);
    if (!src) return dfd_fail(err, DFD_E_NOMEM, "augment: no memory for a %dx%d mask", w, h);
    memcpy(src, m, (size_t)w * h * sizeof *src);
    float a = deg * (float)M_PI / 180, ca = cosf(a), sa = sinf(a);
    float cx = w / 2.0f, cy = h / 2.0f, tx = dx * w, ty = dy * h;
    for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++) {
            float px = x + 0.5f - cx - tx, py = y + 0.5f - cy - ty;
            float qx = (ca * px + sa * py) / scale + cx - 0.5f, qy = (-sa * px + ca * py) / scale + cy - 0.5f;
            float fx = floorf(qx), fy = floorf(qy), ax = qx - fx, ay = qy - fy;
            int x0 = (int)fx, y0 = (int)fy, x1 = x0 + 1, y1 = y0 + 1;
            x0 = x0 < 0 ? 0 : x0 >= w ? w - 1 : x0;
            x1 = x1 < 0 ? 0 : x1 >= w ? w - 1 : x1;
            y0 = y0 < 0 ? 0 : y0 >= h ? h - 1 : y0;
            y1 = y1 < 0 ? 0 : y1 >= h ? h - 1 : y1;
            const float *r0 = src + (size_t)y0 * w, *r1 = src + (size_t)y1 * w;
            m[(size_t)y * w + x] = (1 - ay) * ((1 - ax) * r0[x0] + ax * r0[x1]) + ay * ((1 - ax) * r1[x0] + ax * r1[x1]);
        }
    free(src);
    return DFD_OK;
}

void dfd_mask_flip_h(float *m, int w, int h) {
    for (int y = 0; y < h; y++)
        for (int x = 0; x < w / 2; x++) {
            float *row = m + (size_t)y * w, t = row[x];
            row[x] = row[w - 1 - x], row[w - 1 - x] = t;
        }
}

/* ---- The random pipeline ------------------------------------------------------------------ */

int dfd_augment(dfd_image *img, const dfd_augment_opts *o, nn_rng *r, dfd_error *err) {
    return dfd_augment_masked(img, o, r, NULL, err);
}

int dfd_augment_masked(dfd_image *img, const dfd_augment_opts *o, nn_rng *r, float *mask, dfd_error *err) {
    int rc = DFD_OK;
    float side = (float)(img->w < img->h ? img->w : img->h);
    if (chance(r, o->flip)) {
        dfd_image_flip_h(img);
        if (mask) dfd_mask_flip_h(mask, img->w, img->h);
    }
    if (chance(r, o->affine)) {
        float deg = uni(r, -o->rotate, o->rotate), dx = uni(r, -o->shift, o->shift), dy = uni(r, -o->shift, o->shift);
        float s = expf(uni(r, -1, 1) * logf(1 + o->scale));
        rc = dfd_aug_affine(img, deg, dx, dy, s, err);
        if (!rc && mask) rc = affine_plane(mask, img->w, img->h, deg, dx, dy, s, err);
        if (rc) return rc;
    }
    if (chance(r, o->color))
        dfd_aug_color(img, uni(r, -o->brightness, o->brightness), uni(r, -o->contrast, o->contrast),
                      uni(r, -o->saturation, o->saturation), uni(r, -o->hue, o->hue), NULL);
    if (chance(r, o->blur) && (rc = dfd_aug_blur(img, uni(r, 0.3f, 1) * o->blur_sigma * side / 128, err))) return rc;
    if (chance(r, o->noise)) dfd_aug_noise(img, uni(r, 0.2f, 1) * o->noise_std, r);
    if (chance(r, o->downscale) && (rc = dfd_aug_downscale(img, uni(r, o->downscale_min, 1), err))) return rc;
    if (chance(r, o->jpeg)) {
        int lo = o->jpeg_qmin < 1 ? 1 : o->jpeg_qmin, hi = o->jpeg_qmax > 100 ? 100 : o->jpeg_qmax;
        if (hi < lo) hi = lo;
        int q = lo + (int)(nn_rng_next(r) % (uint64_t)(hi - lo + 1));
        if ((rc = dfd_aug_jpeg(img, q, err))) return rc;
    }
    if (chance(r, o->cutout)) {
        int w = (int)(uni(r, 0.1f, 1) * o->cutout_size * img->w) + 1,
            h = (int)(uni(r, 0.1f, 1) * o->cutout_size * img->h) + 1;
        int x = (int)(nn_rng_next(r) % (uint64_t)img->w) - w / 2, y = (int)(nn_rng_next(r) % (uint64_t)img->h) - h / 2;
        dfd_aug_cutout(img, x, y, w, h, (uint8_t)(nn_rng_next(r) & 255));
        /* what the grey box hides is no longer blended */
        for (int yy = y < 0 ? 0 : y; mask && yy < y + h && yy < img->h; yy++)
            for (int xx = x < 0 ? 0 : x; xx < x + w && xx < img->w; xx++) mask[(size_t)yy * img->w + xx] = 0;
    }
    return rc;
}

/* ---- Self-blended images ------------------------------------------------------------------- */

void dfd_sbi_opts_default(dfd_sbi_opts *o) {
    /* A tight crop (about forehead to chin): the inner face, eyebrows to mouth, sits a
     * little below the centre. */
    o->cx = 0.5f, o->cy = 0.54f, o->rx = 0.34f, o->ry = 0.40f;
    o->jitter = 0.08f;
    o->deform = 0.12f;
    o->forehead = 0.5f;
    o->part = 0;
}

/* Face-oval landmarks above the eyebrows (the forehead), left out of the eyebrow-topped
 * hull that imitates dlib's 68 points. */
static int is_forehead(int mesh_index) {
    static const int fh[] = {10, 338, 297, 332, 284, 251, 109, 67, 103, 54, 21};
    for (size_t i = 0; i < sizeof fh / sizeof fh[0]; i++)
        if (fh[i] == mesh_index) return 1;
    return 0;
}

void dfd_sbi_points_from_mesh(const dfd_face_mesh *m, float sx, float sy, float pts[DFD_SBI_POINTS][2]) {
    for (int i = 0; i < DFD_MESH_OVAL_POINTS; i++)
        pts[i][0] = m->pt[dfd_mesh_face_oval[i]][0] * sx, pts[i][1] = m->pt[dfd_mesh_face_oval[i]][1] * sy;
    for (int i = 0; i < DFD_MESH_BROW_POINTS; i++)
        pts[DFD_MESH_OVAL_POINTS + i][0] = m->pt[dfd_mesh_brows[i]][0] * sx,
                                 pts[DFD_MESH_OVAL_POINTS + i][1] = m->pt[dfd_mesh_brows[i]][1] * sy;
}

static double cross3(const float *o, const float *a, const float *b) {
    return ((double)a[0] - o[0]) * ((double)b[1] - o[1]) - ((double)a[1] - o[1]) * ((double)b[0] - o[0]);
}

static int cmp_pt(const void *a, const void *b) {
    const float *p = a, *q = b;
    if (p[0] != q[0]) return p[0] < q[0] ? -1 : 1;
    return (p[1] > q[1]) - (p[1] < q[1]);
}

int dfd_convex_hull(const float (*pts)[2], int n, float (*hull)[2]) {
    if (n <= 0 || n > DFD_HULL_MAX) return 0;
    float p[DFD_HULL_MAX][2];
    int m = 0;
    for (int i = 0; i < n; i++)
        if (isfinite(pts[i][0]) && isfinite(pts[i][1])) p[m][0] = pts[i][0], p[m][1] = pts[i][1], m++;
    if (m < 3) return 0;
    qsort(p, (size_t)m, sizeof p[0], cmp_pt);
    /* Andrew's monotone chain: lower then upper hull, counter-clockwise in x-right y-up
     * terms (clockwise on screen). */
    float h[2 * DFD_HULL_MAX][2];
    int k = 0;
    for (int i = 0; i < m; i++) {
        while (k >= 2 && cross3(h[k - 2], h[k - 1], p[i]) <= 0) k--;
        h[k][0] = p[i][0], h[k][1] = p[i][1], k++;
    }
    for (int i = m - 2, t = k + 1; i >= 0; i--) {
        while (k >= t && cross3(h[k - 2], h[k - 1], p[i]) <= 0) k--;
        h[k][0] = p[i][0], h[k][1] = p[i][1], k++;
    }
    k--; /* the last point repeats the first */
    if (k < 3) return 0;
    memcpy(hull, h, (size_t)k * sizeof h[0]);
    return k;
}

int dfd_hull_contains(const float (*hull)[2], int n, float x, float y) {
    if (n < 3) return 0;
    float q[2] = {x, y};
    for (int i = 0; i < n; i++)
        if (cross3(hull[i], hull[(i + 1) % n], q) < 0) return 0;
    return 1;
}

void dfd_sbi_opts_for_margin(dfd_sbi_opts *o, float margin, float shift_y) {
    if (!(margin >= 1)) margin = 1;
    /* The detector box spans 1/margin of the crop; its centre is shift_y box sides above
     * the crop centre. The inner face fills about 0.7 x 0.8 of the box. */
    float box = 1 / margin;
    o->cx = 0.5f;
    o->cy = 0.5f - shift_y * box + 0.04f * box;
    o->rx = 0.34f * box;
    o->ry = 0.40f * box;
}

/* The landmark mask (before feathering): the convex hull of the face oval (with the
 * forehead, probability o->forehead) or of the oval below the eyebrows plus the eyebrows
 * (as dlib's 68 points reach), its outline deformed by random low-frequency radial
 * harmonics about its centre, then eroded or dilated by a random amount (a blur
 * thresholded away from one half). Returns DFD_E_ARG when the points span no area. */
static int landmark_mask(float *m, int w, int h, const float (*pts)[2], const dfd_sbi_opts *o, nn_rng *r, dfd_error *err) {
    float sel[DFD_SBI_POINTS][2], hull[DFD_HULL_MAX][2];
    int with_forehead = chance(r, o->forehead), ns = 0;
    for (int i = 0; i < DFD_SBI_POINTS; i++) {
        if (i < DFD_MESH_OVAL_POINTS ? (!with_forehead && is_forehead(dfd_mesh_face_oval[i])) : with_forehead) continue;
        sel[ns][0] = pts[i][0], sel[ns][1] = pts[i][1], ns++;
    }
    int nh = dfd_convex_hull((const float(*)[2])sel, ns, hull);
    if (nh < 3) return dfd_fail(err, DFD_E_ARG, "sbi: the landmarks span no area");
    double cx = 0, cy = 0, area = 0;
    for (int i = 0; i < nh; i++) cx += hull[i][0] / nh, cy += hull[i][1] / nh;
    for (int i = 0; i < nh; i++) area += 0.5 * cross3(hull[0], hull[i], hull[(i + 1) % nh]);
    float size = (float)sqrt(fabs(area));
    if (!(size >= 2)) return dfd_fail(err, DFD_E_ARG, "sbi: the landmarks span no area");
    float amp[4], phase[4], d = 0.5f * o->deform;
    for (int k = 0; k < 4; k++) amp[k] = uni(r, -d, d) / (k + 1), phase[k] = uni(r, 0, 2 * (float)M_PI);
    for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++) {
            float dx = x + 0.5f - (float)cx, dy = y + 0.5f - (float)cy, th = atan2f(dy, dx), rad = 1;
            for (int k = 0; k < 4; k++) rad += amp[k] * sinf((k + 2) * th + phase[k]);
            m[(size_t)y * w + x] = dfd_hull_contains((const float(*)[2])hull, nh, (float)cx + dx / rad, (float)cy + dy / rad)
                                       ? 1.0f
                                       : 0.0f;
        }
    /* Erosion or dilation by up to about 3% of the face's size (points far outside the
     * image cannot make the blur larger than the image). */
    float t = uni(r, 0.25f, 0.75f), side = (float)(w < h ? w : h);
    int rc = blur_f(m, w, h, 1, 0.05f * (size < side ? size : side), err);
    if (rc) return rc;
    for (size_t i = 0; i < (size_t)w * h; i++) m[i] = m[i] > t ? 1.0f : 0.0f;
    return DFD_OK;
}

/* Cuts a binary face mask (w x h, 0 or 1) to a part of the face: a random ellipse, its
 * semi-axes 0.2-0.4 of the face's size (the root of the mask's area) and 0.7-1.4 times that
 * across, at any angle, centred on a pixel of the mask drawn uniformly. A mask of under 16
 * pixels is left whole. */
static void part_of_mask(float *m, int w, int h, nn_rng *r) {
    size_t n = (size_t)w * h, area = 0;
    for (size_t i = 0; i < n; i++) area += m[i] > 0;
    if (area < 16) return;
    size_t k = (size_t)(nn_rng_next(r) % area), centre = 0;
    for (size_t i = 0; i < n; i++)
        if (m[i] > 0 && k-- == 0) {
            centre = i;
            break;
        }
    float cx = (float)(centre % (size_t)w) + 0.5f, cy = (float)(centre / (size_t)w) + 0.5f;
    float size = sqrtf((float)area), a = uni(r, 0.2f, 0.4f) * size, b = a * uni(r, 0.7f, 1.4f);
    float th = uni(r, 0, (float)M_PI), ct = cosf(th), st = sinf(th);
    for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++) {
            float dx = x + 0.5f - cx, dy = y + 0.5f - cy, u = (dx * ct + dy * st) / a, v = (-dx * st + dy * ct) / b;
            if (u * u + v * v > 1) m[(size_t)y * w + x] = 0;
        }
}

int dfd_sbi(dfd_image *img, const dfd_sbi_opts *o, nn_rng *r, float *mask, dfd_error *err) {
    return dfd_sbi_landmarks(img, o, NULL, r, mask, err);
}

int dfd_sbi_landmarks(dfd_image *img, const dfd_sbi_opts *o, const float (*pts)[2], nn_rng *r, float *mask,
                      dfd_error *err) {
    int w = img->w, h = img->h, rc;
    float side = (float)(w < h ? w : h);
    size_t n = (size_t)w * h;
    float *m = mask ? mask : dfd_malloc_array(n, sizeof *m);
    if (!m) return dfd_fail(err, DFD_E_NOMEM, "sbi: no memory for a %dx%d mask", w, h);
    dfd_image src;
    if ((rc = dfd_image_copy(img, &src, err))) {
        if (!mask) free(m);
        return rc;
    }
    /* 1. The source: colour, then sharpness (downscaled or sharpened), then a small shift
     *    and scale, so that it no longer lines up exactly with the target. */
    float sh[3] = {0, 0, 0};
    if (chance(r, 0.3f))
        for (int c = 0; c < 3; c++) sh[c] = uni(r, -20, 20);
    dfd_aug_color(&src, uni(r, -0.1f, 0.1f), uni(r, -0.1f, 0.1f), uni(r, -0.3f, 0.3f), uni(r, -10, 10), sh);
    if (chance(r, 0.5f)) rc = dfd_aug_downscale(&src, uni(r, 0.25f, 0.5f), err);
    else rc = blur_or_sharpen(&src, 1.0f * side / 128, uni(r, 0.3f, 1.0f), err);
    if (!rc) rc = dfd_aug_affine(&src, 0, uni(r, -0.03f, 0.03f), uni(r, -0.03f, 0.03f), uni(r, 0.95f, 1.05f), err);
    if (rc) goto out;
    /* 2. The mask: from the landmarks when given (landmark_mask), else a jittered
     *    ellipse whose radius varies with angle (low harmonics), grown or shrunk; then
     *    feathered, and scaled by a blend ratio. */
    float feather;
    if (pts) {
        if ((rc = landmark_mask(m, w, h, pts, o, r, err))) goto out;
        /* the hull is where the face is, so a lighter feather than the ellipse's */
        feather = uni(r, 0.01f, 0.04f);
    } else {
        float cx = (o->cx + uni(r, -o->jitter, o->jitter) * o->rx) * w, cy = (o->cy + uni(r, -o->jitter, o->jitter) * o->ry) * h;
        float grow = uni(r, 0.85f, 1.1f);
        float rx = o->rx * w * grow * (1 + uni(r, -o->jitter, o->jitter)), ry = o->ry * h * grow * (1 + uni(r, -o->jitter, o->jitter));
        float amp[4], phase[4];
        for (int k = 0; k < 4; k++) amp[k] = uni(r, -o->deform, o->deform) / (k + 1), phase[k] = uni(r, 0, 2 * (float)M_PI);
        for (int y = 0; y < h; y++)
            for (int x = 0; x < w; x++) {
                float u = (x + 0.5f - cx) / rx, v = (y + 0.5f - cy) / ry;
                float th = atan2f(v, u), rad = 1;
                for (int k = 0; k < 4; k++) rad += amp[k] * sinf((k + 2) * th + phase[k]);
                m[(size_t)y * w + x] = u * u + v * v <= rad * rad ? 1.0f : 0.0f;
            }
        feather = uni(r, 0.02f, 0.07f);
    }
    /* (no draw at all when part is 0, so the recipes without parts keep their sequences) */
    const int part = o->part > 0 && chance(r, o->part);
    if (part) part_of_mask(m, w, h, r);
    if ((rc = blur_f(m, w, h, 1, feather * side, err))) goto out;
    static const float ratios[6] = {0.25f, 0.5f, 0.75f, 1, 1, 1};
    float ratio = ratios[nn_rng_next(r) % 6];
    /* A part of the face blended at a quarter or half of the source is close to invisible:
     * training on such "fakes" was label noise (models/README.md, lmpart), so a part always
     * blends whole (the draw above is kept, and with it the sequence). */
    if (part) ratio = 1;
    /* 3. Blend: where the mask is 0 the target is kept bit for bit. */
    for (size_t i = 0; i < n; i++) {
        float a = (m[i] > 1 ? 1 : m[i]) * ratio; /* the blur's float sums may pass 1 by an ulp */
        if (a < 1.0f / 512) a = 0; /* below half a grey level anywhere: call it outside */
        m[i] = a;
        if (a == 0) continue;
        uint8_t *t = img->rgb + i * 3;
        const uint8_t *s = src.rgb + i * 3;
        for (int c = 0; c < 3; c++) t[c] = clamp8(t[c] + a * ((float)s[c] - t[c]));
    }
out:
    dfd_image_free(&src);
    if (!mask) free(m);
    return rc;
}
