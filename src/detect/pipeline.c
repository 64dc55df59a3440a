/* pipeline.c — dfd_ctx and dfd_analyze_*: media -> faces -> crops -> scores -> verdict.
 *
 * Images: every face is scored; the image's P(fake) is the maximum over faces (a picture
 * is fake if any face in it is). Videos: N frames sampled evenly, faces detected and linked
 * into tracks (one per person), every crop scored, each track's scores aggregated over time
 * (and combined with the video model's score when one is loaded); the clip's P(fake) is the
 * maximum over tracks. With a synthetic-face model loaded, every face is also cropped by
 * that model's contract and scored by it, aggregated the same way, and the two detectors'
 * scores are combined per face, frame, track and file (combine.c). */
#include <dirent.h>
#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "detect/detect.h"
#include "face/face.h"
#include "io/model_file.h"
#include "media/media.h"

struct dfd_ctx {
    dfd_options o;
    char *models_dir;
    dfd_face_detector *faces;
    int min_face; /* the detector's smallest face (pixels), as created */
    dfd_classifier *img;
    dfd_classifier *vid;
    dfd_classifier *syn; /* the synthetic-face detector, or NULL */
};

void dfd_options_default(dfd_options *o) {
    memset(o, 0, sizeof *o);
    o->frames = 30;
    o->threshold = -1;
    o->aggregation = DFD_AGG_CONFIDENT;
    dfd_limits_default(&o->limits);
}

/* ---- Finding the default model ------------------------------------------------- */

/* The newest (by name) prefix*.safetensors in dir, into buf: 1 when found, 0 when there is
 * none, -1 (err set) when its path does not fit. */
static int newest_model(const char *dir, const char *prefix, char *buf, size_t cap, dfd_error *err) {
    DIR *d = opendir(dir);
    if (!d) return 0;
    char best[256] = "";
    struct dirent *e;
    const char *suffix = ".safetensors";
    size_t pl = strlen(prefix);
    while ((e = readdir(d))) {
        size_t n = strlen(e->d_name), sl = strlen(suffix);
        if (strncmp(e->d_name, prefix, pl) != 0 || n <= sl || n >= sizeof best) continue;
        if (strcmp(e->d_name + n - sl, suffix) != 0) continue;
        if (strcmp(e->d_name, best) > 0) snprintf(best, sizeof best, "%s", e->d_name);
    }
    closedir(d);
    if (!best[0]) return 0;
    return dfd_path_join(buf, cap, dir, best, err) == DFD_OK ? 1 : -1;
}

static int newest_image_model(const char *dir, char *buf, size_t cap, dfd_error *err) {
    return newest_model(dir, "dfd-image-", buf, cap, err);
}

int dfd_default_image_model(const char *dir, char *buf, size_t cap, dfd_error *err) {
    int found;
    if (dir && *dir) {
        if ((found = newest_image_model(dir, buf, cap, err))) return found > 0 ? DFD_OK : DFD_E_ARG;
        return dfd_fail(err, DFD_E_NOT_FOUND, "no image model (dfd-image-*.safetensors) in '%s'", dir);
    }
    const char *env = getenv("DFD_MODELS_DIR");
    if (env && *env && (found = newest_image_model(env, buf, cap, err))) return found > 0 ? DFD_OK : DFD_E_ARG;
    char dirs[8][DFD_PATH_MAX];
    int n = dfd_model_dirs(dirs, 8);
    for (int i = 0; i < n; i++)
        if ((found = newest_image_model(dirs[i], buf, cap, err))) return found > 0 ? DFD_OK : DFD_E_ARG;
    return dfd_fail(err, DFD_E_NOT_FOUND,
                    "no image model found (models/dfd-image-*.safetensors); pass one with --model-image");
}

int dfd_default_synthetic_model(const char *dir, char *buf, size_t cap, dfd_error *err) {
    char img[4400];
    dfd_error e;
    if (dfd_default_image_model(dir, img, sizeof img, &e) != DFD_OK)
        return dfd_fail(err, DFD_E_NOT_FOUND, "no synthetic-face model: %s", e.message);
    char *slash = strrchr(img, '/');
    if (slash) *slash = '\0';
    int found = newest_model(slash ? img : ".", "dfd-synthetic-", buf, cap, err);
    if (found) return found > 0 ? DFD_OK : DFD_E_ARG;
    return dfd_fail(err, DFD_E_NOT_FOUND, "no synthetic-face model (dfd-synthetic-*.safetensors) in '%s'",
                    slash ? img : ".");
}

