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
/* the fast occlusion's probe side, in heat-map cells, and its budget of network passes
 * (probes x an ensemble's members; see occ_fast_stride) */
#define OCC_FAST_PATCH 1
#define OCC_FAST_PASSES 50

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
    /* Grad-CAM: per network (an ensemble has several), the feature map under its head's
     * global average pooling, the dense kernel that weighs its channels, and the weight of
     * its logit in the output (1 for one network); n_cam 0 when the head is not
     * GAP -> [dropout] -> dense(1) (see find_cam). */
    int n_cam;
    int cam_nodes[DFD_MODEL_MAX_MEMBERS];
    const float *cam_ws[DFD_MODEL_MAX_MEMBERS];
    float cam_mix[DFD_MODEL_MAX_MEMBERS];
    int cam_h, cam_wd, cam_c;
    nn_exec *gex;       /* gradient methods: a training-mode executor made on first use */
    int gc_node;        /* Grad-CAM's layer (DFD_EXPLAIN_GRADCAM), -1 when none */
    int threads;
};

int dfd_model_build_graph(void *user, const dfd_model_meta *m, nn_graph **out, dfd_error *err) {
    (void)user;
    dfd_arch_opts o;
    dfd_arch_opts_default(&o);
    o.input_size = m->input_size;
    o.frames = m->frames;
    o.width = m->width;
    o.dropout = m->dropout;
    o.members = m->members;
    return dfd_arch_build(m->arch, &o, out, err);
}

/* 1 when node d is a dense layer with one linear unit (a logit). */
static int linear_unit(const nn_node *d) {
    return d && d->op == NN_OP_DENSE && d->a.dense.units == 1 && d->a.dense.act == NN_ACT_NONE && d->params[0] >= 0;
}

/* The feature map under dense node d when d is a linear dense(1) over GAP -> [dropout]
 * (nn_graph_pooled_map), or -1; *w receives its kernel. */
static int pooled_head(const dfd_classifier *c, const nn_node *d, const float **w) {
    int f = nn_graph_pooled_map(c->g, d);
    if (f >= 0) *w = nn_graph_param(c->g, d->params[0])->data;
    return f;
}

/* Grad-CAM's layers. The head must be feature map -> GAP -> [dropout] -> dense with one
 * linear unit, so that the logit is sum_c w_c mean_hw A[h,w,c] + b, d(logit)/dA[h,w,c] =
 * w_c / HW for every cell, and Grad-CAM's channel weights are the dense kernel itself
 * (Grad-CAM on the last convolutional block is CAM here): no backward pass is needed.
 * An ensemble (models.h: N such heads, their logits joined and weighed by a dense(1)) has
 * logit = sum_m u_m logit_m, so its Grad-CAM weighs network m's channel c by u_m w_mc:
 * one CAM over all the networks' feature maps (they have one shape). */
