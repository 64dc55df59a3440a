/*
 * testutil — helpers shared by the test programs: where the shared research data
 * and the built binary are, temporary folders, running a command and capturing
 * its output. Every test is a cmocka program; include this after cmocka's headers.
 */
#ifndef DFD_TESTUTIL_H
#define DFD_TESTUTIL_H

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "dfd/dfd.h"

/* ../shared/data, or NULL (after printing why) when it is absent. */
const char *tu_shared_data(void);
/* Path under the shared data into a static-free buffer the caller frees; NULL if absent. */
char *tu_shared_path(const char *rel);
/* Skips the current cmocka test, with a message, when the shared data is absent. */
#define TU_REQUIRE_SHARED_DATA()                                                      \
    do {                                                                              \
        if (!tu_shared_data()) {                                                      \
            print_message("skipped: ../shared/data is absent (research data)\n");    \
            skip();                                                                   \
        }                                                                             \
    } while (0)

/* The project source folder (DFD_SOURCE_DIR) and build folder (DFD_BUILD_DIR). */
const char *tu_source_dir(void);
const char *tu_build_dir(void);
/* Joins a/b into a malloc'ed string. */
char *tu_join(const char *a, const char *b);

/* A context on the shipped models (DFD_SOURCE_DIR/models) sampling `frames` frames per
 * video; NULL, after printing "skipped: ...", when a default model is not there (the test
 * then skips); fails the test on any other error. */
dfd_ctx *tu_ctx_open(int frames);

/* Creates a fresh private temporary folder (malloc'ed path); tu_rmtree removes it. */
char *tu_mkdtemp(void);
void tu_rmtree(const char *path);

/* Runs a shell command line; captures stdout (malloc'ed, NUL-terminated) when out != NULL.
 * Returns the exit status (or -1 if it could not run). */
int tu_run(const char *cmdline, char **out);
/* True when a program is on PATH. */
int tu_have_program(const char *name);

/* Writes bytes to a file; asserts on failure. */
void tu_write_file(const char *path, const void *data, size_t len);
/* Reads a whole file (malloc'ed); asserts on failure. */
uint8_t *tu_read_file(const char *path, size_t *len);

/* One fp32 forward pass of an nn graph on `batch` items of x with the given backend
 * (NN_BACKEND_REF or NN_BACKEND_DNNL); output 0's first `batch` values into y. Fails the
 * test on any error. */
struct nn_graph;
void tu_forward(struct nn_graph *g, int backend, const float *x, int batch, float *y);

#endif
