/* model_tools.c — model files as the public API offers them (include/dfd/model.h):
 * importing models made elsewhere (tflite, tfjs, keras; `dfd import`) and reading what a
 * model file says (dfd_model_info). The import formats' settings live here, so a program
 * on the library imports exactly as the CLI does. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "dfd/model.h"
#include "detect/detect.h"
#include "face/face.h"
#include "io/keras.h"
#include "io/model_file.h"
#include "io/tfjs.h"
#include "models/models.h"

void dfd_import_options_default(dfd_import_options *o) { memset(o, 0, sizeof *o); }

static int set_summary(char **summary, dfd_error *err, const char *fmt, ...) DFD_PRINTF(3, 4);
static int set_summary(char **summary, dfd_error *err, const char *fmt, ...) {
    if (!summary) return DFD_OK;
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0) return dfd_fail(err, DFD_E_INTERNAL, "cannot format the import summary");
    if (!(*summary = malloc((size_t)n + 1))) return dfd_fail(err, DFD_E_NOMEM, "out of memory");
    va_start(ap, fmt);
    vsnprintf(*summary, (size_t)n + 1, fmt, ap);
    va_end(ap);
    return DFD_OK;
}

static int import_tflite(const char *in, const char *out, char **summary, dfd_error *err) {
    const char *arch = NULL;
    int rc = dfd_face_import_tflite(in, out, &arch, err);
    if (rc) return rc;
    return set_summary(summary, err, "%s: %s -> %s", arch, in, out);
}

/* The TF.js backbones dfd imports, told apart by a tensor only the second holds (Inception's
 * last convolution). */
static const struct tfjs_net {
    char *arch;          /* registry name, and the model file's */
    const char *title;
    int input_size;      /* Keras's default input */
    int scale_optional;  /* Keras built its batch norms without gamma (left at one) */
    char *training_data;
} tfjs_nets[2] = {
    {"mobilenet_v2", "MobileNetV2", 224, 0,
     "ImageNet-derived MobileNetV2 weights from a TF.js model (e.g. npm nsfwjs); classifier head dropped"},
    {"inception_v3", "Inception v3", 299, 1,
     "ImageNet-derived Inception v3 weights from a TF.js model (e.g. npm nsfwjs); classifier head dropped"},
};

/* The backbone of a TF.js MobileNetV2 or Inception v3: every backbone weight must be in the
 * file (but for the batch-norm scales Keras built Inception without); dense_* layers (the
 * package's own classifier head) are dropped. */
static int import_tfjs(const char *in, const char *out, char **summary, dfd_error *err) {
    int inception = 0;
    int rc = dfd_tfjs_has_weight(in, "conv2d_94/kernel", &inception, err);
    if (rc) return rc;
    const struct tfjs_net *net = &tfjs_nets[inception];
    nn_graph *g = NULL;
    dfd_arch_opts ao;
    dfd_arch_opts_default(&ao);
    ao.input_size = net->input_size;
    static const char *const skip[] = {"dense", NULL};
    dfd_tfjs_report rep;
    rc = dfd_arch_build(net->arch, &ao, &g, err);
    if (!rc) rc = dfd_tfjs_load(in, g, skip, &rep, err);
    int missing = rc ? 0 : rep.params_unset - (net->scale_optional ? rep.gamma_unset : 0);
    if (missing)
        rc = dfd_fail(err, DFD_E_MODEL, "%d %s weights are not in the file (first: '%s')", missing, net->title,
                      rep.first_unset);
    if (!rc) {
        dfd_model_meta m;
        dfd_model_meta_init(&m);
        m.arch = net->arch;
        m.input_size = net->input_size;
        m.output = "features";
        m.training_data = net->training_data;
        rc = dfd_model_save(g, &m, NULL, out, err);
    }
    nn_graph_free(g);
    if (rc) return rc;
    return set_summary(summary, err, "%s: %s -> %s (%d tensors, %d head tensors dropped)", net->arch, in, out,
                       rep.loaded, rep.skipped);
}

/* The original system's Keras models. Preprocessing is the original's: the detector's
 * box without margin, RGB, values / 255 (the importer sets the contract's size to the
 * network's input). */
