/* loop.c — `dfd train`: from a dataset of face crops to a model file with its threshold.
 *
 * The run follows the original system's recipe where it was sound (a frozen backbone
 * first, then fine-tuning from a named layer with batch-norm statistics frozen at a lower
 * learning rate; early stopping on validation AUC) and fixes what made its results hard
 * to reproduce: validation is split by group, never by file; every random choice (split,
 * order, augmentation, dropout, initialisation) comes from one seed; the decision
 * threshold is chosen on validation data (at its EER) and stored in the model with the
 * crop contract the data was made with.
 *
 * Files in the output folder: checkpoint.safetensors after every epoch (with
 * checkpoint.state.safetensors: optimiser moments and the run's counters, for --resume),
 * best.safetensors (best validation AUC so far), history.csv and history.png. */
#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/stat.h>

#include "detect/detect.h"
#include "face/face.h"
#include "io/safetensors.h"
#include "models/models.h"
#include "train/train.h"

void dfd_train_opts_default(dfd_train_opts *o) {
    memset(o, 0, sizeof *o);
    o->layout = DFD_LAYOUT_AUTO;
    o->val_fraction = 0.2;
    o->epochs = 10;
    o->batch = 32;
    o->lr = 1e-3f;
    o->optimizer = NN_OPT_ADAMW;
    o->weight_decay = -1;
    o->schedule = NN_LR_COSINE;
    o->warmup_steps = 100;
    o->dropout = -1;
    o->norm = -1;
    o->balance = DFD_BALANCE_UNDERSAMPLE;
    o->patience = 3;
    o->loader_threads = -1;
    o->cache_mb = -1;
    o->seed = 1;
    o->augment = 1;
    dfd_augment_opts_default(&o->aug);
    dfd_sbi_opts_default(&o->sbi);
    o->backend = NN_BACKEND_DNNL;
    o->bn_momentum = 0.99f;
    o->bn_recalibrate = -1;
}

/* ---- Models ------------------------------------------------------------------------------ */

int dfd_train_build_model(void *user, const dfd_model_meta *meta, nn_graph **out, dfd_error *err) {
    (void)user;
    if (meta->members > 1)
        return dfd_fail(err, DFD_E_UNSUPPORTED,
                        "the model is an ensemble of %d networks: train or fine-tune each member, then join them "
                        "with 'dfd ensemble'",
                        meta->members);
    return dfd_model_build_graph(NULL, meta, out, err);
}

int dfd_train_load_matching(nn_graph *g, const char *path, int *loaded, int *skipped, dfd_error *err) {
    dfd_st_file *f;
    *loaded = *skipped = 0;
    int rc = dfd_st_open(path, &f, err);
    if (rc) return rc;
    const char *members = dfd_st_meta_get(f, "members");
    if (members && strcmp(members, "1") != 0) {
        rc = dfd_fail(err, DFD_E_UNSUPPORTED,
                      "%s is an ensemble of %.8s networks: start from one of its members (dfd ensemble joined them)",
                      path, members);
        dfd_st_close(f);
        return rc;
    }
    for (int i = 0; i < nn_graph_param_count(g) && !rc; i++) {
        nn_param *p = nn_graph_param(g, i);
        const dfd_st_tensor *t = dfd_st_find(f, p->name);
        int same = t && t->ndim == p->ndim && t->count == p->count;
        for (int k = 0; same && k < p->ndim; k++) same = t->shape[k] == p->shape[k];
        if (!same) {
            if (t) dfd_log(DFD_LOG_INFO, "init: '%s' has another shape in %s: kept as initialised", p->name, path);
            (*skipped)++;
            continue;
        }
        rc = dfd_st_read_f32(f, t, p->data, p->count, err);
        if (!rc) (*loaded)++;
    }
    dfd_st_close(f);
    if (!rc && *loaded == 0)
        rc = dfd_fail(err, DFD_E_MODEL, "%s: no tensor matches a parameter of the model by name and shape", path);
    return rc;
}

/* ---- Small helpers ------------------------------------------------------------------------ */

static int mkdir_p(const char *path, dfd_error *err) {
    char buf[1024];
    if (snprintf(buf, sizeof buf, "%s", path) >= (int)sizeof buf) return dfd_fail(err, DFD_E_ARG, "path too long: %s", path);
    for (char *p = buf + 1; *p; p++)
        if (*p == '/') {
            *p = 0;
            if (mkdir(buf, 0755) && errno != EEXIST) return dfd_fail(err, DFD_E_IO, "cannot create '%s': %s", buf, strerror(errno));
            *p = '/';
        }
    if (mkdir(buf, 0755) && errno != EEXIST) return dfd_fail(err, DFD_E_IO, "cannot create '%s': %s", buf, strerror(errno));
    return DFD_OK;
}


/* checkpoint.safetensors -> checkpoint.state.safetensors */
static void state_path_for(const char *ckpt, char *buf, size_t cap) {
    size_t n = strlen(ckpt);
    const char *ext = ".safetensors";
    size_t le = strlen(ext);
    if (n >= le && strcmp(ckpt + n - le, ext) == 0) n -= le;
    snprintf(buf, cap, "%.*s.state.safetensors", (int)n, ckpt);
}


/* The crop contract the data was made with: `dfd prepare` leaves prepare.json with it;
 * other crop sets get dfd's default contract (and a note in the log). */
static void data_contract(const char *dir, int size, dfd_crop_contract *c) {
    dfd_crop_contract_default(c, size);
    char p[1024];
    /* A folder whose path does not fit has no prepare.json dfd can open either. */
    json_t *j = dfd_path_join(p, sizeof p, dir, "prepare.json", NULL) == DFD_OK ? json_load_file(p, 0, NULL) : NULL;
    json_t *cj = j ? json_object_get(j, "contract") : NULL;
    char *text = cj ? json_dumps(cj, JSON_COMPACT) : NULL;
    if (!text || dfd_crop_contract_from_json(text, c, NULL) != DFD_OK) {
        dfd_crop_contract_default(c, size);
        dfd_log(DFD_LOG_INFO, "%s has no prepare.json: the model records dfd's default crop contract", dir);
    }
    c->size = size;
    free(text);
    json_decref(j);
}

/* ---- Samples: items (image models) or sequences (video models) -------------------------- */

typedef struct samples {
    size_t n;
    int *label, *split;
    size_t *seq_items;     /* video */
    dfd_sequence *seqs;
} samples;

static void samples_free(samples *s) {
    free(s->label), free(s->split), free(s->seq_items), free(s->seqs);
    memset(s, 0, sizeof *s);
}

static int samples_make(const dfd_dataset *d, int video, samples *s, dfd_error *err) {
    memset(s, 0, sizeof *s);
    if (video) {
        int rc = dfd_dataset_sequences(d, 1, &s->seq_items, &s->seqs, &s->n, err);
        if (rc) return rc;
    } else s->n = d->n;
    s->label = dfd_malloc_array(s->n ? s->n : 1, sizeof *s->label);
    s->split = dfd_malloc_array(s->n ? s->n : 1, sizeof *s->split);
    if (!s->label || !s->split) {
        samples_free(s);
        return dfd_fail(err, DFD_E_NOMEM, "no memory for %zu samples", s->n);
    }
    for (size_t i = 0; i < s->n; i++) {
        s->label[i] = video ? s->seqs[i].label : d->items[i].label;
        s->split[i] = video ? (int)s->seqs[i].split : (int)d->items[i].split;
    }
    return DFD_OK;
}

/* ---- Optimiser state and run counters (for --resume) ------------------------------------- */

typedef struct run_state {
    int epoch;       /* epochs completed, over both stages */
    int stage;       /* stage of the last completed epoch (0-based) */
    int stage_epoch; /* epochs completed in that stage */
    int bad_epochs;  /* epochs without improvement in that stage */
    int best_epoch;
    double best_auc;
    long step;       /* optimiser steps in that stage (learning-rate schedule) */
} run_state;

static json_t *history_json(const dfd_history_row *h, int n) {
    json_t *a = json_array();
    for (int i = 0; a && i < n; i++) {
        const dfd_history_row *r = &h[i];
        double v[] = {r->lr,      r->train_loss, r->train_acc,   r->train_auc,  r->val_loss, r->val_acc,
                      r->val_auc, r->val_eer,    r->seconds,     r->images_per_s, r->feed_wait_s, r->feed_cpu_s};
        json_t *row = json_array();
        json_array_append_new(row, json_integer(r->epoch));
        json_array_append_new(row, json_integer(r->stage));
        for (size_t k = 0; k < sizeof v / sizeof v[0]; k++) json_array_append_new(row, isfinite(v[k]) ? json_real(v[k]) : json_null());
        json_array_append_new(a, row);
    }
    return a;
}

