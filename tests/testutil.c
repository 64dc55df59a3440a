/* testutil.c — see testutil.h. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "testutil.h"

#include "nn/nn.h"

const char *tu_shared_data(void) {
    const char *p = getenv("DFD_SHARED_DATA");
    struct stat st;
    if (p && stat(p, &st) == 0 && S_ISDIR(st.st_mode)) return p;
    static int warned;
    if (!warned) {
        fprintf(stderr, "note: shared research data not found at '%s'; tests that need it are skipped\n",
                p ? p : "(DFD_SHARED_DATA unset)");
        warned = 1;
    }
    return NULL;
}

char *tu_join(const char *a, const char *b) {
    size_t n = strlen(a) + strlen(b) + 2;
    char *s = malloc(n);
    assert_non_null(s);
    snprintf(s, n, "%s/%s", a, b);
    return s;
}

char *tu_shared_path(const char *rel) {
    const char *d = tu_shared_data();
    return d ? tu_join(d, rel) : NULL;
}

const char *tu_source_dir(void) {
    const char *p = getenv("DFD_SOURCE_DIR");
    return p ? p : ".";
}

const char *tu_build_dir(void) {
    const char *p = getenv("DFD_BUILD_DIR");
    return p ? p : ".";
}

char *tu_mkdtemp(void) {
    const char *base = getenv("TMPDIR");
    char *t = tu_join(base && *base ? base : "/tmp", "dfdtest.XXXXXX");
    assert_non_null(mkdtemp(t));
    return t;
}

void tu_rmtree(const char *path) {
    if (!path || !*path || strcmp(path, "/") == 0) return;
    size_t n = strlen(path) + 32;
    char *cmd = malloc(n);
    assert_non_null(cmd);
    snprintf(cmd, n, "rm -rf '%s'", path);
    int rc = system(cmd);
    (void)rc;
    free(cmd);
}

int tu_run(const char *cmdline, char **out) {
    FILE *p = popen(cmdline, "r");
    if (!p) return -1;
    size_t cap = 4096, len = 0;
    char *buf = malloc(cap);
    assert_non_null(buf);
    size_t n;
    while ((n = fread(buf + len, 1, cap - len - 1, p)) > 0) {
        len += n;
        if (cap - len < 2) {
            cap *= 2;
            buf = realloc(buf, cap);
            assert_non_null(buf);
        }
    }
    buf[len] = 0;
    int st = pclose(p);
    if (out)
        *out = buf;
    else
        free(buf);
    if (st == -1) return -1;
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

int tu_have_program(const char *name) {
    char cmd[256];
    snprintf(cmd, sizeof cmd, "command -v '%s' >/dev/null 2>&1", name);
    return tu_run(cmd, NULL) == 0;
}

void tu_write_file(const char *path, const void *data, size_t len) {
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(data, 1, len, f), len);
    assert_int_equal(fclose(f), 0);
}

uint8_t *tu_read_file(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    uint8_t *b = malloc((size_t)n + 1);
    assert_non_null(b);
    assert_int_equal(fread(b, 1, (size_t)n, f), (size_t)n);
    b[n] = 0;
    fclose(f);
    *len = (size_t)n;
    return b;
}

dfd_ctx *tu_ctx_open(int frames) {
    char models[4096];
    snprintf(models, sizeof models, "%s/models", tu_source_dir());
    dfd_options o;
    dfd_options_default(&o);
    o.models_dir = models;
    o.frames = frames;
    dfd_ctx *ctx;
    dfd_error e;
    int rc = dfd_ctx_create(&o, &ctx, &e);
    if (rc == DFD_E_NOT_FOUND) {
        print_message("skipped: %s\n", e.message);
        return NULL;
    }
    if (rc) fail_msg("dfd_ctx_create: %s", e.message);
    return ctx;
}

void tu_forward(struct nn_graph *g, int backend, const float *x, int batch, float *y) {
    nn_exec_opts eo;
    nn_exec_opts_default(&eo);
    eo.backend = (nn_backend)backend;
    eo.precision = NN_PREC_F32;
    eo.max_batch = batch;
    nn_exec *ex = NULL;
    dfd_error e;
    int rc = nn_exec_create(g, &eo, &ex, &e);
    if (rc) print_message("%s\n", e.message);
    assert_int_equal(rc, DFD_OK);
    assert_int_equal(nn_forward(ex, x, batch, &e), DFD_OK);
    size_t n;
    const float *out = nn_output(ex, 0, &n);
    assert_true(n >= (size_t)batch);
    for (int i = 0; i < batch; i++) y[i] = out[i];
    nn_exec_free(ex);
}