static int import_keras(const char *in, const char *out, const dfd_import_options *io, char **summary,
                        dfd_error *err) {
    dfd_keras_import_opts o = {0};
    o.arch = io->arch;
    o.input_size = io->input_size;
    o.frames = io->frames;
    dfd_crop_contract c;
    dfd_crop_contract_default(&c, o.input_size ? o.input_size : 299);
    c.margin = 1.0f;
    c.shift_y = 0.0f;
    c.align_roll = 0;
    c.norm = DFD_NORM_0_1;
    char *pre = dfd_crop_contract_to_json(&c);
    if (!pre) return dfd_fail(err, DFD_E_NOMEM, "out of memory");
    o.preprocess = pre;
    dfd_keras_import_report rep;
    int rc = dfd_keras_import(in, out, &o, dfd_model_build_graph, NULL, &rep, err);
    free(pre);
    if (rc) return rc;
    char frames[32] = "";
    if (rep.frames) snprintf(frames, sizeof frames, ", %d frames", rep.frames);
    return set_summary(summary, err, "%s: %s -> %s (%s%s%s, %d weights in %d layers, input %d%s; output read as P(real))",
                       rep.arch, in, out, rep.info.container == DFD_KERAS_ZIP ? ".keras" : ".h5",
                       rep.info.keras_version[0] ? " from Keras " : "", rep.info.keras_version, rep.info.n_weights,
                       rep.info.n_layers, rep.input_size, frames);
}

int dfd_model_import(const char *format, const char *in, const char *out, const dfd_import_options *o,
                     char **summary, dfd_error *err) {
    if (summary) *summary = NULL;
    if (!format || !in || !out) return dfd_fail(err, DFD_E_ARG, "dfd_model_import: a format, an input and an output are needed");
    dfd_import_options def;
    if (!o) dfd_import_options_default(&def), o = &def;
    int keras = strcmp(format, "keras") == 0;
    if (!keras && strcmp(format, "tflite") != 0 && strcmp(format, "tfjs") != 0)
        return dfd_fail(err, DFD_E_UNSUPPORTED, "unknown format '%s' (known: tflite, tfjs, keras)", format);
    if (!keras && (o->arch || o->input_size || o->frames))
        return dfd_fail(err, DFD_E_ARG, "format '%s' takes no options", format);
    if (o->arch && strcmp(o->arch, "xception-image") != 0 && strcmp(o->arch, "xception-video") != 0)
        return dfd_fail(err, DFD_E_ARG, "--arch must be xception-image or xception-video");
    if (o->input_size && (o->input_size < 71 || o->input_size > 2048)) return dfd_fail(err, DFD_E_ARG, "--input-size: 71..2048");
    if (o->frames && (o->frames < 1 || o->frames > 1000)) return dfd_fail(err, DFD_E_ARG, "--frames: 1..1000");
    if (keras) return import_keras(in, out, o, summary, err);
    if (strcmp(format, "tflite") == 0) return import_tflite(in, out, summary, err);
    return import_tfjs(in, out, summary, err);
}

/* ---- What a model file says ------------------------------------------------------------ */

static json_t *json_text(const char *text) {
    json_t *j = text ? json_loads(text, 0, NULL) : NULL;
    return j ? j : json_null();
}

int dfd_model_info(const char *path, char **json, dfd_error *err) {
    if (!json) return dfd_fail(err, DFD_E_ARG, "dfd_model_info: nowhere to put the JSON");
    *json = NULL;
    if (!path) return dfd_fail(err, DFD_E_ARG, "dfd_model_info: no path");
    json_t *o = json_object();
    if (!o) return dfd_fail(err, DFD_E_NOMEM, "out of memory");
    const char *file = strrchr(path, '/');
    file = file ? file + 1 : path;
    json_object_set_new(o, "file", json_string(file));
    size_t len = strlen(file);
    const char *ext = ".safetensors";
    size_t el = strlen(ext);
    json_object_set_new(o, "name", len > el && strcmp(file + len - el, ext) == 0 ? json_stringn(file, len - el)
                                                                                 : json_string(file));
    dfd_st_file *f = NULL;
    dfd_model_meta m;
    dfd_model_meta_init(&m);
    dfd_error e;
    dfd_error_clear(&e);
    int rc = dfd_st_open(path, &f, &e);
    if (!rc) rc = dfd_model_meta_read(f, &m, &e);
    if (rc) {
        json_object_set_new(o, "error", json_string(e.message[0] ? e.message : "cannot read the model file"));
    } else {
        json_object_set_new(o, "architecture", json_string(m.arch ? m.arch : ""));
        json_object_set_new(o, "input_size", json_integer(m.input_size));
        if (m.frames) json_object_set_new(o, "frames", json_integer(m.frames));
        if (m.members > 1) json_object_set_new(o, "members", json_integer(m.members));
        json_object_set_new(o, "task", json_string(m.task ? m.task : DFD_MODEL_TASK_MANIPULATION));
        json_object_set_new(o, "heatmap", json_string(m.heatmap ? m.heatmap : DFD_MODEL_HEATMAP_OCCLUSION));
        json_object_set_new(o, "threshold", json_real(m.threshold));
        json_object_set_new(o, "output", json_string(m.output ? m.output : DFD_MODEL_OUTPUT_LOGIT));
        json_object_set_new(o, "preprocess", json_text(m.preprocess));
        json_t *td = m.training_data ? json_loads(m.training_data, 0, NULL) : NULL; /* JSON, or free text */
        json_object_set_new(o, "training_data", td ? td : m.training_data ? json_string(m.training_data) : json_null());
        json_object_set_new(o, "metrics", json_text(m.metrics));
        json_object_set_new(o, "dfd_version", m.dfd_version ? json_string(m.dfd_version) : json_null());
    }
    dfd_model_meta_free(&m);
    if (f) dfd_st_close(f);
    *json = json_dumps(o, JSON_PRESERVE_ORDER | JSON_COMPACT | JSON_REAL_PRECISION(10));
    json_decref(o);
    if (!*json) return dfd_fail(err, DFD_E_NOMEM, "out of memory");
    if (rc && err) *err = e;
    return rc;
}