int dfd_find_models(const dfd_options *opts, char **image_model, char **synthetic_model, dfd_error *err) {
    dfd_options d;
    if (!opts) {
        dfd_options_default(&d);
        opts = &d;
    }
    if (image_model) *image_model = NULL;
    if (synthetic_model) *synthetic_model = NULL;
    char path[4400];
    int rc = DFD_OK;
    if (image_model) {
        if (opts->image_model) {
            *image_model = strdup(opts->image_model);
        } else if ((rc = dfd_default_image_model(opts->models_dir, path, sizeof path, err)) == DFD_OK) {
            *image_model = strdup(path);
        }
        if (rc == DFD_OK && !*image_model) return dfd_fail(err, DFD_E_NOMEM, "out of memory");
    }
    /* dfd_ctx_create's rule: named, or the default beside the default image model. */
    if (synthetic_model && !opts->no_synthetic) {
        const char *syn = opts->synthetic_model;
        if (!syn && dfd_default_synthetic_model(opts->models_dir, path, sizeof path, NULL) == DFD_OK) syn = path;
        if (syn && !(*synthetic_model = strdup(syn))) {
            if (image_model) {
                free(*image_model);
                *image_model = NULL;
            }
            return dfd_fail(err, DFD_E_NOMEM, "out of memory");
        }
    }
    return rc;
}

/* ---- Context ------------------------------------------------------------------- */

void dfd_ctx_destroy(dfd_ctx *ctx) {
    if (!ctx) return;
    dfd_face_detector_free(ctx->faces);
    dfd_classifier_free(ctx->img);
    dfd_classifier_free(ctx->vid);
    dfd_classifier_free(ctx->syn);
    free(ctx->models_dir);
    free(ctx);
}

int dfd_ctx_create(const dfd_options *opts, dfd_ctx **out, dfd_error *err) {
    *out = NULL;
    dfd_ctx *ctx = calloc(1, sizeof *ctx);
    if (!ctx) return dfd_fail(err, DFD_E_NOMEM, "out of memory");
    if (opts)
        ctx->o = *opts;
    else
        dfd_options_default(&ctx->o);
    dfd_options *o = &ctx->o;
    if (o->frames <= 0) o->frames = 30;
    if (o->limits.max_image_pixels == 0) dfd_limits_default(&o->limits);
    int rc;
    char path[4400];
    if (o->image_model) {
        snprintf(path, sizeof path, "%s", o->image_model);
    } else if ((rc = dfd_default_image_model(o->models_dir, path, sizeof path, err))) {
        goto fail;
    }
    if ((rc = dfd_classifier_load(path, o->threads, &ctx->img, err))) goto fail;
    if (dfd_classifier_frames(ctx->img) != 0) {
        rc = dfd_fail(err, DFD_E_MODEL, "'%s' is a video model; pass it with --model-video", path);
        goto fail;
    }
    if (strcmp(dfd_classifier_task(ctx->img), DFD_MODEL_TASK_MANIPULATION) != 0) {
        rc = dfd_fail(err, DFD_E_MODEL, "'%s' is a synthetic-face model (task '%s'); pass it with --model-synthetic",
                      path, dfd_classifier_task(ctx->img));
        goto fail;
    }
    if (o->video_model) {
        if ((rc = dfd_classifier_load(o->video_model, o->threads, &ctx->vid, err))) goto fail;
        if (dfd_classifier_frames(ctx->vid) == 0) {
            rc = dfd_fail(err, DFD_E_MODEL, "'%s' is an image model, not a video model", o->video_model);
            goto fail;
        }
        if (strcmp(dfd_classifier_task(ctx->vid), DFD_MODEL_TASK_MANIPULATION) != 0) {
            rc = dfd_fail(err, DFD_E_MODEL, "'%s': video models must detect manipulation, and this one's task is '%s'",
                          o->video_model, dfd_classifier_task(ctx->vid));
            goto fail;
        }
    }
    /* The synthetic-face detector: named, or the default beside the default image model
     * when there is one (optional: none found is no error). A model named or found must load. */
    const char *syn_path = NULL;
    if (!o->no_synthetic) {
        if (o->synthetic_model) {
            syn_path = o->synthetic_model;
        } else if (dfd_default_synthetic_model(o->models_dir, path, sizeof path, NULL) == DFD_OK) {
            syn_path = path;
        }
    }
    if (syn_path) {
        if ((rc = dfd_classifier_load(syn_path, o->threads, &ctx->syn, err))) goto fail;
        if (dfd_classifier_frames(ctx->syn) != 0 ||
            strcmp(dfd_classifier_task(ctx->syn), DFD_MODEL_TASK_SYNTHETIC) != 0) {
            rc = dfd_fail(err, DFD_E_MODEL, "'%s' is not a synthetic-face image model (task '%s'%s)", syn_path,
                          dfd_classifier_task(ctx->syn), dfd_classifier_frames(ctx->syn) ? ", a video model" : "");
            goto fail;
        }
    }
    dfd_face_opts fo;
    dfd_face_opts_default(&fo);
    /* BlazeFace is small (tens of MFLOPs): one thread does it in about a millisecond, and
     * more threads spend their time spinning in OpenMP barriers (measured 8x slower). */
    fo.models_dir = o->models_dir; /* the face models in it or its registry/ (face/detector.c) */
    if ((rc = dfd_face_detector_create(&fo, &ctx->faces, err))) goto fail;
    ctx->min_face = fo.min_face;
    /* The strings in o belong to the caller and may not outlive this call. */
    o->image_model = o->video_model = o->models_dir = o->synthetic_model = NULL;
    *out = ctx;
    return DFD_OK;
fail:
    dfd_ctx_destroy(ctx);
    return rc;
}

