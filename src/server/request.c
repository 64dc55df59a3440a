/* request.c — what a request's line and headers ask for (see server.h): routing, allowed
 * methods, job ids, content negotiation, query flags, Content-Length, and the sanitising
 * of client strings for logs. Pure functions, apart from http.c's connection handling, so
 * that each can be fuzzed on its own (tests/fuzz/fuzz_http.c). */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "server.h"

enum srv_route srv_route_of(const char *path, const char **name) {
    static const struct {
        const char *path;
        enum srv_route r;
    } fixed[] = {
        {"/", R_ROOT},
        {"/predict_image", R_PREDICT_IMAGE},
        {"/predict_video", R_PREDICT_VIDEO},
        {"/v1/analyze", R_ANALYZE},
        {"/v1/health", R_HEALTH},
        {"/v1/models", R_MODELS},
        {"/metrics", R_METRICS},
    };
    for (size_t i = 0; i < sizeof fixed / sizeof *fixed; i++)
        if (strcmp(path, fixed[i].path) == 0) {
            *name = fixed[i].path;
            return fixed[i].r;
        }
    if (strncmp(path, "/v1/jobs/", 9) == 0) {
        *name = "/v1/jobs/{id}";
        return R_JOB;
    }
#ifdef DFD_HAVE_WEB_ASSETS
    for (const struct dfd_asset *a = dfd_web_assets; a->name; a++)
        if (path[0] == '/' && strcmp(path + 1, a->name) == 0) {
            *name = "/{asset}";
            return R_ASSET;
        }
#endif
    *name = "other";
    return R_NONE;
}

const char *srv_route_methods(enum srv_route r) {
    switch (r) {
    case R_PREDICT_IMAGE:
    case R_PREDICT_VIDEO:
    case R_ANALYZE:
        return "POST";
    case R_JOB:
        return "GET, HEAD, DELETE";
    default:
        return "GET, HEAD";
    }
}

int srv_method_allowed(enum srv_route r, const char *m) {
    int get = strcmp(m, "GET") == 0 || strcmp(m, "HEAD") == 0;
    switch (r) {
    case R_PREDICT_IMAGE:
    case R_PREDICT_VIDEO:
    case R_ANALYZE:
        return strcmp(m, "POST") == 0;
    case R_JOB:
        return get || strcmp(m, "DELETE") == 0;
    default:
        return get;
    }
}

int srv_valid_job_id(const char *id) {
    size_t n = strlen(id);
    if (n != 32) return 0;
    for (size_t i = 0; i < n; i++)
        if (!((id[i] >= '0' && id[i] <= '9') || (id[i] >= 'a' && id[i] <= 'f'))) return 0;
    return 1;
}

int srv_wants_html(const char *accept) {
    /* Browsers ask for text/html first; curl, requests and fetch() send any-type, nothing, or JSON. */
    if (!accept) return 0;
    const char *html = strstr(accept, "text/html");
    if (!html) return 0;
    const char *json = strstr(accept, "application/json");
    return !json || html < json;
}

int srv_explain_wanted(const char *arg) { return arg && (!strcmp(arg, "1") || !strcmp(arg, "true")); }

int srv_parse_content_length(const char *value, uint64_t *n) {
    char *end;
    errno = 0;
    unsigned long long v = strtoull(value, &end, 10);
    if (errno || end == value || *end) return -1;
    *n = (uint64_t)v;
    return 0;
}

void srv_sanitize(char *out, size_t cap, const char *in) {
    if (cap == 0) return;
    size_t o = 0;
    /* Room for "..." and the terminator is kept while copying, when there is room at all. */
    size_t keep = cap >= 4 ? 4 : 1;
    for (const char *p = in ? in : ""; *p && o + keep < cap; p++) {
        unsigned char c = (unsigned char)*p;
        out[o++] = (c >= 0x20 && c < 0x7f) ? (char)c : '?';
    }
    if (in && strlen(in) > o && cap >= 4) {
        memcpy(out + o, "...", 3);
        o += 3;
    }
    out[o] = 0;
}