static int history_from_json(json_t *a, dfd_history_row *h, int cap) {
    int n = 0;
    size_t i;
    json_t *row;
    json_array_foreach(a, i, row) {
        /* 12 columns before the feed's two were added (older checkpoints), 14 since. */
        size_t cols = json_array_size(row);
        if (n >= cap || (cols != 12 && cols != 14)) break;
        dfd_history_row *r = &h[n++];
        double *v[] = {&r->lr,      &r->train_loss, &r->train_acc, &r->train_auc,    &r->val_loss,     &r->val_acc,
                       &r->val_auc, &r->val_eer,    &r->seconds,   &r->images_per_s, &r->feed_wait_s, &r->feed_cpu_s};
        r->epoch = (int)json_integer_value(json_array_get(row, 0));
        r->stage = (int)json_integer_value(json_array_get(row, 1));
        r->feed_wait_s = r->feed_cpu_s = NAN;
        for (int k = 0; k < (int)cols - 2; k++) {
            json_t *x = json_array_get(row, (size_t)k + 2);
            *v[k] = json_is_number(x) ? json_number_value(x) : NAN;
        }
    }
    return n;
}

static int save_state(nn_graph *g, const run_state *st, const dfd_history_row *h, int nh, const char *path, dfd_error *err) {
    dfd_st_writer *w = dfd_st_writer_new();
    if (!w) return dfd_fail(err, DFD_E_NOMEM, "no memory for a state file");
    int rc = DFD_OK;
    char name[NN_NAME_MAX + 16];
    for (int i = 0; i < nn_graph_param_count(g) && !rc; i++) {
        nn_param *p = nn_graph_param(g, i);
        int64_t shape[NN_MAX_DIMS];
        for (int k = 0; k < p->ndim; k++) shape[k] = p->shape[k];
        if (p->opt_m) {
            snprintf(name, sizeof name, "%s/opt_m", p->name);
            rc = dfd_st_writer_add_f32(w, name, p->ndim, shape, p->opt_m, DFD_ST_F32, err);
        }
        if (!rc && p->opt_v) {
            snprintf(name, sizeof name, "%s/opt_v", p->name);
            rc = dfd_st_writer_add_f32(w, name, p->ndim, shape, p->opt_v, DFD_ST_F32, err);
        }
    }
    json_t *j = json_pack("{s:i,s:i,s:i,s:i,s:i,s:f,s:I,s:o}", "epoch", st->epoch, "stage", st->stage, "stage_epoch",
                          st->stage_epoch, "bad_epochs", st->bad_epochs, "best_epoch", st->best_epoch, "best_auc",
                          isfinite(st->best_auc) ? st->best_auc : -1.0, "step", (json_int_t)st->step, "history",
                          history_json(h, nh));
    char *text = j ? json_dumps(j, JSON_COMPACT) : NULL;
    json_decref(j);
    if (!rc && !text) rc = dfd_fail(err, DFD_E_NOMEM, "no memory for the run state");
    if (!rc) rc = dfd_st_writer_set_meta(w, "dfd_train_state", text, err);
    if (!rc) rc = dfd_st_writer_set_meta(w, "format", "dfd.train-state/1", err);
    if (!rc) rc = dfd_st_writer_save(w, path, err);
    free(text);
    dfd_st_writer_free(w);
    return rc;
}

/* Reads the counters and history; the moments are restored by restore_moments once the
 * optimiser of the right stage exists. */
static int load_state(const char *path, run_state *st, dfd_history_row *h, int cap, int *nh, dfd_error *err) {
    dfd_st_file *f;
    int rc = dfd_st_open(path, &f, err);
    if (rc) return rc;
    const char *text = dfd_st_meta_get(f, "dfd_train_state");
    json_t *j = text ? json_loads(text, 0, NULL) : NULL;
    if (!j) rc = dfd_fail(err, DFD_E_MODEL, "%s: no readable dfd_train_state metadata", path);
    else {
        st->epoch = (int)json_integer_value(json_object_get(j, "epoch"));
        st->stage = (int)json_integer_value(json_object_get(j, "stage"));
        st->stage_epoch = (int)json_integer_value(json_object_get(j, "stage_epoch"));
        st->bad_epochs = (int)json_integer_value(json_object_get(j, "bad_epochs"));
        st->best_epoch = (int)json_integer_value(json_object_get(j, "best_epoch"));
        st->best_auc = json_number_value(json_object_get(j, "best_auc"));
        if (st->best_auc < 0) st->best_auc = NAN;
        st->step = (long)json_integer_value(json_object_get(j, "step"));
        *nh = history_from_json(json_object_get(j, "history"), h, cap);
        if (st->epoch < 0 || st->stage < 0 || st->stage > 1)
            rc = dfd_fail(err, DFD_E_MODEL, "%s: run state out of range", path);
    }
    json_decref(j);
    dfd_st_close(f);
    return rc;
}

static int restore_moments(nn_graph *g, const char *path, dfd_error *err) {
    dfd_st_file *f;
    int rc = dfd_st_open(path, &f, err);
    if (rc) return rc;
    char name[NN_NAME_MAX + 16];
    for (int i = 0; i < nn_graph_param_count(g) && !rc; i++) {
        nn_param *p = nn_graph_param(g, i);
        float *dst[2] = {p->opt_m, p->opt_v};
        const char *suffix[2] = {"opt_m", "opt_v"};
        for (int k = 0; k < 2 && !rc; k++) {
            if (!dst[k]) continue;
            snprintf(name, sizeof name, "%s/%s", p->name, suffix[k]);
            const dfd_st_tensor *t = dfd_st_find(f, name);
            if (t && t->count == p->count) rc = dfd_st_read_f32(f, t, dst[k], p->count, err);
        }
    }
    dfd_st_close(f);
    return rc;
}

/* ---- Parameter snapshots (the best epoch, kept in memory) ---------------------------------- */

typedef struct snapshot {
    float **data;
    int n;
} snapshot;

static int snapshot_take(nn_graph *g, snapshot *s, dfd_error *err) {
    if (!s->data) {
        s->n = nn_graph_param_count(g);
        s->data = calloc((size_t)(s->n ? s->n : 1), sizeof *s->data);
        if (!s->data) return dfd_fail(err, DFD_E_NOMEM, "no memory for a copy of the weights");
    }
    for (int i = 0; i < s->n; i++) {
        nn_param *p = nn_graph_param(g, i);
        if (!s->data[i] && !(s->data[i] = dfd_malloc_array(p->count, sizeof(float))))
            return dfd_fail(err, DFD_E_NOMEM, "no memory for a copy of the weights");
        memcpy(s->data[i], p->data, p->count * sizeof(float));
    }
    return DFD_OK;
}

static void snapshot_restore(nn_graph *g, const snapshot *s) {
    for (int i = 0; s->data && i < s->n; i++) {
        nn_param *p = nn_graph_param(g, i);
        memcpy(p->data, s->data[i], p->count * sizeof(float));
    }
}

static void snapshot_free(snapshot *s) {
    for (int i = 0; s->data && i < s->n; i++) free(s->data[i]);
    free(s->data);
    memset(s, 0, sizeof *s);
}

/* ---- The run ------------------------------------------------------------------------------- */

typedef struct stage_plan {
    int epochs;
    float lr;
    const char *unfreeze_from; /* NULL: all layers train */
    int freeze_bn;
} stage_plan;

typedef struct run {
    const dfd_train_opts *o;
    dfd_train_progress_fn fn;
    void *user;
    dfd_dataset *ds, *val_ds; /* val_ds == ds when split from it */
    samples tr, va;           /* samples of ds (train) and of val_ds */
    nn_graph *g;
    nn_exec *infer;
    dfd_crop_contract contract;
    int size, frames;
    float class_w[2];
    dfd_history_row hist[1000];
    int n_hist;
    char *training_data;
    int cancelled;
    long failures;
    dfd_img_cache *cache, *val_cache; /* decoded crops of ds and (when it is another) val_ds */
    dfd_ds_landmarks *landmarks;      /* Face Mesh landmarks of ds's training reals (--sbi-mask landmarks) */
    size_t *partner;                  /* --paired: each training fake's real partner in ds */
    int loc_node, loc_dense, loc_grid; /* --sbi-loc: the pooled feature map (output 1), the
                                        * head's dense unit, the map's side; loc_node -1: off */
} run;

