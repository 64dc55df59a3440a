/*
 * crop.c — the crop contract of docs/preprocessing.md: how a detected face becomes the
 * classifier's input, the same way in training, evaluation and inference.
 *
 * The square is centred on the detector box (moved by shift_y box sides) with side
 * margin x the box's longer side; with roll alignment the square is turned with the face
 * so the eyes come out level. Pixels are first taken at source resolution (a plain copy,
 * or bilinear sampling along the rotated axes), then resized to the output side with
 * media's resize (area averaging when shrinking, bilinear when growing), so a large face
 * does not alias and a small one is not blocky.
 */
#include <jansson.h>
#include <math.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>

#include "face/face.h"

/* Measured on the 10,000 crops of ../shared/data/dfdc-faces/real (docs/preprocessing.md):
 * the tight training crops are 1.01 BlazeFace box sides wide (median), centred 0.03 box
 * sides above the box centre. */
#define DEFAULT_MARGIN 1.01f
#define DEFAULT_SHIFT_Y (-0.03f)

void dfd_crop_contract_default(dfd_crop_contract *c, int size) {
    memset(c, 0, sizeof *c);
    c->margin = DEFAULT_MARGIN;
    c->shift_y = DEFAULT_SHIFT_Y;
    c->align_roll = 0;
    c->border = DFD_BORDER_REPLICATE;
    c->size = size > 0 ? size : 224;
    c->norm = DFD_NORM_MINUS1_1;
}

static const char *const norm_names[DFD_NORM_COUNT] = {"minus1_1", "0_1", "imagenet", "residual"};

const char *dfd_norm_name(dfd_norm n) { return (int)n >= 0 && (int)n < DFD_NORM_COUNT ? norm_names[n] : NULL; }

int dfd_norm_from_name(const char *name) {
    for (int i = 0; name && i < DFD_NORM_COUNT; i++)
        if (strcmp(name, norm_names[i]) == 0) return i;
    return -1;
}

char *dfd_crop_contract_to_json(const dfd_crop_contract *c) {
    json_t *o = json_object();
    if (!o) return NULL;
    json_object_set_new(o, "contract", json_string("dfd.crop/1"));
    json_object_set_new(o, "faces", json_string("all"));
    json_object_set_new(o, "box", json_string("blazeface"));
    json_object_set_new(o, "margin", json_real(c->margin));
    json_object_set_new(o, "shift_y", json_real(c->shift_y));
    json_object_set_new(o, "align_roll", json_boolean(c->align_roll));
    json_object_set_new(o, "border", json_string(c->border == DFD_BORDER_FILL ? "black" : "replicate"));
    json_object_set_new(o, "size", json_integer(c->size));
    json_object_set_new(o, "resample", json_string("area_down_bilinear_up"));
    json_object_set_new(o, "color", json_string("RGB"));
    const char *norm = dfd_norm_name(c->norm);
    json_object_set_new(o, "norm", json_string(norm ? norm : norm_names[0]));
    char *s = json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(6));
    json_decref(o);
    return s;
}