static double threshold_of(const dfd_ctx *ctx) {
    return ctx->o.threshold >= 0 ? ctx->o.threshold : dfd_classifier_threshold(ctx->img);
}

/* The synthetic-face detector's threshold (its own); NaN without one. */
static double threshold_syn(const dfd_ctx *ctx) { return ctx->syn ? dfd_classifier_threshold(ctx->syn) : NAN; }

static void set_thresholds(const dfd_ctx *ctx, dfd_result *r) {
    r->threshold = r->threshold_manipulated = threshold_of(ctx);
    r->threshold_synthetic = threshold_syn(ctx);
}

/* Scores n crops by one classifier, cropping each face by that classifier's contract. */
static int crop_and_score(dfd_classifier *c, const dfd_image *img, const dfd_face *faces, int n, double *p,
                          dfd_error *err) {
    dfd_image *crops = calloc((size_t)n, sizeof *crops);
    if (!crops) return dfd_fail(err, DFD_E_NOMEM, "out of memory");
    const dfd_crop_contract *cc = dfd_classifier_contract(c);
    int rc = DFD_OK;
    for (int i = 0; i < n && rc == DFD_OK; i++) rc = dfd_face_crop(img, &faces[i], cc, &crops[i], err);
    if (rc == DFD_OK) rc = dfd_classifier_score(c, crops, n, 1, p, err);
    for (int i = 0; i < n; i++) dfd_image_free(&crops[i]);
    free(crops);
    return rc;
}

/* ---- Heat maps ------------------------------------------------------------------ */

void dfd_ctx_set_explain(dfd_ctx *ctx, int on) {
    if (ctx) ctx->o.explain = on ? 1 : 0;
}

/* One classifier's heat map of a face, cropped by its contract; the crop is kept in
 * *keep when keep is not NULL. */
static int explain_one(dfd_classifier *c, const dfd_image *img, const dfd_face *face, int method, float **map,
                       dfd_image *keep, dfd_error *err) {
    dfd_image crop = {0};
    int rc = dfd_face_crop(img, face, dfd_classifier_contract(c), &crop, err);
    if (rc) return rc;
    *map = dfd_malloc_array(DFD_HEAT_CELLS, sizeof(float));
    if (!*map) rc = dfd_fail(err, DFD_E_NOMEM, "out of memory");
    if (rc == DFD_OK) rc = dfd_classifier_explain(c, &crop, method, *map, err);
    if (rc == DFD_OK && keep) {
        *keep = crop;
        return DFD_OK;
    }
    dfd_image_free(&crop);
    return rc;
}