float dfd_loc_loss(const float *F, int n, int cells, int C, const float *w, float bias, const float *t,
                   const unsigned char *valid, float lambda, float *dF) {
    int m = 0;
    for (int i = 0; i < n; i++) m += valid[i] != 0;
    memset(dF, 0, (size_t)n * cells * C * sizeof *dF);
    if (m == 0) return 0;
    double loss = 0;
    const double k = (double)lambda / ((double)m * cells);
    for (int i = 0; i < n; i++) {
        if (!valid[i]) continue;
        for (int c = 0; c < cells; c++) {
            const float *f = F + ((size_t)i * cells + c) * C;
            double z = bias, tc = t[(size_t)i * cells + c];
            for (int j = 0; j < C; j++) z += (double)w[j] * f[j];
            /* BCE on a logit, stably: max(z, 0) - z t + log(1 + exp(-|z|)) */
            loss += (z > 0 ? z : 0) - z * tc + log1p(exp(-fabs(z)));
            float g = (float)(k * (dfd_sigmoid(z) - tc));
            float *d = dF + ((size_t)i * cells + c) * C;
            for (int j = 0; j < C; j++) d[j] = g * w[j];
        }
    }
    return (float)(loss * k);
}

/* --sbi-loc: finds the head the per-cell loss needs (feature map -> GAP -> [dropout] ->
 * dense with one linear unit, the logit) and makes the feature map output 1, so that the
 * training pass hands it out and takes its gradient. */
static int loc_setup(run *r, dfd_error *err) {
    r->loc_node = -1;
    if (!(r->o->sbi_loc > 0)) return DFD_OK;
    const int map = nn_graph_pooled_map(r->g, nn_graph_node(r->g, nn_graph_output(r->g, 0)));
    const nn_node *f = map >= 0 ? nn_graph_node(r->g, map) : NULL;
    if (!f || f->shape[0] != f->shape[1])
        return dfd_fail(err, DFD_E_ARG, "train: --sbi-loc needs a head that pools a square feature map into one "
                                        "linear unit (mobilenet_v2-image, inception_v3-image, tiny-cnn); '%s' has none",
                        r->o->arch);
    r->loc_dense = nn_graph_output(r->g, 0);
    r->loc_node = map;
    r->loc_grid = f->shape[0];
    nn_mark_output(r->g, r->loc_node);
    dfd_log(DFD_LOG_INFO, "sbi-loc: the blend's place taught on '%s' (%d x %d cells), weight %g", f->name, r->loc_grid,
            r->loc_grid, (double)r->o->sbi_loc);
    return nn_graph_error(r->g) ? dfd_fail(err, DFD_E_INTERNAL, "train: %s", nn_graph_error(r->g)) : DFD_OK;
}

/* Feed threads besides the training thread. Taking turns, every core the engine has makes
 * the next batch while the step waits; running ahead, one thread beside the step. */
static int feed_workers(const dfd_train_opts *o) {
    if (o->loader_threads >= 0) return o->loader_threads;
    if (o->feed_ahead) return 1;
    int t = o->threads > 0 ? o->threads : dfd_cpu_count();
    return t > 1 ? t - 1 : 0;
}

static dfd_img_cache *cache_for(const run *r, const dfd_dataset *ds) {
    return ds == r->ds ? r->cache : ds == r->val_ds ? r->val_cache : NULL;
}

/* Scores (p_fake) of every validation sample with the inference executor. */
static int predict(run *r, const dfd_dataset *ds, const samples *s, int split, long limit, double **scores, int **labels,
                   size_t *n_out, dfd_error *err) {
    size_t *order, n;
    int rc = dfd_order_balanced(s->label, s->split, s->n, split, 0, r->o->seed, 0, &order, &n, err);
    if (rc) return rc;
    /* In sample order (not shuffled) for reproducible files; limit keeps a seeded subset. */
    if (limit > 0 && (size_t)limit < n) n = (size_t)limit;
    dfd_sort_indices(order, n);
    double *sc = dfd_malloc_array(n ? n : 1, sizeof *sc);
    int *lb = dfd_malloc_array(n ? n : 1, sizeof *lb);
    if (!sc || !lb) {
        free(order), free(sc), free(lb);
        return dfd_fail(err, DFD_E_NOMEM, "no memory for %zu scores", n);
    }
    dfd_loader_opts lo = {.ds = ds, .order = order, .n = n, .seqs = s->seqs, .seq_items = s->seq_items,
                          .frames = r->frames, .batch = r->o->batch, .size = r->size, .norm = (int)r->contract.norm,
                          .seed = r->o->seed, .workers = feed_workers(r->o), .cache = cache_for(r, ds), .turns = !r->o->feed_ahead};
    dfd_loader *l;
    size_t k = 0;
    rc = dfd_loader_start(&lo, &l, err);
    const dfd_batch *b;
    while (!rc && !(rc = dfd_loader_next(l, &b, err)) && b) {
        if ((rc = nn_forward(r->infer, b->x, b->n, err))) break;
        size_t cnt;
        const float *z = nn_output(r->infer, 0, &cnt);
        for (int i = 0; i < b->n; i++)
            if (b->ok[i]) sc[k] = dfd_sigmoid(z[i]), lb[k] = (int)b->y[i], k++;
        if (r->fn) {
            dfd_train_progress p = {.phase = DFD_TRAIN_VALIDATING, .step = (long)(b->first + b->n), .steps = (long)n};
            if (r->fn(r->user, &p)) {
                r->cancelled = 1;
                break;
            }
        }
    }
    if (l) r->failures += dfd_loader_failures(l);
    dfd_loader_free(l);
    free(order);
    if (rc) {
        free(sc), free(lb);
        return rc;
    }
    *scores = sc, *labels = lb, *n_out = k;
    return DFD_OK;
}

/* Re-estimates every batch norm's moving statistics from `batches` training batches (no
 * augmentation), as the exact average of the batches' statistics: momentum k/(k+1) for
 * batch k. Weights imported from elsewhere carry statistics of other data (and, from a
 * uint8-quantised TF.js file, statistics rounded to a coarse grid: variances of 0 where the
 * true one is 0.5); inference with them is far off until enough steps have replaced them. */
static int recalibrate_bn(run *r, const nn_exec_opts *io, int batches, dfd_error *err) {
    const dfd_train_opts *o = r->o;
    size_t *order, n;
    int rc = dfd_order_balanced(r->tr.label, r->tr.split, r->tr.n, DFD_SPLIT_TRAIN, 1, o->seed ^ 0x5bd1e995u,
                                (long)batches * o->batch, &order, &n, err);
    if (rc) return rc;
    nn_exec_opts to = *io;
    to.training = 1;
    to.precision = o->precision;
    nn_exec *ex = NULL;
    nn_graph_set_trainable(r->g, NULL, 1);
    nn_graph_freeze_bn_stats(r->g, 0);
    dfd_loader_opts lo = {.ds = r->ds, .order = order, .n = n, .seqs = r->tr.seqs, .seq_items = r->tr.seq_items,
                          .frames = r->frames, .batch = o->batch, .size = r->size, .norm = (int)r->contract.norm,
                          .seed = o->seed, .workers = feed_workers(o), .cache = cache_for(r, r->ds), .turns = !o->feed_ahead};
    dfd_loader *l = NULL;
    if (!(rc = nn_exec_create(r->g, &to, &ex, err))) rc = dfd_loader_start(&lo, &l, err);
    const dfd_batch *b;
    int k = 0;
    while (!rc && !(rc = dfd_loader_next(l, &b, err)) && b) {
        if (b->n < o->batch && k > 0) break; /* a short last batch would weigh as much as a full one */
        nn_graph_set_bn_momentum(r->g, (float)k / (float)(k + 1));
        rc = nn_forward(ex, b->x, b->n, err);
        k++;
    }
    if (l) r->failures += dfd_loader_failures(l);
    dfd_loader_free(l);
    nn_exec_free(ex);
    free(order);
    if (!rc) dfd_log(DFD_LOG_INFO, "batch-norm statistics re-estimated from %d batches of %d", k, o->batch);
    return rc;
}

