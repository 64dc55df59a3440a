/*
 * landmark.c — MediaPipe Face Mesh's 468 landmarks on dfd's engine.
 *
 * What MediaPipe's face_landmark_front graphs do for one face, for one image:
 *  1. the region of interest from a BlazeFace detection (face_detection_front_detection_to_roi):
 *     the box centre, rotated by the angle of the line from keypoint 0 to keypoint 1 (the
 *     eyes) so that line becomes level, and a square of 1.5 times the box's longer side;
 *  2. that rotated square sampled into 192 x 192 RGB in [0, 1] (ImageToTensorCalculator,
 *     replicated border);
 *  3. the model: 468 x (x, y, z) in the 192 px window, and a face-presence logit;
 *  4. the landmarks mapped back through the window into the image.
 * MediaPipe then tracks: the next frame's region comes from the landmarks themselves
 * (face_landmark_landmarks_to_roi: their bounding box, rotated by the line from landmark
 * 33 to 263, the outer eye corners, times 1.5). dfd_face_mesh_detect does that once on the
 * same image when asked (refine), which centres the window on the face better than a
 * detector box or a crop's frame does.
 *
 * Sampling: bilinear like MediaPipe's, but when the window is shrunk by more than 1.5x
 * each output pixel averages k x k bilinear samples (k = ceil of the shrink factor), so a
 * large face is not aliased into the model's input.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "face/face.h"
#include "io/model_file.h"
#include "io/safetensors.h"
#include "models/face_landmark.h"

/* MediaPipe's FACEMESH_FACE_OVAL (face_mesh_connections.py), as an outline from the top of
 * the forehead going clockwise on screen (towards the subject's left). */
const int dfd_mesh_face_oval[DFD_MESH_OVAL_POINTS] = {10,  338, 297, 332, 284, 251, 389, 356, 454, 323, 361, 288,
                                                      397, 365, 379, 378, 400, 377, 152, 148, 176, 149, 150, 136,
                                                      172, 58,  132, 93,  234, 127, 162, 21,  54,  103, 67,  109};
/* Upper contours of the eyebrows (FACEMESH_RIGHT_EYEBROW / LEFT_EYEBROW): subject's right
 * (image left) then left. */
const int dfd_mesh_brows[DFD_MESH_BROW_POINTS] = {70, 63, 105, 66, 107, 336, 296, 334, 293, 300};

struct dfd_landmarker {
    nn_graph *g;
    nn_exec *ex;
    float *input;
};

static int load_model(const char *path, nn_graph **out, dfd_error *err) {
    *out = NULL;
    dfd_st_file *f = NULL;
    int rc = dfd_st_open(path, &f, err);
    if (rc) return rc;
    const char *fmt = dfd_st_meta_get(f, "format"), *a = dfd_st_meta_get(f, "architecture"),
               *o = dfd_st_meta_get(f, "output"), *sz = dfd_st_meta_get(f, "input_size");
    nn_graph *g = NULL;
    if (!fmt || strcmp(fmt, DFD_MODEL_FORMAT) != 0)
        rc = dfd_fail(err, DFD_E_MODEL, "'%s' is not a dfd model file (format '%s')", path, fmt ? fmt : "none");
    else if (!a || strcmp(a, DFD_FACE_LANDMARK_NAME) != 0)
        rc = dfd_fail(err, DFD_E_MODEL, "'%s' holds architecture '%s', not %s", path, a ? a : "none", DFD_FACE_LANDMARK_NAME);
    else if (!o || strcmp(o, DFD_FACE_LANDMARK_OUTPUT) != 0 || !sz || atoi(sz) != DFD_FACE_LANDMARK_SIZE)
        rc = dfd_fail(err, DFD_E_MODEL, "'%s': metadata (output, input_size) does not describe %s", path, a);
    if (!rc) rc = dfd_face_landmark_build(&g, err);
    if (!rc) {
        dfd_error e;
        rc = dfd_model_load_params(f, g, &e);
        if (rc) dfd_fail(err, rc, "%s: %s", path, e.message);
    }
    dfd_st_close(f);
    if (rc) {
        nn_graph_free(g);
        return rc;
    }
    *out = g;
    return DFD_OK;
}

void dfd_landmarker_free(dfd_landmarker *l) {
    if (!l) return;
    nn_exec_free(l->ex);
    nn_graph_free(l->g);
    free(l->input);
    free(l);
}