/* The heat maps of face f (one face of an image, or a track's most suspicious frame). */
static int explain_face(dfd_ctx *ctx, const dfd_image *img, const dfd_face *face, dfd_face_res *f, dfd_error *err) {
    /* The manipulation detector's map by the method its file names: for a model taught where
     * self-blends are (train --sbi-loc), its own Grad-CAM at the grid's resolution, which
     * then localises the blend better than any probe; otherwise by occlusion, one-cell probes
     * every third cell (an ensemble's lattice is thinner, see occ_fast_stride in
     * classifier.c), whose top cells, restored to the real face, lower such a model's
     * P(fake) more than random cells do (its Grad-CAM fails that check).
     * The synthetic-face detector's by Grad-CAM++: a generated face has no forged region to
     * measure a method against, and two occlusions would pass the cost budget (3 x an
     * analysis without maps). docs/explain.md has the measurements. */
    f->heat_method = dfd_classifier_heat_method(ctx->img);
    f->heat_method_s = DFD_EXPLAIN_GRADCAMPP;
    dfd_face_crop_square(face, dfd_classifier_contract(ctx->img), f->heat_square);
    int rc = explain_one(ctx->img, img, face, f->heat_method, &f->heat_m, &f->heat_crop, err);
    if (rc == DFD_OK && ctx->syn) rc = explain_one(ctx->syn, img, face, f->heat_method_s, &f->heat_s, NULL, err);
    return rc;
}

/* ---- Images -------------------------------------------------------------------- */

static int analyze_image(dfd_ctx *ctx, const dfd_image *img, dfd_result *r, dfd_error *err) {
    double t0 = dfd_now_ms();
    dfd_face *faces = NULL;
    int n = 0;
    int rc = dfd_face_detect(ctx->faces, img, &faces, &n, err);
    r->t_faces_ms = dfd_now_ms() - t0;
    if (rc) return rc;
    if (n == 0) return DFD_OK; /* NO_FACE */
    double *p = calloc((size_t)n, sizeof *p), *ps = calloc((size_t)n, sizeof *ps);
    r->faces = calloc((size_t)n, sizeof *r->faces);
    if (!p || !ps || !r->faces) {
        rc = dfd_fail(err, DFD_E_NOMEM, "out of memory");
        goto out;
    }
    t0 = dfd_now_ms();
    rc = crop_and_score(ctx->img, img, faces, n, p, err);
    for (int i = 0; i < n; i++) ps[i] = NAN;
    if (rc == DFD_OK && ctx->syn) rc = crop_and_score(ctx->syn, img, faces, n, ps, err);
    r->t_classify_ms = dfd_now_ms() - t0;
    if (rc) goto out;
    r->n_faces = n;
    double tm = threshold_of(ctx), ts = threshold_syn(ctx);
    for (int i = 0; i < n; i++) {
        dfd_face_res *f = &r->faces[i];
        f->id = i;
        memcpy(f->box, faces[i].box, sizeof f->box);
        f->p_manipulated = p[i];
        f->p_synthetic = ps[i];
        dfd_combine(p[i], tm, ps[i], ts, &f->p_fake, &(double){0}, &f->kind);
        f->p_fake_video_model = NAN;
        f->heat_frame = -1, f->heat_time_s = NAN;
        if (isnan(r->p_manipulated) || p[i] > r->p_manipulated) r->p_manipulated = p[i];
        if (!isnan(ps[i]) && (isnan(r->p_synthetic) || ps[i] > r->p_synthetic)) r->p_synthetic = ps[i];
    }
    if (ctx->o.explain) {
        t0 = dfd_now_ms();
        for (int i = 0; i < n && rc == DFD_OK; i++) rc = explain_face(ctx, img, &faces[i], &r->faces[i], err);
        r->t_classify_ms += dfd_now_ms() - t0;
    }
out:
    free(p);
    free(ps);
    free(faces);
    return rc;
}

/* ---- Videos -------------------------------------------------------------------- */

/* Crops every point of a track with a contract. */
static int crop_track(const dfd_frame_set *fs, const dfd_face_track *t, const dfd_crop_contract *cc, dfd_image *out,
                      dfd_error *err) {
    for (int k = 0; k < t->n_points; k++) {
        const dfd_track_point *pt = &t->points[k];
        int rc = dfd_face_crop(&fs->frames[pt->sample].img, &pt->face, cc, &out[k], err);
        if (rc) return rc;
    }
    return DFD_OK;
}


/* The sampled frames are decoded on a thread of their own (FFmpeg's frame threads under
 * it) while the calling thread converts them to RGB and searches faces on those already
 * decoded: on a 2-core machine decoding a DFDC clip (one keyframe per 10 s) takes ~1.4 s,
 * converting its 30 frames ~0.4 s and the face search ~0.5 s; side by side, little more
 * than the decoding. */
typedef struct decoder {
    dfd_video *v;
    int want;
    dfd_raw_frame **raw; /* [want]: raw[0..ready) handed over by the decoder, taken by the searcher */
    dfd_frame_set stats;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int ready, done, stop, rc;
    dfd_error err;
    double ms;
} decoder;

