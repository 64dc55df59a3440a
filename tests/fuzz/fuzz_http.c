/* fuzz_http — libFuzzer harness for what the server reads from a request's line and
 * headers before any body (src/server/request.c; the body's multipart framing has
 * fuzz_multipart): the URL path's route, the method, a job id, Accept, the explain
 * query argument, Content-Length and Content-Type, and the sanitising of each for the
 * log. The server takes no JSON from clients (uploads are multipart or raw bodies).
 *
 * Input: the fields separated by '\n' (path, method, Accept, explain, Content-Length,
 * Content-Type), as libmicrohttpd hands them over: NUL-terminated strings. Checks the
 * contracts the access handler relies on: a fixed route name, methods consistent with
 * Allow, job ids that pass are 32 lowercase hex digits, a sanitised copy is printable,
 * terminated and within its buffer at every size. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "server/server.h"

static void check_sanitized(const char *in) {
    for (size_t cap = 1; cap <= 48; cap += (cap < 6 ? 1 : 21)) {
        char *out = malloc(cap); /* exactly cap: ASan catches a byte past it */
        if (!out) return;
        srv_sanitize(out, cap, in);
        size_t n = strnlen(out, cap);
        if (n >= cap) abort();
        for (size_t i = 0; i < n; i++)
            if (out[i] < 0x20 || out[i] > 0x7e) abort();
        free(out);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    char *buf = malloc(size + 1);
    if (!buf) return 0;
    memcpy(buf, data, size);
    buf[size] = 0;
    const char *f[6] = {"", "", NULL, NULL, NULL, NULL};
    char *p = buf;
    for (int i = 0; i < 6 && p; i++) {
        f[i] = p;
        p = strchr(p, '\n');
        if (p) *p++ = 0;
    }
    const char *path = f[0], *method = f[1], *accept = f[2], *explain = f[3], *cl = f[4], *ct = f[5];
    const char *name = NULL;
    enum srv_route r = srv_route_of(path, &name);
    if (!name || (r == R_NONE) != (strcmp(name, "other") == 0)) abort();
    if (r == R_JOB && strncmp(path, "/v1/jobs/", 9) != 0) abort();
    const char *allow = srv_route_methods(r);
    if (srv_method_allowed(r, method) && (!*method || !strstr(allow, method))) abort();
    if (r == R_JOB && srv_valid_job_id(path + 9)) {
        if (strlen(path + 9) != 32 || strspn(path + 9, "0123456789abcdef") != 32) abort();
    }
    (void)srv_wants_html(accept);
    if (srv_explain_wanted(explain) && strcmp(explain, "1") != 0 && strcmp(explain, "true") != 0) abort();
    uint64_t n = 0;
    if (cl) (void)srv_parse_content_length(cl, &n);
    if (ct && srv_is_multipart(ct)) {
        static srv_multipart m; /* large: not on the stack */
        dfd_error e;
        (void)srv_multipart_init(&m, ct, &e);
    }
    for (int i = 0; i < 6; i++) check_sanitized(f[i]);
    check_sanitized(NULL);
    free(buf);
    return 0;
}