/* ---- Ensembles ------------------------------------------------------------------------ */

/* 1 when every tensor of the file is stored as BF16. */
static int all_bf16(const dfd_st_file *f) {
    for (int i = 0; i < dfd_st_count(f); i++)
        if (dfd_st_tensor_at(f, i)->dtype != DFD_ST_BF16) return 0;
    return dfd_st_count(f) > 0;
}

/* Member i's metadata must match member 0's in everything that decides its input and what
 * its output means: the ensemble has one crop and averages logits of one P(fake). */
static int check_member(const dfd_model_meta *m0, const dfd_model_meta *m, const char *path, dfd_error *err) {
    const dfd_arch_info *ai = dfd_arch_find(m->arch);
    if (!ai || !ai->has_head || ai->is_video)
        return dfd_fail(err, DFD_E_ARG, "'%s': architecture '%s' is not an image classifier", path, m->arch);
    if (m->members > 1)
        return dfd_fail(err, DFD_E_ARG, "'%s' is itself an ensemble (%d members): join the single models", path,
                        m->members);
    if (strcmp(m->output ? m->output : DFD_MODEL_OUTPUT_LOGIT, DFD_MODEL_OUTPUT_LOGIT) != 0)
        return dfd_fail(err, DFD_E_ARG, "'%s': output '%s' is not a logit of P(fake) (models dfd trained are)", path,
                        m->output);
    if (m == m0) return DFD_OK;
    if (strcmp(m->arch, m0->arch) != 0 || m->input_size != m0->input_size || m->width != m0->width)
        return dfd_fail(err, DFD_E_ARG, "'%s' is %s at %d px (width %g), the first member %s at %d px (width %g)", path,
                        m->arch, m->input_size, (double)m->width, m0->arch, m0->input_size, (double)m0->width);
    const char *t = m->task ? m->task : DFD_MODEL_TASK_MANIPULATION, *t0 = m0->task ? m0->task : DFD_MODEL_TASK_MANIPULATION;
    if (strcmp(t, t0) != 0)
        return dfd_fail(err, DFD_E_ARG, "'%s' detects %s, the first member %s", path, t, t0);
    json_t *a = m->preprocess ? json_loads(m->preprocess, 0, NULL) : NULL;
    json_t *b = m0->preprocess ? json_loads(m0->preprocess, 0, NULL) : NULL;
    int same = (!a && !b) || (a && b && json_equal(a, b));
    json_decref(a), json_decref(b);
    if (!same)
        return dfd_fail(err, DFD_E_ARG, "'%s' was trained on another crop contract than the first member", path);
    return DFD_OK;
}

