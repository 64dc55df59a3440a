/* test_server_multipart — the server's streaming multipart/form-data parser gives back
 * exactly the bytes of the field "file", whatever the chunk boundaries (every split of
 * a body, random splits of a large one), including data that looks like the start of a
 * delimiter; and it refuses truncated and malformed bodies with specific messages. */
#include "testutil.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "server/server.h"

typedef struct buf {
    unsigned char *d;
    size_t n, cap;
    int fail_after; /* sink fails once this many bytes arrived (0 = never) */
} buf;

static int sink(void *user, const void *data, size_t len) {
    buf *b = user;
    if (b->fail_after && b->n + len > (size_t)b->fail_after) return -1;
    if (b->n + len > b->cap) {
        b->cap = (b->n + len) * 2;
        b->d = realloc(b->d, b->cap);
        assert_non_null(b->d);
    }
    memcpy(b->d + b->n, data, len);
    b->n += len;
    return 0;
}

static void append(buf *b, const void *d, size_t n) { assert_int_equal(sink(b, d, n), 0); }
static void appends(buf *b, const char *s) { append(b, s, strlen(s)); }

/* A body with a text field, then "file" holding payload, then an ignored second "file". */
static buf make_body(const char *boundary, const unsigned char *payload, size_t n) {
    buf b = {0};
    appends(&b, "preamble that must be ignored\r\n");
    char line[512];
    snprintf(line, sizeof line, "--%s\r\nContent-Disposition: form-data; name=\"note\"\r\n\r\nhello\r\n", boundary);
    appends(&b, line);
    snprintf(line, sizeof line,
             "--%s\r\ncontent-disposition: form-data; name=\"file\"; filename=\"C:\\\\dir\\\\my \\\"pic\\\".jpg\"\r\n"
             "Content-Type: image/jpeg\r\n\r\n",
             boundary);
    appends(&b, line);
    append(&b, payload, n);
    snprintf(line, sizeof line, "\r\n--%s\r\nContent-Disposition: form-data; name=\"file\"\r\n\r\nsecond\r\n--%s--\r\nepilogue",
             boundary, boundary);
    appends(&b, line);
    return b;
}

/* Feeds body in the given chunk sizes (cycled); returns the feed/finish status. */
static int run(const char *ct, const buf *body, const size_t *sizes, size_t n_sizes, buf *out, srv_multipart *m,
               dfd_error *e) {
    int rc = srv_multipart_init(m, ct, e);
    if (rc) return rc;
    size_t off = 0, k = 0;
    while (off < body->n) {
        size_t c = sizes[k++ % n_sizes];
        if (c > body->n - off) c = body->n - off;
        rc = srv_multipart_feed(m, body->d + off, c, sink, out, e);
        if (rc) return rc;
        off += c;
    }
    return srv_multipart_finish(m, e);
}

/* Payload full of near-delimiters: CRs, CRLFs, "\r\n--", "\r\n--boun" and the boundary
 * without its leading CRLF, which must all come through as data. */
static unsigned char *tricky_payload(const char *boundary, size_t *n) {
    buf b = {0};
    appends(&b, "\r\r\n\r\n-\r\n--\r\n--");
    append(&b, boundary, strlen(boundary) - 1);
    appends(&b, "X--");
    append(&b, boundary, strlen(boundary));
    appends(&b, "\r\n-");
    append(&b, boundary, strlen(boundary));
    unsigned char bin[] = {0, 1, 2, 0xff, '\r', 0, '\n', '\r', '\r', '\n', '-'};
    append(&b, bin, sizeof bin);
    appends(&b, "\r\n--");
    append(&b, boundary, 3);
    appends(&b, "\r");
    *n = b.n;
    return b.d;
}

static void every_split_gives_exact_bytes(void **state) {
    (void)state;
    const char *bnd = "----WebKitFormBoundary7MA4YWxkTrZu0gW";
    size_t pn;
    unsigned char *payload = tricky_payload(bnd, &pn);
    buf body = make_body(bnd, payload, pn);
    char ct[256];
    snprintf(ct, sizeof ct, "multipart/form-data; boundary=%s", bnd);
    for (size_t chunk = 1; chunk <= body.n; chunk++) {
        buf out = {0};
        srv_multipart m;
        dfd_error e;
        assert_int_equal(run(ct, &body, &chunk, 1, &out, &m, &e), DFD_OK);
        assert_int_equal(out.n, pn);
        assert_memory_equal(out.d, payload, pn);
        free(out.d);
        /* Client names are informational: last path component, no quotes or controls. */
        assert_string_equal(m.filename, "my _pic_.jpg");
        assert_string_equal(m.file_type, "image/jpeg");
    }
    /* Two-piece splits at every position. */
    for (size_t cut = 0; cut <= body.n; cut++) {
        size_t sizes[2] = {cut ? cut : 1, body.n};
        buf out = {0};
        srv_multipart m;
        dfd_error e;
        assert_int_equal(run(ct, &body, sizes, 2, &out, &m, &e), DFD_OK);
        assert_int_equal(out.n, pn);
        assert_memory_equal(out.d, payload, pn);
        free(out.d);
    }
    free(body.d);
    free(payload);
}

