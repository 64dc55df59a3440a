/*
 * srv_util — the few helpers the server needs that the public API does not offer: filling
 * a dfd_error, a monotonic clock, overflow-checked array allocation, and a result as a
 * jansson object. The server is a client of include/dfd/ only (its target's include path
 * is include/ and src/server/, docs/architecture.md), so it keeps its own copies of these
 * rather than reach into core; each is a few lines and needs no sharing with a program.
 * Logging is not here: dfd_log is public (dfd.h), so that the server's lines obey the
 * library's level and format, as a program's may.
 */
#ifndef DFD_SERVER_SRV_UTIL_H
#define DFD_SERVER_SRV_UTIL_H

#include <stdarg.h>
#include <stddef.h>

#include "dfd/dfd.h"

/* Sets err (if not NULL) to code and a formatted message (cut to fit); returns code, so
 * that `return srv_fail(err, DFD_E_IO, "...")` reads naturally. */
int srv_fail(dfd_error *err, int code, const char *fmt, ...) DFD_PRINTF(3, 4);
/* Clears err (if not NULL) to DFD_OK with an empty message. */
void srv_error_clear(dfd_error *err);
/* Monotonic clock in milliseconds (CLOCK_MONOTONIC: never jumps with the wall clock). */
double srv_now_ms(void);
/* malloc of n * size bytes; NULL when that overflows or memory is short. */
void *srv_malloc_array(size_t n, size_t size);
/* The result as one element of a dfd.result/1 "results" array: a new jansson object
 * (json_t *, returned as void * so that this header does not pull jansson in), made from
 * dfd_result_json's text; NULL when out of memory. */
void *srv_result_element(const dfd_result *r);

#endif
