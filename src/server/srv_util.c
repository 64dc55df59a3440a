/* srv_util.c — the server's own small helpers (srv_util.h says why they are not core's). */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include <jansson.h>

#include "srv_util.h"

int srv_fail(dfd_error *err, int code, const char *fmt, ...) {
    if (err) {
        err->code = code;
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err->message, sizeof err->message, fmt, ap);
        va_end(ap);
    }
    return code;
}

void srv_error_clear(dfd_error *err) {
    if (err) {
        err->code = DFD_OK;
        err->message[0] = '\0';
    }
}

double srv_now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

void *srv_malloc_array(size_t n, size_t size) {
    if (size != 0 && n > SIZE_MAX / size) return NULL;
    size_t total = n * size;
    return malloc(total ? total : 1);
}

void *srv_result_element(const dfd_result *r) {
    char *text = dfd_result_json(r);
    if (!text) return NULL;
    /* The library's own text: a failure to parse it back can only be a lack of memory. */
    json_t *o = json_loads(text, 0, NULL);
    dfd_free(text);
    return o;
}