static int write_history(run *r, dfd_error *err) {
    char p[1100];
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    if (!f) return dfd_fail(err, DFD_E_NOMEM, "no memory for the history");
    fputs("epoch,stage,lr,train_loss,train_acc,train_auc,val_loss,val_acc,val_auc,val_eer,seconds,images_per_s,"
          "feed_wait_s,feed_cpu_s\n",
          f);
    for (int i = 0; i < r->n_hist; i++) {
        const dfd_history_row *h = &r->hist[i];
        fprintf(f, "%d,%d,%.6g,%.6f,%.6f,%.6f,%.6f,%.6f,%.6f,%.6f,%.1f,%.1f,%.2f,%.2f\n", h->epoch, h->stage, h->lr,
                h->train_loss, h->train_acc, h->train_auc, h->val_loss, h->val_acc, h->val_auc, h->val_eer, h->seconds,
                h->images_per_s, h->feed_wait_s, h->feed_cpu_s);
    }
    fclose(f);
    int rc = dfd_path_join(p, sizeof p, r->o->out, "history.csv", err);
    if (!rc) rc = dfd_write_file_atomic(p, buf, len, err);
    free(buf);
    if (!rc) rc = dfd_path_join(p, sizeof p, r->o->out, "history.png", err);
    if (!rc && (rc = dfd_plot_history(p, r->hist, r->n_hist, err)) == DFD_E_UNSUPPORTED) {
        dfd_log(DFD_LOG_INFO, "%s: history.png not written", err ? err->message : "no plots");
        rc = DFD_OK; /* the CSV has it all; the plot is a convenience */
    }
    return rc;
}

static int save_model(run *r, const char *path, double threshold, const dfd_metrics *m, int epoch, int stage,
                      dfd_error *err) {
    dfd_model_meta meta;
    dfd_model_meta_init(&meta);
    meta.arch = (char *)r->o->arch;
    meta.input_size = r->size;
    meta.frames = r->o->video ? r->frames : 0;
    meta.width = r->o->width > 0 ? r->o->width : 1.0f;
    meta.dropout = r->o->dropout;
    meta.preprocess = dfd_crop_contract_to_json(&r->contract);
    meta.threshold = isfinite(threshold) && threshold >= 0 && threshold <= 1 ? threshold : 0.5;
    meta.training_data = r->training_data;
    meta.task = (char *)r->o->task;
    /* A model taught where each self-blend is (--sbi-loc) has a Grad-CAM that localises
     * (docs/explain.md, session 14): scan's maps use it instead of the probes. */
    if (r->o->sbi_loc > 0 && !r->o->video) meta.heatmap = (char *)DFD_MODEL_HEATMAP_GRADCAM_FULL;
    json_t *mj = m ? dfd_metrics_to_json(m) : json_object();
    if (mj) {
        json_object_set_new(mj, "epoch", json_integer(epoch));
        json_object_set_new(mj, "stage", json_integer(stage));
        json_object_set_new(mj, "split", json_string(r->o->val ? "validation folder" : "validation groups"));
        char rule[96];
        if (r->o->threshold_fpr > 0)
            snprintf(rule, sizeof rule, "false-positive rate <= %g on validation", r->o->threshold_fpr);
        else snprintf(rule, sizeof rule, "equal error rate on validation");
        json_object_set_new(mj, "threshold_rule", json_string(rule));
    }
    meta.metrics = mj ? json_dumps(mj, JSON_COMPACT) : NULL;
    json_decref(mj);
    dfd_model_save_opts so = {.bf16 = r->o->bf16_save};
    int rc = meta.preprocess && meta.metrics ? dfd_model_save(r->g, &meta, &so, path, err)
                                             : dfd_fail(err, DFD_E_NOMEM, "no memory for model metadata");
    free(meta.preprocess);
    free(meta.metrics);
    return rc;
}

static int run_epoch(run *r, const stage_plan *sp, nn_exec *ex, nn_optim *opt, run_state *st, long steps_total,
                     dfd_history_row *row, dfd_error *err) {
    const dfd_train_opts *o = r->o;
    size_t *order, n;
    unsigned char *with_prev = NULL;
    uint64_t eseed = o->seed * 1000003ull + (uint64_t)st->epoch;
    const int under = o->balance == DFD_BALANCE_UNDERSAMPLE;
    int rc = r->partner ? dfd_order_paired(r->tr.label, r->tr.split, r->partner, r->tr.n, DFD_SPLIT_TRAIN, under, eseed,
                                           o->limit, &order, &with_prev, &n, err)
                        : dfd_order_balanced(r->tr.label, r->tr.split, r->tr.n, DFD_SPLIT_TRAIN, under, eseed, o->limit,
                                             &order, &n, err);
    if (rc) return rc;
    if (n == 0) {
        free(order), free(with_prev);
        return dfd_fail(err, DFD_E_ARG, "no training samples");
    }
    dfd_loader_opts lo = {.ds = r->ds, .order = order, .n = n, .seqs = r->tr.seqs, .seq_items = r->tr.seq_items,
                          .frames = r->frames, .batch = o->batch, .size = r->size, .norm = (int)r->contract.norm,
                          .aug = o->augment ? &o->aug : NULL, .sbi_fraction = o->video ? 0 : o->sbi_fraction,
                          .real_downscale = o->real_downscale, /* the loader softens still images only */
                          .sbi = &o->sbi, .with_prev = with_prev,
                          .class_w = o->balance == DFD_BALANCE_WEIGHTS ? r->class_w : NULL,
                          .seed = eseed, .workers = feed_workers(o), .cache = cache_for(r, r->ds), .turns = !o->feed_ahead,
                          .landmarks = r->landmarks, .loc_grid = r->loc_node >= 0 ? r->loc_grid : 0,
                          .loc_reals = o->sbi_loc_reals};
    dfd_loader *l;
    rc = dfd_loader_start(&lo, &l, err);
    if (rc) {
        free(order), free(with_prev);
        return rc;
    }
    double *sc = dfd_malloc_array(n, sizeof *sc);
    int *lb = dfd_malloc_array(n, sizeof *lb);
    float *dl = dfd_malloc_array((size_t)o->batch, sizeof *dl);
    float *dF = NULL; /* --sbi-loc: d(loss)/d(feature map) */
    unsigned char *lv = NULL;
    const int cells = r->loc_node >= 0 ? r->loc_grid * r->loc_grid : 0;
    const int fc = r->loc_node >= 0 ? nn_graph_node(r->g, r->loc_node)->shape[2] : 0;
    if (cells && (!(dF = dfd_malloc_array((size_t)o->batch * cells * fc, sizeof *dF)) || !(lv = malloc((size_t)o->batch))))
        rc = dfd_fail(err, DFD_E_NOMEM, "no memory for the localisation loss");
    double loc_sum = 0;
    if (!sc || !lb || !dl) rc = dfd_fail(err, DFD_E_NOMEM, "no memory for an epoch's scores");
    size_t k = 0;
    double loss_sum = 0, t0 = dfd_now_ms(), auc = NAN;
    long correct = 0, seen = 0, step = 0, steps = (long)((n + (size_t)o->batch - 1) / (size_t)o->batch);
    const dfd_batch *b;
    while (!rc && !(rc = dfd_loader_next(l, &b, err)) && b) {
        if ((rc = nn_forward(ex, b->x, b->n, err))) break;
        size_t cnt;
        const float *z = nn_output(ex, 0, &cnt);
        float loss = nn_bce_logits(z, b->y, b->w, b->n, dl);
        for (int i = 0; i < b->n; i++) {
            if (!b->ok[i]) continue;
            double p = dfd_sigmoid(z[i]);
            sc[k] = p, lb[k] = (int)b->y[i], k++;
            correct += (p >= 0.5) == (b->y[i] > 0.5f);
        }
        seen += b->n;
        loss_sum += (double)loss * b->n;
        if (cells) {
            size_t fcnt;
            const float *F = nn_output(ex, 1, &fcnt);
            const nn_node *dn = nn_graph_node(r->g, r->loc_dense);
            const float *w = nn_graph_param(r->g, dn->params[0])->data;
            float bias = dn->params[1] >= 0 ? nn_graph_param(r->g, dn->params[1])->data[0] : 0;
            if (!F || fcnt < (size_t)b->n * cells * fc) {
                rc = dfd_fail(err, DFD_E_INTERNAL, "train: no feature map for --sbi-loc");
                break;
            }
            for (int i = 0; i < b->n; i++) lv[i] = b->ok[i] && b->loc_ok[i];
            loc_sum += (double)dfd_loc_loss(F, b->n, cells, fc, w, bias, b->loc, lv, o->sbi_loc, dF) * b->n;
        }
        nn_graph_zero_grad(r->g);
        const float *dout[2] = {dl, dF};
        if ((rc = nn_backward(ex, dout, err))) break;
        float lr = nn_lr_at(o->schedule, sp->lr, st->step, steps_total, o->warmup_steps);
        nn_optim_step(opt, lr);
        st->step++;
        step++;
        row->lr = lr;
        if (step % 25 == 0 || step == steps) dfd_metric_auc(sc, lb, k, &auc, NULL);
        if (r->fn) {
            double el = (dfd_now_ms() - t0) / 1000;
            dfd_train_progress p = {.phase = DFD_TRAIN_STEP, .stage = st->stage + 1, .epoch = st->epoch + 1,
                                    .step = step, .steps = steps, .loss = loss_sum / (double)seen,
                                    .acc = k ? (double)correct / (double)k : NAN, .auc = auc,
                                    .images_per_s = el > 0 ? seen / el : 0, .eta_s = el / step * (steps - step)};
            dfd_loader_stats ls;
            dfd_loader_get_stats(l, &ls);
            p.feed_share = el > 0 ? ls.wait_s / el : NAN;
            if (r->fn(r->user, &p)) {
                r->cancelled = 1;
                break;
            }
        }
    }
    double secs = (dfd_now_ms() - t0) / 1000;
    r->failures += dfd_loader_failures(l);
    dfd_loader_stats ls;
    dfd_loader_get_stats(l, &ls);
    dfd_loader_free(l);
    row->feed_wait_s = ls.wait_s;
    row->feed_cpu_s = ls.feed_cpu_s;
    if (!rc) {
        dfd_metric_auc(sc, lb, k, &auc, NULL);
        row->train_loss = seen ? loss_sum / (double)seen : NAN;
        row->train_acc = k ? (double)correct / (double)k : NAN;
        row->train_auc = auc;
        row->seconds = secs;
        row->images_per_s = secs > 0 ? (double)seen * (r->frames > 0 ? r->frames : 1) / secs : 0;
    }
    if (!rc && cells && seen)
        dfd_log(DFD_LOG_INFO, "epoch %d: localisation loss %.4f (weight %g; not part of the loss below)", st->epoch + 1,
                loc_sum / (double)seen / (double)o->sbi_loc, (double)o->sbi_loc);
    free(order), free(with_prev), free(sc), free(lb), free(dl), free(dF), free(lv);
    return rc;
}

