/* eval.c — `dfd eval`: a model file against a labelled folder of face crops.
 *
 * Crops are scored through the detect module's classifier, the same code `dfd scan` runs,
 * so the numbers describe what users get (same normalisation, same output convention,
 * optional flip averaging). Frame level scores every crop; video level aggregates the
 * crops of each source video as scan aggregates a track; a video model scores each
 * prepared sequence. The same model and data give the same numbers: the order is fixed by
 * the dataset listing and nothing is random. */
#include <jansson.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "detect/detect.h"
#include "face/face.h"
#include "io/model_file.h"
#include "io/safetensors.h"
#include "train/train.h"

#define EVAL_BATCH 16

void dfd_eval_opts_default(dfd_eval_opts *o) {
    memset(o, 0, sizeof *o);
    o->layout = DFD_LAYOUT_AUTO;
    o->split = DFD_EVAL_ALL;
    o->val_fraction = 0.2;
    o->seed = 1;
    o->aggregation = DFD_AGG_CONFIDENT;
    o->threshold = -1;
}

/* The video a crop came from: its source without a "#track" suffix. */
static size_t video_key_len(const char *source) {
    const char *h = strrchr(source, '#');
    return h ? (size_t)(h - source) : strlen(source);
}

typedef struct unit {
    const char *name; /* borrowed from the dataset */
    size_t name_len;
    int label;
    double p;
    size_t item;      /* the (first) dataset item */
} unit;

typedef struct vkey {
    const char *key;
    size_t len, unit;
} vkey;

static int cmp_vkey(const void *a, const void *b) {
    const vkey *x = a, *y = b;
    size_t n = x->len < y->len ? x->len : y->len;
    int c = memcmp(x->key, y->key, n);
    if (c) return c;
    if (x->len != y->len) return x->len < y->len ? -1 : 1;
    return x->unit < y->unit ? -1 : x->unit > y->unit;
}

int dfd_load_crop(const char *path, int size, dfd_image *out, dfd_error *err) {
    dfd_image im;
    int rc = dfd_image_load(path, NULL, &im, NULL, err);
    if (rc) return rc;
    if (im.w == size && im.h == size) {
        *out = im;
        return DFD_OK;
    }
    rc = dfd_image_resize(&im, size, size, out, err);
    dfd_image_free(&im);
    return rc;
}

