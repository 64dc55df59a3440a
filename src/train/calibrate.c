/* calibrate.c — `dfd calibrate`: a model's threshold chosen on real faces the user trusts.
 *
 * Why this exists: a model's stored threshold comes from its own validation data (for
 * dfd's manipulation models, DFDC video frames at their equal error rate). Real faces from
 * elsewhere (phone video, webcams, old compressed clips) score differently, and the
 * commonest complaint about any detector is that it flags such footage. Calibrating moves
 * only the threshold: it scores real crops the user vouches for, and randomly degraded
 * copies of them (low quality is what shifts real scores most), takes the lowest
 * threshold that flags at most the target share of them, and writes a copy of the model
 * with it and a record of how it was chosen. The weights are copied bit for bit, so every
 * score and the AUC stay as they were; only verdicts move.
 *
 * Scoring is the detect module's classifier with mirror averaging, exactly what `dfd scan`
 * does to a face crop. The degradations are the training module's augmentations (JPEG
 * always, the rest at random), seeded per crop and copy, so a run is reproducible and
 * does not depend on batching. */
#include <jansson.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "detect/detect.h"
#include "io/model_file.h"
#include "io/safetensors.h"
#include "train/train.h"

#define CAL_BATCH 32 /* > 1 + the most degraded copies of one crop (16) */

void dfd_calibrate_opts_default(dfd_calibrate_opts *o) {
    memset(o, 0, sizeof *o);
    o->fpr = 0.03;
    o->seed = 1;
    o->val_fraction = 0.2;
}

void dfd_calibrate_degradation(dfd_augment_opts *a) {
    /* The heavier degradation of the manipulation recipe (scripts/train-manipulation-model.sh),
     * with the re-compression made certain: a degraded copy is always a re-encoded one. */
    dfd_augment_opts_none(a);
    a->downscale = 0.35f;
    a->downscale_min = 0.4f;
    a->blur = 0.25f;
    a->blur_sigma = 1.0f;
    a->noise = 0.2f;
    a->noise_std = 5.0f;
    a->jpeg = 1.0f;
    a->jpeg_qmin = 20;
    a->jpeg_qmax = 95;
}

typedef struct scored {
    double p;
    int label;    /* 0 real, 1 fake */
    int src;      /* index of the folder */
    int degraded; /* 1: a degraded copy of a real crop */
} scored;

typedef struct pool {
    scored *v;
    int n, cap;
} pool;

typedef struct batch {
    dfd_image img[CAL_BATCH];
    scored what[CAL_BATCH];
    int n;
} batch;

/* Scores the queued crops (mirror-averaged, as scan) into the pool and empties the batch. */
static int flush(dfd_classifier *c, batch *b, pool *pl, dfd_error *err) {
    double p[CAL_BATCH];
    int rc = b->n ? dfd_classifier_score(c, b->img, b->n, 1, p, err) : DFD_OK;
    for (int j = 0; j < b->n; j++) {
        if (!rc) {
            scored *nv = dfd_grow(pl->v, &pl->cap, pl->n + 1, sizeof *nv, 1024);
            if (!nv) rc = dfd_fail(err, DFD_E_NOMEM, "no memory");
            else {
                pl->v = nv;
                b->what[j].p = p[j];
                pl->v[pl->n++] = b->what[j];
            }
        }
        dfd_image_free(&b->img[j]);
    }
    b->n = 0;
    return rc;
}

/* A seed for copy k of item i: the same crop gets the same degradations in every run. */
static uint64_t copy_seed(uint64_t seed, size_t item, int k) {
    uint64_t z = seed * 0x9E3779B97F4A7C15ull ^ ((uint64_t)item << 5 | (uint64_t)k);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    return z ^ (z >> 31);
}

