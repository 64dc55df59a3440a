/* util.c — logging, checked size arithmetic, whole-file I/O, clocks. */
#include <errno.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "core/core.h"

static atomic_int log_level = DFD_LOG_WARN;

void dfd_log_set_level(int level) { atomic_store(&log_level, level); }
int dfd_log_get_level(void) { return atomic_load(&log_level); }

void dfd_log(int level, const char *fmt, ...) {
    if (level > atomic_load(&log_level)) return;
    static const char *const tag[] = {"error", "warning", "info", "debug"};
    char line[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    /* One fprintf per line so lines from several threads do not interleave. */
    fprintf(stderr, "dfd: %s: %s\n", tag[level < 0 ? 0 : level > 3 ? 3 : level], line);
}

int dfd_mul_size(size_t a, size_t b, size_t *out) {
    if (b != 0 && a > SIZE_MAX / b) return -1;
    *out = a * b;
    return 0;
}

int dfd_mul3_size(size_t a, size_t b, size_t c, size_t *out) {
    size_t t;
    if (dfd_mul_size(a, b, &t)) return -1;
    return dfd_mul_size(t, c, out);
}

int dfd_add_size(size_t a, size_t b, size_t *out) {
    if (a > SIZE_MAX - b) return -1;
    *out = a + b;
    return 0;
}

void *dfd_malloc_array(size_t n, size_t size) {
    size_t total;
    if (dfd_mul_size(n, size, &total)) return NULL;
    return malloc(total ? total : 1);
}

void *dfd_calloc_array(size_t n, size_t size) {
    if (size != 0 && n > SIZE_MAX / size) return NULL;
    return calloc(n ? n : 1, size ? size : 1);
}

int dfd_read_file(const char *path, uint64_t max_bytes, uint8_t **data, size_t *len, dfd_error *err) {
    *data = NULL;
    *len = 0;
    FILE *f = fopen(path, "rb");
    if (!f) return dfd_fail(err, DFD_E_IO, "cannot open '%s': %s", path, strerror(errno));
    struct stat st;
    if (fstat(fileno(f), &st) != 0 || !S_ISREG(st.st_mode)) {
        fclose(f);
        return dfd_fail(err, DFD_E_IO, "'%s' is not a regular file", path);
    }
    uint64_t size = (uint64_t)st.st_size;
    if (max_bytes && size > max_bytes) {
        fclose(f);
        return dfd_fail(err, DFD_E_LIMIT, "file is %llu bytes, over the %llu-byte limit",
                        (unsigned long long)size, (unsigned long long)max_bytes);
    }
    if (size >= SIZE_MAX) {
        fclose(f);
        return dfd_fail(err, DFD_E_LIMIT, "file too large");
    }
    uint8_t *buf = malloc((size_t)size + 1);
    if (!buf) {
        fclose(f);
        return dfd_fail(err, DFD_E_NOMEM, "cannot allocate %llu bytes for '%s'", (unsigned long long)size, path);
    }
    size_t got = fread(buf, 1, (size_t)size, f);
    int rerr = ferror(f);
    fclose(f);
    if (rerr || got != (size_t)size) {
        free(buf);
        return dfd_fail(err, DFD_E_IO, "read error on '%s'", path);
    }
    buf[got] = 0;
    *data = buf;
    *len = got;
    return DFD_OK;
}

int dfd_write_file_atomic(const char *path, const void *data, size_t len, dfd_error *err) {
    size_t n = strlen(path) + 16;
    char *tmp = malloc(n);
    if (!tmp) return dfd_fail(err, DFD_E_NOMEM, "out of memory");
    snprintf(tmp, n, "%s.tmp%ld", path, (long)getpid());
    FILE *f = fopen(tmp, "wb");
    if (!f) {
        int e = errno;
        free(tmp);
        return dfd_fail(err, DFD_E_IO, "cannot create '%s': %s", path, strerror(e));
    }
    int ok = fwrite(data, 1, len, f) == len;
    ok = (fflush(f) == 0) && ok;
    ok = (fclose(f) == 0) && ok;
    if (!ok || rename(tmp, path) != 0) {
        int e = errno;
        remove(tmp);
        free(tmp);
        return dfd_fail(err, DFD_E_IO, "cannot write '%s': %s", path, strerror(e));
    }
    free(tmp);
    return DFD_OK;
}

double dfd_now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

int dfd_cpu_count(void) {
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n < 1 ? 1 : (int)n;
}