static int write_outputs(const dfd_eval_opts *o, const dfd_eval_result *res, const unit *u, size_t n,
                         const double *scores, const int *labels, dfd_error *err) {
    char p[1100];
    mkdir(o->out, 0755); /* it may exist already: checked next */
    struct stat st;
    if (stat(o->out, &st) != 0 || !S_ISDIR(st.st_mode))
        return dfd_fail(err, DFD_E_IO, "cannot create the output folder '%s'", o->out);
    /* metrics.json */
    json_t *m = dfd_metrics_to_json(&res->m);
    if (!m) return dfd_fail(err, DFD_E_NOMEM, "no memory");
    const char *splits[] = {"all", "test", "validation", "train"};
    json_t *doc = json_pack("{s:s,s:s,s:s,s:s,s:s,s:b,s:s,s:I,s:I,s:f,s:s,s:o}", "schema", "dfd.eval/1", "model", o->model,
                            "architecture", res->model_arch, "data", o->data, "split", splits[o->split], "flip_tta",
                            o->flip_tta, "level", res->level_video == 2 ? "group" : res->level_video ? "video" : "frame", "samples",
                            (json_int_t)res->samples, "unreadable", (json_int_t)res->failures, "seconds", res->seconds,
                            "threshold_from", o->threshold >= 0 ? "--threshold" : "model", "metrics", m);
    if (doc && res->level_video)
        json_object_set_new(doc, "aggregation", json_string(o->aggregation == DFD_AGG_CONFIDENT ? "confident" : "mean"));
    if (doc && (o->split == DFD_EVAL_VAL || o->split == DFD_EVAL_TRAIN)) {
        json_object_set_new(doc, "val_fraction", json_real(o->val_fraction));
        json_object_set_new(doc, "seed", json_integer((json_int_t)o->seed));
    }
    char *text = doc ? json_dumps(doc, JSON_INDENT(2) | JSON_REAL_PRECISION(6)) : NULL;
    json_decref(doc);
    if (!text) return dfd_fail(err, DFD_E_NOMEM, "no memory");
    snprintf(p, sizeof p, "%s/metrics.json", o->out);
    size_t tl = strlen(text);
    text[tl] = '\n';
    int rc = dfd_write_file_atomic(p, text, tl + 1, err);
    free(text);
    if (rc) return rc;
    /* scores.csv */
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    if (!f) return dfd_fail(err, DFD_E_NOMEM, "no memory");
    fputs("name,label,p_fake,predicted\n", f);
    for (size_t i = 0; i < n; i++) {
        int quote = memchr(u[i].name, ',', u[i].name_len) || memchr(u[i].name, '"', u[i].name_len);
        if (quote) {
            fputc('"', f);
            for (size_t k = 0; k < u[i].name_len; k++) {
                if (u[i].name[k] == '"') fputc('"', f);
                fputc(u[i].name[k], f);
            }
            fputc('"', f);
        } else fwrite(u[i].name, 1, u[i].name_len, f);
        fprintf(f, ",%s,%.6f,%s\n", u[i].label ? "fake" : "real", u[i].p, u[i].p >= res->m.threshold ? "fake" : "real");
    }
    fclose(f);
    snprintf(p, sizeof p, "%s/scores.csv", o->out);
    rc = dfd_write_file_atomic(p, buf, len, err);
    free(buf);
    if (rc) return rc;
    /* Plots. */
    dfd_roc_point *pts;
    size_t np;
    if ((rc = dfd_metric_roc(scores, labels, n, &pts, &np, err))) return rc;
    snprintf(p, sizeof p, "%s/roc.png", o->out);
    rc = dfd_plot_roc(p, pts, np, res->m.auc, res->m.eer, NULL, err);
    free(pts);
    if (rc == DFD_E_UNSUPPORTED) { /* built without plots: metrics.json and scores.csv suffice */
        dfd_log(DFD_LOG_INFO, "%s: roc.png and confusion.png not written", err ? err->message : "no plots");
        return DFD_OK;
    }
    if (rc) return rc;
    char title[128];
    snprintf(title, sizeof title, "Confusion matrix at threshold %.3f", res->m.threshold);
    snprintf(p, sizeof p, "%s/confusion.png", o->out);
    return dfd_plot_confusion(p, &res->m.cm, title, err);
}

