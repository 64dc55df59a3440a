/* classifier.c — a deepfake classifier loaded from a dfd model file: crops in, P(fake) out.
 *
 * The model file says everything inference needs (architecture, input size, the crop
 * contract it was trained with, what its output means, its decision threshold), so
 * scan, the server and eval crop and normalise exactly as training did. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "detect/detect.h"
#include "face/face.h"
#include "io/model_file.h"
#include "models/models.h"

#define CLS_MAX_BATCH 16

struct dfd_classifier {
    nn_graph *g;
    nn_exec *ex;
    dfd_model_meta meta;
    dfd_crop_contract crop;
    int output_p_real;  /* the output means P(real) (models imported from the original) */
    int output_logit;   /* the output is a logit (else already a probability) */
    int is_video;
    char *name;
    float *input;       /* CLS_MAX_BATCH items (x frames for video models) */
};

static int build_arch(void *user, const dfd_model_meta *m, nn_graph **out, dfd_error *err) {
    (void)user;
    dfd_arch_opts o;
    dfd_arch_opts_default(&o);
    o.input_size = m->input_size;
    o.frames = m->frames;
    o.width = m->width;
    o.dropout = m->dropout;
    return dfd_arch_build(m->arch, &o, out, err);
}

static char *model_name(const char *path) {
    const char *base = strrchr(path, '/');
    base = base ? base + 1 : path;
    char *s = strdup(base);
    if (!s) return NULL;
    char *dot = strstr(s, ".safetensors");
    if (dot && dot[strlen(".safetensors")] == '\0') *dot = '\0';
    return s;
}

void dfd_classifier_free(dfd_classifier *c) {
    if (!c) return;
    nn_exec_free(c->ex);
    nn_graph_free(c->g);
    dfd_model_meta_free(&c->meta);
    free(c->name);
    free(c->input);
    free(c);
}

int dfd_classifier_load(const char *path, int threads, dfd_classifier **out, dfd_error *err) {
    *out = NULL;
    dfd_classifier *c = calloc(1, sizeof *c);
    if (!c) return dfd_fail(err, DFD_E_NOMEM, "out of memory");
    dfd_model_meta_init(&c->meta);
    int rc = dfd_model_load(path, build_arch, NULL, &c->g, &c->meta, err);
    if (rc) goto fail;
    const dfd_arch_info *ai = dfd_arch_find(c->meta.arch);
    if (!ai || !ai->has_head) {
        rc = dfd_fail(err, DFD_E_MODEL, "'%s': architecture '%s' is not a classifier", path, c->meta.arch);
        goto fail;
    }
    c->is_video = ai->is_video;
    const char *o = c->meta.output ? c->meta.output : DFD_MODEL_OUTPUT_LOGIT;
    if (strcmp(o, "logit_p_fake") == 0) {
        c->output_logit = 1;
    } else if (strcmp(o, "logit_p_real") == 0) {
        c->output_logit = 1, c->output_p_real = 1;
    } else if (strcmp(o, "sigmoid_p_real") == 0) {
        c->output_p_real = 1;
    } else if (strcmp(o, "sigmoid_p_fake") != 0) {
        rc = dfd_fail(err, DFD_E_MODEL, "'%s': unknown output meaning '%s'", path, o);
        goto fail;
    }
    dfd_crop_contract_default(&c->crop, c->meta.input_size);
    if (c->meta.preprocess && (rc = dfd_crop_contract_from_json(c->meta.preprocess, &c->crop, err))) goto fail;
    c->crop.size = c->meta.input_size; /* the network's input decides the crop's size */
    nn_exec_opts eo;
    nn_exec_opts_default(&eo);
    eo.max_batch = CLS_MAX_BATCH;
    eo.threads = threads;
    if ((rc = nn_exec_create(c->g, &eo, &c->ex, err))) goto fail;
    size_t per = (size_t)c->meta.input_size * (size_t)c->meta.input_size * 3u * (size_t)(c->is_video ? c->meta.frames : 1);
    c->input = dfd_malloc_array(per * CLS_MAX_BATCH, sizeof(float));
    c->name = model_name(path);
    if (!c->input || !c->name) {
        rc = dfd_fail(err, DFD_E_NOMEM, "out of memory");
        goto fail;
    }
    *out = c;
    return DFD_OK;
fail:
    dfd_classifier_free(c);
    return rc;
}

