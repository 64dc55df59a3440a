/*
 * model.c — BlazeFace model files: importing MediaPipe's .tflite detectors into dfd's
 * model format, and loading them back.
 *
 * A BlazeFace model file is a dfd model file (io/model_file.h: safetensors, parameters
 * by Keras name, "format" = "dfd.model/1", "architecture", "input_size", "preprocess",
 * "dfd_version") whose "output" is "blazeface_ssd" (regressors and classificators for the
 * anchors of src/face/ssd.c) rather than a fake-probability logit, which is why it is
 * written and read here with the safetensors calls instead of dfd_model_save/_load.
 *
 * MediaPipe Face Mesh's face_landmark.tflite is imported the same way (architecture
 * "face-landmark", output "face_landmarks", src/models/face_landmark.c; see landmark.c).
 *
 * The import proves the C builder (src/models/blazeface.c) right for the file at hand:
 * the graph converted straight from the .tflite and the builder's graph, holding the same
 * weights, must give the same outputs on the same input, or nothing is written.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "face/face.h"
#include "io/model_file.h"
#include "io/safetensors.h"
#include "io/tflite.h"
#include "models/face_landmark.h"

#define BLAZEFACE_OUTPUT "blazeface_ssd"

/* Copies every parameter of `from` into the same-named parameter of `to`, requiring the
 * two graphs to have exactly the same parameter names and shapes. */
static int copy_params(nn_graph *from, nn_graph *to, const char *what, dfd_error *err) {
    if (nn_graph_param_count(from) != nn_graph_param_count(to))
        return dfd_fail(err, DFD_E_MODEL, "%s has %d weight tensors, dfd's builder %d", what,
                        nn_graph_param_count(from), nn_graph_param_count(to));
    for (int i = 0; i < nn_graph_param_count(to); i++) {
        nn_param *p = nn_graph_param(to, i), *q = nn_graph_find_param(from, p->name);
        if (!q) return dfd_fail(err, DFD_E_MODEL, "%s has no weight '%s' that dfd's builder expects", what, p->name);
        int same = p->ndim == q->ndim;
        for (int d = 0; same && d < p->ndim; d++) same = p->shape[d] == q->shape[d];
        if (!same) return dfd_fail(err, DFD_E_MODEL, "%s: weight '%s' has another shape than the builder's", what, p->name);
        memcpy(p->data, q->data, p->count * sizeof(float));
    }
    return DFD_OK;
}

/* Runs both graphs (reference backend) on one deterministic pseudo-random input in
 * [lo, lo + 2 * half] and compares every output. */
static int same_outputs(nn_graph *a, nn_graph *b, int side, float lo, float half, const char *what, dfd_error *err) {
    size_t n = (size_t)side * side * 3;
    float *x = dfd_malloc_array(n, sizeof(float));
    if (!x) return dfd_fail(err, DFD_E_NOMEM, "out of memory");
    uint64_t s = 0x9E3779B97F4A7C15ull;
    for (size_t i = 0; i < n; i++) {
        s = s * 6364136223846793005ull + 1442695040888963407ull;
        x[i] = lo + half * ((float)((s >> 40) & 0xffff) / 32767.5f);
    }
    nn_exec_opts o;
    nn_exec_opts_default(&o);
    o.backend = NN_BACKEND_REF;
    o.max_batch = 1;
    o.precision = NN_PREC_F32;
    nn_exec *ea = NULL, *eb = NULL;
    int rc = nn_exec_create(a, &o, &ea, err);
    if (!rc) rc = nn_exec_create(b, &o, &eb, err);
    if (!rc) rc = nn_forward(ea, x, 1, err);
    if (!rc) rc = nn_forward(eb, x, 1, err);
    for (int k = 0; !rc && k < nn_graph_output_count(a); k++) {
        size_t na, nb;
        const float *ya = nn_output(ea, k, &na), *yb = nn_output(eb, k, &nb);
        if (!ya || !yb || na != nb) {
            rc = dfd_fail(err, DFD_E_MODEL, "%s: output %d differs in size from dfd's builder's", what, k);
            break;
        }
        double scale = 1.0, worst = 0.0;
        size_t at = 0;
        for (size_t i = 0; i < na; i++) scale = fmax(scale, fabs(ya[i]));
        for (size_t i = 0; i < na; i++) {
            double d = fabs((double)ya[i] - yb[i]);
            if (!(d <= worst)) { /* also catches NaN */
                worst = isnan(d) ? INFINITY : d;
                at = i;
            }
        }
        if (worst > 1e-4 * scale)
            rc = dfd_fail(err, DFD_E_MODEL,
                          "%s: dfd's builder computes something else than the file (output %d, value %zu: %g vs %g)",
                          what, k, at, (double)ya[at], (double)yb[at]);
    }
    nn_exec_free(ea);
    nn_exec_free(eb);
    free(x);
    return rc;
}