/* Scores folder s (its real crops, their degraded copies, its fakes) into the pool. */
static int score_folder(const dfd_calibrate_opts *o, int s, dfd_classifier *c, int size, pool *pl,
                        dfd_calibrate_result *res, dfd_error *err) {
    dfd_dataset *d = NULL;
    size_t *idx = NULL, nidx = 0;
    batch *b = calloc(1, sizeof *b);
    dfd_augment_opts deg;
    dfd_calibrate_degradation(&deg);
    if (!b) return dfd_fail(err, DFD_E_NOMEM, "no memory");
    int rc = dfd_dataset_open(o->data[s], DFD_LAYOUT_AUTO, &d, err);
    if (rc) goto out;
    for (size_t i = 0; i < d->n; i++)
        if (d->items[i].kind == DFD_ITEM_VIDEO) {
            rc = dfd_fail(err, DFD_E_ARG, "%s holds videos ('%s'): calibrate on the face crops `dfd prepare` cuts from them",
                          o->data[s], d->items[i].path);
            goto out;
        }
    if (o->data_val[s] && (rc = dfd_dataset_split_groups(d, o->val_fraction, o->seed, err))) goto out;
    if ((rc = dfd_dataset_epoch_order(d, o->data_val[s] ? DFD_SPLIT_VAL : -1, 0, o->seed, o->limit, &idx, &nidx, err)))
        goto out;
    if (nidx == 0) {
        rc = dfd_fail(err, DFD_E_NOT_FOUND, "no face crops in %s%s", o->data[s], o->data_val[s] ? " (validation groups)" : "");
        goto out;
    }
    dfd_sort_indices(idx, nidx); /* listing order, whatever the limit picked */
    for (size_t k = 0; k < nidx && !rc; k++) {
        const dfd_item *it = &d->items[idx[k]];
        int copies = it->label ? 0 : o->degrade;
        if (b->n + 1 + copies > CAL_BATCH && (rc = flush(c, b, pl, err))) break;
        dfd_error e;
        if (dfd_load_crop(it->path, size, &b->img[b->n], &e)) {
            if (res->failures++ < 5) dfd_log(DFD_LOG_WARN, "calibrate: skipping '%s': %s", it->path, e.message);
            continue;
        }
        const int orig = b->n;
        b->what[b->n++] = (scored){0, it->label, s, 0};
        for (int j = 0; j < copies && !rc; j++) {
            nn_rng r;
            nn_rng_seed(&r, copy_seed(o->seed, idx[k], j));
            if (!(rc = dfd_image_copy(&b->img[orig], &b->img[b->n], err)) &&
                !(rc = dfd_augment(&b->img[b->n], &deg, &r, err)))
                b->what[b->n++] = (scored){0, 0, s, 1};
            else
                dfd_image_free(&b->img[b->n]);
        }
        if (!rc && o->progress &&
            o->progress(o->user, ((double)s + (double)(k + 1) / (double)nidx) / (double)o->n_data))
            rc = dfd_fail(err, DFD_E_CANCELLED, "cancelled");
    }
    if (!rc) rc = flush(c, b, pl, err);
out:
    if (b) {
        for (int j = 0; j < b->n; j++) dfd_image_free(&b->img[j]);
        free(b);
    }
    free(idx);
    dfd_dataset_free(d);
    return rc;
}

/* Share of the pool's entries of folder src (-1: all), label, degraded (-1: either) at or over t. */
static double share(const pool *pl, int src, int label, int degraded, double t, long *count) {
    long n = 0, hit = 0;
    for (int i = 0; i < pl->n; i++) {
        const scored *x = &pl->v[i];
        if ((src >= 0 && x->src != src) || x->label != label || (degraded >= 0 && x->degraded != degraded)) continue;
        n++;
        hit += x->p >= t;
    }
    if (count) *count = n;
    return n ? (double)hit / (double)n : NAN;
}

static json_t *num(double v) { return isfinite(v) ? json_real(v) : json_null(); }