int dfd_crop_contract_from_json(const char *text, dfd_crop_contract *c, dfd_error *err) {
    dfd_crop_contract_default(c, 224);
    json_error_t je;
    json_t *o = text ? json_loads(text, JSON_REJECT_DUPLICATES, &je) : NULL;
    int rc = DFD_OK;
    if (!json_is_object(o)) {
        rc = dfd_fail(err, DFD_E_MODEL, "crop contract is not a JSON object");
        goto done;
    }
    json_t *v;
    if ((v = json_object_get(o, "margin"))) {
        double m = json_number_value(v);
        if (!json_is_number(v) || !(m >= 0.5 && m <= 4.0)) {
            rc = dfd_fail(err, DFD_E_MODEL, "crop contract: margin must be a number in [0.5, 4]");
            goto done;
        }
        c->margin = (float)m;
    }
    if ((v = json_object_get(o, "shift_y"))) {
        double m = json_number_value(v);
        if (!json_is_number(v) || !(m >= -1.0 && m <= 1.0)) {
            rc = dfd_fail(err, DFD_E_MODEL, "crop contract: shift_y must be a number in [-1, 1]");
            goto done;
        }
        c->shift_y = (float)m;
    }
    if ((v = json_object_get(o, "align_roll"))) {
        if (!json_is_boolean(v)) {
            rc = dfd_fail(err, DFD_E_MODEL, "crop contract: align_roll must be true or false");
            goto done;
        }
        c->align_roll = json_is_true(v);
    }
    if ((v = json_object_get(o, "border"))) {
        const char *b = json_string_value(v);
        if (b && strcmp(b, "replicate") == 0) c->border = DFD_BORDER_REPLICATE;
        else if (b && strcmp(b, "black") == 0) c->border = DFD_BORDER_FILL;
        else {
            rc = dfd_fail(err, DFD_E_MODEL, "crop contract: border must be \"replicate\" or \"black\"");
            goto done;
        }
    }
    if ((v = json_object_get(o, "size"))) {
        if (!json_is_integer(v) || json_integer_value(v) < 16 || json_integer_value(v) > 2048) {
            rc = dfd_fail(err, DFD_E_MODEL, "crop contract: size must be an integer in [16, 2048]");
            goto done;
        }
        c->size = (int)json_integer_value(v);
    }
    if ((v = json_object_get(o, "norm"))) {
        int found = dfd_norm_from_name(json_string_value(v));
        if (found < 0) {
            char known[128] = "";
            for (int i = 0; i < DFD_NORM_COUNT; i++)
                snprintf(known + strlen(known), sizeof known - strlen(known), "%s\"%s\"",
                         i == 0 ? "" : i == DFD_NORM_COUNT - 1 ? " or " : ", ", norm_names[i]);
            rc = dfd_fail(err, DFD_E_MODEL, "crop contract: norm must be %s", known);
            goto done;
        }
        c->norm = (dfd_norm)found;
    }
    /* Parts of the contract dfd implements one way only: refuse other values rather than
     * silently crop differently from what the model was trained on. */
    static const struct {
        const char *key, *value;
    } fixed[] = {{"contract", "dfd.crop/1"}, {"faces", "all"}, {"box", "blazeface"},
                 {"resample", "area_down_bilinear_up"}, {"color", "RGB"}};
    for (size_t i = 0; i < sizeof fixed / sizeof fixed[0]; i++) {
        v = json_object_get(o, fixed[i].key);
        if (v && (!json_is_string(v) || strcmp(json_string_value(v), fixed[i].value) != 0)) {
            rc = dfd_fail(err, DFD_E_MODEL, "crop contract: %s must be \"%s\"", fixed[i].key, fixed[i].value);
            goto done;
        }
    }
done:
    json_decref(o);
    return rc;
}

void dfd_face_crop_square(const dfd_face *f, const dfd_crop_contract *c, float sq[3]) {
    float s = fmaxf(f->box[2], f->box[3]);
    float cx = f->box[0] + f->box[2] * 0.5f, cy = f->box[1] + f->box[3] * 0.5f + c->shift_y * s;
    float side = c->margin * s;
    sq[0] = cx - side * 0.5f;
    sq[1] = cy - side * 0.5f;
    sq[2] = side;
}

/* Bilinear sample at continuous source position (x, y) (pixel i covers [i, i+1)). */
static void sample(const dfd_image *img, double x, double y, dfd_border border, uint8_t *out) {
    x -= 0.5;
    y -= 0.5;
    if (border == DFD_BORDER_FILL && (x < -0.5 || y < -0.5 || x > img->w - 0.5 || y > img->h - 0.5)) {
        out[0] = out[1] = out[2] = 0;
        return;
    }
    double fx = floor(x), fy = floor(y), ax = x - fx, ay = y - fy;
    int x0 = (int)fx, y0 = (int)fy, x1 = x0 + 1, y1 = y0 + 1;
    /* Clamp to the edge: replicate, and also for the half pixel at the border of FILL. */
    x0 = x0 < 0 ? 0 : x0 >= img->w ? img->w - 1 : x0;
    x1 = x1 < 0 ? 0 : x1 >= img->w ? img->w - 1 : x1;
    y0 = y0 < 0 ? 0 : y0 >= img->h ? img->h - 1 : y0;
    y1 = y1 < 0 ? 0 : y1 >= img->h ? img->h - 1 : y1;
    const uint8_t *p00 = img->rgb + ((size_t)y0 * img->w + x0) * 3, *p01 = img->rgb + ((size_t)y0 * img->w + x1) * 3,
                  *p10 = img->rgb + ((size_t)y1 * img->w + x0) * 3, *p11 = img->rgb + ((size_t)y1 * img->w + x1) * 3;
    for (int k = 0; k < 3; k++) {
        double v = (1 - ay) * ((1 - ax) * p00[k] + ax * p01[k]) + ay * ((1 - ax) * p10[k] + ax * p11[k]);
        out[k] = (uint8_t)(v + 0.5);
    }
}

