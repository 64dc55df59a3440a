/*
 * model_file.c — see model_file.h. Metadata values are strings (safetensors allows only
 * a string map); numbers are written with enough digits to read back exactly and parsed
 * strictly (the whole string must be the number), since a model's threshold decides
 * verdicts.
 */
#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "io/model_file.h"

#define MAX_INPUT_SIZE 100000
#define MAX_FRAMES 100000

void dfd_model_meta_init(dfd_model_meta *m) {
    memset(m, 0, sizeof *m);
    m->width = 1.0f;
    m->dropout = -1.0f;
    m->members = 1;
    m->threshold = 0.5;
}

void dfd_model_meta_free(dfd_model_meta *m) {
    if (!m) return;
    free(m->arch);
    free(m->preprocess);
    free(m->output);
    free(m->training_data);
    free(m->metrics);
    free(m->dfd_version);
    free(m->task);
    free(m->heatmap);
    dfd_model_meta_init(m);
}

/* 1 when s is the text of a JSON object. */
static int is_json_object(const char *s) {
    json_error_t je;
    json_t *j = json_loads(s, JSON_REJECT_DUPLICATES, &je);
    int ok = json_is_object(j);
    json_decref(j);
    return ok;
}

static void dims_str(const int64_t *d, int n, char *buf, size_t cap) {
    size_t len = 0;
    len += (size_t)snprintf(buf, cap, "[");
    for (int i = 0; i < n && len < cap; i++)
        len += (size_t)snprintf(buf + len, cap - len, "%s%lld", i ? "," : "", (long long)d[i]);
    if (len < cap) snprintf(buf + len, cap - len, "]");
}

/* ---- Saving ------------------------------------------------------------------------ */

/* What output 0 of a model may mean. Classifiers trained by dfd output a logit of P(fake);
 * models imported from the original Keras system output sigmoid(P(real)); backbones
 * (pretrained starting points) output features. */
static const char *const known_outputs[] = {"logit_p_fake", "logit_p_real", "sigmoid_p_fake", "sigmoid_p_real",
                                            "features", NULL};

static int output_known(const char *o) {
    for (int i = 0; known_outputs[i]; i++)
        if (strcmp(o, known_outputs[i]) == 0) return 1;
    return 0;
}

int dfd_model_task_known(const char *task) {
    return task && (strcmp(task, DFD_MODEL_TASK_MANIPULATION) == 0 || strcmp(task, DFD_MODEL_TASK_SYNTHETIC) == 0);
}

int dfd_model_heatmap_known(const char *method) {
    return method &&
           (strcmp(method, DFD_MODEL_HEATMAP_OCCLUSION) == 0 || strcmp(method, DFD_MODEL_HEATMAP_GRADCAM_FULL) == 0);
}

static int check_meta_for_save(const dfd_model_meta *m, dfd_error *err) {
    if (!m || !m->arch || !*m->arch) return dfd_fail(err, DFD_E_ARG, "model metadata needs an architecture name");
    if (m->input_size < 1 || m->input_size > MAX_INPUT_SIZE)
        return dfd_fail(err, DFD_E_ARG, "model metadata: input size %d out of range", m->input_size);
    if (m->frames < 0 || m->frames > MAX_FRAMES)
        return dfd_fail(err, DFD_E_ARG, "model metadata: %d frames out of range", m->frames);
    if (!(m->threshold >= 0.0 && m->threshold <= 1.0))
        return dfd_fail(err, DFD_E_ARG, "model metadata: threshold %g is not in [0,1]", m->threshold);
    if (!(m->width > 0.0f) || !isfinite(m->width) || !isfinite(m->dropout))
        return dfd_fail(err, DFD_E_ARG, "model metadata: width %g / dropout %g invalid", (double)m->width,
                        (double)m->dropout);
    if (m->members < 1 || m->members > DFD_MODEL_MAX_MEMBERS || (m->members > 1 && m->frames))
        return dfd_fail(err, DFD_E_ARG, "model metadata: %d members (1 to %d, image models only)", m->members,
                        DFD_MODEL_MAX_MEMBERS);
    if (m->output && !output_known(m->output))
        return dfd_fail(err, DFD_E_ARG, "model metadata: unknown output meaning '%s'", m->output);
    if (m->task && !dfd_model_task_known(m->task))
        return dfd_fail(err, DFD_E_ARG, "model metadata: unknown task '%s' (manipulation, synthetic)", m->task);
    if (m->heatmap && !dfd_model_heatmap_known(m->heatmap))
        return dfd_fail(err, DFD_E_ARG, "model metadata: unknown heat-map method '%s' (%s, %s)", m->heatmap,
                        DFD_MODEL_HEATMAP_OCCLUSION, DFD_MODEL_HEATMAP_GRADCAM_FULL);
    if (m->preprocess && !is_json_object(m->preprocess))
        return dfd_fail(err, DFD_E_ARG, "model metadata: preprocess is not a JSON object");
    if (m->metrics && !is_json_object(m->metrics))
        return dfd_fail(err, DFD_E_ARG, "model metadata: metrics is not a JSON object");
    return DFD_OK;
}