static char *preprocess_json(int side) {
    char *s = malloc(256);
    if (s)
        snprintf(s, 256,
                 "{\"window\":\"letterbox_centred_black\",\"size\":%d,\"resample\":\"area_down_bilinear_up\","
                 "\"color\":\"RGB\",\"range\":[-1,1]}",
                 side);
    return s;
}

/* Writes g's parameters with metadata: architecture, input side, output kind, preprocess. */
static int save_as(nn_graph *g, const char *arch, int side, const char *output, const char *pre, const char *source,
                   const char *path, dfd_error *err) {
    dfd_st_writer *w = dfd_st_writer_new();
    if (!w) return dfd_fail(err, DFD_E_NOMEM, "out of memory");
    int rc = DFD_OK;
    for (int i = 0; i < nn_graph_param_count(g) && !rc; i++) {
        nn_param *p = nn_graph_param(g, i);
        int64_t shape[NN_MAX_DIMS];
        for (int d = 0; d < p->ndim; d++) shape[d] = p->shape[d];
        rc = dfd_st_writer_add_f32(w, p->name, p->ndim, shape, p->data, DFD_ST_F32, err);
    }
    char num[32];
    snprintf(num, sizeof num, "%d", side);
    if (!pre && !rc) rc = dfd_fail(err, DFD_E_NOMEM, "out of memory");
    if (!rc) rc = dfd_st_writer_set_meta(w, "format", DFD_MODEL_FORMAT, err);
    if (!rc) rc = dfd_st_writer_set_meta(w, "architecture", arch, err);
    if (!rc) rc = dfd_st_writer_set_meta(w, "input_size", num, err);
    if (!rc) rc = dfd_st_writer_set_meta(w, "output", output, err);
    if (!rc) rc = dfd_st_writer_set_meta(w, "preprocess", pre, err);
    if (!rc) rc = dfd_st_writer_set_meta(w, "training_data", source, err);
    if (!rc) rc = dfd_st_writer_set_meta(w, "dfd_version", dfd_version(), err);
    if (!rc) rc = dfd_st_writer_save(w, path, err);
    dfd_st_writer_free(w);
    return rc;
}

static int save(nn_graph *g, dfd_blazeface_kind kind, const char *source, const char *path, dfd_error *err) {
    char *pre = preprocess_json(dfd_blazeface_input_size(kind));
    int rc = save_as(g, dfd_blazeface_name(kind), dfd_blazeface_input_size(kind), BLAZEFACE_OUTPUT, pre, source, path, err);
    free(pre);
    return rc;
}

/* face_landmark.tflite: input 1x192x192x3, outputs of 1404 and 1 values. */
static int is_face_landmark(const tfl_model *m) {
    const tfl_tensor *in = m->n_inputs == 1 ? &m->tensors[m->inputs[0]] : NULL;
    return in && in->ndim == 4 && in->shape[0] == 1 && in->shape[1] == DFD_FACE_LANDMARK_SIZE &&
           in->shape[2] == DFD_FACE_LANDMARK_SIZE && in->shape[3] == 3 && m->n_outputs == 2 &&
           m->tensors[m->outputs[0]].count == 3 * DFD_FACE_LANDMARK_COUNT && m->tensors[m->outputs[1]].count == 1;
}

static int import_face_landmark(tfl_model *m, const char *in_path, const char *out_path, dfd_error *err) {
    nn_graph *conv = NULL, *built = NULL;
    int rc = tfl_to_graph(m, &conv, err);
    if (!rc) rc = dfd_face_landmark_build(&built, err);
    if (!rc) rc = copy_params(conv, built, in_path, err);
    if (!rc) rc = same_outputs(conv, built, DFD_FACE_LANDMARK_SIZE, 0.0f, 0.5f, in_path, err);
    if (!rc) {
        const char *base = strrchr(in_path, '/');
        char source[512];
        snprintf(source, sizeof source, "MediaPipe Face Mesh %s (Apache-2.0), converted by dfd import tflite",
                 base ? base + 1 : in_path);
        rc = save_as(built, DFD_FACE_LANDMARK_NAME, DFD_FACE_LANDMARK_SIZE, DFD_FACE_LANDMARK_OUTPUT,
                     "{\"window\":\"face_roi_1.5_rotated\",\"size\":192,\"resample\":\"bilinear\",\"color\":\"RGB\","
                     "\"range\":[0,1]}",
                     source, out_path, err);
    }
    nn_graph_free(conv);
    nn_graph_free(built);
    return rc;
}

