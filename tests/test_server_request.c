/* test_server_request — the pure functions behind the access handler (src/server/request.c,
 * fuzzed by tests/fuzz/fuzz_http.c): routes by exact path with fixed names, Allow lists,
 * job ids, Accept negotiation, the explain flag, Content-Length, and the sanitising of
 * client strings for logs, which must stay inside its buffer at every size (with a buffer
 * under 4 bytes it wrote past the end before). */
#include "testutil.h"

#include <stdlib.h>
#include <string.h>

#include "server/server.h"

static void routes_by_exact_path(void **state) {
    (void)state;
    const char *name;
    assert_int_equal(srv_route_of("/v1/analyze", &name), R_ANALYZE);
    assert_string_equal(name, "/v1/analyze");
    assert_int_equal(srv_route_of("/v1/jobs/abc", &name), R_JOB);
    assert_string_equal(name, "/v1/jobs/{id}");
    assert_int_equal(srv_route_of("/v1/analyze/", &name), R_NONE);
    assert_string_equal(name, "other");
    assert_int_equal(srv_route_of("/../v1/analyze", &name), R_NONE);
    assert_true(srv_method_allowed(R_ANALYZE, "POST"));
    assert_false(srv_method_allowed(R_ANALYZE, "GET"));
    assert_true(srv_method_allowed(R_JOB, "DELETE"));
    assert_false(srv_method_allowed(R_HEALTH, "DELETE"));
    assert_string_equal(srv_route_methods(R_JOB), "GET, HEAD, DELETE");
}

static void job_ids_accept_and_flags(void **state) {
    (void)state;
    assert_true(srv_valid_job_id("0123456789abcdef0123456789abcdef"));
    assert_false(srv_valid_job_id("0123456789ABCDEF0123456789abcdef"));
    assert_false(srv_valid_job_id("0123456789abcdef0123456789abcde"));
    assert_false(srv_valid_job_id("../../../../etc/passwd/0123456789"));
    assert_false(srv_wants_html(NULL));
    assert_true(srv_wants_html("text/html,application/xhtml+xml,*/*"));
    assert_false(srv_wants_html("application/json, text/html"));
    assert_false(srv_wants_html("*/*"));
    assert_true(srv_explain_wanted("1"));
    assert_true(srv_explain_wanted("true"));
    assert_false(srv_explain_wanted("yes"));
    assert_false(srv_explain_wanted(NULL));
    uint64_t n = 0;
    assert_int_equal(srv_parse_content_length("1234", &n), 0);
    assert_int_equal(n, 1234);
    assert_int_equal(srv_parse_content_length("12x", &n), -1);
    assert_int_equal(srv_parse_content_length("", &n), -1);
    assert_int_equal(srv_parse_content_length("99999999999999999999999", &n), -1);
}

static void sanitize_stays_in_its_buffer(void **state) {
    (void)state;
    char big[16];
    srv_sanitize(big, sizeof big, "GET\x01\xff ok");
    assert_string_equal(big, "GET?? ok");
    srv_sanitize(big, sizeof big, "/a/very/long/path/indeed");
    assert_string_equal(big, "/a/very/long...");
    srv_sanitize(big, sizeof big, NULL);
    assert_string_equal(big, "");
    /* Every size from 1: exactly that many bytes, so AddressSanitizer sees a byte past. */
    for (size_t cap = 1; cap <= 8; cap++) {
        char *out = malloc(cap);
        assert_non_null(out);
        srv_sanitize(out, cap, "abcdefghij");
        assert_true(strlen(out) < cap);
        if (cap >= 4) assert_non_null(strstr(out, "..."));
        else assert_memory_equal(out, "abc", strlen(out));
        free(out);
    }
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(routes_by_exact_path),
        cmocka_unit_test(job_ids_accept_and_flags),
        cmocka_unit_test(sanitize_stays_in_its_buffer),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