static int decoder_take(void *user, dfd_raw_frame *f) {
    decoder *d = user;
    pthread_mutex_lock(&d->mu);
    d->raw[d->ready++] = f;
    int stop = d->stop;
    pthread_cond_signal(&d->cv);
    pthread_mutex_unlock(&d->mu);
    return stop;
}

static void *decoder_main(void *arg) {
    decoder *d = arg;
    double t0 = dfd_now_ms();
    int rc = dfd_video_sample_raw(d->v, d->want, decoder_take, d, &d->stats, &d->err);
    pthread_mutex_lock(&d->mu);
    d->rc = rc, d->done = 1, d->ms = dfd_now_ms() - t0;
    pthread_cond_signal(&d->cv);
    pthread_mutex_unlock(&d->mu);
    return NULL;
}

/* Waits for frame i and takes it; NULL when the decoder ended before it. */
static dfd_raw_frame *decoder_next(decoder *d, int i) {
    pthread_mutex_lock(&d->mu);
    while (d->ready <= i && !d->done) pthread_cond_wait(&d->cv, &d->mu);
    dfd_raw_frame *f = NULL;
    if (d->ready > i) f = d->raw[i], d->raw[i] = NULL;
    pthread_mutex_unlock(&d->mu);
    return f;
}

static int analyze_video(dfd_ctx *ctx, dfd_video *v, dfd_progress_fn progress, void *user, dfd_result *r,
                         dfd_error *err) {
    /* A clip shorter than the sample count gives each frame once, not duplicates that
     * would weigh some frames twice in the aggregation. */
    int want = ctx->o.frames;
    const dfd_video_info *vi = dfd_video_get_info(v);
    if (vi->frames > 0 && vi->frames < want) want = (int)vi->frames;
    decoder D;
    memset(&D, 0, sizeof D);
    D.v = v, D.want = want;
    dfd_face **faces = calloc((size_t)want + 1, sizeof *faces);
    int *counts = calloc((size_t)want + 1, sizeof *counts);
    D.raw = calloc((size_t)want, sizeof *D.raw);
    dfd_frame_set fs = {0};
    fs.frames = calloc((size_t)want, sizeof *fs.frames);
    dfd_frame_converter *conv = dfd_frame_converter_new();
    dfd_face_track *tracks = NULL;
    int nt = 0, nf = 0;
    dfd_image *crops = NULL;
    double *p = NULL;
    int rc = DFD_OK;
    if (!faces || !counts || !D.raw || !fs.frames || !conv) {
        rc = dfd_fail(err, DFD_E_NOMEM, "out of memory");
        goto out;
    }
    pthread_mutex_init(&D.mu, NULL);
    pthread_cond_init(&D.cv, NULL);
    pthread_t th;
    if (pthread_create(&th, NULL, decoder_main, &D) != 0) {
        pthread_mutex_destroy(&D.mu);
        pthread_cond_destroy(&D.cv);
        rc = dfd_fail(err, DFD_E_NOMEM, "cannot start a decoding thread");
        goto out;
    }
    double t_faces = 0, t_convert = 0;
    dfd_raw_frame *rf;
    int since_full = 0;
    for (int i = 0; rc == DFD_OK && (rf = decoder_next(&D, i)); i++) {
        double t0 = dfd_now_ms();
        rc = dfd_raw_frame_convert(conv, rf, &fs.frames[i], err);
        dfd_raw_frame_free(rf);
        if (rc) {
            dfd_image_free(&fs.frames[i].img);
            pthread_mutex_lock(&D.mu);
            D.stop = 1;
            pthread_mutex_unlock(&D.mu);
            break;
        }
        fs.count = i + 1;
        t_convert += dfd_now_ms() - t0;
        t0 = dfd_now_ms();
        const dfd_image *img = &fs.frames[i].img;
        /* The search every video analysis does (face/track.c), `dfd faces` too. */
        rc = dfd_face_detect_sample(ctx->faces, img, i, faces, counts, &since_full, ctx->min_face, err);
        nf = i + 1;
        t_faces += dfd_now_ms() - t0;
        if (rc == DFD_OK && progress && progress(user, 0.8 * (i + 1) / want)) rc = dfd_fail(err, DFD_E_CANCELLED, "cancelled");
        if (rc) {
            pthread_mutex_lock(&D.mu);
            D.stop = 1;
            pthread_mutex_unlock(&D.mu);
        }
    }
    pthread_join(th, NULL);
    pthread_mutex_destroy(&D.mu);
    pthread_cond_destroy(&D.cv);
    r->t_decode_ms = D.ms + t_convert;
    r->t_faces_ms = t_faces;
    r->frames_skipped = D.stats.corrupt;
    if (rc) goto out;
    if (D.rc) { /* a decoding failure is the result's error, as when it comes before any face search */
        if (err) *err = D.err;
        rc = D.rc;
        goto out;
    }
    double t0 = dfd_now_ms();
    if (rc == DFD_OK) {
        dfd_track_opts to;
        dfd_track_opts_default(&to);
        rc = dfd_face_track_link((const dfd_face *const *)faces, counts, nf, &to, &tracks, &nt, err);
    }
    r->t_faces_ms += dfd_now_ms() - t0;
    if (rc) goto out;

    /* Frames, each with the tracked faces seen in it. */
    r->frames = calloc((size_t)nf + 1, sizeof *r->frames);
    r->faces = calloc((size_t)nt + 1, sizeof *r->faces);
    if (!r->frames || !r->faces) {
        rc = dfd_fail(err, DFD_E_NOMEM, "out of memory");
        goto out;
    }
    r->n_frames = nf;
    for (int i = 0; i < nf; i++) {
        r->frames[i].index = (int)fs.frames[i].index;
        r->frames[i].time_s = fs.frames[i].time_s;
        r->frames[i].faces = calloc((size_t)nt + 1, sizeof *r->frames[i].faces);
        if (!r->frames[i].faces) {
            rc = dfd_fail(err, DFD_E_NOMEM, "out of memory");
            goto out;
        }
    }

    t0 = dfd_now_ms();
    const dfd_crop_contract *cc = dfd_classifier_contract(ctx->img);
    const double tm = threshold_of(ctx), ts = threshold_syn(ctx);
    for (int ti = 0; ti < nt && rc == DFD_OK; ti++) {
        const dfd_face_track *t = &tracks[ti];
        dfd_face_res *fr = &r->faces[ti];
        fr->id = t->id;
        fr->p_fake_video_model = NAN;
        crops = calloc((size_t)t->n_points + 1, sizeof *crops);
        p = calloc(2 * ((size_t)t->n_points + 1), sizeof *p);
        fr->frames = calloc((size_t)t->n_points + 1, sizeof *fr->frames);
        if (!crops || !p || !fr->frames) {
            rc = dfd_fail(err, DFD_E_NOMEM, "out of memory");
            break;
        }
        double *ps = p + t->n_points + 1; /* the synthetic-face detector's, NaN without one */
        for (int k = 0; k < t->n_points; k++) ps[k] = NAN;
        rc = crop_track(&fs, t, cc, crops, err);
        if (rc == DFD_OK) rc = dfd_classifier_score(ctx->img, crops, t->n_points, 1, p, err);
        for (int k = 0; k < t->n_points; k++) dfd_image_free(&crops[k]);
        if (rc == DFD_OK && ctx->syn) {
            /* The synthetic-face model has its own contract too: crop again with it. */
            rc = crop_track(&fs, t, dfd_classifier_contract(ctx->syn), crops, err);
            if (rc == DFD_OK) rc = dfd_classifier_score(ctx->syn, crops, t->n_points, 1, ps, err);
            for (int k = 0; k < t->n_points; k++) dfd_image_free(&crops[k]);
        }
        if (rc) break;
        int best = 0;
        double best_margin = -INFINITY;
        for (int k = 0; k < t->n_points; k++) {
            const dfd_track_point *pt = &t->points[k];
            dfd_frame_res *frm = &r->frames[pt->sample];
            dfd_face_obs *ob = &frm->faces[frm->n_faces++];
            ob->track = t->id;
            memcpy(ob->box, pt->face.box, sizeof ob->box);
            ob->p_manipulated = p[k];
            ob->p_synthetic = ps[k];
            double th;
            dfd_combine(p[k], tm, ps[k], ts, &ob->p_fake, &th, &ob->kind);
            fr->frames[fr->n_frames++] = r->frames[pt->sample].index;
            /* The track's box is where it is most suspicious to either detector. */
            double m = dfd_detector_margin(ob->p_fake, th);
            if (k == 0 || m > best_margin) best = k, best_margin = m;
        }
        memcpy(fr->box, t->points[best].face.box, sizeof fr->box);
        fr->heat_frame = -1, fr->heat_time_s = NAN;
        if (ctx->o.explain) {
            const dfd_track_point *bp = &t->points[best];
            fr->heat_frame = (int)fs.frames[bp->sample].index;
            fr->heat_time_s = fs.frames[bp->sample].time_s;
            if ((rc = explain_face(ctx, &fs.frames[bp->sample].img, &bp->face, fr, err))) {
                free(fr->heat_m), free(fr->heat_s); /* the track is not counted in r->n_faces yet */
                fr->heat_m = fr->heat_s = NULL;
                dfd_image_free(&fr->heat_crop);
                break;
            }
        }
        fr->p_manipulated = dfd_aggregate(p, t->n_points, ctx->o.aggregation);
        fr->p_synthetic = ctx->syn ? dfd_aggregate(ps, t->n_points, ctx->o.aggregation) : NAN;
        if (ctx->vid) {
            /* The video model has its own contract (size, margin): crop again with it. */
            rc = crop_track(&fs, t, dfd_classifier_contract(ctx->vid), crops, err);
            double pv = NAN;
            if (rc == DFD_OK) rc = dfd_classifier_score_sequence(ctx->vid, crops, t->n_points, &pv, err);
            for (int k = 0; k < t->n_points; k++) dfd_image_free(&crops[k]);
            if (rc) break;
            fr->p_fake_video_model = pv;
            fr->p_manipulated = 0.5 * (fr->p_manipulated + pv);
        }
        double th;
        dfd_combine(fr->p_manipulated, tm, fr->p_synthetic, ts, &fr->p_fake, &th, &fr->kind);
        if (isnan(r->p_manipulated) || fr->p_manipulated > r->p_manipulated) r->p_manipulated = fr->p_manipulated;
        if (!isnan(fr->p_synthetic) && (isnan(r->p_synthetic) || fr->p_synthetic > r->p_synthetic))
            r->p_synthetic = fr->p_synthetic;
        r->n_faces++;
        free(crops);
        free(p);
        crops = NULL;
        p = NULL;
        if (progress && progress(user, 0.8 + 0.2 * (ti + 1) / nt)) rc = dfd_fail(err, DFD_E_CANCELLED, "cancelled");
    }
    r->t_classify_ms = dfd_now_ms() - t0;
    /* A cancel asked for after the last track's report still cancels: the caller asked
     * before the result existed. */
    if (rc == DFD_OK && progress && progress(user, 1.0)) rc = dfd_fail(err, DFD_E_CANCELLED, "cancelled");
out:
    free(crops);
    free(p);
    dfd_face_tracks_free(tracks, nt);
    for (int i = 0; faces && i < nf; i++) free(faces[i]);
    free(faces);
    free(counts);
    dfd_frame_set_free(&fs);
    for (int i = 0; D.raw && i < want; i++) dfd_raw_frame_free(D.raw[i]);
    free(D.raw);
    dfd_frame_converter_free(conv);
    return rc;
}