int dfd_model_save(nn_graph *g, const dfd_model_meta *meta, const dfd_model_save_opts *opts, const char *path,
                   dfd_error *err) {
    if (!g || !path) return dfd_fail(err, DFD_E_ARG, "dfd_model_save: NULL argument");
    int rc = check_meta_for_save(meta, err);
    if (rc) return rc;
    if (nn_graph_param_count(g) == 0) return dfd_fail(err, DFD_E_ARG, "the graph has no parameters to save");
    dfd_st_dtype as = opts && opts->bf16 ? DFD_ST_BF16 : DFD_ST_F32;
    dfd_st_writer *w = dfd_st_writer_new();
    if (!w) return dfd_fail(err, DFD_E_NOMEM, "out of memory");
    for (int i = 0; !rc && i < nn_graph_param_count(g); i++) {
        const nn_param *p = nn_graph_param(g, i);
        int64_t shape[NN_MAX_DIMS];
        for (int d = 0; d < p->ndim; d++) shape[d] = p->shape[d];
        rc = dfd_st_writer_add_f32(w, p->name, p->ndim, shape, p->data, as, err);
    }
    char num[64];
    struct meta_kv {
        const char *k;
        const char *v;
    } kv[14];
    int n = 0;
    kv[n++] = (struct meta_kv){"format", DFD_MODEL_FORMAT};
    kv[n++] = (struct meta_kv){"architecture", meta->arch};
    kv[n++] = (struct meta_kv){"output", meta->output ? meta->output : DFD_MODEL_OUTPUT_LOGIT};
    kv[n++] = (struct meta_kv){"dfd_version", dfd_version()};
    kv[n++] = (struct meta_kv){"task", meta->task ? meta->task : DFD_MODEL_TASK_MANIPULATION};
    if (meta->preprocess) kv[n++] = (struct meta_kv){"preprocess", meta->preprocess};
    if (meta->heatmap) kv[n++] = (struct meta_kv){"heatmap", meta->heatmap};
    if (meta->training_data) kv[n++] = (struct meta_kv){"training_data", meta->training_data};
    if (meta->metrics) kv[n++] = (struct meta_kv){"metrics", meta->metrics};
    for (int i = 0; !rc && i < n; i++) rc = dfd_st_writer_set_meta(w, kv[i].k, kv[i].v, err);
    if (!rc) {
        snprintf(num, sizeof num, "%d", meta->input_size);
        rc = dfd_st_writer_set_meta(w, "input_size", num, err);
    }
    if (!rc) {
        snprintf(num, sizeof num, "%d", meta->frames);
        rc = dfd_st_writer_set_meta(w, "frames", num, err);
    }
    if (!rc) {
        snprintf(num, sizeof num, "%.9g", (double)meta->width);
        rc = dfd_st_writer_set_meta(w, "width", num, err);
    }
    if (!rc) {
        snprintf(num, sizeof num, "%.9g", (double)meta->dropout);
        rc = dfd_st_writer_set_meta(w, "dropout", num, err);
    }
    if (!rc && meta->members > 1) { /* absent for one network: such files stay as they were */
        snprintf(num, sizeof num, "%d", meta->members);
        rc = dfd_st_writer_set_meta(w, "members", num, err);
    }
    if (!rc) {
        snprintf(num, sizeof num, "%.17g", meta->threshold);
        rc = dfd_st_writer_set_meta(w, "threshold", num, err);
    }
    if (!rc) rc = dfd_st_writer_save(w, path, err);
    dfd_st_writer_free(w);
    return rc;
}

/* ---- Metadata ------------------------------------------------------------------------ */

static int parse_int(const char *s, long lo, long hi, int *out) {
    if (!s || !*s) return -1;
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || *end || v < lo || v > hi) return -1;
    *out = (int)v;
    return 0;
}

static int parse_double(const char *s, double *out) {
    if (!s || !*s) return -1;
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || *end || !isfinite(v)) return -1;
    *out = v;
    return 0;
}