static int open_data(run *r, dfd_error *err) {
    const dfd_train_opts *o = r->o;
    int rc = dfd_dataset_open(o->data, o->layout, &r->ds, err);
    if (rc) return rc;
    for (size_t i = 0; i < r->ds->n; i++)
        if (r->ds->items[i].kind == DFD_ITEM_VIDEO)
            return dfd_fail(err, DFD_E_ARG, "%s holds videos ('%s'): run `dfd prepare` on it first and train on its output",
                            o->data, r->ds->items[i].path);
    if (o->val) {
        if ((rc = dfd_dataset_open(o->val, DFD_LAYOUT_AUTO, &r->val_ds, err))) return rc;
        for (size_t i = 0; i < r->val_ds->n; i++)
            if (r->val_ds->items[i].split != DFD_SPLIT_TEST) r->val_ds->items[i].split = DFD_SPLIT_VAL;
    } else {
        if ((rc = dfd_dataset_split_groups(r->ds, o->val_fraction, o->split_seed ? o->split_seed : o->seed, err))) return rc;
        r->val_ds = r->ds;
    }
    if (o->extra_real) {
        dfd_dataset *x;
        if ((rc = dfd_dataset_open(o->extra_real, DFD_LAYOUT_AUTO, &x, err))) return rc;
        long kept = 0;
        for (size_t i = 0; i < x->n && !rc; i++) {
            const dfd_item *it = &x->items[i];
            if (it->label != 0 || it->kind == DFD_ITEM_VIDEO) continue;
            char group[600];
            snprintf(group, sizeof group, "extra/%s", it->group);
            rc = dfd_dataset_add(r->ds, it->path, 0, group, it->source, it->frame, it->box, DFD_SPLIT_TRAIN, err);
            kept++;
        }
        dfd_log(DFD_LOG_INFO, "extra reals: %ld faces from %s (training only)", kept, o->extra_real);
        dfd_dataset_free(x);
        if (rc) return rc;
    }
    if (o->real_only) {
        /* SBI's protocol: the model never sees a fake of any method, only self-blends of the
         * reals, so it cannot learn one method's traces. The training fakes are moved out of
         * every split the loop reads (validation, split by group above, keeps its own). */
        long dropped = 0;
        for (size_t i = 0; i < r->ds->n; i++)
            if (r->ds->items[i].label && r->ds->items[i].split == DFD_SPLIT_TRAIN)
                r->ds->items[i].split = DFD_SPLIT_TEST, dropped++;
        dfd_log(DFD_LOG_INFO, "real only: %ld training fakes left out; every fake is a self-blend", dropped);
    }
    if (o->paired) {
        size_t pairs = 0;
        int rc = dfd_dataset_fake_partners(r->ds, DFD_SPLIT_TRAIN, &r->partner, &pairs, err);
        if (rc) return rc;
        dfd_log(DFD_LOG_INFO, "paired: %zu training fakes come with their real source, the same transform for both", pairs);
    }
    return DFD_OK;
}

static int describe_data(run *r, dfd_train_summary *s) {
    const dfd_train_opts *o = r->o;
    dfd_dataset_count(r->ds, DFD_SPLIT_TRAIN, &s->n_train_real, &s->n_train_fake);
    dfd_dataset_count(r->val_ds, DFD_SPLIT_VAL, &s->n_val_real, &s->n_val_fake);
    json_t *j = json_pack("{s:s,s:s,s:{s:I,s:I},s:{s:I,s:I},s:s,s:f,s:I,s:I,s:s*,s:f,s:b,s:f,s:f,s:b,s:f,s:b,s:s}", "data", o->data, "layout",
                          dfd_layout_name(r->ds->layout), "train", "real", (json_int_t)s->n_train_real, "fake",
                          (json_int_t)s->n_train_fake, "validation", "real", (json_int_t)s->n_val_real, "fake",
                          (json_int_t)s->n_val_fake, "split", o->val ? o->val : "by group", "val_fraction",
                          o->val ? 0.0 : o->val_fraction, "seed", (json_int_t)o->seed,
                          "split_seed", (json_int_t)(o->split_seed ? o->split_seed : o->seed), "extra_real", o->extra_real,
                          "sbi_fraction", (double)o->sbi_fraction, "real_only", o->real_only, "sbi_part", (double)o->sbi.part,
                          "real_downscale", (double)o->real_downscale, "paired", o->paired, "sbi_loc", (double)o->sbi_loc, "sbi_loc_reals", o->sbi_loc_reals,
                          "terms",
                          "research use only, under the terms of the source datasets");
    /* Where it started and how far it moved: a fine-tune is reproducible only with these. */
    if (j) {
        if (o->init) json_object_set_new(j, "init", json_string(o->init));
        json_object_set_new(j, "lr", json_real((double)o->lr));
        json_object_set_new(j, "epochs", json_integer(o->epochs));
        if (o->freeze_until) json_object_set_new(j, "freeze_until", json_string(o->freeze_until));
        json_object_set_new(j, "freeze_bn", json_boolean(o->freeze_bn));
    }
    r->training_data = j ? json_dumps(j, JSON_COMPACT) : NULL;
    json_decref(j);
    return r->training_data ? DFD_OK : DFD_E_NOMEM;
}

/* ---- The decoded-crop cache ---------------------------------------------------------------- */

typedef struct fill_ui {
    run *r;
    double t0, last;
} fill_ui;

static int on_fill(void *user, size_t done, size_t total) {
    fill_ui *f = user;
    double now = dfd_now_ms();
    if (done < total && now - f->last < 250) return 0;
    f->last = now;
    if (!f->r->fn) return 0;
    dfd_train_progress p = {.phase = DFD_TRAIN_CACHING, .step = (long)done, .steps = (long)total,
                            .images_per_s = now > f->t0 ? (double)done * 1000 / (now - f->t0) : 0};
    if (f->r->fn(f->r->user, &p)) f->r->cancelled = 1;
    return f->r->cancelled;
}

/* Decodes every crop training and validation will read, once, at the model's input size,
 * on every core, before the first step: each epoch then reads them from memory. */