/* The "calibration" metadata: how the threshold was chosen, and what it does on each folder. */
static char *record(const dfd_calibrate_opts *o, const dfd_calibrate_result *r) {
    json_t *src = json_array();
    for (int s = 0; src && s < r->n_sources; s++) {
        const dfd_calibrate_source *x = &r->sources[s];
        json_t *e = json_pack("{s:s,s:s,s:I,s:I,s:o,s:o}", "data", x->data, "split", x->val_only ? "validation" : "all",
                              "real", (json_int_t)x->real, "fake", (json_int_t)x->fake, "real_flagged", num(x->fpr_after),
                              "fake_flagged", num(x->tpr_after));
        if (e && x->val_only) json_object_set_new(e, "val_fraction", json_real(o->val_fraction));
        if (!e || json_array_append_new(src, e)) {
            json_decref(src);
            src = NULL;
        }
    }
    if (!src) return NULL;
    json_t *doc = json_pack("{s:s,s:f,s:f,s:f,s:I,s:I,s:I,s:o,s:o,s:s}", "rule",
                            "the lowest threshold that flags at most fpr of the real crops (degraded copies included)",
                            "fpr", o->fpr, "threshold", r->threshold, "previous_threshold", r->threshold_before, "reals",
                            (json_int_t)r->reals, "degraded_copies", (json_int_t)r->degraded, "seed", (json_int_t)o->seed,
                            "real_flagged", num(r->fpr), "sources", src, "scoring", "as dfd scan: mirror-averaged crops");
    if (doc && o->degrade)
        json_object_set_new(doc, "degradation",
                            json_string("per real crop, copies re-compressed as JPEG q20-95, with down-and-up "
                                        "scaling p .35 (to >= .4), blur p .25, noise p .2"));
    char *t = doc ? json_dumps(doc, JSON_COMPACT | JSON_REAL_PRECISION(17)) : NULL;
    json_decref(doc);
    return t;
}

/* Copies the model file with a new threshold and calibration record; the tensors keep
 * their stored type (BF16 stays BF16, others are written as F32, which loses nothing). */
static int write_model(const char *in, const char *out, double threshold, const char *calibration, dfd_error *err) {
    dfd_st_file *f = NULL;
    dfd_st_writer *w = NULL;
    float **bufs = NULL;
    int nt = 0;
    int rc = dfd_st_open(in, &f, err);
    if (rc) return rc;
    nt = dfd_st_count(f);
    bufs = calloc(nt ? (size_t)nt : 1, sizeof *bufs);
    w = dfd_st_writer_new();
    if (!bufs || !w) {
        rc = dfd_fail(err, DFD_E_NOMEM, "no memory");
        goto out;
    }
    for (int i = 0; i < nt && !rc; i++) {
        const dfd_st_tensor *t = dfd_st_tensor_at(f, i);
        if (!(bufs[i] = dfd_malloc_array(t->count ? t->count : 1, sizeof(float)))) {
            rc = dfd_fail(err, DFD_E_NOMEM, "no memory for tensor '%s'", t->name);
            break;
        }
        if (!(rc = dfd_st_read_f32(f, t, bufs[i], t->count, err)))
            rc = dfd_st_writer_add_f32(w, t->name, t->ndim, t->shape, bufs[i], t->dtype == DFD_ST_BF16 ? DFD_ST_BF16 : DFD_ST_F32,
                                       err);
    }
    for (int i = 0; i < dfd_st_meta_count(f) && !rc; i++) {
        const char *k, *v;
        dfd_st_meta_at(f, i, &k, &v);
        if (strcmp(k, "threshold") && strcmp(k, "calibration") && strcmp(k, "dfd_version"))
            rc = dfd_st_writer_set_meta(w, k, v, err);
    }
    char t[64];
    snprintf(t, sizeof t, "%.17g", threshold);
    if (!rc) rc = dfd_st_writer_set_meta(w, "threshold", t, err);
    if (!rc) rc = dfd_st_writer_set_meta(w, "calibration", calibration, err);
    if (!rc) rc = dfd_st_writer_set_meta(w, "dfd_version", dfd_version(), err);
    if (!rc) rc = dfd_st_writer_save(w, out, err);
out:
    dfd_st_writer_free(w);
    for (int i = 0; bufs && i < nt; i++) free(bufs[i]);
    free(bufs);
    dfd_st_close(f);
    return rc;
}

