/* test_core_errors — status codes have messages; dfd_fail formats and returns its code;
 * checked size arithmetic refuses overflow; dfd_read_file enforces its size cap. */
#include "testutil.h"

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

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

/* dfd_write_file_atomic: the whole new content or nothing, never through a link planted
 * at a temp name an attacker could predict (it used to write "<path>.tmp<pid>" with
 * fopen("wb"), which follows a symlink there into any file the user may write: issue 18),
 * no temp file left behind, and the mode a new file gets from the umask. */
static void atomic_write_uses_a_private_temp_file(void **state) {
    (void)state;
    char *dir = tu_mkdtemp();
    char *p = tu_join(dir, "out.json");
    char *victim = tu_join(dir, "victim");
    tu_write_file(victim, "precious", 8);
    /* Links at every name the old scheme could use, and at the target itself. */
    char *planted = tu_join(dir, "out.json.tmp");
    char name[64];
    snprintf(name, sizeof name, "out.json.tmp%ld", (long)getpid());
    char *pidlink = tu_join(dir, name);
    assert_int_equal(symlink(victim, pidlink), 0);
    assert_int_equal(symlink(victim, planted), 0);
    mode_t old = umask(027);
    dfd_error e;
    assert_int_equal(dfd_write_file_atomic(p, "new content", 11, &e), DFD_OK);
    umask(old);
    uint8_t *d;
    size_t n;
    assert_int_equal(dfd_read_file(victim, 0, &d, &n, &e), DFD_OK);
    assert_int_equal(n, 8);
    assert_memory_equal(d, "precious", 8); /* untouched */
    free(d);
    struct stat st;
    assert_int_equal(lstat(p, &st), 0);
    assert_true(S_ISREG(st.st_mode)); /* a file, not the planted link renamed */
    assert_int_equal(st.st_mode & 0777, 0640);
    assert_int_equal(dfd_read_file(p, 0, &d, &n, &e), DFD_OK);
    assert_int_equal(n, 11);
    assert_memory_equal(d, "new content", 11);
    free(d);
    /* Overwriting works, and only the target, the victim and the two links remain. */
    assert_int_equal(dfd_write_file_atomic(p, "v2", 2, &e), DFD_OK);
    assert_int_equal(dfd_read_file(p, 0, &d, &n, &e), DFD_OK);
    assert_int_equal(n, 2);
    free(d);
    DIR *dh = opendir(dir);
    assert_non_null(dh);
    int entries = 0;
    for (struct dirent *de; (de = readdir(dh));)
        if (de->d_name[0] != '.') entries++;
    closedir(dh);
    assert_int_equal(entries, 4);
    /* A folder that does not exist: an error naming the path, nothing created. */
    char *q = tu_join(dir, "no/such/out.json");
    assert_int_equal(dfd_write_file_atomic(q, "x", 1, &e), DFD_E_IO);
    assert_non_null(strstr(e.message, "no/such/out.json"));
    tu_rmtree(dir);
    free(q);
    free(pidlink);
    free(planted);
    free(victim);
    free(p);
    free(dir);
}

/* dfd_grow: room for `need`, doubling from `first`, contents kept; refusals (an int
 * capacity past INT_MAX, bytes past SIZE_MAX, a bad request) leave the array and its
 * capacity as they were. */
static void grow_keeps_contents_and_refuses_overflow(void **state) {
    (void)state;
    int *a = NULL, cap = 0;
    for (int i = 0; i < 1000; i++) {
        int *na = dfd_grow(a, &cap, i + 1, sizeof *a, 16);
        assert_non_null(na);
        a = na;
        a[i] = i * 7;
        assert_true(cap >= i + 1);
    }
    assert_int_equal(cap, 1024); /* 16, 32, ..., 1024: doubling */
    for (int i = 0; i < 1000; i++) assert_int_equal(a[i], i * 7);
    assert_ptr_equal(dfd_grow(a, &cap, 10, sizeof *a, 16), a); /* room already */
    assert_int_equal(cap, 1024);
    int before = cap;
    assert_null(dfd_grow(a, &cap, -1, sizeof *a, 16));
    assert_null(dfd_grow(a, &cap, 2000, SIZE_MAX / 1500, 16)); /* bytes would overflow */
    assert_null(dfd_grow(a, &cap, 2000, sizeof *a, 0));
    assert_int_equal(cap, before);
    assert_int_equal(a[999], 999 * 7); /* still the caller's */
    free(a);
    int *b = NULL, bc = 0;
    b = dfd_grow(b, &bc, 40, sizeof *b, 16); /* one jump past several doublings */
    assert_non_null(b);
    assert_int_equal(bc, 64);
    free(b);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(every_status_has_a_distinct_message),
        cmocka_unit_test(fail_formats_message_and_returns_code),
        cmocka_unit_test(size_arithmetic_detects_overflow),
        cmocka_unit_test(read_file_enforces_cap_and_reports_missing),
        cmocka_unit_test(atomic_write_uses_a_private_temp_file),
        cmocka_unit_test(grow_keeps_contents_and_refuses_overflow),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