int dfd_landmarker_create(const char *models_dir, nn_backend backend, int threads, dfd_landmarker **out, dfd_error *err) {
    *out = NULL;
    char dir[4096], path[4200];
    dfd_face_models_dir(models_dir, dir, sizeof dir);
    snprintf(path, sizeof path, "%s/%s.safetensors", dir, DFD_FACE_LANDMARK_NAME);
    if (access(path, R_OK) != 0)
        return dfd_fail(err, DFD_E_NOT_FOUND,
                        "face landmark model '%s' not found (run ./setup.sh, which converts it from the npm package "
                        "@mediapipe/face_mesh)",
                        path);
    dfd_landmarker *l = calloc(1, sizeof *l);
    if (!l) return dfd_fail(err, DFD_E_NOMEM, "out of memory");
    int rc = load_model(path, &l->g, err);
    if (!rc) {
        nn_exec_opts eo;
        nn_exec_opts_default(&eo);
        eo.backend = backend;
        eo.max_batch = 1;
        eo.threads = threads < 0 ? 1 : threads;
        eo.precision = NN_PREC_F32; /* the points feed geometry; the net is small */
        rc = nn_exec_create(l->g, &eo, &l->ex, err);
    }
    if (!rc) {
        l->input = dfd_malloc_array((size_t)DFD_FACE_LANDMARK_SIZE * DFD_FACE_LANDMARK_SIZE * 3, sizeof(float));
        if (!l->input) rc = dfd_fail(err, DFD_E_NOMEM, "out of memory");
    }
    if (rc) {
        dfd_landmarker_free(l);
        return rc;
    }
    *out = l;
    return DFD_OK;
}

/* ---- Regions ---------------------------------------------------------------------------- */

static void roi_from_box(const float box[4], float angle, float roi[4]) {
    float s = box[2] > box[3] ? box[2] : box[3];
    roi[0] = box[0] + 0.5f * box[2];
    roi[1] = box[1] + 0.5f * box[3];
    roi[2] = 1.5f * s;
    roi[3] = angle;
}

void dfd_face_mesh_roi_from_box(const float box[4], float roi[4]) { roi_from_box(box, 0.0f, roi); }

void dfd_face_mesh_roi_from_face(const dfd_face *f, float roi[4]) {
    float dx = f->kp[DFD_KP_LEFT_EYE][0] - f->kp[DFD_KP_RIGHT_EYE][0];
    float dy = f->kp[DFD_KP_LEFT_EYE][1] - f->kp[DFD_KP_RIGHT_EYE][1];
    roi_from_box(f->box, dx == 0 && dy == 0 ? 0.0f : atan2f(dy, dx), roi);
}

void dfd_face_mesh_roi_from_mesh(const dfd_face_mesh *m, float roi[4]) {
    float x0 = INFINITY, y0 = INFINITY, x1 = -INFINITY, y1 = -INFINITY;
    for (int i = 0; i < DFD_MESH_POINTS; i++) {
        x0 = fminf(x0, m->pt[i][0]), x1 = fmaxf(x1, m->pt[i][0]);
        y0 = fminf(y0, m->pt[i][1]), y1 = fmaxf(y1, m->pt[i][1]);
    }
    /* As MediaPipe: the landmarks' axis-aligned bounding box, turned by the eye line. */
    float a = atan2f(m->pt[263][1] - m->pt[33][1], m->pt[263][0] - m->pt[33][0]);
    float box[4] = {x0, y0, x1 - x0, y1 - y0};
    roi_from_box(box, a, roi);
}

/* ---- Running --------------------------------------------------------------------------- */

static void bilinear(const dfd_image *im, float x, float y, float out[3]) {
    /* pixel i covers [i, i+1): its centre is i + 0.5; outside, the edge is replicated */
    x -= 0.5f, y -= 0.5f;
    if (x < 0) x = 0;
    if (y < 0) y = 0;
    if (x > im->w - 1) x = (float)(im->w - 1);
    if (y > im->h - 1) y = (float)(im->h - 1);
    int x0 = (int)x, y0 = (int)y, x1 = x0 + 1 < im->w ? x0 + 1 : x0, y1 = y0 + 1 < im->h ? y0 + 1 : y0;
    float fx = x - x0, fy = y - y0;
    const uint8_t *a = im->rgb + ((size_t)y0 * im->w + x0) * 3, *b = im->rgb + ((size_t)y0 * im->w + x1) * 3;
    const uint8_t *c = im->rgb + ((size_t)y1 * im->w + x0) * 3, *d = im->rgb + ((size_t)y1 * im->w + x1) * 3;
    for (int k = 0; k < 3; k++)
        out[k] = (a[k] * (1 - fx) + b[k] * fx) * (1 - fy) + (c[k] * (1 - fx) + d[k] * fx) * fy;
}

