/* fuzz_multipart — libFuzzer harness for the server's streaming multipart/form-data
 * parser (src/server/multipart.c), the first thing any client's bytes reach.
 *
 * Input: a Content-Type value up to the first '\n' (so the boundary parameter, quoting
 * and escapes are fuzzed too), one byte choosing the chunk sizes, then the body. The body
 * is fed in chunks of varying size, as the network would deliver it; what the sink gets
 * must be exactly the file's bytes, which a second, whole-body parse checks: the parser's
 * output may not depend on how the body was split. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "server/server.h"

typedef struct sink_buf {
    uint8_t *d;
    size_t n, cap;
} sink_buf;

static int sink(void *user, const void *data, size_t len) {
    sink_buf *b = user;
    if (b->n + len > b->cap) {
        size_t cap = (b->n + len) * 2;
        uint8_t *d = realloc(b->d, cap);
        if (!d) return -1;
        b->d = d;
        b->cap = cap;
    }
    memcpy(b->d + b->n, data, len);
    b->n += len;
    return 0;
}

static int parse(const char *ct, const uint8_t *body, size_t n, unsigned seed, sink_buf *out, srv_multipart *m) {
    dfd_error e;
    int rc = srv_multipart_init(m, ct, &e);
    if (rc) return rc;
    size_t off = 0;
    while (off < n) {
        size_t c = seed ? 1 + (seed % 97) : n - off;
        seed = seed * 1103515245u + 12345u;
        if (c > n - off) c = n - off;
        rc = srv_multipart_feed(m, body + off, c, sink, out, &e);
        if (rc) return rc;
        off += c;
    }
    return srv_multipart_finish(m, &e);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const uint8_t *nl = memchr(data, '\n', size < 400 ? size : 400);
    if (!nl || (size_t)(nl - data) + 2 > size) return 0;
    size_t ctl = (size_t)(nl - data);
    char ct[401];
    memcpy(ct, data, ctl);
    ct[ctl] = 0;
    if (strlen(ct) != ctl) return 0; /* a NUL inside: not a header value */
    unsigned seed = nl[1];
    const uint8_t *body = nl + 2;
    size_t n = size - ctl - 2;
    static srv_multipart m1, m2; /* large (headers buffer): not on the stack */
    sink_buf a = {0}, b = {0};
    int r1 = parse(ct, body, n, seed | 1u, &a, &m1);
    int r2 = parse(ct, body, n, 0, &b, &m2);
    if (r1 != r2 || a.n != b.n || (a.n && memcmp(a.d, b.d, a.n) != 0) || m1.file_bytes != a.n) abort();
    free(a.d);
    free(b.d);
    return 0;
}