/* ---- Entry points -------------------------------------------------------------- */

static void finish(dfd_ctx *ctx, dfd_result *r, int rc, const dfd_error *e, double t_start) {
    set_thresholds(ctx, r);
    free(r->model_image);
    r->model_image = strdup(dfd_classifier_name(ctx->img));
    if (ctx->syn) {
        free(r->model_synthetic);
        r->model_synthetic = strdup(dfd_classifier_name(ctx->syn));
    }
    if (ctx->vid && r->media == DFD_MEDIA_VIDEO) {
        free(r->model_video);
        r->model_video = strdup(dfd_classifier_name(ctx->vid));
    }
    if (rc != DFD_OK) {
        /* The file is dropped whole, never half-judged: clear partial scores. */
        dfd_result_set_error(r, rc, e->message[0] ? e->message : dfd_strerror(rc));
    }
    dfd_result_decide(r);
    r->t_total_ms = dfd_now_ms() - t_start;
}

/* Replaces every occurrence of from in msg (a dfd_error message, cap bytes) by to, in
 * place; what does not fit is cut, as dfd_fail cuts any message. */
static void message_rename(char *msg, size_t cap, const char *from, const char *to) {
    size_t fl = strlen(from), tl = strlen(to);
    if (fl == 0 || cap == 0 || !strstr(msg, from)) return;
    char out[sizeof ((dfd_error *)0)->message];
    size_t room = (cap < sizeof out ? cap : sizeof out) - 1, o = 0;
    const char *p = msg;
    for (;;) {
        const char *q = strstr(p, from);
        size_t n = q ? (size_t)(q - p) : strlen(p);
        if (n > room - o) n = room - o;
        memcpy(out + o, p, n);
        o += n;
        if (!q) break;
        n = tl < room - o ? tl : room - o;
        memcpy(out + o, to, n);
        o += n;
        p = q + fl;
    }
    out[o] = '\0';
    memcpy(msg, out, o + 1);
}

