/* analyzer.c — the server's analyses on libdfd: each worker owns one dfd_ctx (its own
 * copy of the models, its share of the threads), and an analysis is dfd_analyze_file on
 * the upload's private temp file. The temp file's path is the server's business: it is
 * replaced by the client's file name in the result and in any message. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

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

static json_t *str_or(const char *s, const char *dflt) { return s ? json_string(s) : dflt ? json_string(dflt) : json_null(); }

static const char *base_name(const char *p) {
    if (!p) return NULL;
    const char *b = strrchr(p, '/');
    return b ? b + 1 : p;
}

static void *lib_describe(void *cls) {
    const dfd_options *o = cls;
    json_t *limits = json_pack("{s:I,s:f,s:I,s:i}", "max_image_pixels", (json_int_t)o->limits.max_image_pixels,
                               "max_video_seconds", o->limits.max_video_seconds, "max_file_bytes",
                               (json_int_t)o->limits.max_file_bytes, "max_video_frames", o->limits.max_video_frames);
    json_t *d = json_object();
    if (!d) {
        json_decref(limits);
        return NULL;
    }
    /* File names only: the server's folders are not the client's business. */
    json_object_set_new(d, "image_model", str_or(base_name(o->image_model), "default"));
    json_object_set_new(d, "video_model", str_or(base_name(o->video_model), NULL));
    json_object_set_new(d, "frames_per_video", json_integer(o->frames));
    json_object_set_new(d, "threshold", o->threshold >= 0 ? json_real(o->threshold) : json_string("model"));
    json_object_set_new(d, "aggregation", json_string(o->aggregation == DFD_AGG_MEAN ? "mean" : "confident"));
    json_object_set_new(d, "limits", limits ? limits : json_null());
    return d;
}

void dfd_server_library_analyzer(dfd_server_analyzer *a, const dfd_options *opts) {
    memset(a, 0, sizeof *a);
    a->cls = (void *)opts;
    a->worker_create = lib_worker_create;
    a->worker_destroy = lib_worker_destroy;
    a->analyze = lib_analyze;
    a->describe = lib_describe;
}