static void large_random_body_random_chunks(void **state) {
    (void)state;
    const char *bnd = "xYz";
    size_t pn = 1 << 20;
    unsigned char *payload = malloc(pn);
    unsigned s = 12345;
    for (size_t i = 0; i < pn; i++) {
        s = s * 1103515245u + 12345u;
        /* Many CR, LF and '-' so that partial delimiter matches are frequent. */
        unsigned v = (s >> 16) & 7;
        payload[i] = v == 0 ? '\r' : v == 1 ? '\n' : v == 2 ? '-' : v == 3 ? 'x' : (unsigned char)(s >> 8);
    }
    buf body = make_body(bnd, payload, pn);
    size_t sizes[64];
    for (int i = 0; i < 64; i++) {
        s = s * 1103515245u + 12345u;
        sizes[i] = 1 + (s >> 16) % 9000;
    }
    buf out = {0};
    srv_multipart m;
    dfd_error e;
    assert_int_equal(run("Multipart/Form-Data; charset=x; boundary=\"xYz\"", &body, sizes, 64, &out, &m, &e), DFD_OK);
    assert_int_equal(out.n, pn);
    assert_memory_equal(out.d, payload, pn);
    assert_int_equal(m.file_bytes, pn);
    free(out.d);
    free(body.d);
    free(payload);
}

static void truncation_anywhere_is_refused(void **state) {
    (void)state;
    const char *bnd = "b0und";
    const unsigned char payload[] = "JPEGDATA\r\n--b0un not yet";
    buf body = make_body(bnd, payload, sizeof payload - 1);
    /* Where the closing delimiter ends: any cut before it is a truncated body. */
    const char *close = strstr((const char *)body.d + body.n - 40, "--b0und--");
    assert_non_null(close);
    size_t complete = (size_t)(close - (const char *)body.d) + strlen("--b0und--");
    for (size_t cut = 0; cut < body.n; cut++) {
        buf part = {body.d, cut, cut, 0};
        buf out = {0};
        srv_multipart m;
        dfd_error e;
        size_t one = 7;
        int rc = run("multipart/form-data; boundary=b0und", &part, &one, 1, &out, &m, &e);
        if (cut >= complete) {
            assert_int_equal(rc, DFD_OK);
        } else {
            assert_int_not_equal(rc, DFD_OK);
            assert_true(strstr(e.message, "truncated") || strstr(e.message, "never appears"));
            /* What came out is a prefix of the payload, never delimiter bytes. */
            assert_true(out.n <= sizeof payload - 1);
            if (out.n) assert_memory_equal(out.d, payload, out.n);
        }
        free(out.d);
    }
    free(body.d);
}

static int expect_fail(const char *ct, const char *body, const char *needle) {
    srv_multipart m;
    dfd_error e = {0};
    buf out = {0};
    buf b = {(unsigned char *)body, strlen(body), 0, 0};
    size_t all = b.n ? b.n : 1;
    int rc = run(ct, &b, &all, 1, &out, &m, &e);
    free(out.d);
    if (rc == DFD_OK) return 0;
    if (!strstr(e.message, needle)) {
        print_message("message '%s' lacks '%s'\n", e.message, needle);
        return 0;
    }
    return 1;
}

static void malformed_bodies_have_specific_errors(void **state) {
    (void)state;
    const char *ct = "multipart/form-data; boundary=B";
    assert_true(expect_fail("application/json", "", "expected Content-Type multipart/form-data"));
    assert_true(expect_fail("multipart/form-data", "", "boundary"));
    assert_true(expect_fail("multipart/form-data; boundary=", "", "boundary"));
    assert_true(expect_fail("multipart/form-data; boundary=\"unterminated", "", "boundary"));
    assert_true(expect_fail("multipart/form-data; boundary=a\x01z", "", "RFC 2046"));
    assert_true(expect_fail("multipart/mixed; boundary=B", "", "expected Content-Type"));
    assert_true(expect_fail(ct, "no delimiter at all", "never appears"));
    assert_true(expect_fail(ct, "--B\r\nContent-Disposition: form-data; name=\"other\"\r\n\r\nx\r\n--B--", "no field named 'file'"));
    assert_true(expect_fail(ct, "--Bjunk\r\n", "unexpected byte after a boundary"));
    assert_true(expect_fail(ct, "--B\rX", "not ended by CRLF"));
    assert_true(expect_fail(ct, "--B\r\nbad header line\r\n\r\nx\r\n--B--", "has no name"));
    assert_true(expect_fail(ct, "--B\r\nContent-Disposition: attachment; name=\"file\"\r\n\r\nx\r\n--B--", "not form-data"));
    assert_true(expect_fail(ct, "--B\r\nContent-Disposition: form-data; name=\"file\"\r\n\r\nxyz", "ends inside the field 'file'"));
    assert_true(expect_fail(ct, "--B\r\nContent-Disposition: form-data; name=\"file\"\r\n\r\nxyz\r\n--B", "no closing boundary"));
    /* Headers without end are cut at the header limit, not buffered without bound. */
    size_t big = SRV_MP_MAX_HEADERS + 100;
    char *hdr = malloc(big + 16);
    memcpy(hdr, "--B\r\nX: ", 8);
    memset(hdr + 8, 'a', big - 8);
    hdr[big] = 0;
    assert_true(expect_fail(ct, hdr, "part headers over"));
    free(hdr);
}