static int analyze(dfd_ctx *ctx, const char *name, const void *data, size_t len, const char *path,
                   dfd_progress_fn progress, void *user, dfd_result **out, dfd_error *err) {
    *out = NULL;
    double t_start = dfd_now_ms();
    dfd_error e;
    dfd_error_clear(&e);
    dfd_media_kind kind = DFD_MEDIA_UNKNOWN;
    const char *format = NULL;
    int rc;
    if (path)
        rc = dfd_media_sniff_file(path, &kind, &format, &e);
    else
        kind = dfd_media_sniff(data, len, &format), rc = DFD_OK;
    dfd_result *r = dfd_result_new(name, kind);
    if (!r) return dfd_fail(err, DFD_E_NOMEM, "out of memory");
    if (rc == DFD_OK && kind == DFD_MEDIA_UNKNOWN) rc = dfd_media_fail_unsupported(format, &e);
    if (rc == DFD_OK && kind == DFD_MEDIA_IMAGE) {
        dfd_image img = {0};
        double t0 = dfd_now_ms();
        rc = path ? dfd_image_load(path, &ctx->o.limits, &img, NULL, &e)
                  : dfd_image_decode(data, len, &ctx->o.limits, &img, NULL, &e);
        r->t_decode_ms = dfd_now_ms() - t0;
        if (rc == DFD_OK) rc = analyze_image(ctx, &img, r, &e);
        dfd_image_free(&img);
        if (rc == DFD_OK && progress) progress(user, 1.0);
    } else if (rc == DFD_OK && kind == DFD_MEDIA_VIDEO) {
        dfd_video *v = NULL;
        rc = path ? dfd_video_open(path, &ctx->o.limits, ctx->o.threads, &v, &e)
                  : dfd_video_open_buffer(data, len, &ctx->o.limits, ctx->o.threads, &v, &e);
        if (rc == DFD_OK) rc = analyze_video(ctx, v, progress, user, r, &e);
        dfd_video_close(v);
    }
    /* A file analysed under another name (dfd_analyze_file_as): messages name that. */
    if (path && strcmp(name, path) != 0) message_rename(e.message, sizeof e.message, path, name);
    if (rc == DFD_E_NOMEM) {
        dfd_result_free(r);
        return dfd_fail(err, DFD_E_NOMEM, "%s", e.message);
    }
    finish(ctx, r, rc, &e, t_start);
    *out = r;
    return DFD_OK;
}