int dfd_calibrate_run(const dfd_calibrate_opts *o, dfd_calibrate_result *res, dfd_error *err) {
    memset(res, 0, sizeof *res);
    if (!o || !o->model || !o->out || o->n_data == 0)
        return dfd_fail(err, DFD_E_ARG, "calibrate: a model, an output file and at least one folder of crops are required");
    {
        /* The output's folder must exist before minutes of scoring, not after. */
        char dir[1100];
        snprintf(dir, sizeof dir, "%s", o->out);
        char *slash = strrchr(dir, '/');
        if (slash) slash == dir ? (void)(dir[1] = 0) : (void)(*slash = 0);
        struct stat st;
        if (stat(slash ? dir : ".", &st) != 0 || !S_ISDIR(st.st_mode))
            return dfd_fail(err, DFD_E_IO, "cannot write '%s': the folder '%s' does not exist", o->out, slash ? dir : ".");
    }
    double t0 = dfd_now_ms();
    dfd_classifier *c = NULL;
    pool pl = {0};
    double *sc = NULL;
    int *lb = NULL;
    char *rec = NULL;
    int rc = dfd_classifier_load(o->model, o->threads, &c, err);
    if (rc) return rc;
    if (dfd_classifier_frames(c) > 0) {
        rc = dfd_fail(err, DFD_E_ARG, "%s is a video model (it scores sequences): calibrate works on image models", o->model);
        goto out;
    }
    const int size = dfd_classifier_contract(c)->size;
    res->threshold_before = dfd_classifier_threshold(c);
    res->n_sources = o->n_data;
    for (int s = 0; s < o->n_data && !rc; s++) {
        snprintf(res->sources[s].data, sizeof res->sources[s].data, "%s", o->data[s]);
        res->sources[s].val_only = o->data_val[s];
        rc = score_folder(o, s, c, size, &pl, res, err);
    }
    if (rc) goto out;

    /* The threshold: over every real score, degraded copies included. */
    sc = dfd_malloc_array(pl.n ? (size_t)pl.n : 1, sizeof *sc);
    lb = calloc(pl.n ? (size_t)pl.n : 1, sizeof *lb);
    if (!sc || !lb) {
        rc = dfd_fail(err, DFD_E_NOMEM, "no memory");
        goto out;
    }
    size_t nr = 0;
    for (int i = 0; i < pl.n; i++) {
        if (pl.v[i].label) res->fakes++;
        else {
            sc[nr++] = pl.v[i].p;
            if (pl.v[i].degraded) res->degraded++;
            else res->reals++;
        }
    }
    if (nr == 0) {
        rc = dfd_fail(err, DFD_E_NOT_FOUND, "no real face crops to calibrate on (the folders hold only fakes)");
        goto out;
    }
    if ((double)nr * o->fpr < 1) {
        rc = dfd_fail(err, DFD_E_ARG,
                      "%zu real crops are too few to set a false-positive rate of %g: at least %.0f are needed (more "
                      "folders, --degrade, or a higher --fpr)",
                      nr, o->fpr, ceil(1 / o->fpr));
        goto out;
    }
    double t;
    if ((rc = dfd_metric_threshold_for_fpr(sc, lb, nr, o->fpr, &t, err))) goto out;
    if (!(t >= 0 && t <= 1)) {
        rc = dfd_fail(err, DFD_E_INTERNAL, "calibrate: no threshold in [0, 1] meets the rate (scores out of range)");
        goto out;
    }
    res->threshold = t;
    res->fpr_before = share(&pl, -1, 0, -1, res->threshold_before, NULL);
    res->fpr = share(&pl, -1, 0, -1, t, NULL);
    res->fpr_degraded_before = share(&pl, -1, 0, 1, res->threshold_before, NULL);
    res->fpr_degraded = share(&pl, -1, 0, 1, t, NULL);
    for (int s = 0; s < o->n_data; s++) {
        dfd_calibrate_source *x = &res->sources[s];
        x->fpr_before = share(&pl, s, 0, 0, res->threshold_before, &x->real);
        x->fpr_after = share(&pl, s, 0, 0, t, NULL);
        x->tpr_before = share(&pl, s, 1, -1, res->threshold_before, &x->fake);
        x->tpr_after = share(&pl, s, 1, -1, t, NULL);
    }
    if (!(rec = record(o, res))) {
        rc = dfd_fail(err, DFD_E_NOMEM, "no memory");
        goto out;
    }
    if ((rc = write_model(o->model, o->out, t, rec, err))) goto out;
    res->seconds = (dfd_now_ms() - t0) / 1000;
out:
    free(rec), free(sc), free(lb), free(pl.v);
    dfd_classifier_free(c);
    return rc;
}