int dfd_eval_run(const dfd_eval_opts *o, dfd_eval_result *res, dfd_error *err) {
    memset(res, 0, sizeof *res);
    if (!o->model || !o->data) return dfd_fail(err, DFD_E_ARG, "eval: a model and a data folder are required");
    double t0 = dfd_now_ms();
    dfd_classifier *c = NULL;
    dfd_dataset *d = NULL;
    int rc = dfd_classifier_load(o->model, o->threads, &c, err);
    if (rc) return rc;
    if ((rc = dfd_dataset_open(o->data, o->layout, &d, err))) goto out0;
    for (size_t i = 0; i < d->n; i++)
        if (d->items[i].kind == DFD_ITEM_VIDEO) {
            rc = dfd_fail(err, DFD_E_ARG, "%s holds videos ('%s'): evaluate on the crops `dfd prepare` makes, or use dfd scan",
                          o->data, d->items[i].path);
            goto out0;
        }
    if (o->split == DFD_EVAL_VAL || o->split == DFD_EVAL_TRAIN)
        if ((rc = dfd_dataset_split_groups(d, o->val_fraction, o->seed, err))) goto out0;
    const int want = o->split == DFD_EVAL_TEST ? DFD_SPLIT_TEST : o->split == DFD_EVAL_VAL ? DFD_SPLIT_VAL
                     : o->split == DFD_EVAL_TRAIN                                        ? DFD_SPLIT_TRAIN
                                                                                          : -1;
    const dfd_crop_contract *cc = dfd_classifier_contract(c);
    const int size = cc->size, frames = dfd_classifier_frames(c);
    {
        /* The architecture's name, for the report (the classifier keeps its metadata private). */
        dfd_st_file *f;
        dfd_model_meta mm;
        dfd_model_meta_init(&mm);
        if (dfd_st_open(o->model, &f, NULL) == DFD_OK) {
            if (dfd_model_meta_read(f, &mm, NULL) == DFD_OK && mm.arch)
                snprintf(res->model_arch, sizeof res->model_arch, "%s", mm.arch);
            dfd_st_close(f);
        }
        dfd_model_meta_free(&mm);
        if (!res->model_arch[0]) snprintf(res->model_arch, sizeof res->model_arch, "%s", frames ? "video" : "image");
    }
    double threshold = o->threshold >= 0 ? o->threshold : dfd_classifier_threshold(c);

    /* Samples: items (image models) or sequences (video models), of the chosen split. */
    size_t *seq_items = NULL, ns = 0, *idx = NULL, nidx = 0;
    dfd_sequence *seqs = NULL;
    int *lab = NULL, *spl = NULL;
    if (frames && (rc = dfd_dataset_sequences(d, 1, &seq_items, &seqs, &ns, err))) goto out0;
    if (!frames) ns = d->n;
    lab = dfd_malloc_array(ns ? ns : 1, sizeof *lab);
    spl = dfd_malloc_array(ns ? ns : 1, sizeof *spl);
    if (!lab || !spl) {
        rc = dfd_fail(err, DFD_E_NOMEM, "no memory");
        goto out1;
    }
    for (size_t i = 0; i < ns; i++) {
        lab[i] = frames ? seqs[i].label : d->items[i].label;
        spl[i] = frames ? (int)seqs[i].split : (int)d->items[i].split;
    }
    if ((rc = dfd_order_balanced(lab, spl, ns, want, 0, o->seed, o->limit, &idx, &nidx, err))) goto out1;
    dfd_sort_indices(idx, nidx); /* listing order, whatever the limit picked */
    if (nidx == 0) {
        rc = dfd_fail(err, DFD_E_NOT_FOUND, "no samples to evaluate in %s (split %d)", o->data, (int)o->split);
        goto out1;
    }

    unit *u = dfd_malloc_array(nidx, sizeof *u);
    dfd_image *batch = calloc(frames ? (size_t)frames : EVAL_BATCH, sizeof *batch);
    size_t *bidx = dfd_malloc_array(EVAL_BATCH, sizeof *bidx);
    double pb[EVAL_BATCH];
    if (!u || !batch || !bidx) {
        free(u), free(batch), free(bidx);
        rc = dfd_fail(err, DFD_E_NOMEM, "no memory");
        goto out1;
    }
    size_t nu = 0;
    if (frames) {
        /* Video model: each sequence's crops, spread over the model's frame count. */
        for (size_t k = 0; k < nidx && !rc; k++) {
            const dfd_sequence *sq = &seqs[idx[k]];
            int ok = 1;
            for (int f = 0; f < frames && ok; f++) {
                size_t it = seq_items[sq->first + (size_t)((long)f * sq->count / frames)];
                dfd_error e;
                if (dfd_load_crop(d->items[it].path, size, &batch[f], &e)) {
                    if (res->failures++ < 5) dfd_log(DFD_LOG_WARN, "eval: skipping '%s': %s", d->items[it].path, e.message);
                    ok = 0;
                }
            }
            double p = NAN;
            if (ok) rc = dfd_classifier_score_sequence(c, batch, frames, &p, err);
            for (int f = 0; f < frames; f++) dfd_image_free(&batch[f]);
            const dfd_item *first = &d->items[seq_items[sq->first]];
            if (ok && !rc) u[nu++] = (unit){first->source, strlen(first->source), sq->label, p, seq_items[sq->first]};
            if (o->progress && o->progress(o->user, (double)(k + 1) / (double)nidx)) rc = dfd_fail(err, DFD_E_CANCELLED, "cancelled");
        }
        res->level_video = 1;
    } else {
        for (size_t k = 0; k < nidx && !rc;) {
            int nb = 0;
            for (; k < nidx && nb < EVAL_BATCH; k++) {
                dfd_error e;
                const dfd_item *it = &d->items[idx[k]];
                if (dfd_load_crop(it->path, size, &batch[nb], &e)) {
                    if (res->failures++ < 5) dfd_log(DFD_LOG_WARN, "eval: skipping '%s': %s", it->path, e.message);
                    continue;
                }
                bidx[nb++] = idx[k];
            }
            if (nb) rc = dfd_classifier_score(c, batch, nb, o->flip_tta, pb, err);
            for (int j = 0; j < nb; j++) {
                const dfd_item *it = &d->items[bidx[j]];
                if (!rc) u[nu++] = (unit){it->path, strlen(it->path), it->label, pb[j], bidx[j]};
                dfd_image_free(&batch[j]);
            }
            if (!rc && o->progress && o->progress(o->user, (double)k / (double)nidx))
                rc = dfd_fail(err, DFD_E_CANCELLED, "cancelled");
        }
        if (!rc && o->video_level) {
            /* Group crops by source video and aggregate each group as scan does a track. */
            vkey *k2 = dfd_malloc_array(nu ? nu : 1, sizeof *k2);
            unit *v = dfd_malloc_array(nu ? nu : 1, sizeof *v);
            double *ps = dfd_malloc_array(nu ? nu : 1, sizeof *ps);
            if (!k2 || !v || !ps) rc = dfd_fail(err, DFD_E_NOMEM, "no memory");
            size_t nv = 0;
            if (!rc) {
                for (size_t i = 0; i < nu; i++) {
                    const dfd_item *it = &d->items[u[i].item];
                    /* Level "group": the dataset's groups (a clip's sampled frames, say);
                     * else the source video, without its "#track". */
                    const char *key = o->video_level == 2 && it->group ? it->group : it->source;
                    k2[i] = (vkey){key, o->video_level == 2 ? strlen(key) : video_key_len(key), i};
                }
                qsort(k2, nu, sizeof *k2, cmp_vkey);
                for (size_t i = 0; i < nu;) {
                    size_t j = i;
                    int np = 0;
                    while (j < nu && k2[j].len == k2[i].len && memcmp(k2[j].key, k2[i].key, k2[i].len) == 0)
                        ps[np++] = u[k2[j].unit].p, j++;
                    const unit *first = &u[k2[i].unit];
                    v[nv++] = (unit){k2[i].key, k2[i].len, first->label, dfd_aggregate(ps, np, o->aggregation), first->item};
                    i = j;
                }
                free(u);
                u = v, nu = nv;
                v = NULL;
                res->level_video = o->video_level == 2 ? 2 : 1;
            }
            free(k2), free(v), free(ps);
        }
    }
    free(batch), free(bidx);
    if (!rc) {
        double *scores = dfd_malloc_array(nu ? nu : 1, sizeof *scores);
        int *labels = dfd_malloc_array(nu ? nu : 1, sizeof *labels);
        if (!scores || !labels) rc = dfd_fail(err, DFD_E_NOMEM, "no memory");
        for (size_t i = 0; i < nu && !rc; i++) scores[i] = u[i].p, labels[i] = u[i].label;
        if (!rc) rc = dfd_metrics_compute(scores, labels, nu, threshold, &res->m, err);
        res->samples = (long)nu;
        res->seconds = (dfd_now_ms() - t0) / 1000;
        if (!rc && o->out) rc = write_outputs(o, res, u, nu, scores, labels, err);
        free(scores), free(labels);
    }
    free(u);
out1:
    free(lab), free(spl), free(idx), free(seq_items), free(seqs);
out0:
    dfd_dataset_free(d);
    dfd_classifier_free(c);
    return rc;
}