int dfd_face_import_tflite(const char *in_path, const char *out_path, const char **arch, dfd_error *err) {
    if (arch) *arch = NULL;
    if (!in_path || !out_path) return dfd_fail(err, DFD_E_ARG, "import needs an input and an output path");
    tfl_model *m = NULL;
    nn_graph *conv = NULL, *built = NULL;
    int rc = tfl_read_file(in_path, &m, err);
    if (rc) return rc;
    if (is_face_landmark(m)) {
        rc = import_face_landmark(m, in_path, out_path, err);
        tfl_free(m);
        if (!rc && arch) *arch = DFD_FACE_LANDMARK_NAME;
        return rc;
    }
    dfd_blazeface_kind kind = DFD_BLAZEFACE_SHORT;
    const tfl_tensor *in = m->n_inputs == 1 ? &m->tensors[m->inputs[0]] : NULL;
    if (in && in->ndim == 4 && in->shape[0] == 1 && in->shape[3] == 3 && in->shape[1] == 128 && in->shape[2] == 128)
        kind = DFD_BLAZEFACE_SHORT;
    else if (in && in->ndim == 4 && in->shape[0] == 1 && in->shape[3] == 3 && in->shape[1] == 192 && in->shape[2] == 192)
        kind = DFD_BLAZEFACE_FULL;
    else
        rc = dfd_fail(err, DFD_E_UNSUPPORTED, "'%s' is not a model dfd knows (a BlazeFace detector with input 1x128x128x3 or 1x192x192x3, or Face Mesh's face_landmark)",
                      in_path);
    if (!rc) rc = tfl_to_graph(m, &conv, err);
    tfl_free(m);
    if (!rc) rc = dfd_blazeface_build(kind, &built, err);
    if (!rc) rc = copy_params(conv, built, in_path, err);
    if (!rc) rc = same_outputs(conv, built, dfd_blazeface_input_size(kind), -1.0f, 1.0f, in_path, err);
    if (!rc) {
        const char *base = strrchr(in_path, '/');
        char source[512];
        snprintf(source, sizeof source, "MediaPipe %s (Apache-2.0), converted by dfd import tflite", base ? base + 1 : in_path);
        rc = save(built, kind, source, out_path, err);
    }
    nn_graph_free(conv);
    nn_graph_free(built);
    if (!rc && arch) *arch = dfd_blazeface_name(kind);
    return rc;
}

int dfd_face_load_model(const char *path, dfd_blazeface_kind *kind, nn_graph **out, dfd_error *err) {
    *out = NULL;
    dfd_st_file *f = NULL;
    int rc = dfd_st_open(path, &f, err);
    if (rc) return rc;
    const char *fmt = dfd_st_meta_get(f, "format"), *a = dfd_st_meta_get(f, "architecture"),
               *o = dfd_st_meta_get(f, "output"), *sz = dfd_st_meta_get(f, "input_size");
    int k = dfd_blazeface_kind_from_name(a);
    nn_graph *g = NULL;
    if (!fmt || strcmp(fmt, DFD_MODEL_FORMAT) != 0)
        rc = dfd_fail(err, DFD_E_MODEL, "'%s' is not a dfd model file (format '%s')", path, fmt ? fmt : "none");
    else if (k < 0)
        rc = dfd_fail(err, DFD_E_MODEL, "'%s' holds architecture '%s', not a BlazeFace detector", path, a ? a : "none");
    else if (!o || strcmp(o, BLAZEFACE_OUTPUT) != 0 || !sz || atoi(sz) != dfd_blazeface_input_size((dfd_blazeface_kind)k))
        rc = dfd_fail(err, DFD_E_MODEL, "'%s': metadata (output, input_size) does not describe %s", path, a);
    if (!rc) rc = dfd_blazeface_build((dfd_blazeface_kind)k, &g, err);
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
    if (kind) *kind = (dfd_blazeface_kind)k;
    *out = g;
    return DFD_OK;
}
