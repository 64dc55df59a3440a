/* analyzer.c — the server's analyses on libdfd: each worker owns one dfd_ctx (its own
 * copy of the models, its share of the threads), and an analysis is dfd_analyze_file on
 * the upload's private temp file. The temp file's path is the server's business: it is
 * replaced by the client's file name in the result and in any message. /v1/models reads
 * the model files' metadata (io/model_file.h) for their names, thresholds and
 * preprocessing. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "dfd/model.h"
#include "server/server.h"

static int lib_worker_create(void *cls, int worker, int threads, void **state, dfd_error *err) {
    (void)worker;
    dfd_options o = *(const dfd_options *)cls;
    o.threads = threads;
    dfd_ctx *ctx = NULL;
    int rc = dfd_ctx_create(&o, &ctx, err);
    *state = rc == DFD_OK ? ctx : NULL;
    return rc;
}

static void lib_worker_destroy(void *cls, void *state) {
    (void)cls;
    dfd_ctx_destroy(state);
}

/* A copy of s with every occurrence of needle replaced by rep; NULL on no memory. */
static char *replace_all(const char *s, const char *needle, const char *rep) {
    size_t nl = strlen(needle), rl = strlen(rep), count = 0;
    if (nl == 0) return strdup(s);
    for (const char *p = strstr(s, needle); p; p = strstr(p + nl, needle)) count++;
    size_t len = strlen(s), extra = rl > nl ? (rl - nl) * count : 0;
    char *out = malloc(len + extra + 1);
    if (!out) return NULL;
    char *o = out;
    const char *p = s;
    for (const char *q = strstr(p, needle); q; q = strstr(p, needle)) {
        memcpy(o, p, (size_t)(q - p));
        o += q - p;
        memcpy(o, rep, rl);
        o += rl;
        p = q + nl;
    }
    strcpy(o, p);
    return out;
}

static void lib_set_explain(void *cls, void *state, int on) {
    (void)cls;
    if (state) dfd_ctx_set_explain(state, on);
}

static int lib_analyze(void *cls, void *state, const char *path, const char *name, dfd_progress_fn progress,
                       void *user, dfd_result **out, dfd_error *err) {
    (void)cls;
    *out = NULL;
    dfd_result *r = NULL;
    int rc = dfd_analyze_file(state, path, progress, user, &r, err);
    if (err && err->message[0]) {
        char *m = replace_all(err->message, path, name);
        if (m) {
            snprintf(err->message, sizeof err->message, "%s", m);
            free(m);
        }
    }
    if (rc != DFD_OK || !r) {
        dfd_result_free(r);
        return rc != DFD_OK ? rc : dfd_fail(err, DFD_E_INTERNAL, "the analysis returned no result");
    }
    char *file = strdup(name);
    char *msg = r->error ? replace_all(r->error, path, name) : NULL;
    if (!file || (r->error && !msg)) {
        free(file);
        free(msg);
        dfd_result_free(r);
        return dfd_fail(err, DFD_E_NOMEM, "out of memory");
    }
    free(r->file);
    r->file = file;
    if (msg) {
        free(r->error);
        r->error = msg;
    }
    *out = r;
    return DFD_OK;
}

/* What the model file at path says about itself: name, architecture, input, threshold,
 * preprocessing (the crop contract it was trained with), training data and metrics.
 * Only the header is read (the tensors are memory-mapped, not loaded): dfd_model_info,
 * as `dfd import --info` shows it; file names only (the server's folders are not the
 * client's business). */
static json_t *model_info(const char *path) {
    char *text = NULL;
    dfd_error e;
    dfd_error_clear(&e);
    dfd_model_info(path, &text, &e); /* an unreadable file still gives file, name and error */
    if (!text) return NULL;           /* out of memory: the entry is left out */
    json_t *o = json_loads(text, 0, NULL);
    dfd_free(text);
    return o;
}

static void *lib_describe(void *cls) {
    const dfd_options *o = cls;
    json_t *d = json_object();
    if (!d) return NULL;
    char path[4400];
    dfd_error e;
    dfd_error_clear(&e);
    if (o->image_model)
        json_object_set_new(d, "image_model", model_info(o->image_model));
    else if (dfd_default_image_model(o->models_dir, path, sizeof path, &e) == DFD_OK)
        json_object_set_new(d, "image_model", model_info(path));
    else
        json_object_set_new(d, "image_model", json_null());
    json_object_set_new(d, "video_model", o->video_model ? model_info(o->video_model) : json_null());
    /* The synthetic-face model the workers load: named, or the default found beside the
     * default image model (dfd_ctx_create's rule), or none. */
    dfd_error_clear(&e);
    if (o->no_synthetic)
        json_object_set_new(d, "synthetic_model", json_null());
    else if (o->synthetic_model)
        json_object_set_new(d, "synthetic_model", model_info(o->synthetic_model));
    else if (dfd_default_synthetic_model(o->models_dir, path, sizeof path, &e) == DFD_OK)
        json_object_set_new(d, "synthetic_model", model_info(path));
    else
        json_object_set_new(d, "synthetic_model", json_null());
    json_object_set_new(d, "frames_per_video", json_integer(o->frames > 0 ? o->frames : 30));
    /* null: each model's own threshold (above) decides; an override is the image model's
     * (the synthetic-face model always uses its own) */
    json_object_set_new(d, "threshold_override", o->threshold >= 0 ? json_real(o->threshold) : json_null());
    json_object_set_new(d, "aggregation", json_string(o->aggregation == DFD_AGG_MEAN ? "mean" : "confident"));
    json_t *limits = json_pack("{s:I,s:i,s:f,s:f,s:I,s:i}", "max_image_pixels", (json_int_t)o->limits.max_image_pixels,
                               "max_image_side", o->limits.max_image_side, "max_image_aspect",
                               o->limits.max_image_aspect, "max_video_seconds", o->limits.max_video_seconds,
                               "max_file_bytes", (json_int_t)o->limits.max_file_bytes, "max_video_frames",
                               o->limits.max_video_frames);
    json_object_set_new(d, "limits", limits ? limits : json_null());
    return d;
}

void dfd_server_library_analyzer(dfd_server_analyzer *a, const dfd_options *opts) {
    memset(a, 0, sizeof *a);
    a->cls = (void *)opts;
    a->worker_create = lib_worker_create;
    a->worker_destroy = lib_worker_destroy;
    a->analyze = lib_analyze;
    a->set_explain = lib_set_explain;
    a->describe = lib_describe;
}