static int fill_one(run *r, dfd_dataset *ds, dfd_cache_format format, size_t budget, const char *file,
                    dfd_img_cache **out, dfd_error *err) {
    const dfd_train_opts *o = r->o;
    unsigned char *want = calloc(ds->n ? ds->n : 1, 1);
    if (!want) return dfd_fail(err, DFD_E_NOMEM, "no memory for the cache's item list");
    /* Train and validation items only (official test items are never read), in item order:
     * the cache's slots are by item index, so those past the budget are the last items. */
    for (size_t i = 0; i < ds->n; i++) want[i] = ds->items[i].split != DFD_SPLIT_TEST;
    int rc = dfd_img_cache_new(ds->n, r->size, format, budget, file, out, err);
    if (!rc) {
        fill_ui f = {.r = r, .t0 = dfd_now_ms()};
        long bad = 0;
        int threads = o->threads > 0 ? o->threads : dfd_cpu_count();
        rc = dfd_img_cache_fill(*out, ds, want, threads, on_fill, &f, &bad, err);
        size_t ready, cap, bytes;
        dfd_img_cache_stats(*out, &ready, &cap, &bytes);
        if (!rc)
            dfd_log(DFD_LOG_INFO, "cache: %zu crops at %d px decoded in %.1f s (%.0f MiB as %s%s%s)%s", ready,
                    r->size, (dfd_now_ms() - f.t0) / 1000, (double)bytes / (1 << 20), dfd_cache_format_name(format), cap < ds->n ? "; over the budget, the rest is decoded every time" : "",
                    file ? ", mapped from a file" : "", bad ? "; some files could not be read" : "");
        if (rc == DFD_E_CANCELLED) rc = DFD_OK; /* r->cancelled says so; the run stops before training */
    }
    free(want);
    return rc;
}

static int fill_caches(run *r, dfd_error *err) {
    const dfd_train_opts *o = r->o;
    if (o->cache_mb == 0) return DFD_OK;
    size_t budget;
    if (o->cache_mb > 0) budget = (size_t)o->cache_mb << 20;
    else {
        long pages = sysconf(_SC_PHYS_PAGES), psz = sysconf(_SC_PAGESIZE);
        budget = pages > 0 && psz > 0 ? (size_t)pages * (size_t)psz / 2 : (size_t)2 << 30;
    }
    /* AUTO: exact RGB when every crop both sets will read fits in the budget so, else
     * 4:2:0, which caches the whole set in half the memory instead of half of it. */
    dfd_cache_format format = o->cache_format;
    if (format == DFD_CACHE_AUTO) {
        size_t items = 0;
        for (size_t i = 0; i < r->ds->n; i++) items += r->ds->items[i].split != DFD_SPLIT_TEST;
        if (r->val_ds != r->ds)
            for (size_t i = 0; i < r->val_ds->n; i++) items += r->val_ds->items[i].split != DFD_SPLIT_TEST;
        size_t rgb = dfd_img_cache_slot_bytes(r->size, DFD_CACHE_RGB);
        format = items <= budget / rgb ? DFD_CACHE_RGB : DFD_CACHE_YUV420;
    }
    int rc = fill_one(r, r->ds, format, budget, o->cache_file, &r->cache, err);
    if (!rc && !r->cancelled && r->val_ds != r->ds) {
        size_t used;
        dfd_img_cache_stats(r->cache, NULL, NULL, &used);
        char vf[1100];
        if (o->cache_file) snprintf(vf, sizeof vf, "%s.val", o->cache_file);
        rc = fill_one(r, r->val_ds, format, budget > used ? budget - used : 0, o->cache_file ? vf : NULL, &r->val_cache,
                      err);
    }
    return rc;
}

/* Face Mesh landmarks of every real training face (the self-blending sources), once per
 * run: from OUT/landmarks.txt when an earlier (interrupted) run wrote it, else computed on
 * every core and written there. Faces without landmarks keep the elliptical mask. */
static int find_landmarks(run *r, dfd_error *err) {
    const dfd_train_opts *o = r->o;
    char path[1100];
    int jrc = dfd_path_join(path, sizeof path, o->out, "landmarks.txt", err);
    if (jrc) return jrc;
    struct stat st;
    double t0 = dfd_now_ms();
    if (stat(path, &st) == 0) {
        int rc = dfd_ds_landmarks_load(path, r->ds, &r->landmarks, err);
        if (!rc) dfd_log(DFD_LOG_INFO, "landmarks: %zu faces from %s", r->landmarks->found, path);
        return rc;
    }
    unsigned char *want = calloc(r->ds->n ? r->ds->n : 1, 1);
    if (!want) return dfd_fail(err, DFD_E_NOMEM, "no memory for the landmark item list");
    size_t n = 0;
    for (size_t i = 0; i < r->ds->n; i++)
        if (r->ds->items[i].label == 0 && r->ds->items[i].split == DFD_SPLIT_TRAIN) want[i] = 1, n++;
    dfd_ds_landmark_opts lo;
    dfd_ds_landmark_opts_default(&lo);
    lo.models_dir = o->models_dir;
    lo.threads = o->threads > 0 ? o->threads : dfd_cpu_count();
    lo.want = want;
    lo.progress = 1;
    dfd_log(DFD_LOG_INFO, "landmarks: finding Face Mesh landmarks of %zu real training faces", n);
    int rc = dfd_dataset_landmarks(r->ds, &lo, &r->landmarks, err);
    free(want);
    if (rc) return rc;
    dfd_log(DFD_LOG_INFO, "landmarks: %zu of %zu faces in %.0f s (the rest keep the elliptical mask)", r->landmarks->found,
            n, (dfd_now_ms() - t0) / 1000);
    return dfd_ds_landmarks_save(r->landmarks, r->ds, path, err);
}

