/* analyzer.c — the server's analyses on libdfd: each worker owns one dfd_ctx (its own
 * copy of the models, its share of the threads), and an analysis is dfd_analyze_file_as on
 * the upload's private temp file under the client's file name: the temp file's path is
 * the server's business, and the result and any message name the client's file. /v1/models
 * reads the model files' metadata (dfd_model_info) for their names, thresholds and
 * preprocessing. Public API only (dfd/dfd.h, dfd/model.h). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "dfd/model.h"
#include "server.h"

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

static void lib_set_explain(void *cls, void *state, int on) {
    (void)cls;
    if (state) dfd_ctx_set_explain(state, on);
}

static int lib_analyze(void *cls, void *state, const char *path, const char *name, dfd_progress_fn progress,
                       void *user, dfd_result **out, dfd_error *err) {
    (void)cls;
    *out = NULL;
    dfd_result *r = NULL;
    /* The temp file under the client's name: the result and any message name that. */
    int rc = dfd_analyze_file_as(state, path, name, progress, user, &r, err);
    if (rc != DFD_OK || !r) {
        dfd_result_free(r);
        return rc != DFD_OK ? rc : srv_fail(err, DFD_E_INTERNAL, "the analysis returned no result");
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
    srv_error_clear(&e);
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
    /* The models the workers load (dfd_ctx_create's search, which dfd_find_models runs
     * without loading them): named, or found; the synthetic-face model named, or the
     * default beside the default image model, or none. Not found: null. */
    char *image = NULL, *synthetic = NULL;
    dfd_find_models(o, &image, &synthetic, NULL);
    json_object_set_new(d, "image_model", image ? model_info(image) : json_null());
    json_object_set_new(d, "video_model", o->video_model ? model_info(o->video_model) : json_null());
    json_object_set_new(d, "synthetic_model", synthetic ? model_info(synthetic) : json_null());
    dfd_free(image);
    dfd_free(synthetic);
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