const char *dfd_classifier_name(const dfd_classifier *c) { return c->name; }
double dfd_classifier_threshold(const dfd_classifier *c) { return c->meta.threshold; }
const dfd_crop_contract *dfd_classifier_contract(const dfd_classifier *c) { return &c->crop; }
int dfd_classifier_frames(const dfd_classifier *c) { return c->is_video ? c->meta.frames : 0; }
const char *dfd_classifier_task(const dfd_classifier *c) {
    return c->meta.task ? c->meta.task : DFD_MODEL_TASK_MANIPULATION;
}

static double to_p_fake(const dfd_classifier *c, float y) {
    double p = c->output_logit ? 1.0 / (1.0 + exp(-(double)y)) : (double)y;
    return c->output_p_real ? 1.0 - p : p;
}

/* Runs `batch` prepared items and writes their P(fake). */
static int run_batch(dfd_classifier *c, int batch, double *p_fake, dfd_error *err) {
    int rc = nn_forward(c->ex, c->input, batch, err);
    if (rc) return rc;
    size_t n;
    const float *y = nn_output(c->ex, 0, &n);
    if (!y || n < (size_t)batch) return dfd_fail(err, DFD_E_INTERNAL, "classifier produced no output");
    for (int i = 0; i < batch; i++) p_fake[i] = to_p_fake(c, y[i]);
    return DFD_OK;
}

/* Scores image crops (already c->crop.size square). With flip averaging, each crop is
 * scored as is and mirrored and the two P(fake) averaged: a face and its mirror image are
 * equally fake, and averaging halves the model's left/right noise. */
int dfd_classifier_score(dfd_classifier *c, const dfd_image *crops, int n, int flip_tta, double *p_fake,
                         dfd_error *err) {
    if (c->is_video) return dfd_fail(err, DFD_E_ARG, "a video model cannot score single crops");
    const int S = c->crop.size;
    const size_t per = (size_t)S * S * 3;
    int passes = flip_tta ? 2 : 1;
    double tmp[CLS_MAX_BATCH];
    dfd_image flipped = {0};
    for (int i = 0; i < n; i++) p_fake[i] = 0;
    for (int pass = 0; pass < passes; pass++) {
        for (int start = 0; start < n; start += CLS_MAX_BATCH) {
            int b = n - start < CLS_MAX_BATCH ? n - start : CLS_MAX_BATCH;
            for (int k = 0; k < b; k++) {
                const dfd_image *im = &crops[start + k];
                if (im->w != S || im->h != S) {
                    dfd_image_free(&flipped);
                    return dfd_fail(err, DFD_E_ARG, "crop is %dx%d, the model takes %dx%d", im->w, im->h, S, S);
                }
                if (pass == 1) {
                    int rc = dfd_image_copy(im, &flipped, err);
                    if (rc) return rc;
                    dfd_image_flip_h(&flipped);
                    dfd_crop_normalize(&flipped, c->crop.norm, c->input + (size_t)k * per);
                    dfd_image_free(&flipped);
                } else {
                    dfd_crop_normalize(im, c->crop.norm, c->input + (size_t)k * per);
                }
            }
            int rc = run_batch(c, b, tmp, err);
            if (rc) return rc;
            for (int k = 0; k < b; k++) p_fake[start + k] += tmp[k] / passes;
        }
    }
    return DFD_OK;
}

/* Scores one sequence of crops with a video model. Tracks shorter than the model's
 * frame count are stretched by repeating crops evenly (nearest index), so every model
 * input is a real face in time order. */
int dfd_classifier_score_sequence(dfd_classifier *c, const dfd_image *crops, int n, double *p_fake, dfd_error *err) {
    if (!c->is_video) return dfd_fail(err, DFD_E_ARG, "not a video model");
    if (n <= 0) return dfd_fail(err, DFD_E_ARG, "empty sequence");
    const int T = c->meta.frames, S = c->crop.size;
    const size_t per = (size_t)S * S * 3;
    for (int t = 0; t < T; t++) {
        int src = (int)((long long)t * n / T);
        const dfd_image *im = &crops[src];
        if (im->w != S || im->h != S) return dfd_fail(err, DFD_E_ARG, "crop size does not match the model");
        dfd_crop_normalize(im, c->crop.norm, c->input + (size_t)t * per);
    }
    return run_batch(c, 1, p_fake, err);
}
