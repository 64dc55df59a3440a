/* test_core_errors — status codes have messages; dfd_fail formats and returns its code;
 * checked size arithmetic refuses overflow; dfd_read_file enforces its size cap. */
#include "testutil.h"

#include <stdlib.h>
#include <string.h>

#include "core/core.h"

static void every_status_has_a_distinct_message(void **state) {
    (void)state;
    for (int i = 0; i < DFD_E__COUNT; i++) {
        assert_non_null(dfd_strerror(i));
        assert_string_not_equal(dfd_strerror(i), "unknown error");
        for (int j = 0; j < i; j++) assert_string_not_equal(dfd_strerror(i), dfd_strerror(j));
    }
    assert_string_equal(dfd_strerror(-5), "unknown error");
    assert_string_equal(dfd_strerror(DFD_E__COUNT), "unknown error");
}

static void fail_formats_message_and_returns_code(void **state) {
    (void)state;
    dfd_error e;
    assert_int_equal(dfd_fail(&e, DFD_E_LIMIT, "image is %dx%d", 20000, 20000), DFD_E_LIMIT);
    assert_int_equal(e.code, DFD_E_LIMIT);
    assert_string_equal(e.message, "image is 20000x20000");
    assert_int_equal(dfd_fail(NULL, DFD_E_IO, "x"), DFD_E_IO); /* NULL err is allowed */
    dfd_error_clear(&e);
    assert_int_equal(e.code, DFD_OK);
    assert_string_equal(e.message, "");
}

static void size_arithmetic_detects_overflow(void **state) {
    (void)state;
    size_t r;
    assert_int_equal(dfd_mul_size(1u << 20, 1u << 10, &r), 0);
    assert_int_equal(r, (size_t)1 << 30);
    assert_int_equal(dfd_mul_size(SIZE_MAX / 2 + 1, 2, &r), -1);
    assert_int_equal(dfd_mul3_size(65536, 65536, 65536 * 65536ull, &r), -1);
    assert_int_equal(dfd_add_size(SIZE_MAX, 1, &r), -1);
    assert_null(dfd_malloc_array(SIZE_MAX / 4, 8));
}

static void read_file_enforces_cap_and_reports_missing(void **state) {
    (void)state;
    char *dir = tu_mkdtemp();
    char *p = tu_join(dir, "f.bin");
    tu_write_file(p, "0123456789", 10);
    uint8_t *d;
    size_t n;
    dfd_error e;
    assert_int_equal(dfd_read_file(p, 10, &d, &n, &e), DFD_OK);
    assert_int_equal(n, 10);
    assert_memory_equal(d, "0123456789", 10);
    free(d);
    assert_int_equal(dfd_read_file(p, 9, &d, &n, &e), DFD_E_LIMIT);
    assert_non_null(strstr(e.message, "limit"));
    char *q = tu_join(dir, "missing");
    assert_int_equal(dfd_read_file(q, 0, &d, &n, &e), DFD_E_IO);
    assert_non_null(strstr(e.message, "missing"));
    assert_int_equal(dfd_read_file(dir, 0, &d, &n, &e), DFD_E_IO); /* a folder is not a file */
    tu_rmtree(dir);
    free(q);
    free(p);
    free(dir);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(every_status_has_a_distinct_message),
        cmocka_unit_test(fail_formats_message_and_returns_code),
        cmocka_unit_test(size_arithmetic_detects_overflow),
        cmocka_unit_test(read_file_enforces_cap_and_reports_missing),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
