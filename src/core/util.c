/* util.c — logging, checked size arithmetic, whole-file I/O, clocks. */
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdatomic.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "core/core.h"

static atomic_int log_level = DFD_LOG_WARN;

void dfd_log_set_level(int level) { atomic_store(&log_level, level); }
void dfd_set_log_level(int level) { dfd_log_set_level(level); }
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

void *dfd_grow(void *arr, int *cap, int need, size_t elem, int first) {
    if (need < 0 || first < 1) return NULL;
    if (need <= *cap && arr) return arr;
    int ncap = *cap > 0 ? *cap : first;
    while (ncap < need) ncap = ncap <= INT_MAX / 2 ? ncap * 2 : INT_MAX;
    size_t bytes;
    if (dfd_mul_size((size_t)ncap, elem, &bytes)) return NULL;
    void *p = realloc(arr, bytes ? bytes : 1);
    if (!p) return NULL;
    *cap = ncap;
    return p;
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

/* The process's umask, read without changing it (umask(2) can only read it by setting
 * it, which would race with other threads creating files): Linux reports it in
 * /proc/self/status since 4.7; elsewhere the common 022 is assumed. */
static mode_t current_umask(void) {
    mode_t m = 022;
    FILE *f = fopen("/proc/self/status", "re");
    if (!f) return m;
    char line[256];
    while (fgets(line, sizeof line, f)) {
        unsigned v;
        if (sscanf(line, "Umask: %o", &v) == 1) {
            m = (mode_t)(v & 0777);
            break;
        }
    }
    fclose(f);
    return m;
}

/* Writes to a temp file that mkstemp creates next to the target (an unpredictable name,
 * O_CREAT|O_EXCL: it never opens an existing file or follows a symlink planted there),
 * gives it the mode a new file would get (0666 less the umask, not mkstemp's 0600),
 * flushes it to disk and renames it over the target, then syncs the folder. A reader
 * sees the old file or the whole new one, never a part, and nothing is left behind on
 * failure. */
int dfd_write_file_atomic(const char *path, const void *data, size_t len, dfd_error *err) {
    size_t n;
    if (dfd_add_size(strlen(path), sizeof ".tmpXXXXXX", &n)) return dfd_fail(err, DFD_E_ARG, "path too long");
    char *tmp = malloc(n);
    if (!tmp) return dfd_fail(err, DFD_E_NOMEM, "out of memory");
    snprintf(tmp, n, "%s.tmpXXXXXX", path);
    int fd = mkstemp(tmp);
    if (fd < 0) {
        int e = errno;
        free(tmp);
        return dfd_fail(err, DFD_E_IO, "cannot create '%s': %s", path, strerror(e));
    }
    int ok = fchmod(fd, 0666 & ~current_umask()) == 0;
    const char *p = data;
    for (size_t left = len; ok && left > 0;) {
        ssize_t w = write(fd, p, left);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) {
            ok = 0;
            break;
        }
        p += w;
        left -= (size_t)w;
    }
    ok = ok && fsync(fd) == 0;
    int e = ok ? 0 : errno;
    if (close(fd) != 0 && ok) {
        ok = 0;
        e = errno;
    }
    if (ok && rename(tmp, path) != 0) {
        ok = 0;
        e = errno;
    }
    if (!ok) {
        unlink(tmp);
        free(tmp);
        return dfd_fail(err, DFD_E_IO, "cannot write '%s': %s", path, strerror(e ? e : EIO));
    }
    free(tmp);
    /* The rename is durable once the folder is synced; a failure here loses nothing. */
    const char *slash = strrchr(path, '/');
    char *dir = slash ? strndup(path, slash == path ? 1 : (size_t)(slash - path)) : strdup(".");
    if (dir) {
        int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (dfd >= 0) {
            (void)fsync(dfd);
            close(dfd);
        }
        free(dir);
    }
    return DFD_OK;
}

/* Copies s with every byte that does not belong to a well-formed UTF-8 sequence
 * (Unicode's definition: no overlong forms, no surrogates, nothing past U+10FFFF)
 * replaced by U+FFFD, one replacement per such byte. */
char *dfd_utf8_repair(const char *s) {
    const unsigned char *in = (const unsigned char *)(s ? s : "");
    size_t n = strlen((const char *)in), cap;
    if (dfd_mul_size(n, 3, &cap) || dfd_add_size(cap, 1, &cap)) return NULL;
    char *out = malloc(cap);
    if (!out) return NULL;
    size_t o = 0;
    for (size_t i = 0; i < n;) {
        unsigned char c = in[i];
        size_t len = 0;
        unsigned char lo = 0x80, hi = 0xBF; /* range of the second byte */
        if (c < 0x80) len = 1;
        else if (c >= 0xC2 && c <= 0xDF) len = 2;
        else if (c >= 0xE0 && c <= 0xEF) {
            len = 3;
            if (c == 0xE0) lo = 0xA0;      /* no overlongs */
            else if (c == 0xED) hi = 0x9F; /* no surrogates */
        } else if (c >= 0xF0 && c <= 0xF4) {
            len = 4;
            if (c == 0xF0) lo = 0x90;      /* no overlongs */
            else if (c == 0xF4) hi = 0x8F; /* nothing past U+10FFFF */
        }
        int ok = len > 0 && i + len <= n;
        for (size_t k = 1; ok && k < len; k++) {
            unsigned char b = in[i + k];
            ok = k == 1 ? (b >= lo && b <= hi) : (b >= 0x80 && b <= 0xBF);
        }
        if (ok) {
            memcpy(out + o, in + i, len);
            o += len;
            i += len;
        } else {
            memcpy(out + o, "\xEF\xBF\xBD", 3);
            o += 3;
            i++;
        }
    }
    out[o] = 0;
    return out;
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

float dfd_f16_to_f32(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
    uint32_t exp = (h >> 10) & 0x1fu, man = h & 0x3ffu;
    uint32_t u;
    if (exp == 0x1f) {
        u = sign | 0x7f800000u | (man << 13); /* inf / NaN */
    } else if (exp == 0) {
        /* zero or subnormal: man * 2^-24, exact in fp32 */
        float v = ldexpf((float)man, -24);
        return sign ? -v : v;
    } else {
        u = sign | ((exp + 112u) << 23) | (man << 13);
    }
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

int dfd_path_join(char *buf, size_t cap, const char *dir, const char *name, dfd_error *err) {
    size_t dl = strlen(dir);
    int slash = dl > 0 && dir[dl - 1] != '/';
    int n = snprintf(buf, cap, "%s%s%s", dir, slash ? "/" : "", name);
    if (n < 0 || (size_t)n >= cap) {
        if (cap) buf[0] = 0;
        return dfd_fail(err, DFD_E_ARG, "path too long: '%s' + '%s'", dir, name);
    }
    return DFD_OK;
}
