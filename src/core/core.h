/*
 * core — what every module shares: error reporting, logging, checked arithmetic
 * for sizes that come from untrusted input, and reading files with a size cap.
 * Nothing here knows about media, models or faces.
 */
#ifndef DFD_CORE_H
#define DFD_CORE_H

#include <stdarg.h>
#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "dfd/dfd.h"

/* DFD_PRINTF (printf-like checking) is public: dfd.h. */

/* Sets err (if not NULL) to code and a formatted message; returns code, so that
 * `return dfd_fail(err, DFD_E_CORRUPT, "...")` reads naturally. */
int dfd_fail(dfd_error *err, int code, const char *fmt, ...) DFD_PRINTF(3, 4);
int dfd_failv(dfd_error *err, int code, const char *fmt, va_list ap);
/* Clears err to DFD_OK with an empty message. */
void dfd_error_clear(dfd_error *err);

/* Logging through one function with levels (as FFmpeg does). The level is the only
 * process-wide setting in the library; it is read and written atomically. */
/* DFD_LOG_QUIET .. DFD_LOG_DEBUG, dfd_set_log_level and dfd_log itself are public (dfd.h):
 * the server, a client of the public API, logs through it too. */
void dfd_log_set_level(int level);
int dfd_log_get_level(void);

/* The folders where shipped models are looked for when none is named, most specific
 * first (paths.c: ./models, beside the executable, the installed share/dfd/models beside
 * the executable or libdfd.so, the configured install prefix); each holds dfd-*.safetensors,
 * and the face models in its registry/ subfolder. Returns how many were written (<= max). */
#define DFD_PATH_MAX 4096
int dfd_model_dirs(char dirs[][DFD_PATH_MAX], int max);

/* Checked size arithmetic: return 0 on success, -1 on overflow. */
int dfd_mul_size(size_t a, size_t b, size_t *out);
int dfd_mul3_size(size_t a, size_t b, size_t c, size_t *out);
int dfd_add_size(size_t a, size_t b, size_t *out);

/* malloc of a*b bytes with overflow check; NULL on overflow or no memory. */
void *dfd_malloc_array(size_t n, size_t size);
void *dfd_calloc_array(size_t n, size_t size);

/* Reads a whole file, refusing files over max_bytes (0 = no cap).
 * On success *data (malloc'ed, NUL-terminated past *len) and *len are set. */
int dfd_read_file(const char *path, uint64_t max_bytes, uint8_t **data, size_t *len, dfd_error *err);
/* Writes a whole file atomically: an mkstemp file next to it (never following a link
 * there), fsync, rename over path. The file gets the usual 0666 less the umask. */
int dfd_write_file_atomic(const char *path, const void *data, size_t len, dfd_error *err);
/* A malloc'ed copy of s that is valid UTF-8: each byte that is not part of a
 * well-formed sequence becomes U+FFFD. NULL when out of memory. */
char *dfd_utf8_repair(const char *s);

/* Monotonic clock in milliseconds. */
double dfd_now_ms(void);

/* dfd_cpu_count, the number of online cores, is public (dfd.h). */

/* Little-endian loads from possibly unaligned bytes. */
static inline uint16_t dfd_rd16le(const uint8_t *p) { return (uint16_t)(p[0] | (p[1] << 8)); }
static inline uint32_t dfd_rd32le(const uint8_t *p) {
    return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) | ((uint32_t)p[3] << 24);
}
static inline uint64_t dfd_rd64le(const uint8_t *p) {
    return (uint64_t)dfd_rd32le(p) | ((uint64_t)dfd_rd32le(p + 4) << 32);
}

/* IEEE half precision to fp32: subnormals, infinities and NaN (with its payload) included;
 * exact (util.c). The one fp16 decoder of the library (safetensors, TFLite). */
float dfd_f16_to_f32(uint16_t h);

/* The logistic function 1 / (1 + e^-z): P from a logit (for z below about -709, e^-z is
 * +inf and the result 0, its limit). */
static inline double dfd_sigmoid(double z) { return 1.0 / (1.0 + exp(-z)); }
/* Its inverse, log(p / (1 - p)), with p clamped to [1e-9, 1 - 1e-9] so that 0 and 1 give
 * finite logits. */
static inline double dfd_logit(double p) {
    const double eps = 1e-9;
    p = p < eps ? eps : p > 1 - eps ? 1 - eps : p;
    return log(p / (1 - p));
}

/* The growable array of the library: room in arr (elements of elem bytes, *cap of them
 * allocated; NULL with *cap 0 when empty) for at least `need` elements. The capacity at
 * least doubles (from `first` for an empty array), so appending one at a time costs O(1)
 * amortised. Returns the array, moved or not, with *cap updated; NULL when the sizes would
 * overflow (an int capacity, or bytes past SIZE_MAX) or memory is short, arr then still
 * valid, still the caller's, and *cap unchanged. Usage:
 *     T *np = dfd_grow(a->v, &a->cap, a->n + 1, sizeof *np, 16);
 *     if (!np) return <out of memory>;
 *     a->v = np; */
void *dfd_grow(void *arr, int *cap, int need, size_t elem, int first);

/* Writes dir + "/" + name into buf (no doubled '/'); DFD_E_ARG, naming both, when it does
 * not fit in cap bytes: paths are never silently cut short. */
int dfd_path_join(char *buf, size_t cap, const char *dir, const char *name, dfd_error *err);

/* bfloat16: the high half of an fp32. Both directions as oneDNN converts: round to
 * nearest, ties to even (overflow into the exponent is the correct rounding, up to
 * infinity for the largest values); a NaN stays a (quiet) NaN with its sign. Inline, so
 * that loops over arrays vectorise. */
static inline float dfd_bf16_to_f32(uint16_t h) {
    union {
        uint32_t u;
        float f;
    } v = {(uint32_t)h << 16};
    return v.f;
}
static inline uint16_t dfd_f32_to_bf16(float f) {
    union {
        float f;
        uint32_t u;
    } v = {f};
    uint32_t u = v.u;
    if ((u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((u >> 16) | 0x0040u);
    u += 0x7fffu + ((u >> 16) & 1u);
    return (uint16_t)(u >> 16);
}

#endif