int dfd_face_crop(const dfd_image *img, const dfd_face *f, const dfd_crop_contract *c, dfd_image *out, dfd_error *err) {
    memset(out, 0, sizeof *out);
    if (!img || !img->rgb || !f || !c || c->size < 1) return dfd_fail(err, DFD_E_ARG, "cropping needs an image, a face and a contract");
    float sq[3];
    dfd_face_crop_square(f, c, sq);
    double maxside = 4.0 * (img->w > img->h ? img->w : img->h) + 64.0;
    if (!(sq[2] >= 1.0f) || sq[2] > maxside || !isfinite(sq[0]) || !isfinite(sq[1]))
        return dfd_fail(err, DFD_E_ARG, "face box (%g, %g, %g, %g) gives no usable crop", (double)f->box[0],
                        (double)f->box[1], (double)f->box[2], (double)f->box[3]);
    int L = (int)lround(sq[2]);
    if (L < 1) L = 1;
    dfd_image patch = {0};
    int rc;
    if (!c->align_roll || f->roll_deg == 0.0f) {
        rc = dfd_image_crop(img, (int)lround(sq[0]), (int)lround(sq[1]), L, L, c->border, NULL, &patch, err);
    } else {
        rc = dfd_image_alloc(&patch, L, L, err);
        if (!rc) {
            double th = f->roll_deg * M_PI / 180.0, cs = cos(th), sn = sin(th);
            double cx = sq[0] + sq[2] * 0.5, cy = sq[1] + sq[2] * 0.5, half = L * 0.5;
            for (int v = 0; v < L; v++)
                for (int u = 0; u < L; u++) {
                    double du = u + 0.5 - half, dv = v + 0.5 - half;
                    /* Output x runs along the eye line (cos, sin), output y across it. */
                    sample(img, cx + du * cs - dv * sn, cy + du * sn + dv * cs, c->border,
                           patch.rgb + ((size_t)v * L + u) * 3);
                }
        }
    }
    if (rc) return rc;
    if (L == c->size) {
        *out = patch;
        return DFD_OK;
    }
    rc = dfd_image_resize(&patch, c->size, c->size, out, err);
    dfd_image_free(&patch);
    return rc;
}

/* The noise residual: each value less the mean of its 3 x 3 neighbourhood (edges
 * replicated), divided by 16 so that a strong edge stays within a few units. Why this
 * filter: the simplest isotropic high-pass (the first of the SRM-style residuals used in
 * image forensics); it removes what a face looks like and keeps what the camera, the
 * codec or a generator's upsampling left in the pixels. */
static void residual(const dfd_image *img, float *out) {
    const int w = img->w, h = img->h;
    for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++)
            for (int k = 0; k < 3; k++) {
                int sum = 0;
                for (int dy = -1; dy <= 1; dy++) {
                    int yy = y + dy < 0 ? 0 : y + dy >= h ? h - 1 : y + dy;
                    for (int dx = -1; dx <= 1; dx++) {
                        int xx = x + dx < 0 ? 0 : x + dx >= w ? w - 1 : x + dx;
                        sum += img->rgb[((size_t)yy * w + xx) * 3 + k];
                    }
                }
                size_t i = ((size_t)y * w + x) * 3 + k;
                out[i] = ((float)img->rgb[i] - (float)sum / 9.0f) / 16.0f;
            }
}

void dfd_crop_normalize(const dfd_image *img, dfd_norm norm, float *out) {
    static const float mean[3] = {0.485f, 0.456f, 0.406f}, stdv[3] = {0.229f, 0.224f, 0.225f};
    if (norm == DFD_NORM_RESIDUAL) {
        residual(img, out);
        return;
    }
    size_t n = (size_t)img->w * img->h;
    for (size_t i = 0; i < n; i++)
        for (int k = 0; k < 3; k++) {
            float v = img->rgb[3 * i + k];
            switch (norm) {
            case DFD_NORM_0_1: out[3 * i + k] = v / 255.0f; break;
            case DFD_NORM_IMAGENET: out[3 * i + k] = (v / 255.0f - mean[k]) / stdv[k]; break;
            default: out[3 * i + k] = v / 127.5f - 1.0f; break;
            }
        }
}