/* Window point (u, v) in [0, 1]^2 to image pixels. */
static void window_to_image(const float roi[4], float u, float v, float *x, float *y) {
    float c = cosf(roi[3]), s = sinf(roi[3]);
    float du = (u - 0.5f) * roi[2], dv = (v - 0.5f) * roi[2];
    *x = roi[0] + c * du - s * dv;
    *y = roi[1] + s * du + c * dv;
}

int dfd_face_mesh_run(dfd_landmarker *l, const dfd_image *img, const float roi[4], dfd_face_mesh *out, dfd_error *err) {
    if (!l || !img || !img->rgb || img->w < 1 || img->h < 1 || !roi || !out)
        return dfd_fail(err, DFD_E_ARG, "face mesh: no image or region");
    if (!(isfinite(roi[0]) && isfinite(roi[1]) && isfinite(roi[3]) && roi[2] >= 1.0f && roi[2] < 1e6f))
        return dfd_fail(err, DFD_E_ARG, "face mesh: region (%g, %g, side %g, angle %g) out of range", (double)roi[0],
                        (double)roi[1], (double)roi[2], (double)roi[3]);
    const int S = DFD_FACE_LANDMARK_SIZE;
    float shrink = roi[2] / S;
    int k = shrink > 1.5f ? (int)ceilf(shrink) : 1;
    if (k > 16) k = 16;
    for (int j = 0; j < S; j++)
        for (int i = 0; i < S; i++) {
            float acc[3] = {0, 0, 0}, px[3];
            for (int sj = 0; sj < k; sj++)
                for (int si = 0; si < k; si++) {
                    float x, y;
                    window_to_image(roi, (i + (si + 0.5f) / k) / S, (j + (sj + 0.5f) / k) / S, &x, &y);
                    bilinear(img, x, y, px);
                    for (int c = 0; c < 3; c++) acc[c] += px[c];
                }
            float *o = l->input + ((size_t)j * S + i) * 3;
            for (int c = 0; c < 3; c++) o[c] = acc[c] / (255.0f * k * k);
        }
    int rc = nn_forward(l->ex, l->input, 1, err);
    if (rc) return rc;
    size_t n0, n1;
    const float *pts = nn_output(l->ex, 0, &n0), *flag = nn_output(l->ex, 1, &n1);
    if (!pts || !flag || n0 != 3 * DFD_MESH_POINTS || n1 != 1)
        return dfd_fail(err, DFD_E_INTERNAL, "face mesh: unexpected output sizes");
    for (int p = 0; p < DFD_MESH_POINTS; p++) {
        window_to_image(roi, pts[3 * p] / S, pts[3 * p + 1] / S, &out->pt[p][0], &out->pt[p][1]);
        out->pt[p][2] = pts[3 * p + 2] / S * roi[2];
    }
    float z = flag[0];
    out->presence = 1.0f / (1.0f + expf(-(z > 80 ? 80 : z < -80 ? -80 : z)));
    memcpy(out->roi, roi, sizeof out->roi);
    return DFD_OK;
}

int dfd_face_mesh_detect(dfd_landmarker *l, const dfd_image *img, const dfd_face *face, const float box[4], int refine,
                         dfd_face_mesh *out, dfd_error *err) {
    float roi[4];
    if (face) dfd_face_mesh_roi_from_face(face, roi);
    else if (box) dfd_face_mesh_roi_from_box(box, roi);
    else return dfd_fail(err, DFD_E_ARG, "face mesh: neither a face nor a box");
    int rc = dfd_face_mesh_run(l, img, roi, out, err);
    for (int i = 0; !rc && i < refine; i++) {
        dfd_face_mesh_roi_from_mesh(out, roi);
        rc = dfd_face_mesh_run(l, img, roi, out, err);
    }
    return rc;
}