int dfd_model_ensemble(const char *const *models, int n, const char *out, double threshold, char **summary,
                       dfd_error *err) {
    if (summary) *summary = NULL;
    if (!models || !out) return dfd_fail(err, DFD_E_ARG, "dfd_model_ensemble: NULL argument");
    if (n < 2 || n > DFD_MODEL_MAX_MEMBERS)
        return dfd_fail(err, DFD_E_ARG, "an ensemble joins 2 to %d models (got %d)", DFD_MODEL_MAX_MEMBERS, n);
    if (threshold >= 0 && !(threshold <= 1)) return dfd_fail(err, DFD_E_ARG, "threshold %g is not in [0,1]", threshold);
    dfd_model_meta meta[DFD_MODEL_MAX_MEMBERS];
    nn_graph *member[DFD_MODEL_MAX_MEMBERS] = {0}, *g = NULL;
    for (int i = 0; i < n; i++) dfd_model_meta_init(&meta[i]);
    int rc = DFD_OK, bf16 = 1;
    double mean_logit = 0;
    for (int i = 0; rc == DFD_OK && i < n; i++) {
        for (int j = 0; j < i; j++)
            if (strcmp(models[i], models[j]) == 0) {
                rc = dfd_fail(err, DFD_E_ARG, "'%s' is named twice: an ensemble of one model with itself adds nothing",
                              models[i]);
                break;
            }
        /* one read of each file: its metadata checked against the first member's before its
         * network is built, then its tensors by the strict loader (every one present, of the
         * right shape) */
        dfd_st_file *f = NULL;
        if (rc == DFD_OK) rc = dfd_st_open(models[i], &f, err);
        if (rc == DFD_OK) rc = dfd_model_meta_read(f, &meta[i], err);
        if (rc == DFD_OK) rc = check_member(&meta[0], &meta[i], models[i], err);
        if (rc == DFD_OK) rc = dfd_model_build_graph(NULL, &meta[i], &member[i], err);
        dfd_error le;
        if (rc == DFD_OK && (rc = dfd_model_load_params(f, member[i], &le)) != DFD_OK)
            dfd_fail(err, rc, "%s: %s", models[i], le.message);
        if (rc == DFD_OK) bf16 &= all_bf16(f);
        if (f) dfd_st_close(f);
        mean_logit += rc == DFD_OK ? dfd_logit(meta[i].threshold) / n : 0;
    }
    /* The ensemble's metadata: the first member's (a shallow copy, owning nothing) with its
     * own members, threshold, record of what it was made of, and no metrics. Its heat-map
     * method is the members' when they all name the same one (an ensemble's Grad-CAM weighs
     * its members' maps, so one member not taught where blends are would blur it), else the
     * default. */
    dfd_model_meta m = meta[0];
    m.members = n;
    for (int i = 1; i < n && m.heatmap; i++)
        if (!meta[i].heatmap || strcmp(meta[i].heatmap, m.heatmap) != 0) m.heatmap = NULL;
    if (rc == DFD_OK) rc = dfd_model_build_graph(NULL, &m, &g, err);
    /* member i's parameter "X" is the ensemble's "m<i>/X" */
    for (int i = 0; rc == DFD_OK && i < n; i++)
        for (int k = 0; rc == DFD_OK && k < nn_graph_param_count(member[i]); k++) {
            const nn_param *p = nn_graph_param(member[i], k);
            char name[NN_NAME_MAX];
            int len = snprintf(name, sizeof name, "m%d/%s", i, p->name);
            nn_param *q = len > 0 && len < (int)sizeof name ? nn_graph_find_param(g, name) : NULL;
            if (!q || q->count != p->count) {
                rc = dfd_fail(err, DFD_E_INTERNAL, "ensemble: no place for '%s' of '%s'", p->name, models[i]);
                break;
            }
            memcpy(q->data, p->data, p->count * sizeof *p->data);
        }
    nn_param *wk = rc == DFD_OK ? nn_graph_find_param(g, "ensemble/kernel") : NULL;
    if (rc == DFD_OK && (!wk || wk->count != (size_t)n)) rc = dfd_fail(err, DFD_E_INTERNAL, "ensemble: no combining layer");
    char *td = NULL;
    if (rc == DFD_OK) {
        for (int i = 0; i < n; i++) wk->data[i] = 1.0f / (float)n; /* the logit mean */
        /* what it was made of, as free text naming each member and its own data */
        size_t cap = 64;
        for (int i = 0; i < n; i++)
            cap += strlen(models[i]) + (meta[i].training_data ? strlen(meta[i].training_data) : 0) + 32;
        if (!(td = malloc(cap))) rc = dfd_fail(err, DFD_E_NOMEM, "out of memory");
        size_t used = 0;
        for (int i = 0; td && i < n; i++) {
            int w = snprintf(td + used, cap - used, "%sm%d = %s: %s", i ? "; " : "logit mean of ", i, models[i],
                             meta[i].training_data ? meta[i].training_data : "(no record)");
            used += w > 0 ? (size_t)w : 0;
        }
    }
    double thr = threshold >= 0 ? threshold : dfd_sigmoid(mean_logit);
    if (rc == DFD_OK) {
        m.threshold = thr;
        m.training_data = td;
        m.metrics = NULL; /* the members' own figures do not describe the ensemble */
        dfd_model_save_opts so = {.bf16 = bf16};
        rc = dfd_model_save(g, &m, &so, out, err);
    }
    if (rc == DFD_OK)
        rc = set_summary(summary, err, "%s: ensemble of %d %s models at %d px, threshold %.4f (%s), %s weights", out, n,
                         meta[0].arch, meta[0].input_size, thr,
                         threshold >= 0 ? "given" : "the members' mean in logits: choose it on validation data",
                         bf16 ? "BF16" : "FP32");
    free(td);
    nn_graph_free(g);
    for (int i = 0; i < n; i++) {
        nn_graph_free(member[i]);
        dfd_model_meta_free(&meta[i]);
    }
    return rc;
}