static int dup_opt(const char *s, char **out) {
    *out = NULL;
    if (!s) return 0;
    *out = strdup(s);
    return *out ? 0 : -1;
}

int dfd_model_meta_read(const dfd_st_file *f, dfd_model_meta *m, dfd_error *err) {
    if (!f || !m) return dfd_fail(err, DFD_E_ARG, "dfd_model_meta_read: NULL argument");
    dfd_model_meta_init(m);
    const char *fmt = dfd_st_meta_get(f, "format");
    if (!fmt) return dfd_fail(err, DFD_E_MODEL, "not a dfd model file (no 'format' in its metadata)");
    if (strcmp(fmt, DFD_MODEL_FORMAT) != 0)
        return dfd_fail(err, DFD_E_MODEL, "model format '%.64s' is not '%s'", fmt, DFD_MODEL_FORMAT);
    const char *arch = dfd_st_meta_get(f, "architecture");
    if (!arch || !*arch) return dfd_fail(err, DFD_E_MODEL, "model metadata has no 'architecture'");
    int input_size;
    if (parse_int(dfd_st_meta_get(f, "input_size"), 1, MAX_INPUT_SIZE, &input_size))
        return dfd_fail(err, DFD_E_MODEL, "model metadata: 'input_size' missing or invalid");
    int frames = 0;
    const char *s = dfd_st_meta_get(f, "frames");
    if (s && parse_int(s, 0, MAX_FRAMES, &frames))
        return dfd_fail(err, DFD_E_MODEL, "model metadata: 'frames' is '%.32s'", s);
    int members = 1;
    s = dfd_st_meta_get(f, "members");
    if (s && (parse_int(s, 1, DFD_MODEL_MAX_MEMBERS, &members) || (members > 1 && frames)))
        return dfd_fail(err, DFD_E_MODEL, "model metadata: 'members' is '%.32s' (1 to %d, image models only)", s,
                        DFD_MODEL_MAX_MEMBERS);
    double width = 1.0, dropout = -1.0, threshold;
    s = dfd_st_meta_get(f, "width");
    if (s && (parse_double(s, &width) || !(width > 0.0)))
        return dfd_fail(err, DFD_E_MODEL, "model metadata: 'width' is '%.32s'", s);
    s = dfd_st_meta_get(f, "dropout");
    if (s && (parse_double(s, &dropout) || dropout >= 1.0))
        return dfd_fail(err, DFD_E_MODEL, "model metadata: 'dropout' is '%.32s'", s);
    s = dfd_st_meta_get(f, "threshold");
    if (!s || parse_double(s, &threshold) || threshold < 0.0 || threshold > 1.0)
        return dfd_fail(err, DFD_E_MODEL, "model metadata: 'threshold' missing or not in [0,1]");
    const char *output = dfd_st_meta_get(f, "output");
    if (!output || !output_known(output))
        return dfd_fail(err, DFD_E_MODEL, "model metadata: unknown output meaning '%.64s'", output ? output : "(none)");
    /* Files written before the field existed are manipulation detectors. */
    const char *task = dfd_st_meta_get(f, "task");
    if (!task) task = DFD_MODEL_TASK_MANIPULATION;
    if (!dfd_model_task_known(task))
        return dfd_fail(err, DFD_E_MODEL, "model metadata: unknown task '%.64s' (manipulation, synthetic)", task);
    const char *heat = dfd_st_meta_get(f, "heatmap");
    if (heat && !dfd_model_heatmap_known(heat))
        return dfd_fail(err, DFD_E_MODEL, "model metadata: unknown heat-map method '%.64s' (%s, %s)", heat,
                        DFD_MODEL_HEATMAP_OCCLUSION, DFD_MODEL_HEATMAP_GRADCAM_FULL);
    const char *pre = dfd_st_meta_get(f, "preprocess"), *met = dfd_st_meta_get(f, "metrics");
    if (pre && !is_json_object(pre))
        return dfd_fail(err, DFD_E_MODEL, "model metadata: 'preprocess' is not a JSON object");
    if (met && !is_json_object(met))
        return dfd_fail(err, DFD_E_MODEL, "model metadata: 'metrics' is not a JSON object");
    if (dup_opt(arch, &m->arch) || dup_opt(output, &m->output) || dup_opt(pre, &m->preprocess) ||
        dup_opt(met, &m->metrics) || dup_opt(dfd_st_meta_get(f, "training_data"), &m->training_data) ||
        dup_opt(dfd_st_meta_get(f, "dfd_version"), &m->dfd_version) || dup_opt(task, &m->task) || dup_opt(heat, &m->heatmap)) {
        dfd_model_meta_free(m);
        return dfd_fail(err, DFD_E_NOMEM, "out of memory");
    }
    m->input_size = input_size;
    m->frames = frames;
    m->width = (float)width;
    m->dropout = (float)dropout;
    m->members = members;
    m->threshold = threshold;
    return DFD_OK;
}

