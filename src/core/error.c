/* error.c — status codes, their generic descriptions, and the dfd_error helpers. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/core.h"

static const char *const status_text[DFD_E__COUNT] = {
    [DFD_OK] = "success",
    [DFD_E_ARG] = "invalid argument",
    [DFD_E_NOMEM] = "out of memory",
    [DFD_E_IO] = "input/output error",
    [DFD_E_UNSUPPORTED] = "unsupported format",
    [DFD_E_CORRUPT] = "truncated or corrupt data",
    [DFD_E_LIMIT] = "input over a configured limit",
    [DFD_E_NO_STREAM] = "no video stream",
    [DFD_E_MODEL] = "invalid model",
    [DFD_E_CANCELLED] = "cancelled",
    [DFD_E_INTERNAL] = "internal error",
    [DFD_E_NOT_FOUND] = "not found",
};

const char *dfd_strerror(int code) {
    if (code < 0 || code >= DFD_E__COUNT || !status_text[code]) return "unknown error";
    return status_text[code];
}

int dfd_failv(dfd_error *err, int code, const char *fmt, va_list ap) {
    if (err) {
        err->code = code;
        if (fmt)
            vsnprintf(err->message, sizeof err->message, fmt, ap);
        else
            snprintf(err->message, sizeof err->message, "%s", dfd_strerror(code));
    }
    return code;
}

int dfd_fail(dfd_error *err, int code, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    dfd_failv(err, code, fmt, ap);
    va_end(ap);
    return code;
}

void dfd_error_clear(dfd_error *err) {
    if (err) {
        err->code = DFD_OK;
        err->message[0] = '\0';
    }
}

void dfd_free(void *p) { free(p); }

const char *dfd_version(void) { return DFD_VERSION_STRING; }

void dfd_limits_default(dfd_limits *l) {
    l->max_image_pixels = 64000000ull;
    l->max_video_seconds = 1800.0;
    l->max_file_bytes = 500ull * 1000 * 1000;
    l->max_video_frames = 100000;
    l->max_image_side = 16384;
    l->max_image_aspect = 32.0;
}

const char *dfd_verdict_name(dfd_verdict v) {
    switch (v) {
    case DFD_VERDICT_REAL: return "REAL";
    case DFD_VERDICT_FAKE: return "FAKE";
    case DFD_VERDICT_NO_FACE: return "NO_FACE";
    case DFD_VERDICT_ERROR: return "ERROR";
    }
    return "ERROR";
}