int dfd_analyze_file(dfd_ctx *ctx, const char *path, dfd_progress_fn progress, void *user, dfd_result **out,
                     dfd_error *err) {
    if (!ctx || !path || !out) return dfd_fail(err, DFD_E_ARG, "dfd_analyze_file: NULL argument");
    return analyze(ctx, path, NULL, 0, path, progress, user, out, err);
}

int dfd_analyze_file_as(dfd_ctx *ctx, const char *path, const char *name, dfd_progress_fn progress, void *user,
                        dfd_result **out, dfd_error *err) {
    if (!ctx || !path || !out) return dfd_fail(err, DFD_E_ARG, "dfd_analyze_file_as: NULL argument");
    return analyze(ctx, name ? name : path, NULL, 0, path, progress, user, out, err);
}

int dfd_analyze_buffer(dfd_ctx *ctx, const void *data, size_t len, const char *name, dfd_progress_fn progress,
                       void *user, dfd_result **out, dfd_error *err) {
    if (!ctx || !data || !out) return dfd_fail(err, DFD_E_ARG, "dfd_analyze_buffer: NULL argument");
    if (len > ctx->o.limits.max_file_bytes) {
        dfd_result *r = dfd_result_new(name ? name : "(buffer)", DFD_MEDIA_UNKNOWN);
        if (!r) return dfd_fail(err, DFD_E_NOMEM, "out of memory");
        char msg[128];
        snprintf(msg, sizeof msg, "input is %zu bytes, over the %llu-byte limit", len,
                 (unsigned long long)ctx->o.limits.max_file_bytes);
        dfd_result_set_error(r, DFD_E_LIMIT, msg);
        set_thresholds(ctx, r);
        *out = r;
        return DFD_OK;
    }
    return analyze(ctx, name ? name : "(buffer)", data, len, NULL, progress, user, out, err);
}