/* ---- Parameters ------------------------------------------------------------------------ */

static int float_dtype(dfd_st_dtype t) {
    return t == DFD_ST_F32 || t == DFD_ST_F16 || t == DFD_ST_BF16 || t == DFD_ST_F64;
}

/* Records a problem: the first one's message is kept, the rest are counted. */
typedef struct problems {
    int n;
    char first[400];
} problems;

static void problem(problems *p, const char *fmt, ...) DFD_PRINTF(2, 3);
static void problem(problems *p, const char *fmt, ...) {
    if (p->n++ == 0) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(p->first, sizeof p->first, fmt, ap);
        va_end(ap);
    }
}

int dfd_model_load_params(const dfd_st_file *f, nn_graph *g, dfd_error *err) {
    if (!f || !g) return dfd_fail(err, DFD_E_ARG, "dfd_model_load_params: NULL argument");
    problems pr = {0};
    char a[128], b[128];
    /* Check everything first, so that a bad file leaves the graph untouched. */
    for (int i = 0; i < dfd_st_count(f); i++) {
        const dfd_st_tensor *t = dfd_st_tensor_at(f, i);
        const nn_param *p = nn_graph_find_param(g, t->name);
        if (!p) {
            problem(&pr, "unexpected tensor '%s' (the model has no such parameter)", t->name);
            continue;
        }
        int same = t->ndim == p->ndim;
        for (int d = 0; same && d < t->ndim; d++) same = t->shape[d] == p->shape[d];
        if (!same) {
            int64_t ps[NN_MAX_DIMS];
            for (int d = 0; d < p->ndim; d++) ps[d] = p->shape[d];
            dims_str(t->shape, t->ndim, a, sizeof a);
            dims_str(ps, p->ndim, b, sizeof b);
            problem(&pr, "shape mismatch for '%s': file %s, model %s", t->name, a, b);
            continue;
        }
        if (!float_dtype(t->dtype))
            problem(&pr, "tensor '%s' has dtype %s, not a floating-point type", t->name,
                    dfd_st_dtype_name(t->dtype));
    }
    for (int i = 0; i < nn_graph_param_count(g); i++) {
        const nn_param *p = nn_graph_param(g, i);
        if (!dfd_st_find(f, p->name)) problem(&pr, "missing tensor '%s'", p->name);
    }
    if (pr.n > 1)
        return dfd_fail(err, DFD_E_MODEL, "%s (and %d more problem%s)", pr.first, pr.n - 1, pr.n > 2 ? "s" : "");
    if (pr.n == 1) return dfd_fail(err, DFD_E_MODEL, "%s", pr.first);
    for (int i = 0; i < nn_graph_param_count(g); i++) {
        nn_param *p = nn_graph_param(g, i);
        int rc = dfd_st_read_f32(f, dfd_st_find(f, p->name), p->data, p->count, err);
        if (rc) return rc;
    }
    return DFD_OK;
}

int dfd_model_load(const char *path, dfd_model_build_fn build, void *user, nn_graph **out, dfd_model_meta *meta,
                   dfd_error *err) {
    if (!path || !build || !out) return dfd_fail(err, DFD_E_ARG, "dfd_model_load: NULL argument");
    *out = NULL;
    dfd_st_file *f;
    int rc = dfd_st_open(path, &f, err);
    if (rc) return rc;
    dfd_model_meta m;
    dfd_error e;
    nn_graph *g = NULL;
    rc = dfd_model_meta_read(f, &m, &e);
    if (!rc) rc = build(user, &m, &g, &e);
    if (!rc && !g) rc = dfd_fail(&e, DFD_E_INTERNAL, "the builder returned no graph");
    if (!rc) rc = dfd_model_load_params(f, g, &e);
    dfd_st_close(f);
    if (rc) {
        dfd_fail(err, rc, "%s: %s", path, e.message);
        nn_graph_free(g);
        dfd_model_meta_free(&m);
        return rc;
    }
    *out = g;
    if (meta)
        *meta = m;
    else
        dfd_model_meta_free(&m);
    return DFD_OK;
}