int dfd_train_run(const dfd_train_opts *o, dfd_train_progress_fn fn, void *user, dfd_train_summary *s, dfd_error *err) {
    memset(s, 0, sizeof *s);
    s->best_val_auc = NAN;
    if (!o->arch || !o->data || !o->out) return dfd_fail(err, DFD_E_ARG, "train: --arch, --data and --out are required");
    if (o->task && !dfd_model_task_known(o->task))
        return dfd_fail(err, DFD_E_ARG, "train: unknown task '%s' (manipulation, synthetic)", o->task);
    const dfd_arch_info *ai = dfd_arch_find(o->arch);
    if (!ai) {
        nn_graph *tmp = NULL;
        return dfd_arch_build(o->arch, NULL, &tmp, err); /* its message lists the names */
    }
    if (!ai->has_head) return dfd_fail(err, DFD_E_ARG, "train: '%s' is a backbone without a head; use %s-image", o->arch, o->arch);
    if (ai->is_video != !!o->video)
        return dfd_fail(err, DFD_E_ARG, "train: '%s' is %s architecture, but training is for %s", o->arch,
                        ai->is_video ? "a video" : "an image", o->video ? "video" : "images");
    if (o->batch < 1 || o->batch > 4096 || o->epochs < 0 || o->epochs > 1000 || o->stage1_epochs < 0 ||
        o->epochs + o->stage1_epochs > 999 || !(o->lr > 0) || !(o->sbi_fraction >= 0 && o->sbi_fraction <= 1))
        return dfd_fail(err, DFD_E_ARG, "train: batch %d, epochs %d+%d, lr %g or sbi fraction %g out of range", o->batch,
                        o->stage1_epochs, o->epochs, (double)o->lr, (double)o->sbi_fraction);
    if (!(o->real_downscale >= 0 && o->real_downscale <= 1))
        return dfd_fail(err, DFD_E_ARG, "train: real-downscale share %g outside [0, 1]", (double)o->real_downscale);
    if (o->real_only && (o->video || !(o->sbi_fraction > 0)))
        return dfd_fail(err, DFD_E_ARG, "train: --real-only needs self-blended fakes: an image model and --sbi-fraction > 0");
    if (!(o->sbi_loc >= 0 && o->sbi_loc <= 100) || (o->sbi_loc > 0 && (o->video || !(o->sbi_fraction > 0))) ||
        (o->sbi_loc_reals && !(o->sbi_loc > 0)))
        return dfd_fail(err, DFD_E_ARG, "train: --sbi-loc %g: a weight in [0, 100], for an image model with "
                                        "self-blended fakes (--sbi-fraction > 0)", (double)o->sbi_loc);
    if (o->paired && (o->video || o->real_only))
        return dfd_fail(err, DFD_E_ARG, "train: --paired pairs still images of fakes with their reals: not for video "
                                        "models nor with --real-only (no training fakes)");
    int rc = mkdir_p(o->out, err);
    if (rc) return rc;

    run R;
    memset(&R, 0, sizeof R);
    run *r = &R;
    r->o = o, r->fn = fn, r->user = user;
    r->size = o->input_size > 0 ? o->input_size : ai->default_input;
    r->frames = o->video ? (o->frames > 0 ? o->frames : 30) : 0;
    nn_exec *ex = NULL;
    nn_optim *opt = NULL;
    snapshot best = {0};
    char ckpt[1100], state_path[1100], best_path[1100];
    if ((rc = dfd_path_join(ckpt, sizeof ckpt, o->out, "checkpoint.safetensors", err)) ||
        (rc = dfd_path_join(state_path, sizeof state_path, o->out, "checkpoint.state.safetensors", err)) ||
        (rc = dfd_path_join(best_path, sizeof best_path, o->out, "best.safetensors", err)))
        goto done;
    if ((rc = open_data(r, err))) goto done;
    if ((rc = describe_data(r, s))) {
        rc = dfd_fail(err, rc, "no memory");
        goto done;
    }
    if ((rc = samples_make(r->ds, o->video, &r->tr, err))) goto done;
    if ((rc = samples_make(r->val_ds, o->video, &r->va, err))) goto done;
    dfd_dataset_class_weights(r->ds, DFD_SPLIT_TRAIN, r->class_w);
    data_contract(o->data, r->size, &r->contract);
    if (o->norm >= 0) r->contract.norm = (dfd_norm)o->norm; /* recorded in the model: scan does the same */
    if ((rc = fill_caches(r, err))) goto done;
    if (!r->cancelled && o->sbi_landmarks && o->sbi_fraction > 0 && !o->video && (rc = find_landmarks(r, err))) goto done;
    if (r->cancelled) {
        s->cancelled = 1;
        goto done;
    }

    /* The model. */
    dfd_model_meta bm;
    dfd_model_meta_init(&bm);
    bm.arch = (char *)o->arch, bm.input_size = r->size, bm.frames = r->frames;
    bm.width = o->width > 0 ? o->width : 1.0f, bm.dropout = o->dropout;
    if ((rc = dfd_train_build_model(NULL, &bm, &r->g, err))) goto done;
    nn_graph_init_weights(r->g, o->seed);
    if (o->init && !o->resume) {
        int loaded, skipped;
        if ((rc = dfd_train_load_matching(r->g, o->init, &loaded, &skipped, err))) goto done;
        dfd_log(DFD_LOG_INFO, "init: %d parameters from %s, %d kept as initialised", loaded, o->init, skipped);
    }
    if ((rc = loc_setup(r, err))) goto done;

    /* The stages. */
    stage_plan plan[2];
    int n_stages = 0;
    const char *head = o->video ? "lstm" : "global_average_pooling2d";
    if (o->stage1_epochs > 0) {
        plan[n_stages++] = (stage_plan){o->stage1_epochs, o->lr, head, 0};
        plan[n_stages++] = (stage_plan){o->epochs, o->stage2_lr > 0 ? o->stage2_lr : o->lr / 100, o->stage2_from, o->freeze_bn};
    } else plan[n_stages++] = (stage_plan){o->epochs, o->lr, o->freeze_until, o->freeze_bn};
    for (int i = 0; i < n_stages; i++)
        if (plan[i].unfreeze_from && nn_graph_find_node(r->g, plan[i].unfreeze_from) < 0) {
            rc = dfd_fail(err, DFD_E_NOT_FOUND, "train: the model has no layer named '%s'", plan[i].unfreeze_from);
            goto done;
        }

    run_state st = {.best_auc = NAN};
    if (o->resume) {
        dfd_st_file *f;
        if ((rc = dfd_st_open(o->resume, &f, err))) goto done;
        /* A checkpoint goes on learning what it was learning: the same task. */
        dfd_model_meta cm;
        rc = dfd_model_meta_read(f, &cm, err);
        const char *want = o->task ? o->task : DFD_MODEL_TASK_MANIPULATION;
        if (!rc && strcmp(cm.task, want) != 0)
            rc = dfd_fail(err, DFD_E_ARG, "train: '%s' was trained with --task %s; resume it with the same --task (not %s)",
                          o->resume, cm.task, want);
        dfd_model_meta_free(&cm);
        if (!rc) rc = dfd_model_load_params(f, r->g, err);
        dfd_st_close(f);
        if (rc) goto done;
        char sp[1100];
        state_path_for(o->resume, sp, sizeof sp);
        if ((rc = load_state(sp, &st, r->hist, 1000, &r->n_hist, err))) goto done;
        /* The best weights so far: from best.safetensors in the output folder. */
        dfd_st_file *bf;
        if (dfd_st_open(best_path, &bf, NULL) == DFD_OK) {
            nn_graph *tmp;
            if (dfd_train_build_model(NULL, &bm, &tmp, NULL) == DFD_OK) {
                if (dfd_model_load_params(bf, tmp, NULL) == DFD_OK) rc = snapshot_take(tmp, &best, err);
                nn_graph_free(tmp);
            }
            dfd_st_close(bf);
            if (rc) goto done;
        }
        dfd_log(DFD_LOG_INFO, "resuming after epoch %d (stage %d)", st.epoch, st.stage + 1);
    }

    nn_exec_opts io;
    nn_exec_opts_default(&io);
    io.backend = o->backend, io.max_batch = o->batch, io.threads = o->threads, io.training = 0;
    if ((rc = nn_exec_create(r->g, &io, &r->infer, err))) goto done;
    {
        int recal = o->bn_recalibrate >= 0 ? o->bn_recalibrate : (o->init && !o->resume ? 32 : 0);
        if (recal > 0 && !o->resume && (rc = recalibrate_bn(r, &io, recal, err))) goto done;
        if (o->bn_momentum >= 0 && o->bn_momentum < 1) nn_graph_set_bn_momentum(r->g, o->bn_momentum);
    }

    long n_train_samples;
    {
        size_t *tmp, cnt;
        if ((rc = dfd_order_balanced(r->tr.label, r->tr.split, r->tr.n, DFD_SPLIT_TRAIN, o->balance == DFD_BALANCE_UNDERSAMPLE,
                                     0, o->limit, &tmp, &cnt, err)))
            goto done;
        free(tmp);
        n_train_samples = (long)cnt;
    }
    if (n_train_samples == 0) {
        rc = dfd_fail(err, DFD_E_ARG, "train: no training samples in %s", o->data);
        goto done;
    }
    long steps_per_epoch = (n_train_samples + o->batch - 1) / o->batch;
    int max_epoch = 0;
    for (int i = 0; i < n_stages; i++) max_epoch += plan[i].epochs;
    double train_secs = 0, train_imgs = 0;

    for (int si = 0; si < n_stages && !r->cancelled; si++) {
        const stage_plan *sp = &plan[si];
        int resumed_here = o->resume && st.stage == si && st.epoch > 0;
        if (o->resume && st.epoch > 0 && si < st.stage) continue; /* finished before the interruption */
        int first_epoch = resumed_here ? st.stage_epoch : 0;
        if (!resumed_here) st.stage_epoch = 0, st.bad_epochs = 0, st.step = 0;
        if (resumed_here && st.bad_epochs >= o->patience && o->patience > 0) first_epoch = sp->epochs;
        if (first_epoch >= sp->epochs) {
            if (si + 1 < n_stages && best.data) snapshot_restore(r->g, &best);
            continue;
        }
        nn_graph_set_trainable(r->g, NULL, 1);
        if (sp->unfreeze_from) nn_graph_set_trainable(r->g, sp->unfreeze_from, 1);
        nn_graph_freeze_bn_stats(r->g, sp->freeze_bn);
        nn_exec_opts to = io;
        to.training = 1;
        to.precision = o->precision;
        to.seed = o->seed + (uint64_t)si;
        to.no_input_grad = 1; /* a frozen backbone's backward pass is skipped */
        nn_exec_free(ex);
        ex = NULL;
        if ((rc = nn_exec_create(r->g, &to, &ex, err))) goto done;
        nn_optim_opts oo;
        nn_optim_opts_default(&oo, o->optimizer);
        oo.lr = sp->lr;
        if (o->weight_decay >= 0) oo.weight_decay = o->weight_decay;
        nn_optim_free(opt);
        opt = NULL;
        if ((rc = nn_optim_create(r->g, &oo, &opt, err))) goto done;
        if (resumed_here) {
            char sp2[1100];
            state_path_for(o->resume, sp2, sizeof sp2);
            if ((rc = restore_moments(r->g, sp2, err))) goto done;
            /* The stage's optimiser and executor have taken one step and pass per scheduled step. */
            nn_optim_set_steps(opt, st.step);
            nn_exec_set_passes(ex, (uint64_t)st.step);
        }
        long steps_total = steps_per_epoch * sp->epochs;
        for (int e = first_epoch; e < sp->epochs && !r->cancelled; e++) {
            dfd_history_row row = {.epoch = st.epoch + 1, .stage = si + 1, .val_loss = NAN, .val_acc = NAN,
                                   .val_auc = NAN, .val_eer = NAN};
            if ((rc = run_epoch(r, sp, ex, opt, &st, steps_total, &row, err))) goto done;
            if (r->cancelled) break;
            train_secs += row.seconds;
            train_imgs += row.images_per_s * row.seconds;
            /* Validation. */
            if ((rc = nn_exec_refresh(r->infer, err))) goto done;
            double *sc = NULL;
            int *lb = NULL;
            size_t nv = 0;
            if ((rc = predict(r, r->val_ds, &r->va, DFD_SPLIT_VAL, o->val_limit, &sc, &lb, &nv, err))) goto done;
            if (r->cancelled) {
                free(sc), free(lb);
                break;
            }
            dfd_metrics m, mt;
            rc = dfd_metrics_compute(sc, lb, nv, 0.5, &m, err);
            /* The same scores at the validation EER threshold: what the model file will use. */
            double thr = isfinite(m.eer_threshold) ? m.eer_threshold : 0.5;
            if (!rc && o->threshold_fpr > 0 && isfinite(m.auc)) {
                double t;
                if (dfd_metric_threshold_for_fpr(sc, lb, nv, o->threshold_fpr, &t, NULL) == DFD_OK) {
                    if (!isfinite(t)) {
                        /* Only "flag nothing" keeps the bound (a real scores highest): the
                         * threshold just above every validation real. */
                        double top = 0;
                        for (size_t i = 0; i < nv; i++)
                            if (!lb[i] && sc[i] > top) top = sc[i];
                        t = nextafter(top, 2.0);
                        if (t > 1) t = 1;
                    }
                    thr = t;
                }
            }
            if (!rc) rc = dfd_metrics_compute(sc, lb, nv, thr, &mt, err);
            free(sc), free(lb);
            if (rc) goto done;
            row.val_loss = m.loss, row.val_acc = m.accuracy, row.val_auc = m.auc, row.val_eer = m.eer;
            st.epoch++;
            st.stage = si;
            st.stage_epoch = e + 1;
            int improved = isfinite(m.auc) && (!isfinite(st.best_auc) || m.auc > st.best_auc + 1e-4);
            if (nv == 0 || !isfinite(m.auc)) improved = 1; /* nothing to judge by: the latest is the best */
            if (improved) {
                st.best_auc = m.auc, st.best_epoch = st.epoch, st.bad_epochs = 0;
                s->best_val = mt;
                if ((rc = snapshot_take(r->g, &best, err))) goto done;
                if ((rc = save_model(r, best_path, mt.threshold, &mt, st.epoch, si + 1, err))) goto done;
            } else st.bad_epochs++;
            if (r->n_hist < 1000) r->hist[r->n_hist++] = row;
            if ((rc = save_model(r, ckpt, mt.threshold, &mt, st.epoch, si + 1, err))) goto done;
            if ((rc = save_state(r->g, &st, r->hist, r->n_hist, state_path, err))) goto done;
            if (o->keep_epochs) {
                char ep[1100];
                snprintf(ep, sizeof ep, "%s/epoch-%03d.safetensors", o->out, st.epoch);
                if ((rc = save_model(r, ep, mt.threshold, &mt, st.epoch, si + 1, err))) goto done;
            }
            if ((rc = write_history(r, err))) goto done;
            s->epochs_run++;
            if (fn) {
                dfd_train_progress p = {.phase = DFD_TRAIN_EPOCH_DONE, .stage = si + 1, .epoch = st.epoch,
                                        .max_epoch = max_epoch, .row = &r->hist[r->n_hist - 1], .improved = improved,
                                        .images_per_s = row.images_per_s};
                if (fn(user, &p)) r->cancelled = 1;
            }
            if (o->patience > 0 && st.bad_epochs >= o->patience) {
                dfd_log(DFD_LOG_INFO, "stage %d: no better validation AUC for %d epochs: stopping it", si + 1, o->patience);
                s->stopped_early = 1;
                break;
            }
        }
        /* The next stage starts from this stage's best weights (Keras restore_best_weights). */
        if (si + 1 < n_stages && best.data) snapshot_restore(r->g, &best);
    }
    s->best_epoch = st.best_epoch;
    s->best_val_auc = st.best_auc;
    s->train_seconds = train_secs;
    s->images_per_s = train_secs > 0 ? train_imgs / train_secs : 0;
    s->failures = r->failures;
    s->cancelled = r->cancelled;
    snprintf(s->best_path, sizeof s->best_path, "%s", best_path);
    snprintf(s->last_path, sizeof s->last_path, "%s", ckpt);
done:
    snapshot_free(&best);
    nn_optim_free(opt);
    nn_exec_free(ex);
    nn_exec_free(r->infer);
    nn_graph_free(r->g);
    samples_free(&r->tr);
    samples_free(&r->va);
    if (r->val_ds != r->ds) dfd_dataset_free(r->val_ds);
    dfd_dataset_free(r->ds);
    dfd_img_cache_free(r->cache);
    dfd_img_cache_free(r->val_cache);
    dfd_ds_landmarks_free(r->landmarks);
    free(r->partner);
    free(r->training_data);
    return rc;
}