static void find_cam(dfd_classifier *c) {
    c->gc_node = -1;
    c->n_cam = 0;
    if (c->is_video || nn_graph_output_count(c->g) < 1) return;
    const nn_node *d = nn_graph_node(c->g, nn_graph_output(c->g, 0));
    const float *w = NULL;
    int f = pooled_head(c, d, &w);
    if (f >= 0) {
        c->cam_nodes[0] = f, c->cam_ws[0] = w, c->cam_mix[0] = 1.0f, c->n_cam = 1;
    } else if (linear_unit(d)) {
        const nn_node *j = nn_graph_node(c->g, d->inputs[0]);
        const nn_param *u = nn_graph_param(c->g, d->params[0]);
        if (!j || j->op != NN_OP_CONCAT || j->n_inputs > DFD_MODEL_MAX_MEMBERS || u->count != (size_t)j->n_inputs)
            return;
        for (int m = 0; m < j->n_inputs; m++) {
            int fm = pooled_head(c, nn_graph_node(c->g, j->inputs[m]), &w);
            const nn_node *a = fm >= 0 ? nn_graph_node(c->g, fm) : NULL;
            const nn_node *b = nn_graph_node(c->g, c->n_cam ? c->cam_nodes[0] : fm);
            if (!a || memcmp(a->shape, b->shape, 3 * sizeof a->shape[0]) != 0) {
                c->n_cam = 0; /* not an ensemble of pooled heads: no Grad-CAM */
                return;
            }
            c->cam_nodes[c->n_cam] = fm, c->cam_ws[c->n_cam] = w, c->cam_mix[c->n_cam] = u->data[m], c->n_cam++;
        }
    }
    if (c->n_cam == 0) return;
    f = c->cam_nodes[0];
    const nn_node *fn = nn_graph_node(c->g, f);
    c->cam_h = fn->shape[0], c->cam_wd = fn->shape[1], c->cam_c = fn->shape[2];
    if (c->n_cam > 1) return; /* gradcam-mid: one network's layer only */
    /* The middle layer for "gradcam-mid": the last feature map at twice the pooled map's
     * resolution (8 x 8 for a 128 px MobileNetV2, whose last block gives 4 x 4). */
    for (int i = 0; i < f; i++) {
        const nn_node *n = nn_graph_node(c->g, i);
        if (n->ndim == 3 && n->batch_mul == 1 && n->shape[0] == 2 * c->cam_h && n->shape[1] == 2 * c->cam_wd &&
            (n->op == NN_OP_ACT || n->op == NN_OP_ADD || n->op == NN_OP_CONV2D))
            c->gc_node = i;
    }
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
    nn_exec_free(c->gex);
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
    int rc = dfd_model_load(path, dfd_model_build_graph, NULL, &c->g, &c->meta, err);
    if (rc) goto fail;
    const dfd_arch_info *ai = dfd_arch_find(c->meta.arch);
    if (!ai || !ai->has_head) {
        rc = dfd_fail(err, DFD_E_MODEL, "'%s': architecture '%s' is not a classifier", path, c->meta.arch);
        goto fail;
    }
    c->is_video = ai->is_video;
    c->threads = threads;
    find_cam(c);
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
    double p = c->output_logit ? dfd_sigmoid((double)y) : (double)y;
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

/* ---- Heat maps (Grad-CAM, occlusion) --------------------------------------------- */

const char *dfd_explain_method_name(int method) {
    switch (method) {
    case DFD_EXPLAIN_GRADCAM: return "gradcam";
    case DFD_EXPLAIN_GRADCAM_MID: return "gradcam-mid";
    case DFD_EXPLAIN_GRADCAMPP: return "gradcam++";
    case DFD_EXPLAIN_GRADCAMPP_FINE: return "gradcam++fine";
    case DFD_EXPLAIN_OCCLUSION_FAST: return "occlusion-fast";
    case DFD_EXPLAIN_OCCLUSION: return "occlusion";
    case DFD_EXPLAIN_GRADXINPUT: return "gradxinput";
    case DFD_EXPLAIN_CAM: return "cam";
    case DFD_EXPLAIN_GRADCAM_FULL: return "gradcam-full";
    default: return NULL;
    }
}


/* Scales v (n values) to [0, 1] by its maximum, after clipping negatives (evidence against
 * "fake") to 0; all zeros when nothing speaks for "fake". */
static void normalize_map(float *v, int n) {
    float mx = 0;
    for (int i = 0; i < n; i++) {
        if (!(v[i] > 0)) v[i] = 0; /* also NaN */
        if (v[i] > mx) mx = v[i];
    }
    for (int i = 0; i < n; i++) v[i] = mx > 0 ? v[i] / mx : 0;
}

/* Bilinear resampling of an h x w map to the heat grid, pixel centres aligned (as an
 * image resize): each grid cell takes the value at its centre. */
static void resample_to_grid(const float *src, int h, int w, float *dst) {
    const int G = DFD_HEAT_GRID;
    for (int gy = 0; gy < G; gy++) {
        float fy = ((float)gy + 0.5f) * (float)h / (float)G - 0.5f;
        if (fy < 0) fy = 0;
        if (fy > (float)(h - 1)) fy = (float)(h - 1);
        int y0 = (int)fy, y1 = y0 + 1 < h ? y0 + 1 : y0;
        float ty = fy - (float)y0;
        for (int gx = 0; gx < G; gx++) {
            float fx = ((float)gx + 0.5f) * (float)w / (float)G - 0.5f;
            if (fx < 0) fx = 0;
            if (fx > (float)(w - 1)) fx = (float)(w - 1);
            int x0 = (int)fx, x1 = x0 + 1 < w ? x0 + 1 : x0;
            float tx = fx - (float)x0;
            float a = src[y0 * w + x0] * (1 - tx) + src[y0 * w + x1] * tx;
            float b = src[y1 * w + x0] * (1 - tx) + src[y1 * w + x1] * tx;
            dst[gy * G + gx] = a * (1 - ty) + b * ty;
        }
    }
}

/* Grad-CAM on the feature map under the pooling head, for each of n crops and, with
 * `mirror`, its mirror image (as the score averages the two; the mirror's map is flipped
 * back before averaging), in one pass (2n or n <= CLS_MAX_BATCH: the shifted crops of
 * gradcam-full batch well). Writes crop i's H x W map (ReLU applied) into cam + i H W. */
static int gradcam_cells(dfd_classifier *c, const dfd_image *crops, int n, int mirror, int plus, int relu, float *cam,
                         dfd_error *err) {
    const int S = c->crop.size, H = c->cam_h, W = c->cam_wd, C = c->cam_c, P = mirror ? 2 : 1, B = P * n;
    const size_t per = (size_t)S * S * 3;
    if (n < 1 || B > CLS_MAX_BATCH) return dfd_fail(err, DFD_E_INTERNAL, "Grad-CAM: %d crops in one pass", n);
    dfd_image flipped = {0};
    int rc = DFD_OK;
    for (int i = 0; rc == DFD_OK && i < n; i++) {
        dfd_crop_normalize(&crops[i], c->crop.norm, c->input + (size_t)(P * i) * per);
        if (!mirror) continue;
        if ((rc = dfd_image_copy(&crops[i], &flipped, err))) break;
        dfd_image_flip_h(&flipped);
        dfd_crop_normalize(&flipped, c->crop.norm, c->input + (size_t)(2 * i + 1) * per);
        dfd_image_free(&flipped);
    }
    if (rc || (rc = nn_forward(c->ex, c->input, B, err))) return rc;
    float *wt = dfd_malloc_array((size_t)B * C, sizeof(float));
    if (!wt) return dfd_fail(err, DFD_E_NOMEM, "out of memory");
    for (int i = 0; i < n * H * W; i++) cam[i] = 0;
    const float sign = c->output_p_real ? -1.0f : 1.0f; /* towards "fake" */
    for (int m = 0; m < c->n_cam; m++) {
        size_t got = 0;
        const float *A = nn_node_output(c->ex, c->cam_nodes[m], &got);
        if (!A || got < (size_t)B * H * W * C) {
            free(wt);
            return dfd_fail(err, DFD_E_INTERNAL, "Grad-CAM: the feature map of '%s' is not kept by the executor",
                            nn_graph_node(c->g, c->cam_nodes[m])->name);
        }
        /* Channel weights per pass. Grad-CAM: the gradient averaged over the map, which for
         * this head is w_c / HW everywhere (a constant factor, dropped). Grad-CAM++
         * (Chattopadhay et al. 2018, on exp(logit)): with a linear head its higher
         * derivatives are powers of g = w_c / HW, and the weight is HW relu(g) / (2 + g
         * sum_ij A_ij): only channels that raise P(fake), damped where a channel is active
         * over much of the map. In an ensemble w_c is u_m w_mc (see find_cam). */
        for (int b = 0; b < B; b++)
            for (int k = 0; k < C; k++) {
                float g = sign * c->cam_mix[m] * c->cam_ws[m][k];
                if (!plus) {
                    wt[(size_t)b * C + k] = g;
                    continue;
                }
                g /= (float)(H * W);
                double sum = 0;
                for (int i = 0; i < H * W; i++) sum += A[(size_t)b * H * W * C + (size_t)i * C + k];
                double den = 2.0 + (double)g * sum;
                wt[(size_t)b * C + k] = g > 0 && den > 0 ? (float)((double)(H * W) * g / den) : 0.0f;
            }
        for (int i = 0; i < n; i++) {
            const float *A0 = A + (size_t)(P * i) * H * W * C, *w0 = wt + (size_t)(P * i) * C;
            const float *A1 = A0 + (size_t)H * W * C, *w1 = w0 + C;
            for (int y = 0; y < H; y++)
                for (int x = 0; x < W; x++) {
                    const float *a0 = A0 + ((size_t)y * W + x) * C; /* the crop */
                    double sum = 0;
                    for (int k = 0; k < C; k++) sum += (double)w0[k] * a0[k];
                    if (mirror) { /* and its mirror, flipped back */
                        const float *a1 = A1 + ((size_t)y * W + (W - 1 - x)) * C;
                        for (int k = 0; k < C; k++) sum += (double)w1[k] * a1[k];
                        sum *= 0.5;
                    }
                    cam[(size_t)i * H * W + y * W + x] += (float)sum;
                }
        }
    }
    free(wt);
    /* ReLU before resampling, as Grad-CAM: only what raises the logit. Without it (CAM), the
     * lowest cell is set to 0: the map ranks every cell, also where none raises the logit. */
    for (int i = 0; i < n; i++) {
        float *ci = cam + (size_t)i * H * W;
        float lo = ci[0];
        for (int j = 1; j < H * W; j++) lo = ci[j] < lo ? ci[j] : lo;
        for (int j = 0; j < H * W; j++) {
            if (!relu) ci[j] -= lo;
            if (!(ci[j] > 0)) ci[j] = 0;
        }
    }
    return DFD_OK;
}

static int explain_gradcam(dfd_classifier *c, const dfd_image *crop, int plus, int relu, float *map, dfd_error *err) {
    const int H = c->cam_h, W = c->cam_wd;
    float *cam = dfd_malloc_array((size_t)H * W, sizeof(float));
    if (!cam) return dfd_fail(err, DFD_E_NOMEM, "out of memory");
    int rc = gradcam_cells(c, crop, 1, 1, plus, relu, cam, err);
    if (rc == DFD_OK) {
        resample_to_grid(cam, H, W, map);
        normalize_map(map, DFD_HEAT_CELLS);
    }
    free(cam);
    return rc;
}

/* Grad-CAM++ at twice the feature map's resolution: the map of the crop moved by a quarter
 * of a feature cell (S / 4W pixels) up or down and left or right, edges replicated. Each of
 * the four H x W maps then samples the face at centres half a cell apart from the others',
 * so interleaved they form one 2H x 2W map on the same lattice as an unmoved map would be
 * at that resolution (cell k centred at (k + 0.5) S / 2W); in general k x k moves, each
 * with its mirror or (`mirror` 0) without, batched. gradcam++fine is k = 2 with mirrors;
 * gradcam-full k = 4 (for a 4 x 4 map) without: on dfd-image-5's 500 elliptical
 * self-blends the mirrors changed no figure beyond noise (pointing 87.8% against 89.2%,
 * mass 2.12 x against 2.14 x chance) and doubled the cost (docs/explain.md). */
static int explain_gradcam_shifted(dfd_classifier *c, const dfd_image *crop, int k, int plus, int mirror, float *map,
                                   dfd_error *err) {
    /* the shifted crops of one pass: as many as the batch holds (half with their mirrors),
     * no more than there are shifts */
    int per_pass = mirror ? CLS_MAX_BATCH / 2 : CLS_MAX_BATCH;
    if (per_pass > k * k) per_pass = k * k;
    const int S = c->crop.size, H = c->cam_h, W = c->cam_wd;
    float *cam = dfd_malloc_array((size_t)per_pass * H * W, sizeof(float)),
          *fine = dfd_malloc_array((size_t)k * k * H * W, sizeof(float));
    dfd_image moved[CLS_MAX_BATCH] = {{0}};
    int rc = cam && fine ? DFD_OK : dfd_fail(err, DFD_E_NOMEM, "out of memory");
    for (int i = 0; rc == DFD_OK && i < per_pass; i++) rc = dfd_image_alloc(&moved[i], S, S, err);
    for (int q0 = 0; rc == DFD_OK && q0 < k * k; q0 += per_pass) {
        const int n = k * k - q0 < per_pass ? k * k - q0 : per_pass;
        for (int i = 0; i < n; i++) {
            /* shift s of each axis samples the face ((s + 0.5) / k - 0.5) of a feature cell
             * away from the unmoved map's centres: k = 2 gives -1/4 and +1/4 */
            const int sy = (q0 + i) / k, sx = (q0 + i) % k;
            const int oy = (int)lrintf(((float)sy + 0.5f) / (float)k * (float)S / (float)H - 0.5f * (float)S / (float)H);
            const int ox = (int)lrintf(((float)sx + 0.5f) / (float)k * (float)S / (float)W - 0.5f * (float)S / (float)W);
            for (int y = 0; y < S; y++) {
                int yy = y + oy < 0 ? 0 : y + oy >= S ? S - 1 : y + oy;
                for (int x = 0; x < S; x++) {
                    int xx = x + ox < 0 ? 0 : x + ox >= S ? S - 1 : x + ox;
                    memcpy(moved[i].rgb + ((size_t)y * S + x) * 3, crop->rgb + ((size_t)yy * S + xx) * 3, 3);
                }
            }
        }
        rc = gradcam_cells(c, moved, n, mirror, plus, 1, cam, err);
        for (int i = 0; rc == DFD_OK && i < n; i++) {
            const int sy = (q0 + i) / k, sx = (q0 + i) % k;
            for (int y = 0; y < H; y++)
                for (int x = 0; x < W; x++)
                    fine[(size_t)(k * y + sy) * k * W + k * x + sx] = cam[(size_t)i * H * W + y * W + x];
        }
    }
    if (rc == DFD_OK) {
        resample_to_grid(fine, k * H, k * W, map);
        normalize_map(map, DFD_HEAT_CELLS);
    }
    for (int i = 0; i < per_pass; i++) dfd_image_free(&moved[i]);
    free(cam), free(fine);
    return rc;
}

/* The cells of the crop (grid cell (gy, gx) covers rows gy*S/G .. (gy+1)*S/G). */
static void cell_rect(int S, int gy, int gx, int *y0, int *y1, int *x0, int *x1) {
    const int G = DFD_HEAT_GRID;
    *y0 = gy * S / G, *y1 = (gy + 1) * S / G, *x0 = gx * S / G, *x1 = (gx + 1) * S / G;
}

/* Sets the network input of the given cells to the same cells of `from` (an S x S x 3
 * input), or, from NULL, to 0 (the middle of the input range: grey). */
static void blank_cells(float *in, int S, const unsigned char *cells, const float *from) {
    const int G = DFD_HEAT_GRID;
    for (int gy = 0; gy < G; gy++)
        for (int gx = 0; gx < G; gx++) {
            if (!cells[gy * G + gx]) continue;
            int y0, y1, x0, x1;
            cell_rect(S, gy, gx, &y0, &y1, &x0, &x1);
            for (int y = y0; y < y1; y++) {
                float *dst = in + ((size_t)y * S + x0) * 3;
                size_t bytes = (size_t)(x1 - x0) * 3 * sizeof(float);
                if (from) memcpy(dst, from + ((size_t)y * S + x0) * 3, bytes);
                else memset(dst, 0, bytes);
            }
        }
}

/* One pass of a box blur of radius r along the rows (or, vertical, the columns) of an
 * S x S x 3 image, from src into dst, the edges replicated. */
static void box_pass(const float *src, float *dst, int S, int r, int vertical) {
    const float inv = 1.0f / (float)(2 * r + 1);
    /* element k of line `line`, channel ch, is at base + k * step */
    const size_t step = vertical ? (size_t)S * 3 : 3, across = vertical ? 3 : (size_t)S * 3;
    for (int line = 0; line < S; line++)
        for (int ch = 0; ch < 3; ch++) {
            const size_t base = (size_t)line * across + (size_t)ch;
            float acc = 0;
            for (int k = -r; k <= r; k++) acc += src[base + (size_t)(k < 0 ? 0 : k >= S ? S - 1 : k) * step];
            for (int k = 0; k < S; k++) {
                dst[base + (size_t)k * step] = acc * inv;
                int out = k - r < 0 ? 0 : k - r, in = k + r + 1 >= S ? S - 1 : k + r + 1;
                acc += src[base + (size_t)in * step] - src[base + (size_t)out * step];
            }
        }
}

/* A blurred copy of an S x S x 3 input into out (three box passes each way: close to a
 * Gaussian of sigma ~ 0.8 cell). */
static int blurred_input(const float *in, int S, float *out, dfd_error *err) {
    const int r = S / DFD_HEAT_GRID * 3 / 4 > 1 ? S / DFD_HEAT_GRID * 3 / 4 : 1;
    const size_t n = (size_t)S * S * 3;
    float *tmp = dfd_malloc_array(n, sizeof *tmp);
    if (!tmp) return dfd_fail(err, DFD_E_NOMEM, "out of memory");
    memcpy(out, in, n * sizeof *out);
    for (int pass = 0; pass < 3; pass++) {
        box_pass(out, tmp, S, r, 0);
        box_pass(tmp, out, S, r, 1);
    }
    free(tmp);
    return DFD_OK;
}

int dfd_classifier_score_blanked(dfd_classifier *c, const dfd_image *crop, const unsigned char *cells, int how,
                                 const dfd_image *src, double *p_fake, dfd_error *err) {
    const int S = c->crop.size;
    if (c->is_video) return dfd_fail(err, DFD_E_ARG, "a video model cannot score single crops");
    if (crop->w != S || crop->h != S) return dfd_fail(err, DFD_E_ARG, "crop is %dx%d, the model takes %dx%d", crop->w, crop->h, S, S);
    if (how != DFD_BLANK_GREY && how != DFD_BLANK_BLUR && how != DFD_BLANK_SOURCE)
        return dfd_fail(err, DFD_E_ARG, "unknown blanking %d", how);
    if (how == DFD_BLANK_SOURCE && (!src || src->w != S || src->h != S))
        return dfd_fail(err, DFD_E_ARG, "blanking from a source needs a %dx%d source image", S, S);
    dfd_crop_normalize(crop, c->crop.norm, c->input);
    if (cells && how == DFD_BLANK_GREY) blank_cells(c->input, S, cells, NULL);
    if (cells && how != DFD_BLANK_GREY) {
        /* what shows through the cells: the blurred crop, or the source */
        float *from = dfd_malloc_array((size_t)S * S * 3, sizeof *from);
        if (!from) return dfd_fail(err, DFD_E_NOMEM, "out of memory");
        int rc = DFD_OK;
        if (how == DFD_BLANK_BLUR) rc = blurred_input(c->input, S, from, err);
        else dfd_crop_normalize(src, c->crop.norm, from);
        if (rc == DFD_OK) blank_cells(c->input, S, cells, from);
        free(from);
        if (rc) return rc;
    }
    return run_batch(c, 1, p_fake, err);
}

/* Where patch q of a row starts, in cells: every `stride` cells, the last against the
 * far edge; stride 1: centred on cell q (cut by the crop's edge). */
static int patch_start(int q, int patch, int stride) {
    const int G = DFD_HEAT_GRID;
    if (stride == 1) return q - patch / 2;
    return q * stride < G - patch ? q * stride : G - patch;
}

/* The cells patch k hides (see explain_occlusion). */
static void patch_cells(int k, int per_row, int patch, int stride, unsigned char *cells) {
    const int G = DFD_HEAT_GRID;
    int y0 = patch_start(k / per_row, patch, stride), x0 = patch_start(k % per_row, patch, stride);
    memset(cells, 0, DFD_HEAT_CELLS);
    for (int y = y0; y < y0 + patch; y++)
        for (int x = x0; x < x0 + patch; x++)
            if (y >= 0 && y < G && x >= 0 && x < G) cells[y * G + x] = 1;
}

/* Spreads a per_row x per_row grid of probe values (probe q's centre at cell ctr[q] of
 * each axis) over the heat grid: bilinear between the centres around a cell, the nearest
 * centre's value past the outer ones. */
static void interpolate_probes(const float *probe, int per_row, const float *ctr, float *map) {
    const int G = DFD_HEAT_GRID;
    int lo[DFD_HEAT_GRID];
    float t[DFD_HEAT_GRID];
    for (int i = 0; i < G; i++) {
        int q = 0;
        while (q + 2 < per_row && ctr[q + 1] <= (float)i) q++;
        float u = ctr[q + 1] > ctr[q] ? ((float)i - ctr[q]) / (ctr[q + 1] - ctr[q]) : 0;
        lo[i] = q, t[i] = u < 0 ? 0 : u > 1 ? 1 : u;
    }
    for (int y = 0; y < G; y++)
        for (int x = 0; x < G; x++) {
            const float *r0 = probe + lo[y] * per_row + lo[x], *r1 = r0 + per_row;
            float top = (1 - t[x]) * r0[0] + t[x] * r0[1], bottom = (1 - t[x]) * r1[0] + t[x] * r1[1];
            map[y * G + x] = (1 - t[y]) * top + t[y] * bottom;
        }
}

/* How many probes a row of the heat grid holds for patches of `patch` cells every
 * `stride` cells (see patch_start). */
static int probes_per_row(int patch, int stride) {
    return stride == 1 ? DFD_HEAT_GRID : (DFD_HEAT_GRID - patch + stride - 1) / stride + 1;
}

/* The fast occlusion's lattice: the densest stride (3 or more cells) whose probes, each run
 * by every member of an ensemble, stay within OCC_FAST_PASSES network passes: every third
 * cell (6 x 6 = 36 probes) for one network, every fourth (5 x 5) for two, every fifth
 * (4 x 4) for three, never fewer than 3 x 3 (so six or more members pass the budget).
 * Why a budget: heat maps may cost at most 3 x an analysis without them (issue 17), and
 * an ensemble's every pass costs its members' sum; 36 probes on a two-network ensemble
 * measured 3.3-3.4 x (docs/explain.md, "Cost"). */
static int occ_fast_stride(const dfd_classifier *c) {
    const int members = c->meta.members > 1 ? c->meta.members : 1;
    for (int stride = 3;; stride++) {
        int per_row = probes_per_row(OCC_FAST_PATCH, stride);
        if (per_row * per_row * members <= OCC_FAST_PASSES || per_row <= 3) return stride;
    }
}

/* Occlusion: how much P(fake) falls when a grey patch hides part of the crop (no mirror
 * averaging: the passes are costly enough).
 * Full occlusion (DFD_EXPLAIN_OCCLUSION, stride 1): 3 x 3-cell patches centred on every
 * cell, 256 passes (edge patches cut by the crop), each cell its own patch's fall.
 * The fast one (stride 3): one-cell probes every third cell each way (cells 0, 3, ..., 15:
 * 36 passes), each probe's fall placed at its cell and the cells between interpolated.
 * Why single cells, measured on 500 self-blended fakes (docs/explain.md): a grey block is
 * itself a blending artefact to this detector, so the larger the block the more its fall
 * mixes the evidence removed with the edge added; one-cell probes, interpolated, made the
 * map more faithful on every measure than 3 x 3 blocks at the same 36 passes (restoring the
 * map's top cells lowers P(fake) by 0.211 against 0.161), and interpolating places the
 * peak at a probe rather than on a block's corner. */
static int explain_occlusion(dfd_classifier *c, const dfd_image *crop, int patch, int stride, float *map,
                             dfd_error *err) {
    const int S = c->crop.size;
    const int per_row = probes_per_row(patch, stride), n = per_row * per_row;
    const size_t per = (size_t)S * S * 3;
    double p0, p[CLS_MAX_BATCH];
    int rc = dfd_classifier_score_blanked(c, crop, NULL, DFD_BLANK_GREY, NULL, &p0, err);
    if (rc) return rc;
    float *base = dfd_malloc_array(per, sizeof(float));
    if (!base) return dfd_fail(err, DFD_E_NOMEM, "out of memory");
    dfd_crop_normalize(crop, c->crop.norm, base);
    unsigned char cells[DFD_HEAT_CELLS];
    float fall[DFD_HEAT_CELLS]; /* per patch; n <= DFD_HEAT_CELLS */
    for (int start = 0; start < n && rc == DFD_OK; start += CLS_MAX_BATCH) {
        int b = n - start < CLS_MAX_BATCH ? n - start : CLS_MAX_BATCH;
        for (int k = 0; k < b; k++) {
            patch_cells(start + k, per_row, patch, stride, cells);
            memcpy(c->input + (size_t)k * per, base, per * sizeof(float));
            blank_cells(c->input + (size_t)k * per, S, cells, NULL);
        }
        rc = run_batch(c, b, p, err);
        for (int k = 0; rc == DFD_OK && k < b; k++) fall[start + k] = (float)(p0 - p[k]);
    }
    free(base);
    if (rc) return rc;
    if (stride == 1) {
        memcpy(map, fall, DFD_HEAT_CELLS * sizeof *map);
    } else {
        float ctr[DFD_HEAT_GRID];
        for (int q = 0; q < per_row; q++) ctr[q] = (float)patch_start(q, patch, stride) + (float)(patch - 1) / 2;
        interpolate_probes(fall, per_row, ctr, map);
    }
    normalize_map(map, DFD_HEAT_CELLS);
    return DFD_OK;
}

/* The training-mode executor of the gradient methods, made on first use with every layer
 * frozen (batch-norm on its moving statistics, as in inference) and dropout off, which
 * changes nothing for the inference executor (it never reads either). */
static int make_gex(dfd_classifier *c, dfd_error *err) {
    if (c->gex) return DFD_OK;
    nn_graph_set_trainable(c->g, NULL, 0);
    nn_graph_freeze_bn_stats(c->g, 1);
    for (int i = 0; i < nn_graph_node_count(c->g); i++) {
        nn_node *n = nn_graph_node_mut(c->g, i);
        if (n->op == NN_OP_DROPOUT) n->a.dropout.rate = 0;
    }
    nn_exec_opts eo;
    nn_exec_opts_default(&eo);
    eo.max_batch = 2;
    eo.training = 1;
    eo.precision = NN_PREC_F32;
    eo.threads = c->threads;
    return nn_exec_create(c->g, &eo, &c->gex, err);
}

/* Forward and backward of the crop and its mirror in the gradient executor, from
 * d(logit of "fake") = 1 for both. */
static int grad_pass(dfd_classifier *c, const dfd_image *crop, dfd_error *err) {
    const size_t per = (size_t)c->crop.size * c->crop.size * 3;
    int rc = make_gex(c, err);
    if (rc) return rc;
    dfd_image flipped = {0};
    if ((rc = dfd_image_copy(crop, &flipped, err))) return rc;
    dfd_image_flip_h(&flipped);
    dfd_crop_normalize(crop, c->crop.norm, c->input);
    dfd_crop_normalize(&flipped, c->crop.norm, c->input + per);
    dfd_image_free(&flipped);
    if ((rc = nn_forward(c->gex, c->input, 2, err))) return rc;
    const float sign = c->output_p_real ? -1.0f : 1.0f;
    float dy[2] = {sign, sign};
    const float *douts[1] = {dy};
    return nn_backward(c->gex, douts, err);
}

/* Grad-CAM (Selvaraju et al. 2017) at the middle layer c->gc_node, by a backward pass: channel weights = the gradient
 * averaged over the map, CAM = ReLU(sum_c weight_c A_c), for the crop and its mirror
 * (flipped back) averaged, resampled to the grid. */
static int explain_gradcam_layer(dfd_classifier *c, const dfd_image *crop, float *map, dfd_error *err) {
    int rc = grad_pass(c, crop, err);
    if (rc) return rc;
    const nn_node *ln = nn_graph_node(c->g, c->gc_node);
    const int H = ln->shape[0], W = ln->shape[1], C = ln->shape[2];
    const size_t per = (size_t)H * W * C;
    size_t na = 0, ng = 0;
    const float *A = nn_node_output(c->gex, c->gc_node, &na), *dA = nn_node_grad(c->gex, c->gc_node, &ng);
    if (!A || !dA || na < 2 * per || ng < 2 * per)
        return dfd_fail(err, DFD_E_INTERNAL, "Grad-CAM: no value or gradient at '%s'", ln->name);
    float *alpha = dfd_malloc_array((size_t)C, sizeof(float)), *cam = dfd_malloc_array((size_t)H * W, sizeof(float));
    if (!alpha || !cam) {
        free(alpha), free(cam);
        return dfd_fail(err, DFD_E_NOMEM, "out of memory");
    }
    for (int i = 0; i < H * W; i++) cam[i] = 0;
    for (int b = 0; b < 2; b++) {
        const float *a = A + b * per, *g = dA + b * per;
        for (int k = 0; k < C; k++) alpha[k] = 0;
        for (int i = 0; i < H * W; i++)
            for (int k = 0; k < C; k++) alpha[k] += g[(size_t)i * C + k] / (float)(H * W);
        for (int y = 0; y < H; y++)
            for (int x = 0; x < W; x++) {
                double v = 0;
                const float *ap = a + ((size_t)y * W + x) * C;
                for (int k = 0; k < C; k++) v += (double)alpha[k] * ap[k];
                if (v < 0) v = 0; /* ReLU per pass, as Grad-CAM */
                cam[y * W + (b ? W - 1 - x : x)] += 0.5f * (float)v;
            }
    }
    resample_to_grid(cam, H, W, map);
    free(alpha);
    free(cam);
    normalize_map(map, DFD_HEAT_CELLS);
    return DFD_OK;
}

/* Gradient x input: d(logit)/d(input) times the input, summed over colour and over each
 * cell's pixels, for the crop and its mirror (flipped back) averaged. The backward pass
 * needs a training-mode executor: made on first use with every layer frozen (batch-norm
 * on its moving statistics, as in inference) and dropout off, which changes nothing for
 * the inference executor (it never reads either). */
static int explain_gradxinput(dfd_classifier *c, const dfd_image *crop, float *map, dfd_error *err) {
    const int S = c->crop.size, G = DFD_HEAT_GRID;
    const size_t per = (size_t)S * S * 3;
    int rc;
    if ((rc = grad_pass(c, crop, err))) return rc;
    const float *gr = nn_input_grad(c->gex);
    if (!gr) return dfd_fail(err, DFD_E_INTERNAL, "gradient x input: no input gradient");
    for (int i = 0; i < DFD_HEAT_CELLS; i++) map[i] = 0;
    for (int b = 0; b < 2; b++)
        for (int y = 0; y < S; y++)
            for (int x = 0; x < S; x++) {
                const size_t o = (size_t)b * per + ((size_t)y * S + x) * 3;
                float v = gr[o] * c->input[o] + gr[o + 1] * c->input[o + 1] + gr[o + 2] * c->input[o + 2];
                int xx = b ? S - 1 - x : x;
                map[(y * G / S) * G + xx * G / S] += 0.5f * v;
            }
    normalize_map(map, DFD_HEAT_CELLS);
    return DFD_OK;
}

int dfd_classifier_heat_method(const dfd_classifier *c) {
    if (c->meta.heatmap && strcmp(c->meta.heatmap, DFD_MODEL_HEATMAP_GRADCAM_FULL) == 0 && c->n_cam > 0)
        return DFD_EXPLAIN_GRADCAM_FULL;
    return DFD_EXPLAIN_OCCLUSION_FAST;
}

int dfd_classifier_explain(dfd_classifier *c, const dfd_image *crop, int method, float *map, dfd_error *err) {
    const int S = c->crop.size;
    if (c->is_video) return dfd_fail(err, DFD_E_ARG, "heat maps are made by image models");
    if (crop->w != S || crop->h != S) return dfd_fail(err, DFD_E_ARG, "crop is %dx%d, the model takes %dx%d", crop->w, crop->h, S, S);
    switch (method) {
    case DFD_EXPLAIN_GRADCAM_MID:
        if (c->gc_node < 0)
            return dfd_fail(err, DFD_E_UNSUPPORTED, "model '%s' has no middle layer for Grad-CAM", c->name);
        return explain_gradcam_layer(c, crop, map, err);
    case DFD_EXPLAIN_GRADCAM:
    case DFD_EXPLAIN_GRADCAMPP:
    case DFD_EXPLAIN_GRADCAMPP_FINE:
    case DFD_EXPLAIN_CAM:
    case DFD_EXPLAIN_GRADCAM_FULL:
        if (c->n_cam == 0)
            return dfd_fail(err, DFD_E_UNSUPPORTED,
                            "model '%s' has no pooled-feature head (GAP -> dense 1) for Grad-CAM", c->name);
        if (method == DFD_EXPLAIN_GRADCAMPP_FINE) return explain_gradcam_shifted(c, crop, 2, 1, 1, map, err);
        if (method == DFD_EXPLAIN_GRADCAM_FULL) {
            int k = DFD_HEAT_GRID / (c->cam_h > c->cam_wd ? c->cam_h : c->cam_wd);
            return explain_gradcam_shifted(c, crop, k < 1 ? 1 : k > 8 ? 8 : k, 0, 0, map, err);
        }
        return explain_gradcam(c, crop, method == DFD_EXPLAIN_GRADCAMPP, method != DFD_EXPLAIN_CAM, map, err);
    case DFD_EXPLAIN_OCCLUSION: return explain_occlusion(c, crop, 3, 1, map, err);
    case DFD_EXPLAIN_OCCLUSION_FAST: return explain_occlusion(c, crop, OCC_FAST_PATCH, occ_fast_stride(c), map, err);
    case DFD_EXPLAIN_GRADXINPUT: return explain_gradxinput(c, crop, map, err);
    default: return dfd_fail(err, DFD_E_ARG, "unknown heat-map method %d", method);
    }
}