/* RFC 2046 allows boundaries of 1 to 70 characters: 70 works end to end (its delimiter
 * fills the KMP table to the last entry), 71 and 200 are refused with that reason
 * before any byte is parsed. A 200-character boundary used to be accepted and to write
 * past the end of the failure table (issue 18). */
static void boundary_length_follows_rfc2046(void **state) {
    (void)state;
    char bnd[256];
    for (int i = 0; i < 255; i++) bnd[i] = "ab-_0'()+,./:=?"[i % 15];
    bnd[70] = 0;
    const unsigned char payload[] = "data\r\n--ab-_0 with a near-delimiter";
    buf body = make_body(bnd, payload, sizeof payload - 1);
    char ct[400];
    snprintf(ct, sizeof ct, "multipart/form-data; boundary=\"%s\"", bnd);
    buf out = {0};
    srv_multipart m;
    dfd_error e;
    size_t one = 1;
    assert_int_equal(run(ct, &body, &one, 1, &out, &m, &e), DFD_OK);
    assert_int_equal(out.n, sizeof payload - 1);
    assert_memory_equal(out.d, payload, out.n);
    free(out.d);
    free(body.d);
    static const int too_long[] = {71, 200, 254};
    for (size_t k = 0; k < sizeof too_long / sizeof too_long[0]; k++) {
        for (int i = 0; i < 255; i++) bnd[i] = 'x';
        bnd[too_long[k]] = 0;
        snprintf(ct, sizeof ct, "multipart/form-data; boundary=%s", bnd);
        assert_true(expect_fail(ct, "", "longer than the 70 characters RFC 2046 allows"));
        snprintf(ct, sizeof ct, "multipart/form-data; boundary=\"%s\"", bnd);
        assert_true(expect_fail(ct, "", "longer than the 70 characters RFC 2046 allows"));
    }
}

static void sink_failure_stops_the_parse(void **state) {
    (void)state;
    const char *body = "--B\r\nContent-Disposition: form-data; name=\"file\"\r\n\r\n0123456789\r\n--B--";
    srv_multipart m;
    dfd_error e;
    assert_int_equal(srv_multipart_init(&m, "multipart/form-data; boundary=B", &e), DFD_OK);
    buf out = {0};
    out.fail_after = 4;
    int rc = srv_multipart_feed(&m, body, strlen(body), sink, &out, &e);
    assert_int_equal(rc, DFD_E_IO);
    assert_int_not_equal(srv_multipart_finish(&m, &e), DFD_OK);
    free(out.d);
}

static void empty_file_and_transport_padding(void **state) {
    (void)state;
    /* Boundary lines may carry trailing spaces (RFC 2046 transport padding); an empty
     * file part is a complete body with zero bytes (the HTTP layer refuses it later). */
    const char *body = "--B  \r\nContent-Disposition: form-data; name=file\r\n\r\n\r\n--B-- \r\n";
    srv_multipart m;
    dfd_error e;
    buf out = {0};
    buf b = {(unsigned char *)body, strlen(body), 0, 0};
    size_t one = 1;
    assert_int_equal(run("multipart/form-data; boundary=B", &b, &one, 1, &out, &m, &e), DFD_OK);
    assert_int_equal(out.n, 0);
    assert_true(m.have_file);
    free(out.d);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(every_split_gives_exact_bytes),
        cmocka_unit_test(large_random_body_random_chunks),
        cmocka_unit_test(truncation_anywhere_is_refused),
        cmocka_unit_test(malformed_bodies_have_specific_errors),
        cmocka_unit_test(sink_failure_stops_the_parse),
        cmocka_unit_test(empty_file_and_transport_padding),
        cmocka_unit_test(boundary_length_follows_rfc2046),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