/* ---- Preview ---------------------------------------------------------------------------------- */

int dfd_train_preview(const dfd_train_opts *o, const char *png, int n, dfd_error *err) {
    dfd_dataset *d;
    const char *src = o->extra_real ? o->extra_real : o->data;
    int rc = dfd_dataset_open(src, o->extra_real ? DFD_LAYOUT_AUTO : o->layout, &d, err);
    if (rc) return rc;
    int size = o->input_size > 0 ? o->input_size : 128;
    if (n < 1) n = 6;
    if (n > 16) n = 16;
    dfd_image *ims = calloc((size_t)n * 4, sizeof *ims);
    const char **caps = calloc((size_t)n * 4, sizeof *caps);
    if (!ims || !caps) {
        free(ims), free(caps), dfd_dataset_free(d);
        return dfd_fail(err, DFD_E_NOMEM, "no memory for a preview");
    }
    /* n real faces spread over the dataset, each: as is, self-blended, augmented, both. */
    size_t reals = 0;
    for (size_t i = 0; i < d->n; i++) reals += d->items[i].label == 0 && d->items[i].kind == DFD_ITEM_IMAGE;
    int k = 0;
    size_t seen = 0;
    for (size_t i = 0; i < d->n && k < n * 4 && !rc; i++) {
        const dfd_item *it = &d->items[i];
        if (it->label != 0 || it->kind != DFD_ITEM_IMAGE) continue;
        if (seen++ % (reals / (size_t)n > 0 ? reals / (size_t)n : 1)) continue;
        dfd_image im;
        if (dfd_image_load(it->path, NULL, &im, NULL, NULL)) continue;
        dfd_image *row = &ims[k];
        rc = dfd_image_resize(&im, size, size, &row[0], err);
        dfd_image_free(&im);
        nn_rng rg;
        nn_rng_seed(&rg, o->seed + i);
        for (int c = 1; c < 4 && !rc; c++) rc = dfd_image_copy(&row[0], &row[c], err);
        if (!rc) rc = dfd_sbi(&row[1], &o->sbi, &rg, NULL, err);
        if (!rc) rc = dfd_augment(&row[2], &o->aug, &rg, err);
        if (!rc) rc = dfd_sbi(&row[3], &o->sbi, &rg, NULL, err);
        if (!rc) rc = dfd_augment(&row[3], &o->aug, &rg, err);
        caps[k] = "real", caps[k + 1] = "self-blended (FAKE)", caps[k + 2] = "real, augmented",
        caps[k + 3] = "self-blended, augmented";
        k += 4;
    }
    if (!rc && k == 0) rc = dfd_fail(err, DFD_E_NOT_FOUND, "no readable real image in %s", src);
    if (!rc) rc = dfd_plot_image_grid(png, ims, caps, k, 4, 160, "Training samples: real / self-blended / augmented", err);
    for (int i = 0; i < n * 4; i++) dfd_image_free(&ims[i]);
    free(ims), free(caps);
    dfd_dataset_free(d);
    return rc;
}
